"""The source: feeds frames from a dataset or random data into stage 0.

``--data`` is ``random`` (seeded), ``digits`` (scikit-learn's digits test split, with labels),
an ``.npy`` file (``N × input shape``, one model input), an ``.npz`` file (one array per model
input name, optional ``labels``), or a folder of images (class sub-folders give labels; needs
Pillow). Frames go out at ``rate_hz`` or as fast as the pipeline's window admits (``None``),
each stamped with the host time it was first sent. The stream ends with an END message sent
only once every frame is acknowledged, i.e. has reached the sink.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import Plan, TensorSpec
from hwsched.errors import DatasetError, DependencyError, TransportError
from hwsched.runtime.frames import KIND_END, encode_control, encode_data
from hwsched.runtime.process import POLL_S, RunOptions, StopFlag, mark_ready, write_stats
from hwsched.runtime.reliable import Sender
from hwsched.runtime.routing import convert, hop_specs
from hwsched.runtime.transport import open_channel, wait_readable

log = logging.getLogger("hwsched.runtime")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
#: Seconds the source waits for the END acknowledgement before giving up.
END_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Dataset:
    """Frames as float (or already typed) arrays per model input; labels when known."""

    inputs: Mapping[str, np.ndarray]  # name → (N, *shape[1:])
    labels: np.ndarray | None

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def frame(self, i: int, specs: Mapping[str, TensorSpec]) -> dict[str, np.ndarray]:
        """Frame ``i`` (wrapping around), shaped and typed as the plan's input specs."""
        out = {}
        for name, spec in specs.items():
            value = self.inputs[name][i % len(self)].reshape(spec.shape)
            float_spec = TensorSpec(name, spec.shape, "float32")
            typed = value if value.dtype == np.dtype(spec.dtype) else convert(
                value.astype(np.float32), float_spec, spec)
            out[name] = np.ascontiguousarray(typed, dtype=spec.dtype)
        return out

    def label(self, i: int) -> int | None:
        return None if self.labels is None else int(self.labels[i % len(self.labels)])


def load_dataset(spec: str, inputs: Mapping[str, TensorSpec], frames: int,
                 seed: int = 0) -> Dataset:
    if spec == "random":
        return _random(inputs, frames, seed)
    if spec == "digits":
        from hwsched.datasets import digits

        data = digits("test")
        return _single(inputs, data.images, data.labels, "digits")
    path = Path(spec)
    if path.suffix == ".npy":
        return _single(inputs, _np_load(path), None, spec)
    if path.suffix == ".npz":
        return _npz(inputs, path)
    if path.is_dir():
        return _image_folder(inputs, path)
    raise DatasetError(f"--data {spec!r}: use random, digits, FILE.npy, FILE.npz or an image DIR")


