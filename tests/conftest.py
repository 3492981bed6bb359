import os
import signal

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


@pytest.fixture
def signals_not_ignored():
    """Python's own dispositions for SIGINT and SIGTERM while each test runs, whatever the
    suite inherited: a suite started in the background (``cmd &``, ``nohup``) inherits an
    ignored SIGINT, which the CLI rightly leaves ignored, so the first signal would not unwind
    and the test would wait out its sleep and then fail on the second."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be
                signal.signal(number, handler)  # put back from here
