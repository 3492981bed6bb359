"""One dataset loader: export (calibration, accuracy) and the runtime's source read the same
folder into the same images and labels; the resize is TensorFlow's bilinear; every bad input is
a DatasetError naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsched.datasets import IMAGE_SUFFIXES, load_path, resize_bilinear
from hwsched.deployment import TensorSpec
from hwsched.errors import DatasetError, HwschedError
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor

SHAPE = (1, 8, 8, 1)
#: (path under the root, size): nested folders, every suffix, sizes up and down from 8×8.
LAYOUT = (
    ("cat/a.png", (13, 11)),
    ("cat/deep/b.ppm", (5, 9)),
    ("dog/c.JPG", (16, 16)),
    ("dog/d.gif", (8, 8)),
    ("bird/e.bmp", (20, 6)),
    ("bird/f.jpeg", (7, 7)),
)


def _graph() -> LayerGraph:
    def tensor(name: str, shape: tuple[int, ...]) -> Tensor:
        return Tensor(name, producer=name, shape=shape, dtype="float32")

    return LayerGraph("img", (
        Layer("x", OpKind.INPUT, (), (tensor("x", SHAPE),)),
        Layer("act", OpKind.ACTIVATION, ("x",), (tensor("act", SHAPE),)),
    ), outputs=("act",))


def _write_images(root: Path, layout=LAYOUT) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for relative, (height, width) in layout:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(path)
    return paths


def _export_side(root: Path):
    from hwsched.export.data import labeled_dataset, model_input_samples, parse_source

    graph = _graph()
    labeled = labeled_dataset(graph, parse_source(str(root)))
    samples = model_input_samples(graph, parse_source(str(root)), 100, calibration=True)
    return labeled, np.concatenate([s["x"] for s in samples])


def _runtime_side(root: Path):
    from hwsched.runtime.source import load_dataset

    return load_dataset(str(root), {"x": TensorSpec("x", SHAPE, "float32")}, frames=3)


def test_export_and_runtime_read_a_folder_identically(tmp_path):
    _write_images(tmp_path)
    labeled, calibration = _export_side(tmp_path)
    frames = _runtime_side(tmp_path)
    np.testing.assert_array_equal(labeled.images, frames.inputs["x"])
    np.testing.assert_array_equal(calibration, frames.inputs["x"])
    np.testing.assert_array_equal(labeled.labels, frames.labels)
    # the rule, stated independently: class = the folder directly under the root, sorted names
    files = sorted(relative for relative, _ in LAYOUT)
    classes = sorted({f.split("/")[0] for f in files})
    assert labeled.labels.tolist() == [classes.index(f.split("/")[0]) for f in files]
    assert labeled.images.shape == (len(LAYOUT), 8, 8, 1)


def test_decoding_and_resize_match_tensorflow(tmp_path):
    import tensorflow as tf

    # PNG: lossless, and decoded by TensorFlow in one channel (its BMP decoder is not)
    paths = _write_images(tmp_path, [("a.png", (13, 11)), ("b.png", (5, 9)), ("c.png", (3, 30))])
    got = load_path(tmp_path, {"x": SHAPE}).inputs["x"]
    for path, image in zip(paths, got, strict=True):
        decoded = tf.io.decode_image(path.read_bytes(), channels=1, expand_animations=False)
        want = tf.image.resize(tf.cast(decoded, tf.float32) / 255.0, (8, 8)).numpy()
        np.testing.assert_allclose(image, want, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (8, 8), (9, 4), (31, 17)])
@pytest.mark.parametrize("out", [(1, 1), (4, 6), (8, 8), (25, 3)])
def test_resize_bilinear_is_tensorflows(size, out):
    import tensorflow as tf

    image = np.random.default_rng(sum(size) + sum(out)).random((*size, 3), dtype=np.float32)
    want = tf.image.resize(image, out).numpy()  # bilinear, half-pixel centres, no antialias
    np.testing.assert_allclose(resize_bilinear(image, *out), want, atol=1e-5)


def test_an_image_in_the_root_beside_classes_is_refused_by_both(tmp_path):
    _write_images(tmp_path)
    _write_images(tmp_path, [("loose.png", (8, 8))])
    with pytest.raises(DatasetError, match=r"loose\.png: .*has no class"):
        _export_side(tmp_path)
    with pytest.raises(DatasetError, match=r"loose\.png: .*has no class"):
        _runtime_side(tmp_path)


def test_a_folder_of_loose_images_is_unlabeled(tmp_path):
    from hwsched.export.data import labeled_dataset, parse_source

    _write_images(tmp_path, [("a.png", (8, 8)), ("b.bmp", (4, 4))])
    assert _runtime_side(tmp_path).labels is None
    with pytest.raises(HwschedError, match="accuracy needs labels"):
        labeled_dataset(_graph(), parse_source(str(tmp_path)))


def test_a_corrupt_image_is_a_dataset_error_naming_it(tmp_path):
    _write_images(tmp_path, [("cat/a.png", (8, 8))])
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"broken\.png: cannot decode image"):
        _runtime_side(tmp_path)
    with pytest.raises(DatasetError, match=r"broken\.png: cannot decode image"):
        _export_side(tmp_path)


def test_npz_convention_is_shared(tmp_path):
    images = np.random.default_rng(1).random((5, 8, 8), dtype=np.float32)  # no channel axis
    labels = np.arange(5) % 2
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    labeled, _ = _export_side(tmp_path / "d.npz")
    frames = _runtime_side(tmp_path / "d.npz")
    np.testing.assert_array_equal(labeled.images[..., 0], images)
    np.testing.assert_array_equal(frames.inputs["x"], labeled.images)
    assert labeled.labels.tolist() == frames.labels.tolist() == labels.tolist()


def test_npz_of_several_inputs_is_matched_by_name(tmp_path):
    np.savez(tmp_path / "two.npz", b=np.ones((3, 2)), a=np.zeros((3, 4)), labels=[0, 1, 2])
    data = load_path(tmp_path / "two.npz", {"a": (1, 4), "b": (1, 2)})
    assert data.inputs["a"].shape == (3, 4) and data.inputs["b"].shape == (3, 2)
    with pytest.raises(DatasetError, match=r"two\.npz: no array for model input\(s\) \['c'\]"):
        load_path(tmp_path / "two.npz", {"a": (1, 4), "c": (1, 2)})
    np.savez(tmp_path / "uneven.npz", images=np.ones((3, 4)), labels=[0, 1])
    with pytest.raises(DatasetError, match="different numbers of items"):
        load_path(tmp_path / "uneven.npz", {"x": (1, 4)})


def test_items_that_do_not_fit_name_file_and_input(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 7)))
    with pytest.raises(DatasetError, match=r"x\.npy: items of shape \[7\] .* input 'x'"):
        load_path(tmp_path / "x.npy", {"x": SHAPE})
    with pytest.raises(DatasetError, match="no such dataset"):
        load_path(tmp_path / "missing.npz", {"x": SHAPE})


def test_suffixes_are_one_list():
    import hwsched.export.data
    import hwsched.runtime.source

    for module in (hwsched.export.data, hwsched.runtime.source):
        assert not hasattr(module, "IMAGE_SUFFIXES")
    assert {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm"} <= set(IMAGE_SUFFIXES)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npz_with_object_labels(path: Path) -> None:
    np.savez(path, images=np.zeros((3, 8, 8, 1), np.float32),
             labels=np.array([1, "cat", None], dtype=object))


#: Files the loader used to accept (then crash in a cast to float32 or in the sink's label
#: comparison) or to read into a traceback: name → (writer, what the error says).
BAD_FILES = {
    "object labels.npz": (_npz_with_object_labels, "cannot read"),
    "strings.npz": (lambda p: np.savez(p, images=np.array([["a"] * 64] * 3)), "not an array of"),
    "strings.npy": (lambda p: np.save(p, np.array([["a"] * 64] * 3)), "not an array of"),
    "empty.npz": (lambda p: np.savez(p, images=np.zeros((0, 8, 8, 1))), "holds no items"),
    "empty.npy": (lambda p: np.save(p, np.zeros((0, 64))), "holds no items"),
    "one-hot labels.npz": (lambda p: np.savez(p, images=np.zeros((3, 64)),
                                              labels=np.eye(3)), "one whole number per item"),
    "fractional labels.npz": (lambda p: np.savez(p, images=np.zeros((2, 64)),
                                                 labels=[0.5, 1]), "one whole number"),
    "scalar labels.npz": (lambda p: np.savez(p, images=np.zeros((2, 64)), labels=3),
                          "one whole number"),
    "archive named.npy": (lambda p: p.write_bytes(_npz_bytes(images=np.zeros((2, 64)))),
                          "not an array of numbers"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_data_file_is_one_dataset_error_in_every_reader(tmp_path, name):
    write, message = BAD_FILES[name]
    path = tmp_path / name.replace(" ", "_")
    write(path)
    with pytest.raises(DatasetError, match=message) as raised:
        load_path(path, {"x": SHAPE})
    assert path.name in str(raised.value)
    with pytest.raises(DatasetError, match=message):
        _runtime_side(path)
    with pytest.raises(DatasetError, match=message):
        _export_side(path)


def test_whole_float_labels_are_classes(tmp_path):
    np.savez(tmp_path / "f.npz", images=np.zeros((3, 64)), labels=np.array([2.0, 0.0, 1.0]))
    labels = load_path(tmp_path / "f.npz", {"x": SHAPE}).labels
    assert labels is not None and labels.dtype == np.int64 and labels.tolist() == [2, 0, 1]
