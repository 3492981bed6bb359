"""Datasets that ship offline, for calibration, accuracy and pipeline sources.

``digits`` is scikit-learn's 8×8 handwritten digits (1,797 images, shipped inside its wheel),
scaled to [0, 1] as ``float32`` with shape ``(N, 8, 8, 1)``. The train/test split is fixed
(seeded), so every tool that reports digits accuracy uses the same held-out images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsched.errors import DatasetError, DependencyError

#: Seed and fraction of the fixed digits split; the shipped digits_cnn was trained on the rest.
DIGITS_SPLIT_SEED = 20260101
DIGITS_TEST_FRACTION = 0.25
#: Pixel values of the digits images run from 0 to 16.
DIGITS_MAX_PIXEL = 16.0


@dataclass(frozen=True)
class LabeledImages:
    images: np.ndarray  # float32, (N, H, W, C)
    labels: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def digits(split: str = "test") -> LabeledImages:
    """The digits images of one split: ``"train"``, ``"test"`` or ``"all"``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DependencyError(
            "the digits dataset needs scikit-learn: pip install scikit-learn"
        ) from None
    raw = load_digits()
    images = (raw.images / DIGITS_MAX_PIXEL).astype(np.float32)[..., np.newaxis]
    labels = raw.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    n_test = round(DIGITS_TEST_FRACTION * len(labels))
    chosen = {"test": order[:n_test], "train": order[n_test:], "all": np.arange(len(labels))}
    if split not in chosen:
        raise DatasetError(f"digits split {split!r} does not exist; use train, test or all")
    index = chosen[split]
    return LabeledImages(images=images[index], labels=labels[index])
