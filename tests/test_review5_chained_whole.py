"""A chained profile times segments by their invocation only; the whole model it derives
``invoke_overhead_ms`` from must be timed the same way. Oracle: two "segments" that are the
whole model itself cover it twice, so in the same conditions the whole takes no more than
either; a model whose 16 MB input is copied in but barely read shows the copy if the whole
is timed with it."""

from __future__ import annotations

from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
from hwsched.runtime.profile import Segment, time_segments


def _big_input_model() -> bytes:
    from kerasmodels import to_tflite
    from tensorflow import keras

    inputs = keras.Input(batch_shape=(1, 1024, 1024, 4), name="image")
    x = keras.layers.Cropping2D(((0, 1020), (0, 1020)), name="crop")(inputs)
    outputs = keras.layers.Flatten(name="flat")(x)
    return to_tflite(keras.Model(inputs, outputs))


def test_chained_profile_times_the_whole_model_by_invocation_too():
    content = _big_input_model()
    image = Tensor("image", producer="image", shape=(1, 1024, 1024, 4), dtype="float32")
    graph = LayerGraph("big_input", (Layer("image", OpKind.INPUT, (), (image,)),),
                       outputs=("image",))
    profile = time_segments(graph, [Segment(0, 1, content), Segment(0, 1, content)], content,
                            warmup=3, runs=30, chained=True)
    slowest = max(s["latency_ms"] for s in profile["segments"])
    assert profile["whole_latency_ms"] <= 2 * slowest + 0.2, (profile["whole_latency_ms"], slowest)
