"""Delegates and engines: a missing library, a library that is no delegate and a malformed spec
are one line; the ops a delegate leaves on the CPU are named (checked on LiteRT's own XNNPACK
delegate, whose partitions we know); the plan's per-stage delegate is loaded and the runner's
``--delegate`` overrides it; stages priced on an engine hwsched does not run are refused by
export and emulate; the runner says which interpreter it loaded."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwsched.deployment import load_plan
from hwsched.errors import DelegateError, DescriptorError, PlanError
from hwsched.litert import DelegateSpec, open_interpreter, ops_left_on_cpu
from hwsched.runtime.interpreter import StageModel

RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def cumsum_model() -> bytes:
    """MUL → CUMSUM → ADD(·, SIN): XNNPACK takes MUL, SIN and ADD but has no CUMSUM kernel."""
    import tensorflow as tf

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def f(self, x):
            y = tf.nn.relu(x * 2.0)
            return {"o": tf.math.cumsum(y, axis=1) + tf.sin(y)}

    net = Net()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.f.get_concrete_function()],
                                                                net)
    return converter.convert()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from hwsched.export import export

    out = tmp_path_factory.mktemp("delegates") / "plan"
    export("digits_cnn", ["rpi4"], out, samples=2)
    return out


def test_a_spec_names_a_known_delegate_or_a_library_with_options():
    assert DelegateSpec.parse("gpu").library == "libtensorflowlite_gpu_delegate.so"
    spec = DelegateSpec.parse("/opt/x.so:device=usb:1,fast=1")
    assert (spec.library, dict(spec.options)) == ("/opt/x.so", {"device": "usb:1", "fast": "1"})
    with pytest.raises(DelegateError, match=r"option 'oops' is not key=value"):
        DelegateSpec.parse("edgetpu:oops")
    assert DelegateSpec.of("none") is None


def test_a_missing_delegate_library_is_one_line(cumsum_model):
    with pytest.raises(DelegateError, match=r"^delegate '/no/such/libdelegate\.so': cannot load "
                       r"/no/such/libdelegate\.so \(is the library installed\?\)"):
        open_interpreter(content=cumsum_model, delegate=DelegateSpec.parse(
            "/no/such/libdelegate.so"))


def test_the_edgetpu_delegate_is_missing_here_and_says_so(cumsum_model):
    with pytest.raises(DelegateError, match=r"delegate 'edgetpu': cannot load libedgetpu\.so\.1"):
        open_interpreter(content=cumsum_model, delegate=DelegateSpec.parse("edgetpu"))


def test_a_stand_in_file_or_library_that_is_no_delegate_is_one_line(cumsum_model, tmp_path):
    fake = tmp_path / "libfake_delegate.so"
    fake.write_text("not an ELF file\n")
    with pytest.raises(DelegateError, match=r"cannot load .*libfake_delegate\.so"):
        open_interpreter(content=cumsum_model, delegate=DelegateSpec.parse(str(fake)))
    libm = ctypes.util.find_library("m")
    with pytest.raises(DelegateError, match=r"is not a LiteRT delegate \(it lacks "
                       r"tflite_plugin_create_delegate"):
        open_interpreter(content=cumsum_model, delegate=DelegateSpec.parse(libm))


def test_ops_a_delegate_leaves_on_the_cpu_are_named(cumsum_model):
    interpreter = open_interpreter(content=cumsum_model)  # XNNPACK applied by default
    ops = interpreter._get_ops_details()
    assert sum(op["op_name"] == "DELEGATE" for op in ops) >= 1
    assert ops_left_on_cpu(ops) == ["CUMSUM"]
    plain = open_interpreter(content=cumsum_model, delegates=False)._get_ops_details()
    assert ops_left_on_cpu(plain) == ["MUL", "CUMSUM", "SIN", "ADD"]


def test_the_plans_delegate_is_loaded_and_the_runner_flag_overrides_it(exported, tmp_path,
                                                                      monkeypatch):
    monkeypatch.delenv("HWSCHED_DELEGATE", raising=False)
    plan_file = exported / "plan.json"
    data = json.loads(plan_file.read_text())
    data["stages"][0]["delegate"] = "/no/such/libedgetpu.so.1"
    data["stages"][0]["delegate_options"] = {"device": "usb"}
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in exported.iterdir():
        (edited / path.name).write_bytes(path.read_bytes())
    (edited / "plan.json").write_text(json.dumps(data))
    plan = load_plan(edited)
    assert plan.stages[0].delegate_options == {"device": "usb"}
    with pytest.raises(DelegateError, match=r"/no/such/libedgetpu\.so\.1"):
        StageModel(plan, edited, 0)
    model = StageModel(plan, edited, 0, delegate="none")
    assert model.label.startswith("LiteRT (") and model.label.endswith("on the CPU")


def test_the_runner_refuses_a_missing_delegate_in_one_line_and_says_what_it_loads(exported):
    base = [sys.executable, "-m", "hwsched.runtime.cli", str(exported), "--stage", "0",
            "--listen", "tcp://127.0.0.1:5999", "--next", "tcp://127.0.0.1:5998"]
    done = subprocess.run([*base, "--delegate", "/no/such/lib.so"], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("hwsched-runner: error: delegate '/no/such/lib.so': cannot load")
    assert "Traceback" not in done.stderr
    done = subprocess.run([*base, "--delegate", "none", "--max-runtime", "0.5"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert "stage 0 (rpi4): loaded stage0_rpi4.tflite on LiteRT (ai-edge-litert" in done.stderr


def test_export_refuses_an_engine_hwsched_does_not_run_before_loading_the_model(
        tmp_path, monkeypatch):
    from hwsched.export import export
    from hwsched.hardware import BUILTIN_DIR, PATH_ENV

    text = (BUILTIN_DIR / "platforms" / "jetson_nano.yaml").read_text()
    mine = tmp_path / "hw" / "platforms" / "my_trt.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text(text.replace("name: jetson_nano", "name: my_trt").replace(
        "  export_with: jetson_nano_cpu\n", ""))
    monkeypatch.setenv(PATH_ENV, str(tmp_path / "hw"))
    with pytest.raises(DescriptorError, match=r"^stage 1: my_trt prices engine 'tensorrt', "
                       r"which hwsched does not run, and names no runnable descriptor"):
        export("no_such_model", ["rpi4", "my_trt"], tmp_path / "out")


def test_a_jetson_gpu_stage_is_exported_for_its_cpu_descriptor_and_says_so(tmp_path):
    from hwsched.export import export

    notes: list[str] = []
    plan = export("digits_cnn", ["rpi4", "jetson_orin_nano"], tmp_path / "out",
                  cut_layers=["res_add"], samples=2, progress=notes.append)
    stage = plan.stages[1]
    assert (stage.platform, stage.runtime_platform) == ("jetson_orin_nano", "jetson_orin_nano_cpu")
    assert (stage.engine, stage.precision) == ("litert-cpu", "fp32")  # the CPU's own precision
    assert ("stage 1: jetson_orin_nano prices tensorrt, which hwsched does not run; exporting it "
            "for jetson_orin_nano_cpu (litert-cpu)") in notes
    assert load_plan(tmp_path / "out").stages[1].runtime_platform == "jetson_orin_nano_cpu"


def test_emulate_refuses_a_stage_on_an_engine_hwsched_does_not_run(exported, tmp_path, capsys):
    from hwsched.cli import main

    data = json.loads((exported / "plan.json").read_text())
    data["stages"][0]["engine"] = "tensorrt"
    edited = tmp_path / "trt"
    edited.mkdir()
    (edited / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"stage 0 \(rpi4\): engine 'tensorrt' is not one"):
        StageModel(load_plan(edited), edited, 0)
    assert main(["emulate", str(edited), "--frames", "2"]) == 2
    assert "engine 'tensorrt' is not one hwsched runs" in capsys.readouterr().err


def test_every_shipped_descriptor_is_runnable_or_names_the_runnable_one_to_export_to():
    from hwsched.hardware import load_platform, platform_names

    for name in platform_names():
        runtime = load_platform(name).runtime
        if runtime.runnable:
            continue
        instead = load_platform(runtime.export_with)
        assert instead.runtime.runnable, name
        assert instead.ram_bytes == load_platform(name).ram_bytes, name  # the same board


@pytest.mark.parametrize(("runtime", "message"), [
    ("{engine: litert-cpu, delegat: gpu}", r"field 'runtime\.delegat': unknown key; valid: engine"),
    ("{engine: openvino}", r"field 'runtime\.engine': unknown engine 'openvino'; valid: litert"),
    ("{engine: edgetpu, options: {device: [1]}}", r"field 'runtime\.options': must map"),
])
def test_a_bad_runtime_section_names_the_file_and_field(tmp_path, runtime, message):
    from hwsched.hardware import BUILTIN_DIR, load_platform

    text = (BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text()
    head = text[: text.index("runtime:")]
    path = tmp_path / "mine.yaml"
    path.write_text(head + f"runtime: {runtime}\n")
    with pytest.raises(DescriptorError, match=rf"mine\.yaml: {message}"):
        load_platform(path)
