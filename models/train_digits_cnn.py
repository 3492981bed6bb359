"""Train the shipped ``digits_cnn`` model: a small residual + squeeze-excite CNN on
scikit-learn's digits, reproducibly (fixed seeds, fixed split, single thread).

    python models/train_digits_cnn.py            # writes models/digits_cnn.keras + .json

The architecture has every kind of cut hwsched handles: a plain chain (1 crossing tensor),
a residual block (2 crossing tensors) and a squeeze-excite branch (up to 3).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

SEED = 7
EPOCHS = 40
BATCH_SIZE = 32
OUT_DIR = Path(__file__).resolve().parent


def build(keras, batch_size=None):
    layers = keras.layers
    inputs = keras.Input(batch_shape=(batch_size, 8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    # residual block
    y = layers.Conv2D(16, 3, padding="same", name="res_conv1")(x)
    y = layers.BatchNormalization(name="res_bn1")(y)
    y = layers.ReLU(name="res_relu1")(y)
    y = layers.Conv2D(16, 3, padding="same", name="res_conv2")(y)
    y = layers.BatchNormalization(name="res_bn2")(y)
    x = layers.Add(name="res_add")([x, y])
    x = layers.ReLU(name="res_relu2")(x)
    # squeeze-excite block
    s = layers.GlobalAveragePooling2D(name="se_pool")(x)
    s = layers.Dense(4, activation="relu", name="se_reduce")(s)
    s = layers.Dense(16, activation="sigmoid", name="se_expand")(s)
    s = layers.Reshape((1, 1, 16), name="se_reshape")(s)
    x = layers.Multiply(name="se_scale")([x, s])
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="down_conv")(x)
    x = layers.BatchNormalization(name="down_bn")(x)
    x = layers.ReLU(name="down_relu")(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def main() -> int:
    import keras
    import numpy as np
    import tensorflow as tf

    from hwsched.datasets import digits

    keras.utils.set_random_seed(SEED)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    train, test = digits("train"), digits("test")
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train.images, train.labels, batch_size=BATCH_SIZE, epochs=EPOCHS, verbose=0,
              shuffle=True)
    shipped = build(keras, batch_size=1)  # hwsched plans and exports at batch 1
    shipped.set_weights(model.get_weights())
    predictions = np.concatenate([shipped(test.images[i : i + 1]).numpy() for i in
                                  range(len(test))])
    accuracy = float((predictions.argmax(axis=1) == test.labels).mean())
    shipped.save(OUT_DIR / "digits_cnn.keras")
    meta = {"model": "digits_cnn", "seed": SEED, "epochs": EPOCHS,
            "train_images": len(train), "test_images": len(test),
            "test_top1_accuracy": round(accuracy, 4), "params": shipped.count_params()}
    (OUT_DIR / "digits_cnn.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