def _random(inputs: Mapping[str, TensorSpec], frames: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, spec in inputs.items():
        shape = (max(frames, 1), *spec.shape[1:])
        if np.issubdtype(np.dtype(spec.dtype), np.integer) and spec.quantization is None:
            info = np.iinfo(spec.dtype)
            arrays[name] = rng.integers(info.min, info.max, size=shape, endpoint=True,
                                        dtype=spec.dtype)
        else:
            arrays[name] = rng.random(shape, dtype=np.float32)
    return Dataset(arrays, None)


def _single(inputs: Mapping[str, TensorSpec], images: np.ndarray, labels: np.ndarray | None,
            where: str) -> Dataset:
    if len(inputs) != 1:
        raise DatasetError(f"{where}: one array feeds one input, the plan has {sorted(inputs)}")
    name, spec = next(iter(inputs.items()))
    _check_shape(images, spec, where)
    return Dataset({name: images}, labels)


def _check_shape(array: np.ndarray, spec: TensorSpec, where: str) -> None:
    if math.prod(array.shape[1:]) != math.prod(spec.shape[1:]):
        raise DatasetError(
            f"{where}: items of shape {list(array.shape[1:])} do not fit input {spec.name!r} "
            f"of shape {list(spec.shape)}"
        )


def _np_load(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)  # never unpickle a data file
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from None


def _npz(inputs: Mapping[str, TensorSpec], path: Path) -> Dataset:
    archive = _np_load(path)
    labels = archive["labels"] if "labels" in archive.files else None
    if len(inputs) == 1 and next(iter(inputs)) not in archive.files:
        arrays = [k for k in archive.files if k != "labels"]
        if len(arrays) != 1:
            raise DatasetError(f"{path}: needs an array named {next(iter(inputs))!r}")
        return _single(inputs, archive[arrays[0]], labels, str(path))
    missing = [n for n in inputs if n not in archive.files]
    if missing:
        raise DatasetError(f"{path}: has no array for model input(s) {missing}")
    for name, spec in inputs.items():
        _check_shape(archive[name], spec, f"{path}[{name}]")
    return Dataset({n: archive[n] for n in inputs}, labels)


def _image_folder(inputs: Mapping[str, TensorSpec], folder: Path) -> Dataset:
    try:
        from PIL import Image
    except ImportError:
        raise DependencyError("an image folder needs Pillow: pip install pillow") from None
    name, spec = next(iter(inputs.items()))
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    classes = sorted({p.parent.name for p in files if p.parent != folder})
    height, width, channels = spec.shape[1], spec.shape[2], spec.shape[3]
    mode = "L" if channels == 1 else "RGB"
    images = np.stack([
        np.asarray(Image.open(p).convert(mode).resize((width, height)), np.float32)
        .reshape(height, width, channels) / 255.0
        for p in files
    ])
    labels = np.array([classes.index(p.parent.name) for p in files]) if classes else None
    return Dataset({name: images}, labels)


def run_source(plan: Plan, next_hop: str, options: RunOptions, *, frames: int,
               data: str = "random", rate_hz: float | None = None, seed: int = 0) -> dict:
    """Send ``frames`` frames into the pipeline and end the stream; returns the stats."""
    stop = StopFlag()
    specs = hop_specs(plan, 0)
    dataset = load_dataset(data, specs, frames, seed)
    channel = open_channel(next_hop, listen=False, hwm=options.hwm, curve=options.curve(),
                           specs=specs)
    sender = Sender(channel, window=options.window, resend_after_s=options.resend_after_s,
                    delay_s=options.link_delay_s)
    mark_ready(options.ready)
    deadline = options.deadline_s()
    started_s = time.time()
    sent, ended = 0, False
    try:
        while not stop.set and time.monotonic() < deadline and not ended:
            sender.acks()
            if sent < frames and sender.has_room() and _due(started_s, sent, rate_hz):
                frame = dataset.frame(sent, specs)
                sender.send(sent, encode_data(sent, time.time(), frame, specs))
                sent += 1
            elif sent == frames and sender.idle:
                ended = _end_stream(sender, frames, channel, stop)
            else:
                wait_readable([channel], _wait_s(sender, started_s, sent, rate_hz))
            sender.service()
    finally:
        channel.close()
    stats = {"role": "source", "frames": sent, "ended": ended, "wall_s": time.time() - started_s,
             "labels": None if dataset.labels is None else [dataset.label(i)
                                                            for i in range(frames)],
             "downstream": sender.counters.to_dict()}
    write_stats(options.stats, stats)
    if not ended:
        raise TransportError(f"source: stream not finished ({sent}/{frames} frames sent, "
                             f"{len(sender.outstanding)} unacknowledged)")
    return stats


def _due(started_s: float, sent: int, rate_hz: float | None) -> bool:
    return rate_hz is None or time.time() >= started_s + sent / rate_hz


def _wait_s(sender: Sender, started_s: float, sent: int, rate_hz: float | None) -> float:
    waits = [POLL_S]
    if rate_hz is not None and sender.has_room():
        waits.append(started_s + sent / rate_hz - time.time())
    due = sender.next_due_s()
    if due is not None:
        waits.append(due - time.monotonic())
    return max(0.0, min(waits))


def _end_stream(sender: Sender, frames: int, channel, stop: StopFlag) -> bool:
    sender.send(frames, encode_control(KIND_END, frames, time.time()))
    limit = time.monotonic() + END_TIMEOUT_S
    while not stop.set and time.monotonic() < limit:
        if frames in sender.acks():
            return True
        sender.service()
        wait_readable([channel], POLL_S)
    return False
