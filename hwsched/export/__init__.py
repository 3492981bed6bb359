"""Export: verified per-platform TFLite stages, their int8 hand-off, and a deployment plan.

``export(...)`` (:mod:`hwsched.export.api`) is the entry point; ``verify_plan_dir`` re-runs the
proof of an exported directory; ``split_accuracy`` measures the top-1 accuracy of a split for
each precision combination. TensorFlow is imported only when a Keras model is split or
converted: this package imports without it, and a ``.tflite`` model splits with LiteRT alone.

The invariant every test checks: the chained stages compute what the whole model computes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export", "split_accuracy", "verify_plan_dir"]


def __getattr__(name: str) -> Any:
    # lazy: importing the package must not pull in numpy-heavy or TF-heavy modules
    if name == "export":
        from hwsched.export.api import export

        return export
    if name == "verify_plan_dir":
        from hwsched.export.verify import verify_plan_dir

        return verify_plan_dir
    if name == "split_accuracy":
        from hwsched.export.accuracy import split_accuracy

        return split_accuracy
    raise AttributeError(f"module 'hwsched.export' has no attribute {name!r}")
