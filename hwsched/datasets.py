"""Datasets, read one way for every tool: export's calibration and verification, accuracy, and
the runtime's source all load data through this module (numpy and Pillow; no TensorFlow, since
the source runs on a board).

``digits`` is scikit-learn's 8×8 handwritten digits (1,797 images, shipped inside its wheel),
scaled to [0, 1] as ``float32`` with shape ``(N, 8, 8, 1)``. The train/test split is fixed
(seeded), so every tool that reports digits accuracy uses the same held-out images.

A dataset *path* (:func:`load_path`) is one of:

- a folder of images (:data:`IMAGE_SUFFIXES`, any case), found recursively in sorted path
  order, decoded with Pillow to grey (one channel) or RGB (three), scaled to [0, 1] and resized
  to the model input with :func:`resize_bilinear`. Labels: a folder whose images all sit in
  sub-directories is labeled, and an image's class is the sub-directory *directly under the
  root* that holds it (deeper folders belong to that class), classes numbered in sorted name
  order, as Keras' ``image_dataset_from_directory`` does; a folder with images only in its root
  is unlabeled. Images in the root beside class sub-directories belong to no class and are
  refused (:class:`~hwsched.errors.DatasetError`), never guessed.
- an ``.npy`` file: one array, items of the (single) model input's size;
- an ``.npz`` file: optional ``labels``, plus one array per model input name; a single-input
  model also takes the archive's one other array whatever its name (``images`` by habit).

>>> import numpy as np
>>> image = np.arange(4, dtype=np.float32).reshape(2, 2, 1)
>>> resize_bilinear(image, 4, 4)[..., 0].tolist()[0]
[0.0, 0.25, 0.75, 1.0]
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.errors import DatasetError, DependencyError

#: Seed and fraction of the fixed digits split; the shipped digits_cnn was trained on the rest.
DIGITS_SPLIT_SEED = 20260101
DIGITS_TEST_FRACTION = 0.25
#: Pixel values of the digits images run from 0 to 16.
DIGITS_MAX_PIXEL = 16.0
#: Image files a dataset folder may hold (compared in lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm")
#: Largest 8-bit pixel value: decoded images are divided by it.
MAX_PIXEL_8BIT = 255.0
#: The ``.npz`` array that holds labels; every other array is model input data.
NPZ_LABELS = "labels"
#: Pillow image mode per channel count.
IMAGE_MODES = {1: "L", 3: "RGB"}
#: numpy dtype kinds a dataset array may hold: bool, signed and unsigned integers, floats.
NUMBER_KINDS = "biuf"


@dataclass(frozen=True)
class LabeledImages:
    images: np.ndarray  # float32, (N, H, W, C)
    labels: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DatasetArrays:
    """Items per model input (``name → (N, *input shape without batch)``) and labels if any."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


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


def load_path(path: Path, inputs: Mapping[str, Sequence[int]]) -> DatasetArrays:
    """The dataset at ``path`` for model inputs ``{name: shape (batch first)}``, each item
    shaped like its input without the batch axis; errors name the file and the input."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset (a folder of images, .npy or .npz)")
    if path.suffix == ".npz":
        return _npz(path, inputs)
    if path.suffix == ".npy":
        name, shape = _single_input(inputs, path)
        return DatasetArrays({name: _fit(_np_load(path), shape, f"{path}", name)}, None)
    if path.is_dir():
        return _image_folder(path, inputs)
    raise DatasetError(f"{path}: not a folder of images, .npy or .npz dataset")


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(h, w, c)`` float image resized to ``(height, width, c)``, bilinear with half-pixel
    centres and no anti-aliasing (what ``tf.image.resize`` does by default, so data read here
    matches data a Keras pipeline prepared)."""
    rows, row_frac = _axis_weights(image.shape[0], height)
    cols, col_frac = _axis_weights(image.shape[1], width)
    src = np.asarray(image, dtype=np.float32)
    top = src[rows[0]][:, cols[0]], src[rows[0]][:, cols[1]]
    bottom = src[rows[1]][:, cols[0]], src[rows[1]][:, cols[1]]
    x = col_frac[np.newaxis, :, np.newaxis]
    upper = top[0] + (top[1] - top[0]) * x
    lower = bottom[0] + (bottom[1] - bottom[0]) * x
    return upper + (lower - upper) * row_frac[:, np.newaxis, np.newaxis]


