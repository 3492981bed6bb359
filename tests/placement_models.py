"""Keras models for the placement tests: two heavy branches of equal cost."""

from __future__ import annotations

import keras


def two_branch_model(size: int = 16, channels: int = 32, depth: int = 2) -> keras.Model:
    """Stem conv, then two branches of ``depth`` 3x3 convs each, added, pooled, classified;
    weights seeded, so a test sees the same model every run."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input(batch_shape=(1, size, size, 3), name="image")
    stem = layers.Conv2D(channels, 3, padding="same", activation="relu", name="stem")(inputs)
    arms = []
    for arm in "ab":
        x = stem
        for k in range(depth):
            x = layers.Conv2D(channels, 3, padding="same", activation="relu",
                              name=f"{arm}{k}")(x)
        arms.append(x)
    x = layers.Add(name="join")(arms)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="two_branch")


#: The two branches of :func:`two_branch_model` on two boards: stem, branch a and the join on
#: ``pi_a``, branch b on ``pi_b`` (so a frame runs both branches at once).
BRANCH_PARALLEL_MAPPING = {
    "boards": [{"name": "pi_a", "platform": "rpi4", "cores": [0]},
               {"name": "pi_b", "platform": "rpi4", "cores": [1]}],
    "stages": [{"board": "pi_a", "layers": ["image", "stem"]},
               {"board": "pi_a", "layers": ["a*"]},
               {"board": "pi_b", "layers": ["b0..b1"]},
               {"board": "pi_a", "layers": ["rest"]}],
    "link": "gige",
}


def assert_branches_satisfy_co_run_equation(coster, placement, cost, **tolerance) -> None:
    """Stages 1 and 2 (the two branches) each last what their overlap with the other implies
    (:func:`hwsched.costs.placement.co_run_duration_ms`), between their alone and co-run
    times; ``tolerance``: ``pytest.approx``'s for the equation."""
    import pytest

    from hwsched.costs.placement import co_run_duration_ms

    for i, j in ((1, 2), (2, 1)):
        alone = coster.compute_ms(placement, placement.stages[i])
        co = coster.co_run_ms(placement, placement.stages[i])
        mine, other = cost.stages[i], cost.stages[j]
        overlap = max(0.0, min(mine.end_ms, other.end_ms) - max(mine.start_ms, other.start_ms))
        assert alone - 1e-9 <= mine.compute_ms <= co + 1e-9
        assert mine.compute_ms == pytest.approx(co_run_duration_ms(alone, co, overlap),
                                                **tolerance)


def tiny_conv_loaded(name: str):
    """Two 3×3 convolutions, a pooling and a dense head on an 8×8×3 image, read as a
    :class:`~hwsched.load.LoadedModel` (the profiling tests' smallest real model)."""
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    inputs = keras.Input(batch_shape=(1, 8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x), name=name)
    graph, binding = read_keras_model(model, name, source="test")
    return LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
