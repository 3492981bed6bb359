"""The bad-input corpus (issue 15): one case per kind of hostile input and per command.

Each case runs the real command line in-process (``hwsched.cli.main``) and asserts the contract
for bad input: exit code 2, exactly one line on stderr (captured at the file-descriptor level,
so native libraries' output counts too), no traceback, and nothing that was already on disk
changed (the whole working directory is hashed before and after). Subprocesses are used only
where a real process matters: TensorFlow's start-up lines and what a command imports.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hwsched.cli import main
from hwsched.deployment import PLAN_FILE, file_sha256
from hwsched.export.api import export
from hwsched.hardware import BUILTIN_DIR
from hwsched.load import load_model
from hwsched.power.logfile import LogSample, LogWriter
from hwsched.runtime.cli import main as runner_main

DATA = Path(__file__).parent / "data"
TAIL = DATA / "digits_tail_fp16.tflite"  # the fp16 classifier of digits_cnn, 5 layers


# -- the contract --------------------------------------------------------------------------------
def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*")) if path.is_file()
    }


def refuses(capfd, root: Path, argv: list[str], expect: str, entry=main) -> str:
    """Run ``argv``; assert exit 2, one stderr line containing ``expect``, nothing changed."""
    before = tree_digest(root)
    capfd.readouterr()
    code = entry(argv)
    err = capfd.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert expect in err, err
    assert tree_digest(root) == before
    return err


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "split"
    export(load_model(str(TAIL)), ["jetson_nano", "jetson_nano"], out, cut_positions=[4],
           samples=2)
    return out


@pytest.fixture
def split(plan_dir, tmp_path) -> Path:
    """A fresh copy of the exported plan, to be damaged by one case."""
    return Path(shutil.copytree(plan_dir, tmp_path / "split"))


def edit_plan(directory: Path, edit) -> None:
    data = json.loads((directory / PLAN_FILE).read_text())
    edit(data)
    (directory / PLAN_FILE).write_text(json.dumps(data))


def descriptor(tmp_path: Path, kind: str, builtin: str, edit) -> str:
    data = yaml.safe_load((BUILTIN_DIR / f"{kind}s" / f"{builtin}.yaml").read_text())
    edit(data)
    path = tmp_path / f"{builtin}_edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# -- descriptors (defects 2 and 8) -----------------------------------------------------------------
def _set(path: str, value):
    def edit(data):
        node = data
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


BAD_PLATFORMS = [
    (_set("name", "x/../../../escaped"), "must be 1-64 letters"),
    (_set("ops", ["input", ["conv2d"]]), "unknown op kind ['conv2d']"),
    (_set("memory.flash_mb", {"value": 2, "source": "typo"}), "did you mean 'flash_mib'?"),
    (_set("description", "x" * 2000), "must be one line of at most 1000 characters"),
]


@pytest.mark.parametrize(("edit", "expect"), BAD_PLATFORMS)
@pytest.mark.parametrize("command", ["analyze", "export", "hardware"])
def test_bad_platform_descriptors(tmp_path, capfd, edit, expect, command):
    bad = descriptor(tmp_path, "platform", "rpi4", edit)
    argv = {
        "analyze": ["analyze", str(TAIL), "--platforms", f"jetson_nano,{bad}", "--no-report"],
        "export": ["export", str(TAIL), "--cut-positions", "4", "--platforms",
                   f"jetson_nano,{bad}", "--out", str(tmp_path / "out")],
        "hardware": ["hardware", "show", bad],
    }[command]
    refuses(capfd, tmp_path, argv, expect)
    assert not list(tmp_path.parent.rglob("escaped*"))


def test_link_with_a_fraction_of_a_byte_per_frame(tmp_path, capfd):
    bad = descriptor(tmp_path, "link", "ble", _set("frame.payload_bytes",
                                                   {"value": 0.001, "source": "x"}))
    refuses(capfd, tmp_path, ["analyze", str(TAIL), "--link", bad, "--no-report",
                              "--platforms", "rpi4,jetson_nano"], "must be a whole number")


def test_a_20_mb_descriptor_is_refused_unread(tmp_path, capfd):
    text = (BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text()
    bad = tmp_path / "big.yaml"
    bad.write_text(text.replace("description: ", "description: " + "x" * 20_000_000, 1))
    refuses(capfd, tmp_path, ["hardware", "show", str(bad)], "at most 262,144 are read")


def test_profile_platform_name_with_separators(tmp_path, capfd):
    refuses(capfd, tmp_path, ["profile", str(TAIL), "--platform", "../../evil", "--descriptor",
                              str(tmp_path / "d.yaml"), "--out", str(tmp_path / "p.json")],
            "--platform '../../evil' must be 1-64 letters")


# -- plan.json that escapes or lies (defects 2 and 6) ----------------------------------------------
def _stage0(key, value):
    return lambda d: d["stages"][0].__setitem__(key, value)


def _escaping_file(split: Path) -> None:
    """The stage file moved out of the plan directory, with the plan's sha256 still matching."""
    shutil.move(split / "stage0_jetson_nano.tflite", split.parent / "stage0_jetson_nano.tflite")
    edit_plan(split, _stage0("file", "../stage0_jetson_nano.tflite"))


