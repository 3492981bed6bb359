"""A stage on TensorFlow Lite Micro, through the ``tflite-micro`` package's Python interpreter
(it wraps the real TFLM runtime). TF-free: export verifies MCU stages with it and the runner can
run them on it.

TFLM reports what it cannot do only on the process's C-level stdout/stderr (``Didn't find op for
builtin opcode 'X'``, ``Failed to allocate tail memory``) and raises a bare "failed to allocate
tensors"; its recording allocator prints the arena it really used the same way. Both are read
by redirecting file descriptors 1 and 2 around the call (:func:`captured_output`): Python's
``sys.stdout`` never sees them.

TFLM reaches tensors by position, not name: :class:`MicroModel` takes and returns them in
subgraph order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from hwsched.errors import DependencyError, EngineError, HwschedError

#: Arena offered to the recording allocator when measuring: generous, since it reports what it
#: used, not what it was given.
MEASURE_ARENA_BYTES = 16 * 1024 * 1024
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")
_KIND = re.compile(r"'([^']+)' used (\d+) bytes")
_MISSING_OP = re.compile(r"Didn't find op for (?:builtin opcode|custom opcode) '([^']+)'")


@dataclass(frozen=True)
class ArenaUse:
    """What TFLM's recording allocator measured: head (planned, non-persistent tensors and
    scratch buffers) + tail (persistent structures) = total, and the tail by kind."""

    total_bytes: int
    head_bytes: int
    tail_bytes: int
    by_kind: Mapping[str, int]


def parse_allocations(text: str) -> ArenaUse:
    """The recording allocator's printout as numbers.

    >>> parse_allocations("[R] Arena allocation total 5088 bytes\\n[R] Arena allocation head "
    ...     "3072 bytes\\n[R] Arena allocation tail 2016 bytes\\n[R] 'NodeAndRegistration "
    ...     "struct' used 256 bytes with alignment overhead").total_bytes
    5088
    """
    found = [pattern.search(text) for pattern in (_TOTAL, _HEAD, _TAIL)]
    if not all(found):
        raise HwschedError("TFLite Micro printed no arena allocation report")
    total, head, tail = (int(match.group(1)) for match in found)  # type: ignore[union-attr]
    kinds = {name: int(size) for name, size in _KIND.findall(text)}
    return ArenaUse(total, head, tail, MappingProxyType(kinds))


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Collect what C code writes to fds 1 and 2 inside the block (into the yielded list)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    collected: list[str] = []
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield collected
        finally:
            libc.fflush(None)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            collected.append(sink.read().decode("utf-8", "replace"))


def _runtime() -> Any:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise DependencyError("TFLite Micro stages need the tflite-micro package, which is "
                              "not installed: pip install 'hwsched[full]' (or tflite-micro)"
                              ) from None
    return runtime


class MicroModel:
    """One stage on TFLM: ``run(inputs)`` in subgraph order; ``arena()`` the measured use.

    ``where`` names the stage in errors ("stage 1 (esp32s3)").
    """

    def __init__(self, data: bytes, where: str, arena_bytes: int = MEASURE_ARENA_BYTES) -> None:
        self.where = where
        runtime = _runtime()
        with captured_output() as output:
            try:
                self.interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena_bytes)
                failure = None
            except RuntimeError as error:
                failure = error
        if failure is not None:
            raise _engine_error(where, "".join(output), failure)
        self.inputs = self._details("input")
        self.outputs = self._details("output")

    def _details(self, kind: str) -> list[dict[str, Any]]:
        getter = getattr(self.interpreter, f"get_{kind}_details")
        details = []
        with captured_output():  # TFLM prints the refused index on the C stderr
            for index in range(64):  # no count is exposed: read until an index is refused
                try:
                    details.append(getter(index))
                except (IndexError, RuntimeError, ValueError):
                    break
        return details

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            raise HwschedError(f"{self.where}: TFLite Micro model takes {len(self.inputs)} "
                               f"inputs, got {len(inputs)}")
        for index, (value, detail) in enumerate(zip(inputs, self.inputs, strict=True)):
            self.interpreter.set_input(np.asarray(value, detail["dtype"]).reshape(
                tuple(detail["shape"])), index)
        with captured_output() as output:
            try:
                self.interpreter.invoke()
                failure = None
            except RuntimeError as error:
                failure = error
        if failure is not None:
            raise _engine_error(self.where, "".join(output), failure)
        return [np.array(self.interpreter.get_output(i)) for i in range(len(self.outputs))]

    def arena(self) -> ArenaUse:
        """The arena TFLM used (call after one ``run``: some kernels allocate on first use)."""
        with captured_output() as output:
            self.interpreter.print_allocations()
        return parse_allocations("".join(output))


def subgraph_order(data: bytes) -> tuple[list[str], list[str]]:
    """Signature names of the subgraph's inputs and outputs, in subgraph (position) order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    subgraph = model.subgraphs[0]
    signature = model.signatureDefs[0]
    by_index = {int(t.tensorIndex): _text(t.name) for t in (*signature.inputs,
                                                             *signature.outputs)}
    return ([by_index[int(i)] for i in subgraph.inputs],
            [by_index[int(i)] for i in subgraph.outputs])


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class MicroSignatureRunner:
    """TFLM behind the signature-runner interface the runner's stages use: tensors by
    signature name, mapped onto TFLM's positions through the flatbuffer's signature."""

    def __init__(self, data: bytes, where: str, arena_bytes: int | None = None) -> None:
        self.model = MicroModel(data, where, arena_bytes or MEASURE_ARENA_BYTES)
        self.input_names, self.output_names = subgraph_order(data)

    def get_input_details(self) -> dict[str, dict[str, Any]]:
        return {name: {} for name in self.input_names}

    def get_output_details(self) -> dict[str, dict[str, Any]]:
        return {name: {} for name in self.output_names}

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        results = self.model.run([feeds[name] for name in self.input_names])
        return dict(zip(self.output_names, results, strict=True))


def micro_label() -> str:
    """Which TFLM this process runs stages on, for the runner's log."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"TFLite Micro (tflite-micro {version('tflite-micro')})"
    except PackageNotFoundError:
        return "TFLite Micro"


def micro_available() -> bool:
    try:
        _runtime()
    except HwschedError:
        return False
    return True


def _engine_error(where: str, output: str, error: BaseException) -> EngineError:
    missing = _MISSING_OP.search(output)
    if missing:
        return EngineError(f"{where}: TensorFlow Lite Micro has no kernel for op "
                           f"{missing.group(1)}; move that layer to a board running LiteRT")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    detail = lines[0] if lines else str(error)
    return EngineError(f"{where}: TensorFlow Lite Micro cannot run the stage: {detail}")
