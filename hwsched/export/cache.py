"""A cache of converted stages, keyed by model hash + stage slice + precision + calibration.

Conversion takes seconds per stage (more in int8); re-exporting the same split, or measuring the
accuracy of many precision combinations, reuses the flatbuffers. The cache lives in
``$HWSCHED_CACHE`` (default ``~/.cache/hwsched``) under ``stages/``; entries are written
atomically, so a crash never leaves a truncated file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwsched.errors import HwschedError
from hwsched.fileio import atomic_write_bytes

CACHE_ENV = "HWSCHED_CACHE"
#: Bump when the way stages are built or converted changes: old entries stop matching.
STAGE_FORMAT = 1


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "hwsched"


def stage_key(parts: Mapping[str, Any]) -> str:
    """A stable key for everything that determines a converted stage's bytes."""
    payload = json.dumps({"format": STAGE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def keras_fingerprint(model: Any) -> str:
    """sha256 of a Keras model's architecture and weights."""
    digest = hashlib.sha256(model.to_json().encode())
    for weight in model.weights:
        digest.update(weight.path.encode() if hasattr(weight, "path") else b"")
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()


def arrays_fingerprint(samples: Any) -> str:
    """sha256 of a list of {name: array} samples (the calibration inputs)."""
    digest = hashlib.sha256()
    for sample in samples:
        for name in sorted(sample):
            digest.update(name.encode())
            digest.update(sample[name].tobytes())
    return digest.hexdigest()


class StageCache:
    """Get/put converted stage bytes; ``enabled=False`` makes every lookup a miss."""

    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = (root or cache_root()) / "stages"
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        path = self.root / f"{key}.tflite"
        if self.enabled and path.is_file():
            self.hits += 1
            return path.read_bytes()
        self.misses += 1
        return None

    def put(self, key: str, data: bytes) -> None:
        if self.enabled:
            try:
                atomic_write_bytes(self.root / f"{key}.tflite", data)
            except HwschedError:  # a read-only cache must not fail an export
                self.enabled = False
