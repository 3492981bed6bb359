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
