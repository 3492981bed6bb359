"""The planner charges a compressing link for the model inputs it forwards uncompressed.

A stage forwards a model input a later stage needs (a residual's block input) as the source
made it: the runner never compresses model inputs (:func:`hwsched.compression.link_wire_specs`,
given the hop's model inputs by :func:`hwsched.runtime.routing.hop_codec`). The planner charged
them at the link's level. The oracle is the runner's own wire specs for the same tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsched.compression import link_wire_specs, wire_bytes
from hwsched.cuts import crossing_at
from hwsched.deployment import LinkPlan, Quantization, TensorSpec
from hwsched.schedule import evaluate
from hwsched.schedule.synthetic import synthetic_graph


@pytest.mark.parametrize("level", ["fp16", "int8"])
def test_a_forwarded_model_input_is_charged_as_it_travels(level):
    graph = synthetic_graph(12, seed=1)
    crossing = crossing_at(graph, 4)
    inputs = {t.name for layer in graph.input_layers for t in layer.outputs}
    assert inputs & {t.name for t in crossing}, "the cut must forward a model input"
    made = {t.name: TensorSpec(t.name, tuple(t.shape), "float32") for t in crossing}
    link = LinkPlan(0, 1, "gige", tuple(made), 0, compression=level,
                    compression_quantization={name: Quantization(0.1, 0) for name in made
                                              if name not in inputs} if level == "int8" else {})
    sent = wire_bytes(link_wire_specs(link, made, model_inputs=inputs))
    predicted = evaluate(graph, ["rpi4", "rpi5"], "gige", [4], precision="fp32",
                         compression=(level,))
    assert predicted.links[0].compression == level
    assert predicted.links[0].transfer_bytes == sent
    assert sent == sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize
                       for s in made.values()) - sum(
        math.prod(made[n].shape) * (4 - (2 if level == "fp16" else 1))
        for n in made if n not in inputs)
