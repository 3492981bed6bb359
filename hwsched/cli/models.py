"""``hwsched models``: list the model zoo."""

from __future__ import annotations

import argparse

from rich.table import Table

from hwsched.cli.common import stdout_console
from hwsched.load.zoo import ZOO


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the model zoo")
    parser.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    table = Table(title="hwsched model zoo (batch 1; weights=None unless --weights FILE)",
                  title_justify="left")
    table.add_column("name")
    table.add_column("input", justify="right")
    table.add_column("description")
    for entry in ZOO.values():
        table.add_row(entry.name, "×".join(map(str, entry.input_shape)), entry.description)
    console = stdout_console()
    console.print(table)
    console.print("Any .keras/.h5/.tflite file path is accepted wherever a zoo name is.")
    return 0
