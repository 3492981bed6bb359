"""Small Keras models built inside tests (each in well under a second)."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def residual_se_model(name: str = "res_se") -> keras.Model:
    """Conv stem, a residual block and a squeeze-excite block, batch 1, 8×8×3 input."""
    layers = keras.layers
    inputs = keras.Input(batch_shape=(1, 8, 8, 3), name="image")
    x = layers.ZeroPadding2D(1, name="pad")(inputs)
    x = layers.Conv2D(8, 3, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    y = layers.Conv2D(8, 3, padding="same", name="res_conv")(x)
    y = layers.BatchNormalization(name="res_bn")(y)
    x = layers.Add(name="res_add")([x, y])
    s = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    s = layers.Conv2D(2, 1, activation="relu", name="se_reduce")(s)
    s = layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(s)
    x = layers.Multiply(name="se_scale")([x, s])
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="down")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def inception_model() -> keras.Model:
    """Three parallel branches concatenated (an inception-style block)."""
    layers = keras.layers
    inputs = keras.Input(batch_shape=(1, 8, 8, 4), name="x")
    a = layers.Conv2D(4, 1, name="b1")(inputs)
    b = layers.Conv2D(4, 3, padding="same", name="b2a")(inputs)
    b = layers.Conv2D(4, 3, padding="same", name="b2b")(b)
    c = layers.MaxPooling2D(3, strides=1, padding="same", name="b3")(inputs)
    x = layers.Concatenate(name="cat")([a, b, c])
    outputs = layers.Conv2D(2, 1, name="out")(x)
    return keras.Model(inputs, outputs, name="inception")


def dag_model(preds: Sequence[Sequence[int]], n_inputs: int = 1, width: int = 4) -> keras.Model:
    """A Keras model with the topology of ``preds`` (see irgraphs.dag_graph): each node is a
    Dense layer over the sum of its predecessors (Add when there are several)."""
    layers = keras.layers
    tensors = []
    for i, ps in enumerate(preds):
        if i < n_inputs:
            tensors.append(keras.Input(batch_shape=(1, width), name=f"n{i}"))
            continue
        sources = [tensors[p] for p in ps]
        x = sources[0] if len(ps) == 1 else layers.Add(name=f"sum{i}")(sources)
        tensors.append(layers.Dense(width, name=f"n{i}")(x))
    consumed = {p for ps in preds for p in ps}
    outputs = [tensors[i] for i in range(len(preds)) if i not in consumed]
    return keras.Model(tensors[:n_inputs], outputs, name="dag")


def to_tflite(model: keras.Model) -> bytes:
    """Convert to a float32 .tflite flatbuffer, keeping the converter's chatter off stdout."""
    import contextlib
    import io

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()
