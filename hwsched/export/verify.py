"""The proof that chained stages compute what the whole model computes.

On N samples, every model output of the chain is compared with the reference (the Keras
model, or the unsplit ``.tflite``), both as float32:

- ``max_abs_diff``: the largest absolute difference over every output element and sample;
- ``max_rel_diff``: that difference relative to the largest reference magnitude of its output;
- ``top1_agreement``: the fraction of samples whose arg-max over the last axis agrees (for every
  output with more than one element on that axis).

A float-exact chain (all stages fp32, or a split of a ``.tflite`` that keeps its ops) must
agree within :data:`FP32_RELATIVE_TOLERANCE`; fp16 and int8 chains are reported, not judged.

A stateful (streaming) model's verification samples are a sequence of frames: the chain and the
reference each keep their interpreters for the whole sequence, so state carries from frame to
frame on both sides, and :func:`stateful_sequences` proves the chain equal to the whole model at
every frame, on LiteRT and on TensorFlow Lite Micro.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import Verification
from hwsched.errors import VerificationError
from hwsched.export.chain import Chain
from hwsched.export.data import Sample
from hwsched.progress import Progress, silent

#: fp32 chains must match the reference to this fraction of the output's magnitude.
FP32_RELATIVE_TOLERANCE = 1e-4
#: File in the plan directory with the verification inputs and reference outputs.
SAMPLES_FILE = "verification.npz"

Reference = Callable[[Sample], Mapping[str, np.ndarray]]


def compare(
    chain: Chain,
    reference: Reference,
    samples: Sequence[Sample],
    reference_label: str,
    exact: bool,
) -> tuple[Verification, dict[str, np.ndarray]]:
    """Run both sides on ``samples``; returns the verdict and the stacked reference outputs."""
    if not samples:
        raise VerificationError("verification needs at least one sample (--samples)")
    got = [chain(sample) for sample in samples]
    want = [dict(reference(sample)) for sample in samples]
    return judge(got, want, reference_label, exact), _stack(want)


def judge(
    got: Sequence[Mapping[str, np.ndarray]],
    want: Sequence[Mapping[str, np.ndarray]],
    reference_label: str,
    exact: bool,
) -> Verification:
    """The verdict on chain outputs ``got`` against reference outputs ``want``, per sample.

    Samples, tensor names and shapes must line up one to one: numpy would otherwise broadcast a
    misshapen output into a comparison that passes. A value that is not finite where the
    reference's is (NaN, ±inf) fails any chain, exact or not: ``max(0.0, nan)`` is 0.0, so NaN
    would otherwise read as a perfect match.
    """
    _check_alignment(got, want)
    max_abs, max_rel = 0.0, 0.0
    agree, votes = 0, 0
    finite = True
    for name in want[0]:
        ours = np.stack([np.asarray(g[name], dtype=np.float64) for g in got])
        theirs = np.stack([np.asarray(w[name], dtype=np.float64) for w in want])
        diff, scale, same_non_finite = _differences(ours, theirs)
        finite = finite and same_non_finite
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else diff)
        if theirs.ndim >= 2 and theirs.shape[-1] > 1:
            flat_ours = ours.reshape(len(got), -1, ours.shape[-1])
            flat_theirs = theirs.reshape(len(want), -1, theirs.shape[-1])
            same = np.argmax(flat_ours, -1) == np.argmax(flat_theirs, -1)
            agree, votes = agree + int(same.sum()), votes + same.size
    if not finite:
        max_abs = max_rel = float("inf")
    passed = finite and ((max_rel <= FP32_RELATIVE_TOLERANCE) if exact else True)
    return Verification(
        max_abs_diff=max_abs,
        top1_agreement=agree / votes if votes else 1.0,
        samples=len(got),
        reference=reference_label,
        max_rel_diff=max_rel,
        passed=passed,
    )


def _check_alignment(
    got: Sequence[Mapping[str, np.ndarray]], want: Sequence[Mapping[str, np.ndarray]]
) -> None:
    if not want or len(got) != len(want):
        raise VerificationError(
            f"{len(got)} chain outputs for {len(want)} reference samples; they must pair up"
        )
    for index, (ours, theirs) in enumerate(zip(got, want, strict=True)):
        for name, reference in theirs.items():
            if name not in ours:
                raise VerificationError(
                    f"sample {index}: the chain produced no output {name!r} "
                    f"(it produced {sorted(ours)})"
                )
            shape, expected = np.shape(ours[name]), np.shape(reference)
            if shape != expected:
                raise VerificationError(
                    f"sample {index}: output {name!r} has shape {shape}, the reference {expected}"
                )


def _differences(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, bool]:
    """``(max |ours - theirs|, max |theirs|, non-finite values agree)`` over finite elements."""
    finite = np.isfinite(ours) & np.isfinite(theirs)
    same_non_finite = bool(np.array_equal(ours[~finite], theirs[~finite], equal_nan=True))
    diff = float(np.max(np.abs(ours[finite] - theirs[finite]))) if finite.any() else 0.0
    scale = float(np.max(np.abs(theirs[finite]))) if finite.any() else 0.0
    return diff, scale, same_non_finite


def require_passed(verification: Verification) -> None:
    if not verification.passed and not np.isfinite(verification.max_abs_diff):
        raise VerificationError(
            f"chained stages produce non-finite values (NaN or inf) where "
            f"{verification.reference} does not, over {verification.samples} samples"
        )
    if not verification.passed:
        raise VerificationError(
            f"chained fp32 stages differ from {verification.reference}: max relative difference "
            f"{verification.max_rel_diff:.3g} > {FP32_RELATIVE_TOLERANCE:g} (max abs "
            f"{verification.max_abs_diff:.3g} over {verification.samples} samples)"
        )


def save_samples(
    path: Path, samples: Sequence[Sample], reference: Mapping[str, np.ndarray]
) -> None:
    """Store the verification inputs and reference outputs beside the plan."""
    arrays = {f"input/{name}": np.concatenate([s[name] for s in samples]) for name in samples[0]}
    arrays.update({f"reference/{name}": value for name, value in reference.items()})
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_samples(path: Path) -> tuple[list[Sample], list[dict[str, np.ndarray]]]:
    """The stored verification inputs (batch-1 samples) and reference outputs, per sample."""
    try:
        with np.load(path) as archive:
            inputs = {k.partition("/")[2]: archive[k] for k in archive.files
                      if k.startswith("input/")}
            refs = {k.partition("/")[2]: archive[k] for k in archive.files
                    if k.startswith("reference/")}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise VerificationError(f"{path}: cannot read the stored samples ({error})") from None
    if not inputs:
        raise VerificationError(f"{path}: holds no verification inputs; re-export the plan")
    count = len(next(iter(inputs.values())))
    samples = [{name: v[i:i + 1] for name, v in inputs.items()} for i in range(count)]
    references = [{name: v[i] for name, v in refs.items()} for i in range(count)]
    return samples, references


def _stack(outputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.stack([o[name] for o in outputs]) for name in outputs[0]}


def verify_plan_dir(
    plan_dir: Path,
    progress: Progress | None = None,
    weights: str | None = None,
) -> Verification:
    """Re-run the proof of an exported directory: its stage files (sha256-checked) chained on
    the stored samples, against the reference re-loaded from the plan's ``source`` (or, when
    that model cannot be loaded here, the reference outputs stored at export time)."""
    from hwsched.deployment import check_stage_file, load_plan
    from hwsched.errors import ModelLoadError, UnknownNameError
    from hwsched.export.chain import load_chain

    report = progress or silent
    plan_dir = Path(plan_dir)
    plan = load_plan(plan_dir)
    files = [check_stage_file(plan_dir, stage).read_bytes() for stage in plan.stages]
    samples_path = plan_dir / SAMPLES_FILE
    if not samples_path.is_file():
        raise VerificationError(f"{samples_path}: missing; re-export to store verification data")
    samples, stored = load_samples(samples_path)
    if plan.is_graph:
        from hwsched.export.graph import load_graph_chain

        chain = load_graph_chain(plan.stages, plan.links, files, plan.edges)
    else:
        chain = load_chain(plan.stages, plan.links, files)
    from hwsched.export.compress import judge_compressed, links_level

    level = links_level(plan.links)  # compressed links: judged at the level's tolerance
    exact = all(s.precision == "fp32" for s in plan.stages) and level == "fp32"
    loaded = None
    try:
        from hwsched.export.reference import reference_for
        from hwsched.load import load_model

        report(f"loading the reference {plan.source}")
        loaded = load_model(plan.source, weights=weights, progress=report)
        reference, label, exact_split = reference_for(loaded)
        exact = (exact or exact_split) and level == "fp32"
    except (ModelLoadError, UnknownNameError) as error:
        report(f"reference {plan.source} unavailable ({error}); using stored outputs")
        stored_iter = iter(stored)
        reference, label = (lambda _sample: next(stored_iter)), f"stored:{plan.source}"
        exact = (exact or plan.source.lower().endswith(".tflite")) and level == "fp32"
    report(f"running the chain on {len(samples)} samples")
    verification, _ = compare(chain, reference, samples, label, exact)
    if loaded is not None and loaded.graph.stateful and not plan.is_graph:
        from dataclasses import replace

        report(f"stateful: chain vs whole model over {len(samples)} frames, state carried")
        verification = replace(verification, sequence=stateful_sequences(
            loaded, plan.stages, plan.links, files, samples))
    return judge_compressed(verification, level)


# -- stateful plans: a sequence of frames, state carried -------------------------------------
@dataclass(frozen=True)
class SequenceCheck:
    """Chained stages against the whole model over a sequence of frames on one engine.

    Both sides keep one interpreter per model for the whole sequence, so a stage's resource
    variables carry from frame to frame exactly as the whole model's do; a stage whose state
    were lost or kept apart from its reads would depart from the whole model at some frame,
    and ``first_divergent_frame`` says which.
    """

    engine: str
    frames: int
    max_abs_diff: float
    #: The first frame (0-based) whose outputs differ beyond the tolerance; None if none does.
    first_divergent_frame: int | None

    @property
    def passed(self) -> bool:
        return self.first_divergent_frame is None

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "max_abs_diff": self.max_abs_diff,
                "first_divergent_frame": self.first_divergent_frame}


def compare_sequence(
    chain: Callable[[Sample], Mapping[str, np.ndarray]],
    whole: Reference,
    frames: Sequence[Sample],
    engine: str,
    relative_tolerance: float = FP32_RELATIVE_TOLERANCE,
) -> SequenceCheck:
    """Feed ``frames`` in order to both sides and compare every frame's outputs.

    A frame passes when every output differs from the whole model's by at most
    ``relative_tolerance`` of that output's largest magnitude (a flatbuffer split keeps every op,
    so on one engine the two agree to float rounding, usually bit for bit).

    >>> state = {"chain": 0.0, "whole": 0.0}
    >>> def accumulate(side, lose_at=None):
    ...     def run(frame):
    ...         state[side] = frame["x"] + (0.0 if len(seen[side]) == lose_at else state[side])
    ...         seen[side].append(1)
    ...         return {"y": np.array([state[side]])}
    ...     return run
    >>> seen = {"chain": [], "whole": []}
    >>> frames = [{"x": 1.0}] * 5
    >>> compare_sequence(accumulate("chain", lose_at=3), accumulate("whole"), frames, "toy")
    SequenceCheck(engine='toy', frames=5, max_abs_diff=3.0, first_divergent_frame=3)
    """
    if not frames:
        raise VerificationError("a stateful sequence check needs at least one frame")
    worst, first_bad = 0.0, None
    for index, frame in enumerate(frames):
        got, want = dict(chain(frame)), dict(whole(frame))
        _check_alignment([got], [want])
        for name, reference in want.items():
            diff, scale, same_non_finite = _differences(
                np.asarray(got[name], np.float64), np.asarray(reference, np.float64))
            worst = max(worst, diff if same_non_finite else float("inf"))
            bad = not same_non_finite or diff > relative_tolerance * max(scale, 1e-30)
            if bad and first_bad is None:
                first_bad = index
    return SequenceCheck(engine, len(frames), worst, first_bad)


def require_sequence(check: SequenceCheck, reference_label: str) -> None:
    if not check.passed:
        raise VerificationError(
            f"chained stateful stages on {check.engine} depart from {reference_label} at frame "
            f"{check.first_divergent_frame} of {check.frames} (max abs diff "
            f"{check.max_abs_diff:.3g}): a stage's state does not follow the whole model's"
        )


def stateful_sequences(
    loaded: Any,
    stages: Sequence[Any],
    links: Sequence[Any],
    stage_bytes: Sequence[bytes],
    frames: Sequence[Sample],
    micro: bool = True,
) -> dict[str, Any]:
    """The proof for a stateful plan: on LiteRT, and on TFLite Micro where it can run the whole
    model and every stage, the chain equals the whole model at every frame of ``frames``
    (fresh interpreters on both sides, kept for the whole sequence). Raises
    :class:`~hwsched.errors.VerificationError` naming the first frame that differs; returns the
    ``verification.sequence`` record (TFLM: ``skipped`` with the reason when it cannot run)."""
    from hwsched.errors import HwschedError
    from hwsched.export.chain import load_chain
    from hwsched.export.reference import tflite_reference

    label = f"tflite:{loaded.source}"
    litert = compare_sequence(load_chain(stages, links, stage_bytes), tflite_reference(loaded),
                              frames, "litert")
    require_sequence(litert, label)
    result: dict[str, Any] = {"litert": litert.to_dict()}
    if micro:
        from hwsched.export.tflm import micro_chain, micro_reference

        try:
            chain, whole = micro_chain(stages, links, stage_bytes), micro_reference(loaded)
        except HwschedError as error:
            result["tflm"] = {"skipped": str(error)}
            return result
        check = compare_sequence(chain, whole, frames, "tflm")
        require_sequence(check, f"{label} on tflm")
        result["tflm"] = check.to_dict()
    return result
