"""The source: feeds frames from a dataset or random data into stage 0.

``--data`` is ``random`` (seeded), ``digits`` (scikit-learn's digits test split, with labels),
or a dataset path read by :func:`hwsched.datasets.load_path`, export's loader too: an ``.npy``
file (``N × input shape``, one model input), an ``.npz`` file (one array per model input name,
optional ``labels``), or a folder of images (class sub-folders give labels; needs Pillow).
Frames go out at ``rate_hz`` or as fast as the pipeline's window admits (``None``),
each stamped with the host time it was first sent. The stream ends with an END message sent
only once every frame is acknowledged, i.e. has reached the sink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hwsched.datasets import DatasetArrays, digits, fit_arrays, load_path
from hwsched.deployment import Plan, TensorSpec
from hwsched.errors import DatasetError, TransportError
from hwsched.handoff import from_float
from hwsched.runtime.frames import KIND_END, encode_control, encode_data
from hwsched.runtime.process import POLL_S, RunOptions, StopFlag, mark_ready, write_stats
from hwsched.runtime.reliable import Sender
from hwsched.runtime.routing import hop_specs
from hwsched.runtime.transport import open_channel, wait_readable

log = logging.getLogger("hwsched.runtime")
#: Seconds the source waits for the END acknowledgement before giving up.
END_TIMEOUT_S = 30.0


def frame(dataset: DatasetArrays, i: int, specs: Mapping[str, TensorSpec]
          ) -> dict[str, np.ndarray]:
    """Frame ``i`` (wrapping around), shaped and typed as the plan's input specs."""
    out = {}
    for name, spec in specs.items():
        value = dataset.inputs[name][i % len(dataset)].reshape(spec.shape)
        typed = value if value.dtype == np.dtype(spec.dtype) else from_float(
            value.astype(np.float32), spec)
        out[name] = np.ascontiguousarray(typed, dtype=spec.dtype)
    return out


def frame_label(dataset: DatasetArrays, i: int) -> int | None:
    return None if dataset.labels is None else int(dataset.labels[i % len(dataset.labels)])


def load_dataset(spec: str, inputs: Mapping[str, TensorSpec], frames: int,
                 seed: int = 0) -> DatasetArrays:
    if spec == "random":
        return _random(inputs, frames, seed)
    if spec == "digits":
        data = digits("test")
        return fit_arrays({"digits": data.images}, data.labels, _shapes(inputs), "digits")
    path = Path(spec)
    if path.suffix in (".npy", ".npz") or path.is_dir():
        return load_path(path, _shapes(inputs))  # never empty: the loader refuses that
    raise DatasetError(f"--data {spec!r}: use random, digits, FILE.npy, FILE.npz or an image DIR")


def _shapes(inputs: Mapping[str, TensorSpec]) -> dict[str, tuple[int, ...]]:
    return {name: spec.shape for name, spec in inputs.items()}


def _random(inputs: Mapping[str, TensorSpec], frames: int, seed: int) -> DatasetArrays:
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
    return DatasetArrays(arrays, None)


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
                tensors = frame(dataset, sent, specs)
                sender.send(sent, encode_data(sent, time.time(), tensors, specs))
                sent += 1
            elif sent == frames and sender.idle:
                ended = _end_stream(sender, frames, channel, stop)
            else:
                wait_readable([channel], _wait_s(sender, started_s, sent, rate_hz))
            sender.service()
    finally:
        channel.close()
    stats = {"role": "source", "frames": sent, "ended": ended, "wall_s": time.time() - started_s,
             "labels": None if dataset.labels is None else [frame_label(dataset, i)
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