def _raw(directory: Path, edit) -> None:
    """``edit``, then the placeholder "HUGE" written as the number 1e999 (json.dumps cannot)."""
    edit_plan(directory, edit)
    path = directory / PLAN_FILE
    path.write_text(path.read_text().replace('"HUGE"', "1e999"))


BAD_PLANS = {
    "escaping file": (_escaping_file, "must be a file name relative to the plan directory"),
    "absolute file": (lambda s: edit_plan(s, _stage0("file", str(s / "stage0_jetson_nano.tflite"))),
                      "must be a file name relative to the plan directory"),
    "samples 1e999": (lambda s: (s / PLAN_FILE).write_text((s / PLAN_FILE).read_text().replace(
        '"samples": 2', '"samples": 1e999')), "'verification.samples' is inf"),
    "zero point 1e999": (lambda s: _raw(s, lambda d: d["stages"][0]["inputs"][0].update(
        dtype="int8", quantization={"scale": 0.1, "zero_point": "HUGE"})),
        "'stages[0].inputs[0].quantization.zero_point' is inf"),
    "extra_files 5": (lambda s: edit_plan(s, _stage0("extra_files", 5)),
                      "'stages[0].extra_files' must be a list"),
    "input the file lacks": (lambda s: edit_plan(s, lambda d: d["stages"][0]["inputs"][0].update(
        tflite_name="nope")), "is not in the stage file's signature"),
    "shape contradicts the file": (lambda s: edit_plan(s, lambda d: d["stages"][0]["inputs"][0]
                                                       .update(shape=[1, 33])), "plan.json says"),
    "huge tensor": (lambda s: edit_plan(s, lambda d: d["stages"][0]["inputs"][0].update(
        shape=[4000000000, 4000000000])), "larger than any stage can hold"),
    "100,000 brackets": (lambda s: (s / PLAN_FILE).write_text("[" * 100_000 + "]" * 100_000),
                         "JSON nested 100000 levels deep"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_lying_plans_at_verify(split, tmp_path, capfd, case):
    damage, expect = BAD_PLANS[case]
    damage(split)
    refuses(capfd, tmp_path, ["verify", str(split)], expect)


@pytest.mark.parametrize("case", ["escaping file", "input the file lacks", "100,000 brackets"])
def test_lying_plans_at_emulate(split, tmp_path, capfd, case):
    damage, expect = BAD_PLANS[case]
    damage(split)
    refuses(capfd, tmp_path, ["emulate", str(split), "--frames", "3"], expect)


@pytest.mark.parametrize("case", ["escaping file", "shape contradicts the file", "huge tensor"])
def test_lying_plans_at_the_runner(split, tmp_path, capfd, case):
    damage, expect = BAD_PLANS[case]
    damage(split)
    refuses(capfd, tmp_path, [str(split), "--stage", "0", "--listen", "tcp://127.0.0.1:0",
                              "--next", "tcp://127.0.0.1:9", "--max-runtime", "5"],
            expect, entry=runner_main)


# -- a corrupt .tflite (defect 3) and export's precision rule (defect 7) ---------------------------
def _bad_name(data: bytes) -> bytes:
    at = data.index(b"head_pool")
    return data[:at] + b"\xff" + data[at + 1:]


@pytest.mark.parametrize(("damage", "expect"), [
    (_bad_name, "is not UTF-8 text"),
    (lambda data: data[: len(data) // 2], "corrupt TFLite flatbuffer"),
    (lambda data: b"", "not a TFLite flatbuffer"),
])
@pytest.mark.parametrize("command", ["analyze", "export"])
def test_corrupt_tflite(tmp_path, capfd, damage, expect, command):
    path = tmp_path / "m.tflite"
    path.write_bytes(damage(TAIL.read_bytes()))
    argv = {"analyze": ["analyze", str(path), "--platforms", "rpi4,jetson_nano", "--no-report"],
            "export": ["export", str(path), "--cut-positions", "4", "--platforms",
                       "jetson_nano,jetson_nano", "--out", str(tmp_path / "out")]}[command]
    refuses(capfd, tmp_path, argv, expect)


def test_tflite_export_refuses_a_precision_the_board_lacks(tmp_path, capfd):
    # the Keras path's rule: the fp16 model's stage 0 cannot go to an int8-only Edge TPU
    refuses(capfd, tmp_path, ["export", str(TAIL), "--cut-positions", "4", "--platforms",
                              "coral_edgetpu,stm32h7", "--out", str(tmp_path / "out")],
            "stage 0 on coral_edgetpu: precision fp16 is not supported there")


# -- misleading errors (defect 10) ----------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"PK\x03\x04trunc", os.urandom(3000)])
def test_a_keras_file_that_is_no_archive(tmp_path, capfd, content):
    path = tmp_path / "m.keras"
    path.write_bytes(content)
    refuses(capfd, tmp_path, ["analyze", str(path), "--no-report"], "not a .keras archive")


def _in_a_fresh_process(argv: list[str], check: str = "pass") -> subprocess.CompletedProcess:
    code = ("import sys; from hwsched.cli import main; rc = main(sys.argv[1:]); "
            f"{check}; sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=env, timeout=600)


def test_an_unknown_board_is_reported_before_the_model_is_built(tmp_path):
    done = _in_a_fresh_process(
        ["analyze", "digits_cnn", "--platforms", "rpi4,bogus", "--no-report"],
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'model built'")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "hwsched: error: unknown platform 'bogus'; valid: coral_edgetpu, esp32s3, jetson_nano, "
        "jetson_nano_cpu, jetson_orin_nano, jetson_orin_nano_cpu, rpi4, rpi5, stm32h7"]


def test_tensorflow_start_up_lines_are_silenced(tmp_path):
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"not hdf5")
    done = _in_a_fresh_process(["analyze", "digits_cnn", "--weights", str(weights),
                                "--no-report"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwsched: error: "), done.stderr


# -- numbers that cannot be (defect 11) -----------------------------------------------------------
def _busy_power_mw(k: int) -> float:
    """2 W during the five inferences (0.3 s + 0.3 s·f for 0.1 s), 1 W otherwise."""
    t_s = k / 100
    return 2000.0 if 0.3 <= t_s < 1.6 and (t_s - 0.3) % 0.3 < 0.1 else 1000.0


def power_files(tmp_path: Path, power_mw=_busy_power_mw, event_end_s=None):
    """A 2 s log at 100 Hz and five inferences inside it."""
    start = 1_700_000_000.0
    log = tmp_path / "board.log"
    writer = LogWriter(log, {"meter": "ina219"})
    for k in range(200):
        writer.write(LogSample(start + k / 100, power_mw(k), meter_t_s=k / 100))
    writer.close()
    events = tmp_path / "events.jsonl"
    lines = [json.dumps({"frame": f, "stage": 0, "start_s": start + 0.3 + 0.3 * f,
                         "end_s": event_end_s or start + 0.4 + 0.3 * f}) for f in range(5)]
    events.write_text("\n".join(lines) + "\n")
    return log, events


def test_the_power_fixture_itself_is_accepted(tmp_path, capfd):
    log, events = power_files(tmp_path)
    assert main(["power", "energy", str(log), "--events", str(events)]) == 0


def test_a_negative_power_sample_is_refused(tmp_path, capfd):
    log, events = power_files(tmp_path)
    text = log.read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(text) if line.startswith("1700000000.5"))
    fields = text[row].split(",")
    text[row] = ",".join([fields[0], fields[1], "-99999.000", *fields[3:]])
    log.write_text("".join(text))
    refuses(capfd, tmp_path, ["power", "energy", str(log), "--events", str(events)],
            "power_mw -99999.0 is outside")


def test_an_event_at_1e308_is_refused(tmp_path, capfd):
    log, events = power_files(tmp_path, event_end_s=1e308)
    refuses(capfd, tmp_path, ["power", "energy", str(log), "--events", str(events)],
            "field 'end_s' is 1e+308, not a host time")


def test_deeply_nested_events(tmp_path, capfd):
    log, events = power_files(tmp_path)
    events.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    refuses(capfd, tmp_path, ["power", "energy", str(log), "--events", str(events)],
            "JSON nested 100000 levels deep")


@pytest.mark.parametrize("idle", ["-500", "nan", "inf"])
def test_calibrate_refuses_an_impossible_idle_power(tmp_path, capfd, idle):
    log, events = power_files(tmp_path)
    refuses(capfd, tmp_path, ["power", "calibrate", str(log), "--events", str(events),
                              "--platform", "rpi4", "--idle-mw", idle,
                              "--out", str(tmp_path / "cal.yaml")], "--idle-mw must be")


@pytest.mark.parametrize("flag", ["--idle-mw", "--active-mw", "--noise-mw"])
def test_power_emulate_refuses_nan(tmp_path, capfd, flag):
    refuses(capfd, tmp_path, ["power", "emulate", "--pty", flag, "nan", "--duration", "1"],
            f"{flag} must be")


def test_report_refuses_an_analysis_as_power_json(tmp_path, capfd):
    analysis = tmp_path / "analysis.json"
    assert main(["analyze", str(TAIL), "--platforms", "rpi4,jetson_nano", "--no-report",
                 "--json", str(analysis)]) == 0
    refuses(capfd, tmp_path, ["report", str(analysis), "--power-json", str(analysis),
                              "--out", str(tmp_path / "r.html")],
            "not an energy report")


def test_report_refuses_deep_nesting(tmp_path, capfd):
    analysis = tmp_path / "analysis.json"
    analysis.write_text("[" * 100_000 + "]" * 100_000)
    refuses(capfd, tmp_path, ["report", str(analysis), "--out", str(tmp_path / "r.html")],
            "JSON nested 100000 levels deep")


def test_the_exported_plan_itself_verifies(plan_dir):
    """The corpus damages this plan; undamaged, every reader accepts it."""
    assert main(["verify", str(plan_dir)]) == 0
    for stage in json.loads((plan_dir / PLAN_FILE).read_text())["stages"]:
        assert file_sha256(plan_dir / stage["file"]) == stage["sha256"]


def test_export_proves_every_file_lands_inside_out(tmp_path):
    """A Platform object bypasses the descriptor's name check; export still writes nothing
    outside ``--out``, and its last line of defence refuses any name that would leave it."""
    from dataclasses import replace

    from hwsched.errors import ExportError, HwschedError
    from hwsched.export.api import _inside
    from hwsched.hardware import load_platform

    sneaky = replace(load_platform("jetson_nano"), name="x/../../escaped")
    with pytest.raises(HwschedError):
        export(load_model(str(TAIL)), [sneaky, "jetson_nano"], tmp_path / "a" / "out",
               cut_positions=[4], samples=2)
    assert not list(tmp_path.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "link.tflite").symlink_to(tmp_path / "elsewhere.tflite")
    for name in ("../escaped.tflite", "x/../../escaped.tflite", "/tmp/escaped", "link.tflite"):
        with pytest.raises(ExportError, match="not a plain file name inside the output"):
            _inside(work, name, tmp_path / "out")
    inside = _inside(work, "stage0_rpi4.tflite", tmp_path / "out")
    assert inside == (work / "stage0_rpi4.tflite").resolve()


@pytest.mark.parametrize("value", ["1" + "0" * 400, "-5", ".nan"])
def test_analyze_refuses_a_calibration_with_impossible_power(tmp_path, capfd, value):
    log, events = power_files(tmp_path)
    calibration = tmp_path / "rpi4.power.yaml"
    assert main(["power", "calibrate", str(log), "--events", str(events), "--platform", "rpi4",
                 "--out", str(calibration)]) == 0
    record = yaml.safe_load(calibration.read_text())
    record["idle_power_mw"] = "PLACEHOLDER"
    calibration.write_text(yaml.safe_dump(record).replace("PLACEHOLDER", value))
    refuses(capfd, tmp_path, ["analyze", str(TAIL), "--platforms", "rpi4,jetson_nano",
                              "--power-calibration", str(calibration), "--no-report"],
            "field 'idle_power_mw' must be a finite number")


@pytest.mark.parametrize(("column", "value", "expect"), [
    (0, "1e308", "host_t_s 1e+308 is outside"),
    (1, "-5.000000", "meter_t_s -5.0 is outside"),
    (5, "0.5", "segment 0.5 is not a count"),
])
def test_impossible_log_rows_are_refused(tmp_path, capfd, column, value, expect):
    log, events = power_files(tmp_path)
    text = log.read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(text) if line.startswith("1700000000.5"))
    fields = text[row].rstrip("\n").split(",")
    fields[column] = value
    text[row] = ",".join(fields) + "\n"
    log.write_text("".join(text))
    refuses(capfd, tmp_path, ["power", "energy", str(log), "--events", str(events)], expect)


@pytest.mark.parametrize("extra", [["--weights", "missing.weights.h5"],
                                   ["--profile", "missing.json"],
                                   ["--power-calibration", "missing.yaml"]])
def test_missing_files_are_reported_before_the_model_is_built(tmp_path, extra):
    done = _in_a_fresh_process(
        ["analyze", "digits_cnn", "--platforms", "rpi4,jetson_nano", "--no-report",
         *[str(tmp_path / item) if item.startswith("missing") else item for item in extra]],
        "assert 'tensorflow' not in sys.modules, 'model built'")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "missing" in done.stderr, done.stderr
