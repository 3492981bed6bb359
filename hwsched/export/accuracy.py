"""Top-1 accuracy of a split pipeline on labeled data, next to the unsplit float model.

``split_accuracy`` converts every stage once per precision (cached), then chains each
precision combination (e.g. fp32→int8) over the held-out images, the same way the deployed
pipeline will run (hand-offs included). The reference is the unsplit source model.

>>> from hwsched.load import load_model                            # doctest: +SKIP
>>> result = split_accuracy(load_model("digits_cnn"), [10],
...                         [("fp32", "fp32"), ("int8", "int8")])  # doctest: +SKIP
>>> [(c["precisions"], round(c["top1"], 3)) for c in result["combinations"]]  # doctest: +SKIP
[(['fp32', 'fp32'], 0.989), (['int8', 'int8'], 0.987)]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hwsched.datasets import LabeledImages
from hwsched.deployment import PRECISIONS, LinkPlan, StagePlan
from hwsched.errors import ExportError
from hwsched.export.cache import StageCache
from hwsched.export.chain import load_chain
from hwsched.export.data import default_source, labeled_dataset, parse_source
from hwsched.export.stages import signature_names, slice_stages
from hwsched.load import LoadedModel
from hwsched.progress import Progress, silent

#: Platform name written into the throw-away stage plans of an accuracy run.
NO_PLATFORM = "-"


def split_accuracy(
    loaded: LoadedModel,
    cut_positions: Sequence[int],
    precisions: Sequence[Sequence[str]] | None = None,
    dataset: str | None = None,
    calibration: str | None = None,
    calibration_samples: int = 100,
    cache: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Accuracy of the split for each precision combination, and of the unsplit model.

    ``precisions`` lists combinations (one precision per stage); by default every combination
    of fp32, fp16 and int8 (a ``.tflite`` model has only its own). ``dataset`` is ``digits``
    (default when the model takes digits) or a labeled folder/``.npz``.
    """
    from hwsched.export.api import build_stages, link_record, stage_record

    report = progress or silent
    graph = loaded.graph
    slices = slice_stages(graph, sorted(cut_positions))
    combos = _combinations(loaded, len(slices), precisions)
    data = labeled_dataset(graph, parse_source(dataset) if dataset else default_source(graph))
    source = parse_source(calibration) if calibration else default_source(graph)
    names = signature_names(list(graph.tensors))
    store = StageCache(enabled=cache)
    by_precision: dict[str, list[bytes]] = {}
    for precision in sorted({p for combo in combos for p in combo}):
        report(f"building {len(slices)} stages in {precision}")
        by_precision[precision] = build_stages(
            loaded, slices, [precision] * len(slices), names, source, calibration_samples,
            store, report,
        )
    report(f"running the unsplit model on {len(data)} images")
    reference_predictions = _reference_predictions(loaded, data)
    rows = []
    for combo in combos:
        report(f"running the {'→'.join(combo)} pipeline on {len(data)} images")
        files = [by_precision[p][i] for i, p in enumerate(combo)]
        predictions = _chain_predictions(loaded, slices, combo, files, names, data,
                                         stage_record, link_record)
        rows.append({
            "precisions": list(combo),
            "top1": _top1(predictions, data.labels),
            "agreement": float(np.mean(predictions == reference_predictions)),
        })
    return {
        "model": graph.name,
        "cut_positions": [s.start for s in slices[1:]],
        "dataset": _dataset_label(dataset, graph),
        "samples": len(data),
        "reference": {"precision": "float", "top1": _top1(reference_predictions, data.labels)},
        "combinations": rows,
    }


def chain_accuracy(
    loaded: LoadedModel,
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    files: Sequence[bytes],
    dataset: str,
) -> dict[str, Any]:
    """Accuracy of one exported chain and of the unsplit model (for ``export --accuracy``)."""
    data = labeled_dataset(loaded.graph, parse_source(dataset))
    chain = load_chain(stages, links, files)
    output = loaded.graph.outputs[0]
    predictions = np.array([
        int(np.argmax(chain(sample)[output])) for sample in _samples(loaded, data)
    ])
    reference = _reference_predictions(loaded, data)
    return {
        "dataset": _dataset_label(dataset, loaded.graph),
        "samples": len(data),
        "split": _top1(predictions, data.labels),
        "reference": _top1(reference, data.labels),
        "agreement": float(np.mean(predictions == reference)),
        "precisions": [s.precision for s in stages],
    }


def _combinations(
    loaded: LoadedModel, stage_count: int, given: Sequence[Sequence[str]] | None
) -> list[tuple[str, ...]]:
    if loaded.kind == "tflite":
        from hwsched.export.tflite_split import model_precision

        own = (model_precision(loaded),) * stage_count
        if given and any(tuple(c) != own for c in given):
            raise ExportError(f"{loaded.source}: a .tflite model splits only as {own[0]}")
        return [own]
    if not given:
        return list(itertools.product(PRECISIONS, repeat=stage_count))
    combos = [tuple(c) for c in given]
    for combo in combos:
        if len(combo) != stage_count or any(p not in PRECISIONS for p in combo):
            raise ExportError(
                f"precision combination {list(combo)} must name one of {', '.join(PRECISIONS)} "
                f"for each of the {stage_count} stages"
            )
    return combos


def _chain_predictions(
    loaded: LoadedModel,
    slices: Sequence[Any],
    combo: Sequence[str],
    files: Sequence[bytes],
    names: Mapping[str, str],
    data: LabeledImages,
    stage_record: Callable[..., StagePlan],
    link_record: Callable[..., LinkPlan],
) -> np.ndarray:
    from hwsched.export.api import StageFiles
    from hwsched.export.litert import read_signature

    stages = tuple(
        stage_record(loaded.graph, StageFiles(s, NO_PLATFORM, p, f, read_signature(f)), names)
        for s, p, f in zip(slices, combo, files, strict=True)
    )
    links = tuple(link_record(loaded.graph, stages, i, "") for i in range(1, len(stages)))
    chain = load_chain(stages, links, files)
    output = loaded.graph.outputs[0]
    return np.array([int(np.argmax(chain(s)[output])) for s in _samples(loaded, data)])


def _reference_predictions(loaded: LoadedModel, data: LabeledImages) -> np.ndarray:
    from hwsched.export.reference import reference_for

    reference, _, _ = reference_for(loaded)
    output = loaded.graph.outputs[0]
    return np.array([int(np.argmax(reference(s)[output])) for s in _samples(loaded, data)])


def _samples(loaded: LoadedModel, data: LabeledImages) -> list[dict[str, np.ndarray]]:
    name = loaded.graph.input_layers[0].outputs[0].name
    return [{name: data.images[i:i + 1]} for i in range(len(data))]


def _top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def _dataset_label(dataset: str | None, graph: Any) -> str:
    label = dataset or default_source(graph).label
    return "digits:test" if label == "digits" else label

