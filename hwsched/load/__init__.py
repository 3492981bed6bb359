"""Loading: zoo names, Keras files and TFLite files into the IR.

This is the only stage (with export) that touches TensorFlow/Keras, and it imports them lazily:
``import hwsched.load`` is cheap, and a ``.tflite`` model loads with LiteRT alone.

>>> loaded = load_model("digits_cnn")             # doctest: +SKIP
>>> loaded.graph.name, len(loaded.graph)          # doctest: +SKIP
('digits_cnn', 14)
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsched.errors import ModelLoadError, UnknownNameError
from hwsched.ir import LayerGraph
from hwsched.load.zoo import MODELS_DIR, ZOO, zoo_names
from hwsched.progress import Progress, silent

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
TFLITE_SUFFIXES = (".tflite",)


@dataclass(frozen=True)
class LoadedModel:
    """A model read into the IR, with handles back to its source for export.

    ``keras`` is a :class:`~hwsched.load.keras_reader.KerasBinding` for Keras models,
    ``tflite_bytes`` the flatbuffer for ``.tflite`` models.
    """

    graph: LayerGraph
    source: str
    kind: str  # "keras" or "tflite"
    keras: Any = None
    tflite_bytes: bytes | None = None


def load_model(
    spec: str, weights: str | None = None, progress: Progress | None = None
) -> LoadedModel:
    """Load a zoo name, a ``.keras``/``.h5`` file or a ``.tflite`` file."""
    report = progress or silent
    path = Path(spec)
    if weights and path.suffix.lower() not in TFLITE_SUFFIXES:
        _require_file(Path(weights))  # before building the model, not minutes after
    if path.suffix.lower() in TFLITE_SUFFIXES:
        if weights:
            raise ModelLoadError(f"--weights does not apply to a .tflite model ({spec})")
        from hwsched.load.tflite_reader import read_tflite_file

        report(f"reading {path.name}")
        graph, data = read_tflite_file(path)
        return LoadedModel(graph=graph, source=str(path), kind="tflite", tflite_bytes=data)
    if path.suffix.lower() in KERAS_SUFFIXES:
        _require_file(path)
        model = _keras_file(path, report)
        name = path.stem
    elif spec in ZOO:
        model = _zoo_model(spec, report)
        name = spec
    else:
        if os.sep in spec or "." in spec:
            _require_file(path)
            raise ModelLoadError(
                f"{spec}: unsupported model file type {path.suffix!r}; "
                f"use one of {', '.join(KERAS_SUFFIXES + TFLITE_SUFFIXES)} or a zoo name"
            )
        raise UnknownNameError("model", spec, zoo_names())
    if weights:
        _load_weights(model, Path(weights), report)
    report(f"reading the layer graph of {name}")
    from hwsched.load.keras_reader import read_keras_model

    graph, binding = read_keras_model(model, name, source=spec)
    return LoadedModel(graph=graph, source=spec, kind="keras", keras=binding)


#: Set (to anything) to let TensorFlow's native log lines through; ``hwsched --debug`` sets it.
SHOW_NATIVE_LOGS_ENV = "HWSCHED_DEBUG"


def import_keras(progress: Progress | None = None) -> Any:
    """Import Keras (TensorFlow backend) quietly.

    ``TF_CPP_MIN_LOG_LEVEL`` does not reach the lines TensorFlow's C++ code writes while it
    loads (absl's "All log messages before absl::InitializeLog()" preamble and the oneDNN
    notice, each twice), so file descriptor 2 is captured for the import itself; with
    ``hwsched --debug`` they are shown."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if progress:
        progress("importing TensorFlow")
    try:
        if os.environ.get(SHOW_NATIVE_LOGS_ENV) or "keras" in sys.modules:
            import keras
        else:
            from hwsched.litert import captured_stderr

            with captured_stderr():
                import keras
    except ImportError as error:
        raise ModelLoadError(
            f"Keras/TensorFlow is not installed ({error}); install hwsched[full] to load "
            "Keras models, or pass a .tflite file"
        ) from None
    return keras


def _zoo_model(name: str, report: Progress) -> Any:
    entry = ZOO[name]
    keras = import_keras(report)
    if entry.file is not None:
        path = MODELS_DIR / entry.file
        _require_file(path)
        return _keras_file(path, report)
    report(f"building {name} (weights=None)")
    builder = getattr(keras.applications, entry.builder)
    inputs = keras.Input(batch_shape=(1, *entry.input_shape), name="input")
    return builder(weights=None, input_tensor=inputs)


#: The first bytes of an HDF5 file (a legacy ``.h5`` Keras model).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_keras_archive(path: Path) -> None:
    """Refuse a file that cannot be a Keras model before importing TensorFlow: Keras itself
    reports an empty or random-bytes ``.keras`` file as "File not found" although it exists.
    A ``.keras`` file is a zip archive holding ``config.json``; an ``.h5`` file is HDF5."""
    _require_file(path)
    if path.suffix.lower() == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise ModelLoadError(
                f"{path}: not a .keras archive (not a zip file; empty, truncated or another "
                "format)"
            ) from None
        if "config.json" not in names:
            raise ModelLoadError(f"{path}: not a .keras archive (it holds no config.json)")
        return
    with path.open("rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise ModelLoadError(f"{path}: not an HDF5 ({path.suffix}) Keras model file")


def _keras_file(path: Path, report: Progress) -> Any:
    check_keras_archive(path)
    keras = import_keras(report)
    report(f"loading {path.name}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for corrupt files
        raise ModelLoadError(f"{path}: cannot load Keras model: {_first_line(error)}") from None


def _load_weights(model: Any, path: Path, report: Progress) -> None:
    _require_file(path)
    report(f"loading weights {path.name}")
    try:
        model.load_weights(path)
    except Exception as error:
        raise ModelLoadError(f"{path}: cannot load weights: {_first_line(error)}") from None


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, not a model file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__