def _axis_weights(size: int, out: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    centre = (np.arange(out, dtype=np.float64) + 0.5) * (size / out) - 0.5
    low = np.floor(centre)
    first = np.clip(low, 0, size - 1).astype(np.intp)
    second = np.clip(np.ceil(centre), 0, size - 1).astype(np.intp)
    return (first, second), (centre - low).astype(np.float32)


def _single_input(inputs: Mapping[str, Sequence[int]], where: Path) -> tuple[str, Sequence[int]]:
    if len(inputs) != 1:
        raise DatasetError(
            f"{where}: one array feeds one model input, the model has {sorted(inputs)}; use an "
            ".npz with one array per input name"
        )
    return next(iter(inputs.items()))


def _fit(array: Any, shape: Sequence[int], where: str, name: str) -> np.ndarray:
    """Items reshaped to the input's shape (a missing channel axis is fine, sizes must match).
    Only numbers are data: strings or objects would fail later, deep in a cast to float32."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in NUMBER_KINDS:
        kind = array.dtype if isinstance(array, np.ndarray) else "an archive"
        raise DatasetError(f"{where}: holds {kind}, not an array of numbers")
    if array.ndim < 1 or math.prod(array.shape[1:]) != math.prod(shape[1:]):
        raise DatasetError(
            f"{where}: items of shape {list(array.shape[1:])} do not fit model input {name!r} "
            f"of shape {list(shape)}"
        )
    if array.shape[0] == 0:
        raise DatasetError(f"{where}: holds no items")
    return array.reshape((array.shape[0], *shape[1:]))


def _labels(labels: Any, where: str) -> np.ndarray:
    """One whole-number class per item (a one-hot or string label would break the sink's and
    accuracy's comparison with the predicted class)."""
    array = np.asarray(labels)
    whole = array.dtype.kind in "iu" or (
        array.dtype.kind == "f" and bool(np.isfinite(array).all())
        and bool((array == np.round(array)).all()))
    if array.ndim != 1 or not whole:
        raise DatasetError(f"{where}[{NPZ_LABELS}]: labels are one whole number per item; got "
                           f"{array.dtype} of shape {list(array.shape)}")
    return array.astype(np.int64)


def _np_load(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)  # never unpickle a data file
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from None


def _npz(path: Path, inputs: Mapping[str, Sequence[int]]) -> DatasetArrays:
    archive = _np_load(path)
    if not hasattr(archive, "files"):
        raise DatasetError(f"{path}: not an .npz archive")
    with archive:
        try:  # members are read here, lazily: an object array or a corrupt member fails now
            arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise DatasetError(f"{path}: cannot read ({error})") from None
    labels = arrays.pop(NPZ_LABELS, None)
    return fit_arrays(arrays, labels, inputs, str(path))


def fit_arrays(arrays: Mapping[str, np.ndarray], labels: np.ndarray | None,
               inputs: Mapping[str, Sequence[int]], where: str) -> DatasetArrays:
    """Named arrays (the ``.npz`` convention) matched to model inputs by name; a single-input
    model also takes the one array there is, whatever its name."""
    if len(inputs) == 1 and next(iter(inputs)) not in arrays and len(arrays) == 1:
        keys = {next(iter(inputs)): next(iter(arrays))}
    else:
        missing = [name for name in inputs if name not in arrays]
        if missing:
            raise DatasetError(
                f"{where}: no array for model input(s) {missing}; name one array per input, "
                "or hold exactly one array (and optional 'labels') for a single-input model"
            )
        keys = {name: name for name in inputs}
    data = {name: _fit(arrays[key], inputs[name], f"{where}[{key}]", name)
            for name, key in keys.items()}
    classes = None if labels is None else _labels(labels, where)
    counts = {len(a) for a in data.values()} | ({len(classes)} if classes is not None else set())
    if len(counts) != 1:
        raise DatasetError(f"{where}: arrays hold different numbers of items {sorted(counts)}")
    return DatasetArrays(data, classes)


def _image_folder(folder: Path, inputs: Mapping[str, Sequence[int]]) -> DatasetArrays:
    name, shape = _single_input(inputs, folder)
    if len(shape) != 4 or int(shape[3]) not in IMAGE_MODES:
        raise DatasetError(
            f"{folder}: model input {name!r} has shape {list(shape)}; an image folder feeds "
            "(1, height, width, 1 or 3) inputs"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    height, width, channels = (int(d) for d in shape[1:4])
    labels = _folder_labels(folder, files)
    images = np.stack([_read_image(f, height, width, channels) for f in files])
    return DatasetArrays({name: images}, labels)


def _folder_labels(folder: Path, files: Sequence[Path]) -> np.ndarray | None:
    """Class = the sub-directory directly under ``folder`` holding the image (sorted names)."""
    loose = [f for f in files if f.parent == folder]
    if len(loose) == len(files):
        return None
    if loose:
        raise DatasetError(
            f"{loose[0]}: an image in the root of a folder with class sub-directories has no "
            "class; move it into one"
        )
    top = [f.relative_to(folder).parts[0] for f in files]
    index = {name: i for i, name in enumerate(sorted(set(top)))}
    return np.array([index[name] for name in top], dtype=np.int64)


def _read_image(path: Path, height: int, width: int, channels: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError("an image folder needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(IMAGE_MODES[channels]), dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: cannot decode image ({error})") from None
    scaled = pixels.reshape(pixels.shape[0], pixels.shape[1], channels) / MAX_PIXEL_8BIT
    return resize_bilinear(scaled, height, width)
