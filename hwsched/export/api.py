"""``export(...)``: split a model into verified per-platform TFLite stages and a plan.

The steps, each a function below: resolve the cuts and slice the stages; choose each stage's
precision (given, or its platform's default); produce the stage flatbuffers (Keras replay +
conversion, or a flatbuffer split of a ``.tflite``); read each stage's signature into the plan's
inputs/outputs with their sources and the links' hand-off actions; run the chain against the
reference on N samples; optionally measure accuracy and write TFLite Micro sources; then write
everything into a temporary directory beside ``out_dir`` and rename it into place, so a failure
never leaves a half-written directory and never clobbers an existing one.

>>> plan = export("digits_cnn", cut_layers=["res_add"], platforms=["rpi4", "stm32h7"],
...               out_dir=Path("out"))                              # doctest: +SKIP
>>> [s.precision for s in plan.stages], plan.links[0].requantize[0].action  # doctest: +SKIP
(['fp32', 'int8'], 'quantize')
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwsched.deployment import (
    PLAN_FILE,
    PRECISIONS,
    LinkPlan,
    Plan,
    StagePlan,
    TensorSource,
    TensorSpec,
    Verification,
    file_sha256,
    load_plan,
    save_plan,
)
from hwsched.errors import ExportError, PlanError
from hwsched.export.cache import StageCache
from hwsched.export.compress import AUTO, CompressRequest, check_request
from hwsched.export.data import SampleSource, default_source, model_input_samples, parse_source
from hwsched.export.litert import SignatureIO, read_signature
from hwsched.export.stages import StageSlice, resolve_cut_positions, signature_names, slice_stages
from hwsched.export.verify import SAMPLES_FILE, compare, require_passed, save_samples
from hwsched.fileio import atomic_write_bytes
from hwsched.handoff import handoff
from hwsched.hardware import (
    Platform,
    RuntimeSpec,
    check_name,
    load_host,
    load_platform,
    runnable_platform,
)
from hwsched.ir import LayerGraph
from hwsched.load import LoadedModel, load_model
from hwsched.progress import Progress, silent
from hwsched.schedule.context import board_labels

DEFAULT_VERIFY_SAMPLES = 32
DEFAULT_CALIBRATION_SAMPLES = 100


@dataclass(frozen=True)
class StageFiles:
    """What the build step produced for one stage."""

    slice: StageSlice
    platform: str
    precision: str
    data: bytes
    io: SignatureIO
    #: The engine the stage's platform runs it on.
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    #: The descriptor exported with, when the platform's own engine is not run by hwsched.
    runtime_platform: str | None = None


def export(
    model: str | LoadedModel,
    platforms: Sequence[str | Platform],
    out_dir: Path,
    cut_layers: Sequence[str] = (),
    cut_positions: Sequence[int] = (),
    precisions: Sequence[str] | str | None = None,
    calibration: str | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    samples: int = DEFAULT_VERIFY_SAMPLES,
    accuracy: bool = False,
    dataset: str | None = None,
    micro: bool = False,
    weights: str | None = None,
    link: str = "",
    cache: bool = True,
    prediction: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    compress: CompressRequest | None = None,
) -> Plan:
    """Export a split of ``model`` into ``out_dir`` and return the verified plan; with
    ``compress``, its links compressed as :mod:`hwsched.export.compress` measures and allows."""
    report = progress or silent
    compress = link_level_request(compress, link)
    if compress is not None:
        check_request(compress)
    targets = export_targets(platforms, report)  # before the model loads: cheap, one line
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights, report)
    graph = loaded.graph
    # one platform and no cut: the whole model as one verified stage (a baseline)
    whole = len(platforms) == 1 and not (cut_layers or cut_positions)
    positions = () if whole else resolve_cut_positions(graph, cut_layers, cut_positions)
    slices = slice_stages(graph, positions)
    platform_names = _check_platforms(platforms, len(slices))
    # the descriptors exported with, not names: a descriptor file's name is not in the
    # registry, and a Jetson GPU stage takes its CPU descriptor's precision
    chosen = stage_precisions(loaded, targets, precisions)
    source = parse_source(calibration) if calibration else default_source(graph)
    names = signature_names(list(graph.tensors))
    stage_bytes = build_stages(loaded, slices, chosen, names, source, calibration_samples,
                         StageCache(enabled=cache), report)
    files = [
        StageFiles(s, platform, precision, data, read_signature(data, f"stage {s.index}"),
                   target.runtime, None if target.name == platform else target.name)
        for s, platform, precision, data, target in zip(
            slices, platform_names, chosen, stage_bytes, targets, strict=True
        )
    ]
    stages = tuple(
        replace(stage_record(graph, f, names), board=board)
        for f, board in zip(files, board_labels(platform_names), strict=True)
    )
    links = tuple(link_record(graph, stages, i, link) for i in range(1, len(stages)))
    verify_inputs = model_input_samples(graph, source, samples, calibration=False)
    report(f"verifying the chain on {len(verify_inputs)} samples")
    verification, reference_outputs = _verify(loaded, stages, links, stage_bytes, verify_inputs)
    if compress is not None and compress.level != "fp32" and links:
        links, verification = _compress(loaded, stages, links, stage_bytes, compress, source,
                                        calibration_samples, verify_inputs, report)
    if any(s.stateful for s in stages):
        from hwsched.export.verify import stateful_sequences

        report(f"stateful: chain vs whole model over {len(verify_inputs)} frames, state carried")
        verification = replace(verification, sequence=stateful_sequences(
            loaded, stages, links, stage_bytes, verify_inputs))
    stages = _check_engines_run(stages, links, stage_bytes, verify_inputs, platforms, micro,
                                report)
    if accuracy:
        from hwsched.export.accuracy import chain_accuracy

        report("measuring accuracy")
        verification = replace(verification, accuracy=chain_accuracy(
            loaded, stages, links, stage_bytes, dataset or source.label
        ))
    stages, stage_bytes = _compile_for_accelerators(stages, stage_bytes, report)
    if any((s.edgetpu or {}).get("compiled") for s in stages):  # priced from the report
        from hwsched.export.edgetpu import price_compiled_stages

        repriced = price_compiled_stages(graph, stages, targets, prediction or {})
        stages, prediction = repriced[0], with_runner_share(graph, prediction or {},
                                                            repriced[1])
    plan = Plan(
        model=graph.name,
        stages=stages,
        links=links,
        verification=verification,
        source=loaded.source,
        cut_positions=positions,
        prediction=dict(prediction or {}),
    )
    report(f"writing {out_dir}")
    return _write(out_dir, plan, stage_bytes, micro, verify_inputs, reference_outputs)


# -- steps -----------------------------------------------------------------------------------
def _check_platforms(platforms: Sequence[str | Platform], stage_count: int) -> tuple[str, ...]:
    if len(platforms) != stage_count:
        raise ExportError(
            f"{stage_count} stages need {stage_count} platforms, got {len(platforms)} "
            f"({', '.join(getattr(p, 'name', str(p)) for p in platforms) or 'none'}); pass one "
            "platform per stage"
        )
    # names become stage file names: a Platform object built in code skips the descriptor
    # reader's check, so check again here, before anything is built or written
    return tuple(
        check_name(load_platform(p).name, f"platform of stage {i}") for i, p in enumerate(platforms)
    )


def export_targets(platforms: Sequence[str], report: Progress = silent) -> list[Platform]:
    """The descriptor each stage is exported with: its platform, or for a platform priced on
    an engine hwsched does not run (a Jetson GPU with TensorRT) the runnable descriptor it
    names, said in one line; a platform with neither is refused."""
    targets = []
    for index, name in enumerate(platforms):
        target = runnable_platform(name, f"stage {index}")
        load_host(target)  # an Edge TPU's host prices its compiled stage: check it now
        own = load_platform(name)
        if target.name != own.name:
            report(f"stage {index}: {own.name} prices {own.runtime.engine}, which hwsched does "
                   f"not run; exporting it for {target.name} ({target.runtime.engine})")
        targets.append(target)
    return targets


def stage_precisions(
    loaded: LoadedModel, platforms: Sequence[str | Platform], given: Sequence[str] | str | None
) -> tuple[str, ...]:
    """Each stage's precision: given (one for all, or one per stage) or the platform's own."""
    if loaded.kind == "tflite":
        from hwsched.export.tflite_split import model_precision

        own = model_precision(loaded)
        wanted = _expand(given, len(platforms))
        if wanted and any(p != own for p in wanted):
            raise ExportError(
                f"{loaded.source} is split as it is (its ops stay {own}); --precision "
                f"{','.join(wanted)} cannot change that: re-convert from the Keras model instead"
            )
        return tuple(_supported(index, name, own) for index, name in enumerate(platforms))
    wanted = _expand(given, len(platforms))
    return tuple(
        _supported(index, name, wanted[index] if wanted else load_platform(name).default_precision)
        for index, name in enumerate(platforms)
    )


def _supported(index: int, name: str | Platform, precision: str) -> str:
    """``precision`` if the board runs it: one rule for Keras and ``.tflite`` models alike."""
    platform = load_platform(name)
    if precision not in platform.compute_gops:
        raise ExportError(
            f"stage {index} on {platform.name}: precision {precision} is not supported there "
            f"(supported: {', '.join(platform.compute_gops)})"
        )
    return precision


def _expand(given: Sequence[str] | str | None, count: int) -> tuple[str, ...]:
    if given is None or given == "" or given == ():
        return ()
    items = [p.strip() for p in given.split(",")] if isinstance(given, str) else list(given)
    for precision in items:
        if precision not in PRECISIONS:
            raise ExportError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if len(items) == 1:
        return tuple(items * count)
    if len(items) != count:
        raise ExportError(
            f"--precision lists {len(items)} precisions for {count} stages; give one for all "
            "stages or one per stage"
        )
    return tuple(items)


def build_stages(
    loaded: LoadedModel,
    slices: Sequence[StageSlice],
    precisions: Sequence[str],
    names: Mapping[str, str],
    source: SampleSource,
    calibration_samples: int,
    cache: StageCache,
    report: Progress,
) -> list[bytes]:
    if loaded.kind == "tflite":
        from hwsched.export.tflite_split import split_tflite

        report("splitting the flatbuffer")
        return [split_tflite(loaded, s, names) for s in slices]
    from hwsched.export.build import keras_stage_bytes

    calibration: list = []
    if "int8" in precisions:
        calibration = model_input_samples(loaded.graph, source, calibration_samples, True)
    return keras_stage_bytes(loaded.keras, loaded.graph, slices, precisions, names,
                             calibration, cache, report)


def stage_record(graph: LayerGraph, files: StageFiles, names: Mapping[str, str]) -> StagePlan:
    stage = files.slice

    def spec(tensor_name: str, source: TensorSource | None, outputs: bool) -> TensorSpec:
        pool = {s.name: s for s in (files.io.outputs if outputs else files.io.inputs)}
        signature = names[tensor_name]
        if signature not in pool:
            raise ExportError(
                f"stage {stage.index}: tensor {tensor_name!r} (signature name {signature!r}) "
                f"is not among the converted model's {'outputs' if outputs else 'inputs'} "
                f"{sorted(pool)}"
            )
        return replace(pool[signature], name=tensor_name, source=source, tflite_name=signature)

    # stage 0 reads the model inputs; every later stage reads only from the stage before it
    upstream = None if stage.index == 0 else stage.index - 1
    inputs = tuple(spec(name, TensorSource(name, upstream), False) for name in stage.inputs)
    outputs = tuple(spec(name, None, True) for name in stage.outputs)
    runtime = files.runtime
    from hwsched.export.tflite_split import stage_variables

    # an Edge TPU stage needs its delegate only once compiled (export/edgetpu.py sets it)
    delegate = None if runtime.engine in ("edgetpu", "tflm") else runtime.delegate
    return StagePlan(
        index=stage.index,
        platform=files.platform,
        file=f"stage{stage.index}_{files.platform}.tflite",
        sha256="",  # set once the file is written
        precision=files.precision,
        inputs=inputs,
        outputs=outputs,
        first_layer=stage.first_layer(graph),
        last_layer=stage.last_layer(graph),
        engine=runtime.engine,
        runtime_platform=files.runtime_platform,
        delegate=delegate,
        delegate_options=dict(runtime.options) if delegate else {},
        stateful=bool(stage_variables(graph, stage)),
    )


def link_record(graph: LayerGraph, stages: Sequence[StagePlan], to: int, link: str) -> LinkPlan:
    producer = {spec.name: spec for spec in stages[to - 1].outputs}
    steps = tuple(handoff(producer[spec.name], spec) for spec in stages[to].inputs)
    wire = {spec.name: spec for spec in stages[to - 1].outputs}
    return LinkPlan(
        from_stage=to - 1,
        to_stage=to,
        link=link,
        tensors=tuple(spec.name for spec in stages[to].inputs),
        transfer_bytes=sum(
            graph.tensor(name).bytes_as(wire[name].dtype) for name in wire
        ),
        requantize=steps,
    )


def _verify(
    loaded: LoadedModel,
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    stage_bytes: Sequence[bytes],
    samples: Sequence[Any],
) -> tuple[Verification, dict[str, Any]]:
    from hwsched.export.chain import load_chain
    from hwsched.export.reference import reference_for

    chain = load_chain(stages, links, stage_bytes)
    reference, label, exact_possible = reference_for(loaded)
    exact = exact_possible or all(s.precision == "fp32" for s in stages)
    verification, outputs = compare(chain, reference, samples, label, exact)
    require_passed(verification)
    return verification, outputs


def link_encoding_request(link: str) -> CompressRequest | None:
    """A link descriptor that forces an ``encoding`` (fp16, int8) is priced with its tensors
    in that dtype; the export sends them so (link compression, verified at the level's output
    tolerance like ``--compress``), or the runner would not run what the plan priced. The link
    can send nothing else, so no accuracy is measured to choose it (a model may have no
    labeled data)."""
    if not link:
        return None
    from hwsched.hardware import NATIVE_ENCODING, load_link

    encoding = load_link(link).encoding
    return None if encoding in (NATIVE_ENCODING, "fp32") else CompressRequest(
        level=encoding, force=True, measure_accuracy=False)


def with_runner_share(graph: LayerGraph, before: Mapping[str, Any],
                      repriced: Mapping[str, Any]) -> dict[str, Any]:
    """``repriced`` (compiled stages priced from the compiler's report) with the runner's
    hand-off share kept on them when ``before`` — an analysis candidate's prediction — holds
    it (``runtime_cost.charged``): the compiler prices a stage's compute, not the hops its core
    also runs, and ``analyze --compiled`` keeps that share too. The latency keeps the source's
    and the sink's wire the analysis added; the period is again the busiest stage or link."""
    charge = before.get("runtime_cost") or {}
    rows = [dict(row) for row in repriced.get("stages") or ()]
    if not charge.get("charged") or not rows:
        return dict(repriced)
    from hwsched.costs.runtime import runtime_cost_from_dict
    from hwsched.schedule.handoff import model_io_bytes, runner_shares_ms
    from hwsched.units import MS_PER_S

    cost = runtime_cost_from_dict(charge.get("cost"), "prediction.runtime_cost.cost")
    links = list(before.get("links") or ())
    inputs, outputs = model_io_bytes(graph)
    shares = runner_shares_ms(cost, [inputs, *(int(link["transfer_bytes"]) for link in links),
                                     outputs])
    old = [float(row["latency_ms"]) for row in before.get("stages") or ()]
    for row, share in zip(rows, shares, strict=True):
        if row.get("latency_source") == "compiler" and "analysis_latency_ms" in row:
            row["latency_ms"] += share
    times = [float(row["latency_ms"]) for row in rows]
    period = max([*times, *(float(link["latency_ms"]) for link in links)])
    latency = float(before["latency_ms"]) + sum(times) - sum(old)
    return {**repriced, "stages": rows, "latency_ms": latency, "period_ms": period,
            "throughput_ips": MS_PER_S / period if period > 0 else float("inf")}


def check_as_made_link(link: str, what: str, error: type[Exception] = ExportError) -> None:
    """Stage-graph plans (``--placement graph``, ``--mapping``, ``--tiles``) send tensors as
    their stage made them (:mod:`hwsched.deployment` refuses compressed links there), so a link
    whose descriptor forces an ``encoding`` cannot carry them: refused in one line before the
    model loads, rather than priced at the link's encoding and run as made."""
    forced = link_encoding_request(link)
    if forced is not None:
        raise error(f"{what}: link {link} sends tensors as {forced.level} only (its "
                    "descriptor's 'encoding'), and stage-graph plans send them as made; use a "
                    "link without a forced encoding, or a chain split")


def link_level_request(compress: CompressRequest | None, link: str) -> CompressRequest | None:
    """What the links send: ``compress`` unless the link descriptor forces an ``encoding``.
    Over such a link ``--compress auto`` has nothing to choose (the link sends that level and
    no other), and any other level is refused in one line, rather than exported as a plan the
    link cannot carry; the same level as asked is measured and bounded as asked."""
    forced = link_encoding_request(link)
    if forced is None or compress is None or compress.level == AUTO:
        return forced or compress
    if compress.level != forced.level:
        raise ExportError(f"--compress {compress.level}: link {link} sends its tensors as "
                          f"{forced.level} only (its descriptor's 'encoding'); drop --compress "
                          f"or give --compress {forced.level}")
    return compress


def _compress(
    loaded: LoadedModel,
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    stage_bytes: Sequence[bytes],
    request: CompressRequest,
    source: SampleSource,
    calibration_samples: int,
    samples: Sequence[Any],
    report: Progress,
) -> tuple[tuple[LinkPlan, ...], Verification]:
    """Links at the level measured and allowed, and the proof of the chain with them at the
    level's tolerance (the uncompressed chain was proven exactly first)."""
    from hwsched.export.chain import load_chain
    from hwsched.export.compress import (
        compress_links,
        judge_compressed,
        require_compressed_passed,
    )
    from hwsched.export.reference import reference_for

    calibration = model_input_samples(loaded.graph, source, calibration_samples, True)
    compressed, record = compress_links(loaded.graph, stages, links, stage_bytes, request,
                                        calibration, source, report)
    level = record["chosen"]
    report(f"verifying the chain with {level} links on {len(samples)} samples")
    reference, label, _ = reference_for(loaded)
    verification, _ = compare(load_chain(stages, compressed, stage_bytes), reference, samples,
                              label, exact=False)
    verification = judge_compressed(verification, level)
    require_compressed_passed(verification, level)
    return compressed, replace(verification, compression=record)


def _check_engines_run(
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    stage_bytes: Sequence[bytes],
    samples: Sequence[Any],
    platforms: Sequence[str],
    micro: bool,
    report: Progress,
) -> tuple[StagePlan, ...]:
    """MCU stages (and every stage with ``--micro``) run on TensorFlow Lite Micro against
    LiteRT, with their arenas measured and checked against the board."""
    if not (micro or any(s.engine == "tflm" for s in stages)):
        return tuple(stages)
    from hwsched.export.tflm import check_micro_stages

    report("checking stages on TensorFlow Lite Micro")
    return check_micro_stages(stages, links, stage_bytes, samples, platforms, every_stage=micro)


def _compile_for_accelerators(
    stages: Sequence[StagePlan], stage_bytes: Sequence[bytes], report: Progress
) -> tuple[tuple[StagePlan, ...], list[bytes]]:
    """Edge TPU stages compiled by ``edgetpu_compiler`` (after the chain is proven on their
    int8 models), or marked not compiled with the reason."""
    if not any(s.engine == "edgetpu" for s in stages):
        return tuple(stages), list(stage_bytes)
    from hwsched.export.edgetpu import compile_stages

    report("compiling Edge TPU stages")
    return compile_stages(stages, stage_bytes)


def _write(
    out_dir: Path,
    plan: Plan,
    stage_bytes: Sequence[bytes],
    micro: bool,
    samples: Sequence[Any],
    reference_outputs: Mapping[str, Any],
) -> Plan:
    out_dir = Path(out_dir)
    _check_target(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as error:
        raise ExportError(f"{out_dir}: cannot create the export ({error.strerror})") from None
    try:
        stages = []
        for stage, data in zip(plan.stages, stage_bytes, strict=True):
            path = atomic_write_bytes(_inside(work, stage.file, out_dir), data)
            extra: tuple[str, ...] = ()
            if micro:
                from hwsched.export.micro import write_micro_sources

                extra = write_micro_sources(work, stage, data)
                for name in extra:
                    _inside(work, name, out_dir)
            stages.append(replace(stage, sha256=file_sha256(path), extra_files=extra))
        plan = replace(plan, stages=tuple(stages))
        save_samples(work / SAMPLES_FILE, samples, reference_outputs)
        save_plan(plan, work)
        _make_readable(work)
        _swap_into_place(work, out_dir)
    except OSError as error:  # disk full, permissions: nothing half-written is left behind
        shutil.rmtree(work, ignore_errors=True)
        raise ExportError(f"{out_dir}: cannot write the export ({error})") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return plan


def _inside(work: Path, name: str, out_dir: Path) -> Path:
    """``work / name``, proven to stay inside ``work`` (the future ``out_dir``): a file name
    built from a board name must not climb out of the output directory."""
    path = (work / name).resolve()
    if path.parent != work.resolve() or path.name != name:
        raise ExportError(
            f"{out_dir}: refusing to write {name!r}, which is not a plain file name inside the "
            "output directory"
        )
    return path


def _check_target(out_dir: Path) -> None:
    """Only an empty directory or an earlier export may be replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / PLAN_FILE).is_file():
        raise ExportError(
            f"{out_dir}: exists, is not empty and holds no {PLAN_FILE}; refusing to replace it "
            "(choose another --out)"
        )
    if (out_dir / PLAN_FILE).is_file():
        _check_only_export_files(out_dir)


def _check_only_export_files(out_dir: Path) -> None:
    """An earlier export is replaced whole, so it must hold nothing else of the user's."""
    try:
        old = load_plan(out_dir)
        ours = {PLAN_FILE, SAMPLES_FILE}
        plans = (old, *(alternative.plan for alternative in old.alternatives))
        ours.update(name for plan in plans for stage in plan.stages
                    for name in (stage.file, *stage.extra_files))
    except PlanError:
        ours = set()
    foreign = sorted(path.name for path in out_dir.iterdir() if path.name not in ours)
    if foreign:
        raise ExportError(
            f"{out_dir}: holds {foreign[0]!r}, which the earlier export did not write; refusing "
            "to replace the directory (move it away or choose another --out)"
        )


def _make_readable(work: Path) -> None:
    """The temporary directory is private (0700); an export is meant to be copied to boards."""
    work.chmod(0o755)
    for path in work.iterdir():
        path.chmod(0o644)


def _swap_into_place(work: Path, out_dir: Path) -> None:
    """Rename the finished directory into place; an old export is removed only afterwards."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        try:
            out_dir.rename(old)
        except OSError as error:
            raise ExportError(f"{out_dir}: cannot replace the earlier export ({error})") from None
    try:
        work.rename(out_dir)
    except OSError as error:
        if old is not None:
            old.rename(out_dir)
        raise ExportError(f"{out_dir}: cannot move the export into place ({error})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
