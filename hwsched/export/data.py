"""Model-input samples for calibration and verification, and labeled data for accuracy.

Sources (``--calibration`` / ``--dataset``):

- ``digits``: scikit-learn's digits (8×8×1 in [0, 1]); calibration draws from the train split,
  verification and accuracy from the held-out test split.
- ``random:N``: N seeded uniform [0, 1) samples of every model input (any model).
- a folder of images, an ``.npy`` or an ``.npz`` file, read by :func:`hwsched.datasets.load_path`
  (the loader the runtime's source uses too: the same suffixes, resize, labels and keys).

Samples are dicts ``{IR input tensor name: float32 array of the input's shape (batch 1)}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsched.datasets import LabeledImages, digits, load_path
from hwsched.errors import ExportError
from hwsched.ir import LayerGraph

#: Seeds of the random sources: calibration and verification never see the same samples.
CALIBRATION_SEED = 0
VERIFICATION_SEED = 1
DIGITS_SHAPE = (1, 8, 8, 1)
Sample = dict[str, np.ndarray]


@dataclass(frozen=True)
class SampleSource:
    """A parsed ``--calibration`` value: ``kind`` is digits, random or path."""

    kind: str
    count: int | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        if self.kind == "random":
            return f"random:{self.count}" if self.count else "random"
        return "digits" if self.kind == "digits" else str(self.path)


def parse_source(text: str) -> SampleSource:
    if text == "digits":
        return SampleSource("digits")
    if text == "random" or text.startswith("random:"):
        count_text = text.partition(":")[2] or "0"
        if not count_text.isdigit():
            raise ExportError(f"calibration {text!r}: use random:N with N a whole number")
        return SampleSource("random", count=int(count_text) or None)
    path = Path(text)
    if not path.exists():
        raise ExportError(f"{path}: no such dataset (use digits, random:N, a directory, "
                          ".npy or .npz)")
    return SampleSource("path", path=path)


def default_source(graph: LayerGraph) -> SampleSource:
    """digits for a model that takes digits images, seeded random data otherwise."""
    inputs = graph.input_layers
    if len(inputs) == 1 and inputs[0].outputs[0].shape == DIGITS_SHAPE:
        return SampleSource("digits")
    return SampleSource("random")


def model_input_samples(
    graph: LayerGraph, source: SampleSource, count: int, calibration: bool
) -> list[Sample]:
    """``count`` samples (fewer when the source holds fewer) of every model input."""
    if source.kind == "random":
        seed = CALIBRATION_SEED if calibration else VERIFICATION_SEED
        return _random_samples(graph, source.count or count, seed)
    name, shape = _single_image_input(graph, source)
    if source.kind == "digits":
        images = digits("train" if calibration else "test").images
    else:
        assert source.path is not None
        images = load_path(source.path, {name: shape}).inputs[name]
    if images.shape[1:] != shape[1:]:
        raise ExportError(
            f"{source.label}: images are {images.shape[1:]}, model input {name!r} is {shape[1:]}"
        )
    return [{name: images[i:i + 1].astype(np.float32)} for i in range(min(count, len(images)))]


def labeled_dataset(graph: LayerGraph, source: SampleSource) -> LabeledImages:
    """Held-out labeled images for accuracy (digits test split, or a folder/npz)."""
    name, shape = _single_image_input(graph, source)
    if source.kind == "digits":
        data = digits("test")
    elif source.kind == "path" and source.path is not None:
        arrays = load_path(source.path, {name: shape})
        if arrays.labels is None:
            raise ExportError(f"{source.path}: accuracy needs labels (class sub-directories or "
                              "an .npz 'labels' array)")
        data = LabeledImages(arrays.inputs[name].astype(np.float32), arrays.labels)
    else:
        raise ExportError("accuracy needs labeled data: --dataset digits or --dataset DIR")
    if data.images.shape[1:] != shape[1:]:
        raise ExportError(
            f"{source.label}: images are {data.images.shape[1:]}, the model takes {shape[1:]}"
        )
    return data


def _random_samples(graph: LayerGraph, count: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    tensors = [layer.outputs[0] for layer in graph.input_layers]
    return [
        {t.name: rng.random(t.shape, dtype=np.float32) for t in tensors} for _ in range(count)
    ]


def _single_image_input(graph: LayerGraph, source: SampleSource) -> tuple[str, tuple[int, ...]]:
    inputs = graph.input_layers
    if len(inputs) != 1:
        raise ExportError(
            f"{source.label}: model {graph.name!r} has {len(inputs)} inputs; image data feeds "
            "single-input models only (use random:N)"
        )
    tensor = inputs[0].outputs[0]
    if len(tensor.shape) != 4:
        raise ExportError(
            f"{source.label}: model input {tensor.name!r} has shape {tensor.shape}, not an image"
        )
    return tensor.name, tensor.shape
