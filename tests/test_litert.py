"""LiteRT access: a model XNNPACK refuses still runs, and proofs use the same kernels."""

from pathlib import Path

import numpy as np
import pytest

from hwsched.export import export
from hwsched.litert import interpreter_class, open_interpreter
from hwsched.load import load_model

#: An int8 residual+SE model (tests/kerasmodels.py, random weights and calibration) whose
#: requantization scales XNNPACK refuses at prepare time; LiteRT's builtin kernels run it.
REFUSED = Path(__file__).parent / "data" / "xnnpack_refused_int8.tflite"


def test_the_fixture_really_is_refused_by_xnnpack():
    interpreter = interpreter_class()(model_path=str(REFUSED), num_threads=1)
    with pytest.raises(RuntimeError, match="XNNPACK"):
        interpreter.allocate_tensors()


def test_open_interpreter_falls_back_to_builtin_kernels(caplog):
    interpreter = open_interpreter(path=REFUSED)
    assert "running on builtin kernels" in caplog.text
    runner = interpreter.get_signature_runner()
    (name, detail), = runner.get_input_details().items()
    x = np.zeros(detail["shape"], dtype=detail["dtype"])
    (out,) = runner(**{name: x}).values()
    assert out.shape == (1, 10)


def test_split_of_a_refused_model_is_exact(tmp_path):
    plan = export(load_model(str(REFUSED)), ["rpi4", "rpi4", "rpi4"], tmp_path / "out",
                  cut_positions=[3, 6], samples=8)
    assert plan.verification.max_abs_diff == 0.0
