"""Descriptor loading: every built-in file validates, and each schema error names file+field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hwsched.cli import main
from hwsched.errors import DescriptorError, UnknownNameError
from hwsched.hardware import (
    BUILTIN_DIR,
    link_names,
    load_descriptor,
    load_link,
    load_platform,
    platform_names,
)

RPI4 = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
GIGE = yaml.safe_load((BUILTIN_DIR / "links" / "gige.yaml").read_text())


def write(tmp_path: Path, data: dict, name: str = "board.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtin_registry_has_the_required_boards_and_links():
    assert {"rpi4", "rpi5", "jetson_nano", "jetson_orin_nano", "coral_edgetpu"} <= set(
        platform_names()
    )
    assert {"stm32h7", "esp32s3"} & set(platform_names())
    assert {"eth100", "gige", "wifi", "uart921600", "ble"} <= set(link_names())
    for name in platform_names():
        platform = load_platform(name)
        assert platform.name == name
        assert platform.idle_power_w <= platform.active_power_w
        assert all(note.startswith(("source:", "estimate:")) for note in platform.sources.values())
    for name in link_names():
        assert load_link(name).bandwidth_bps > 0


def test_coral_is_int8_only_with_a_limited_op_set_and_mcus_have_flash():
    coral = load_platform("coral_edgetpu")
    assert coral.precisions == ("int8",)
    assert coral.supported_ops is not None and coral.param_cache_bytes == 8 * 1024 * 1024
    assert load_platform("stm32h7").flash_bytes == 2 * 1024 * 1024
    assert load_link("uart921600").bits_per_byte == 10


def test_a_user_file_is_accepted_wherever_a_name_is(tmp_path):
    data = copy.deepcopy(RPI4)
    data["name"] = "my_board"
    path = write(tmp_path, data)
    assert load_platform(str(path)).name == "my_board"
    assert load_descriptor(path).name == "my_board"
    assert load_link(str(write(tmp_path, GIGE, "l.yaml"))).name == "gige"


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("schema"), r"board\.yaml: field 'schema': is missing"),
        (lambda d: d.update(kind="link"), r"field 'kind': must be 'platform'"),
        (lambda d: d["memory"].pop("ram_mib"), r"field 'memory\.ram_mib': is missing"),
        (
            lambda d: d["power"]["active_w"].pop("source"),
            r"field 'power\.active_w': needs exactly one of 'source",
        ),
        (
            lambda d: d["memory"]["bandwidth_gbps"].update(value="fast"),
            r"field 'memory\.bandwidth_gbps': value must be a number",
        ),
        (
            lambda d: d["memory"]["bandwidth_gbps"].update(value=-1),
            r"field 'memory\.bandwidth_gbps': value must be > 0",
        ),
        (
            lambda d: d["precisions"]["compute_gops"].update(fp64={"value": 1, "source": "x"}),
            r"field 'precisions\.compute_gops\.fp64': unknown precision",
        ),
        (
            lambda d: d["precisions"].update(default="fp16"),
            r"field 'precisions\.default': 'fp16' has no compute_gops entry",
        ),
        (
            lambda d: d["op_efficiency"].update(conv2d={"value": 1.5, "estimate": "x"}),
            r"field 'op_efficiency\.conv2d': value must be <= 1",
        ),
        (lambda d: d.update(ops=["conv2d"]), r"field 'ops': must include 'input'"),
        (lambda d: d.update(ops=["input", "lstm"]), r"field 'ops': unknown op kind 'lstm'"),
        (
            lambda d: d["power"]["idle_w"].update(value=99),
            r"field 'power\.idle_w': must not exceed power\.active_w",
        ),
    ],
)
def test_platform_schema_errors_name_file_and_field(tmp_path, mutate, match):
    data = copy.deepcopy(RPI4)
    mutate(data)
    with pytest.raises(DescriptorError, match=match):
        load_platform(write(tmp_path, data))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("bandwidth_bps"), r"field 'bandwidth_bps': is missing"),
        (lambda d: d.update(encoding="int4"), r"field 'encoding': unknown encoding 'int4'"),
        (
            lambda d: d["power"].update(energy_per_bit_nj={"value": 1, "estimate": "x"}),
            r"field 'power': needs exactly one of 'active_w' or 'energy_per_bit_nj'",
        ),
        (
            lambda d: d["frame"].pop("payload_bytes"),
            r"field 'frame\.payload_bytes': is missing",
        ),
    ],
)
def test_link_schema_errors_name_file_and_field(tmp_path, mutate, match):
    data = copy.deepcopy(GIGE)
    mutate(data)
    with pytest.raises(DescriptorError, match=match):
        load_link(write(tmp_path, data, "link.yaml"))


def test_unknown_names_and_bad_files():
    with pytest.raises(UnknownNameError, match=r"unknown platform 'pi9'; valid: .*rpi4"):
        load_platform("pi9")
    with pytest.raises(DescriptorError, match=r"nowhere\.yaml: platform descriptor file"):
        load_platform("nowhere.yaml")


def test_invalid_yaml_and_non_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1,\n")
    with pytest.raises(DescriptorError, match=r"bad\.yaml: not valid YAML"):
        load_platform(path)
    path.write_text("- 1\n")
    with pytest.raises(DescriptorError, match=r"bad\.yaml: a descriptor must be a YAML mapping"):
        load_platform(path)


def test_cli_list_and_show(capsys):
    assert main(["hardware", "list"]) == 0
    assert "jetson_nano" in capsys.readouterr().out
    assert main(["hardware", "show", "gige"]) == 0
    assert "IEEE 802.3ab" in capsys.readouterr().out
    assert main(["hardware", "show", "nope"]) == 2
    assert "unknown platform or link 'nope'" in capsys.readouterr().err


def test_empty_and_non_finite_fields_are_refused(tmp_path):
    import yaml

    from hwsched.errors import DescriptorError
    from hwsched.hardware import BUILTIN_DIR, load_platform

    data = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
    data["power"]["active_w"] = None
    path = tmp_path / "blank.yaml"
    path.write_text(yaml.safe_dump({**data, "name": "blank"}))
    with pytest.raises(DescriptorError, match="field 'power.active_w': is missing"):
        load_platform(path)
    data["power"]["active_w"] = {"value": float("nan"), "estimate": "x"}
    path.write_text(yaml.safe_dump({**data, "name": "blank"}))
    with pytest.raises(DescriptorError, match="field 'power.active_w': value must be finite"):
        load_platform(path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DescriptorError, match="binary.yaml: not a text"):
        load_platform(binary)


def test_profile_files_with_wrong_types_are_refused(tmp_path):
    from hwsched.costs.profile import load_profile
    from hwsched.errors import ProfileError

    path = tmp_path / "p.json"
    path.write_text('{"model": "m", "platform": "rpi4", "segments": 5}')
    with pytest.raises(ProfileError, match="field 'segments' must be a list"):
        load_profile(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProfileError, match="not a text"):
        load_profile(path)


# -- issue 15: descriptors that passed validation and crashed later -------------------------
def edited(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("name", "x/../../../escaped", "field 'name' 'x/../../../escaped' must be 1-64 letters"),
        ("name", "..", "must be 1-64 letters"),
        ("ops", ["input", ["conv2d"]], r"unknown op kind \['conv2d'\]"),
        ("memory.flash_mb", {"value": 2, "source": "s"}, r"'memory.flash_mb': unknown key; did "
         r"you mean 'flash_mib'\?"),
        ("powr", {}, r"'powr': unknown key; did you mean 'power'\?"),
        ("description", "x" * 1001, "one line of at most 1000 characters"),
        ("description", "two\nlines", "one line"),
    ],
)
def test_platform_fields_that_used_to_crash_later(tmp_path, path, value, match):
    with pytest.raises(DescriptorError, match=match):
        load_platform(write(tmp_path, edited(RPI4, path, value)))


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("frame", {"payload_bytes": {"value": 0.001, "source": "s"},
                   "overhead_bytes": {"value": 1, "source": "s"}}, "must be a whole number"),
        ("frame", {"payload_bytes": {"value": 64, "source": "s"},
                   "overhead_bytes": {"value": 1.5, "source": "s"}}, "must be a whole number"),
        ("bandwith_bps", {"value": 1, "source": "s"}, "did you mean 'bandwidth_bps'"),
    ],
)
def test_link_fields_that_used_to_crash_later(tmp_path, path, value, match):
    with pytest.raises(DescriptorError, match=match):
        load_link(write(tmp_path, edited(GIGE, path, value), "link.yaml"))


def test_a_huge_descriptor_is_refused_before_parsing(tmp_path):
    path = write(tmp_path, edited(RPI4, "description", "x" * 300_000))
    with pytest.raises(DescriptorError, match="at most 262,144 are read"):
        load_platform(path)


def test_every_builtin_key_is_in_the_schema():
    """The unknown-key check must not refuse a field the built-in files use."""
    for name in platform_names():
        load_platform(name)
    for name in link_names():
        load_link(name)


def test_a_400_digit_number_is_refused(tmp_path):
    text = (BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text()
    path = tmp_path / "big.yaml"
    path.write_text(text.replace("{value: ", "{value: 1" + "0" * 400 + ", ignored: ", 1))
    with pytest.raises(DescriptorError, match="value must be finite"):
        load_platform(path)


@pytest.mark.parametrize("text", ["a: " + "[" * 50_000 + "]" * 50_000,
                                  "".join(" " * i + f"k{i}:\n" for i in range(700))],
                         ids=["flow", "block"])
def test_deep_yaml_is_one_line_not_a_crash(tmp_path, text):
    """libyaml crashed the process (SIGSEGV) on deep nesting: run it in a process of its own."""
    import subprocess
    import sys

    path = tmp_path / "deep.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "hwsched", "hardware", "show", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "nested" in done.stderr, done.stderr
