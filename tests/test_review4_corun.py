"""Review of paced pairing (issues 13/14's ``gap_ms``): a co-runner that dies, and the
co-runners' own deadline against the paced timing's."""

from __future__ import annotations

import os

import pytest

import hwsched.runtime.profile as profiling
from hwsched.errors import ProfileError

TINY = None


@pytest.fixture(scope="module")
def piece() -> bytes:
    import keras

    from hwsched.export.profiling import fp32_segments
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    inputs = keras.Input(batch_shape=(1, 8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="c0")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="pool")(x),
                        name="tiny_review4")
    graph, binding = read_keras_model(model, "tiny_review4", source="test")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    return fp32_segments(loaded, (), cache=False)[0].tflite


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
@pytest.mark.parametrize("then", ["go", "load"])
def test_a_dead_co_runner_is_a_profile_error_not_a_broken_pipe(piece, tmp_path, then):
    """A partner that died (OOM-killed, its deadline passed) while a paced pairing starts it:
    one ProfileError naming the co-runners' logs, not a BrokenPipeError traceback."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    runners = profiling.CoRunners([cpu], tmp_path, max_seconds=60)
    try:
        runners.load(piece)
        runners.children[0].kill()
        runners.children[0].wait(timeout=60)
        with pytest.raises(ProfileError, match="co-runner 0.*corun"):
            for _ in range(3):  # the first write may still land in the pipe's buffer
                runners.go() if then == "go" else runners.load(piece)
    finally:
        runners.close()
    assert all(child.poll() is not None for child in runners.children)
