import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(scope="session")
def fading_plan(tmp_path_factory):
    """The adaptive two-split plan of ``test_probe_emulate`` (built once: the probe and the
    trial tests stream it over a fading emulated link); skipped where links cannot be
    emulated."""
    from hwsched.runtime.linkemu import available

    reason = available()
    if reason:
        pytest.skip(reason)
    from test_probe_emulate import build_plan

    return build_plan(tmp_path_factory.mktemp("fading"))


@pytest.fixture(scope="session")
def fading_expected(fading_plan):
    """The whole Keras model's outputs for every frame the probe and trial tests stream (the
    emulation's random data, seed 0), computed once and batched: one eager call a frame took
    ~37 s of each test's ~55."""
    from test_probe_emulate import FRAMES, whole_model_outputs

    from hwsched.deployment import load_plan
    from hwsched.runtime.routing import hop_specs
    from hwsched.runtime.source import load_dataset

    plan_dir, keras_model = fading_plan
    dataset = load_dataset("random", hop_specs(load_plan(plan_dir), 0), FRAMES)
    return whole_model_outputs(keras_model, dataset.inputs["image"])
