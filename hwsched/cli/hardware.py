"""``hwsched hardware list`` and ``hwsched hardware show NAME|FILE``."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from hwsched.cli.common import stdout_console
from hwsched.hardware import (
    Link,
    Platform,
    descriptor_to_dict,
    link_names,
    load_descriptor,
    load_link,
    load_platform,
    platform_names,
)

BYTES_PER_MIB = 1024 * 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hardware", help="list or show platform and link descriptors")
    commands = parser.add_subparsers(dest="hardware_command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="list the platforms and links")
    listing.set_defaults(func=run_list)
    show = commands.add_parser("show", help="show one descriptor with the source of each number")
    show.add_argument("name", metavar="NAME|FILE", help="registry name or descriptor file")
    show.add_argument("--json", action="store_true", help="print the loaded descriptor as JSON")
    show.set_defaults(func=run_show)


def run_list(_args: argparse.Namespace) -> int:
    console = stdout_console(markup=False)
    platforms = Table(title="platforms", title_justify="left")
    for header in (
        "name",
        "precisions (GOP/s)",
        "RAM MiB",
        "flash MiB",
        "active/idle W",
        "description",
    ):
        platforms.add_column(header)
    for name in platform_names():
        p = load_platform(name)
        platforms.add_row(
            name,
            ", ".join(f"{k} {v:g}" for k, v in p.compute_gops.items()),
            f"{p.ram_bytes / BYTES_PER_MIB:g}",
            "—" if p.flash_bytes is None else f"{p.flash_bytes / BYTES_PER_MIB:g}",
            f"{p.active_power_w:g}/{p.idle_power_w:g}",
            p.description,
        )
    links = Table(title="links", title_justify="left")
    for header in ("name", "Mbit/s", "frame payload/overhead B", "latency ms", "description"):
        links.add_column(header)
    for name in link_names():
        lk = load_link(name)
        frame = (
            "raw"
            if lk.frame_payload_bytes is None
            else (f"{lk.frame_payload_bytes}/{lk.frame_overhead_bytes}")
        )
        links.add_row(
            name, f"{lk.bandwidth_bps / 1e6:g}", frame, f"{lk.message_latency_ms:g}", lk.description
        )
    console.print(platforms)
    console.print(links)
    console.print(
        "Any descriptor file path is accepted wherever a name is (schema: hardware/README.md)."
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    descriptor = load_descriptor(args.name)
    data = descriptor_to_dict(descriptor)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    console = stdout_console(markup=False)
    kind = "platform" if isinstance(descriptor, Platform) else "link"
    table = Table(title=f"{kind} {descriptor.name}: {descriptor.description}", title_justify="left")
    table.add_column("field")
    table.add_column("value")
    table.add_column("source / estimate")
    for key, source in descriptor.sources.items():
        table.add_row(key, _value(descriptor, key), source)
    if isinstance(descriptor, Platform):
        ops = (
            "all"
            if descriptor.supported_ops is None
            else ", ".join(sorted(op.value for op in descriptor.supported_ops))
        )
        table.add_row("ops", ops, "")
        table.add_row("precisions.default", descriptor.default_precision, "")
    if isinstance(descriptor, Link):
        table.add_row("encoding", descriptor.encoding, "")
    table.add_row("file", descriptor.path, "")
    console.print(table)
    return 0


def _value(descriptor: Platform | Link, field_path: str) -> str:
    """The number as written in the descriptor, found by its field path."""
    import yaml

    with open(descriptor.path, encoding="utf-8") as handle:
        node = yaml.safe_load(handle)
    for key in field_path.split("."):
        node = node[key]
    return f"{node['value']:g}"
