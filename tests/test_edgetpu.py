"""Edge TPU stages: with a stand-in ``edgetpu_compiler`` on PATH (written here; the real one is
not installed on this machine) export compiles the Edge TPU stage, keeps the compiled file as
the stage file and records the compiler's report; without a compiler the plan says the stage
is not compiled and why, and the int8 stage runs on the CPU; a failing compiler is one line."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from hwsched.deployment import file_sha256, load_plan
from hwsched.errors import ExportError
from hwsched.export.edgetpu import parse_report
from hwsched.load import LoadedModel, load_model

MARKER = b"STAND-IN-EDGETPU-COMPILED"
UNMAPPED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
REPORT = """Edge TPU Compiler version 16.0.384591198
Searching for valid delegate with step 10

Model compiled successfully in 12 ms.

Input model: {source}
Input size: 11.20KiB
Output model: {target}
Output size: 12.00KiB
On-chip memory used for caching model parameters: 9.50KiB
On-chip memory remaining for caching model parameters: 7.99MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 10
Operation log: {log}

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 7
Number of operations that will run on CPU: 3

Operator                       Count      Status

CONV_2D                        1          Mapped to Edge TPU
FULLY_CONNECTED                3          Mapped to Edge TPU
MUL                            1          Mapped to Edge TPU
LOGISTIC                       1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
""" + "".join(f"{op:<31}{count:<11}{UNMAPPED}\n" for op, count in (("MEAN", 2), ("QUANTIZE", 1)))
STAND_IN = """#!{python}
import sys
from pathlib import Path
args = sys.argv[1:]
Path({calls!r}).open("a").write(" ".join(args) + "\\n")
if {fail!r}:
    print("Edge TPU Compiler version 16.0.384591198")
    print("ERROR: Didn't find op for builtin opcode 'MEAN' version '2'", file=sys.stderr)
    sys.exit(1)
out = Path(args[args.index("-o") + 1])
source = Path(args[-1])
target = out / (source.stem + "_edgetpu.tflite")
target.write_bytes(source.read_bytes() + {marker!r})
log = target.with_suffix(".log")
log.write_text("operation log of the stand-in")
print({report!r}.format(source=source, target=target, log=log))
"""


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """One conversion cache for the module: the three exports convert the same stages."""
    saved = os.environ.get("HWSCHED_CACHE")
    os.environ["HWSCHED_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("HWSCHED_CACHE", None)
    else:
        os.environ["HWSCHED_CACHE"] = saved


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    return load_model("digits_cnn")


def _compiler_on_path(tmp_path: Path, monkeypatch, fail: bool = False) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bin_dir / "edgetpu_compiler"
    script.write_text(STAND_IN.format(python=sys.executable, calls=str(calls), fail=fail,
                                      marker=MARKER, report=REPORT))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _export(digits, out: Path):
    from hwsched.export import export

    return export(digits, ["rpi4", "coral_edgetpu"], out, cut_layers=["res_add"], samples=4,
                  calibration_samples=16)


def test_a_compiled_edgetpu_stage_is_the_stage_file_with_the_compilers_report(
        digits, tmp_path, monkeypatch):
    calls = _compiler_on_path(tmp_path, monkeypatch)
    out = tmp_path / "out"
    _export(digits, out)
    plan = load_plan(out)
    cpu, tpu = plan.stages
    assert cpu.edgetpu is None and cpu.delegate is None
    assert (tpu.engine, tpu.delegate) == ("edgetpu", "edgetpu")
    assert calls.read_text().split()[:2] == ["-s", "-o"]
    assert calls.read_text().split()[-1].endswith(tpu.file)
    stage_file = (out / tpu.file).read_bytes()
    assert stage_file.endswith(MARKER) and file_sha256(out / tpu.file) == tpu.sha256
    report = tpu.edgetpu
    assert report["compiled"] is True and report["compiler_version"] == "16.0.384591198"
    assert (report["ops_on_tpu"], report["ops_on_cpu"], report["subgraphs"]) == (7, 3, 1)
    assert report["on_chip_parameter_bytes"] == round(9.5 * 1024)
    assert report["off_chip_streaming_bytes"] == 0
    assert {o["op"]: o["count"] for o in report["operators"]
            if o["status"] != "Mapped to Edge TPU"} == {"MEAN": 2, "QUANTIZE": 1}
    assert json.loads((out / "plan.json").read_text())["stages"][1]["edgetpu"]["ops_on_cpu"] == 3


def test_without_the_compiler_the_plan_says_not_compiled_and_the_stage_runs_on_the_cpu(
        digits, tmp_path, monkeypatch):
    from hwsched.runtime.interpreter import StageModel

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("HWSCHED_DELEGATE", raising=False)
    out = tmp_path / "out"
    _export(digits, out)
    plan = load_plan(out)
    tpu = plan.stages[1]
    assert tpu.edgetpu["compiled"] is False
    assert "edgetpu_compiler is not on PATH" in tpu.edgetpu["reason"]
    assert tpu.delegate is None
    model = StageModel(plan, out, 1)
    assert model.label.endswith("on the CPU")


def test_a_failing_compiler_is_one_line_naming_the_stage(digits, tmp_path, monkeypatch):
    _compiler_on_path(tmp_path, monkeypatch, fail=True)
    with pytest.raises(ExportError, match=r"^stage 1 \(coral_edgetpu\): edgetpu_compiler "
                       r"failed: ERROR: Didn't find op for builtin opcode 'MEAN'"):
        _export(digits, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_operator_table_gives_the_split_when_the_summary_lines_are_missing():
    text = "\n".join(line for line in REPORT.splitlines() if "Number of operations" not in line)
    report = parse_report(text)
    assert (report["ops_on_tpu"], report["ops_on_cpu"]) == (7, 3)
