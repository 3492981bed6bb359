"""Loading a stage or segment model: failures are one clear error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsched.errors import PlanError, ProfileError
from hwsched.runtime import interpreter, profile


class _TwoSignatures:
    def get_signature_runner(self):
        raise ValueError("SignatureDef signature_key is None and model has 2 Signatures.\nmore")


@pytest.fixture
def two_signatures(monkeypatch):
    monkeypatch.setattr(interpreter, "open_interpreter", lambda **_: _TwoSignatures())


def test_a_stage_without_one_signature_is_a_plan_error_naming_the_file(two_signatures):
    with pytest.raises(PlanError, match=r"stage1\.tflite: .*2 Signatures\.$"):
        interpreter.load_signature_runner(Path("stage1.tflite"))


def test_profiling_a_model_without_one_signature_is_a_profile_error(two_signatures):
    with pytest.raises(ProfileError, match=r"^net\.tflite: LiteRT cannot run the model"):
        profile.time_tflite(b"", 1, name="net.tflite")
