"""The one exception hierarchy of hwsched.

Every error a user can cause derives from :class:`HwschedError`; its message is one line that
names the file, field, layer or tensor at fault and, where possible, the fix. The CLI prints it
and exits non-zero; any other exception is a bug.
"""

from __future__ import annotations


class HwschedError(Exception):
    """Base of every error hwsched raises on purpose."""

    exit_code = 2


class UnknownNameError(HwschedError):
    """A name (zoo model, platform, link, cost model, solver…) that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]) -> None:
        self.kind, self.name, self.valid = kind, name, tuple(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


class ModelLoadError(HwschedError):
    """A model file is missing, corrupt or of an unsupported kind."""


class UnsupportedLayerError(HwschedError):
    """A layer or op that the IR cannot represent (dynamic shapes, control flow, …)."""


class GraphError(HwschedError):
    """The IR is inconsistent (duplicate names, dangling tensors, cycles)."""


class CutError(HwschedError):
    """A cut position or cut layer that does not exist or is not a valid cut."""


class TilingError(HwschedError):
    """A run of layers cannot be tiled (a layer needs the whole map, a tensor escapes the run)
    or a tile/strip request does not fit the run's output."""


class DescriptorError(HwschedError):
    """A hardware descriptor file is missing a field or has an invalid value."""


class ScheduleError(HwschedError):
    """No schedule can be found (e.g. more stages than layers, nothing feasible)."""


class ProfileError(HwschedError):
    """A measured profile is malformed or does not match the model."""


class PlacementError(HwschedError):
    """A placement or mapping file is inconsistent: a layer in no stage or in two, an unknown
    layer or board, a cycle between stages, a tensor no earlier stage sends."""


class ExportError(HwschedError):
    """Writing stage sub-models or a deployment plan failed."""


class VerificationError(ExportError):
    """Chained stages do not compute what the whole model computes."""


class DelegateError(HwschedError):
    """A LiteRT delegate cannot be loaded, or refuses the stage's graph."""


class EngineError(ExportError):
    """A stage cannot run on its platform's engine (an op TFLite Micro lacks, an arena that
    does not fit, an engine hwsched does not run)."""


class DocumentError(HwschedError):
    """A JSON document hwsched wrote (analysis, emulation…) is of another kind or malformed."""


class DatasetError(HwschedError):
    """A dataset (image folder, ``.npy``, ``.npz``) is missing, unreadable or does not fit the
    model's inputs."""


class PlanError(HwschedError):
    """A deployment plan (plan.json) is missing, malformed or does not match its files."""


class TransportError(HwschedError):
    """A frame is malformed, oversized, or a transport cannot be opened."""


class BandwidthScheduleError(HwschedError):
    """A ``--bandwidth-schedule`` that cannot be replayed: bad syntax, times that do not
    increase, a rate that is not positive, a hop the plan lacks, no link emulation to shape."""


class CpuCapError(HwschedError):
    """A CPU cap (cgroup CPU controller) cannot be set up here: not root, no controller."""


class PowerError(HwschedError):
    """A power meter or power log cannot be read, or energy cannot be attributed."""


class ReportError(HwschedError):
    """A report cannot be written."""


class OutputError(HwschedError):
    """A result file or directory cannot be written (permissions, disk full, a path that
    would land outside the output directory)."""


class DependencyError(HwschedError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class RunError(HwschedError):
    """A pipeline role was started wrongly or its run did not complete."""
