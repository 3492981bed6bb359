"""An oracle of the tests' own for exported plans: run the stage files by hand and the whole
model by hand, without hwsched's chain, hand-off, reference or verdict code.

``run_stages`` reads ``plan.json`` as raw JSON, opens each stage file with LiteRT's own
``Interpreter`` (builtin kernels, like the reference, so a flatbuffer split can be compared bit
for bit), and carries every crossing tensor between stages as float: a quantized output is
dequantized with the producer's parameters and re-quantized with the consumer's (for equal
parameters this round trip returns the very same integers). ``keras_outputs`` and
``tflite_outputs`` run the unsplit model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ai_edge_litert import interpreter as litert

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def open_builtin(content: bytes) -> litert.Interpreter:
    interpreter = litert.Interpreter(
        model_content=content, num_threads=1,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    return interpreter


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """TFLite's rule: round half away from zero, then saturate."""
    low, high = INT_RANGES[dtype]
    scaled = np.asarray(values, dtype=np.float64) / scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + zero_point, low, high).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(values, dtype=np.float64) - zero_point) * scale).astype(np.float32)


def _to_stage(value: np.ndarray, spec: Mapping) -> np.ndarray:
    q = spec["quantization"]
    if q is not None:
        return quantize(value, q["scale"], q["zero_point"], spec["dtype"])
    return np.asarray(value).astype(spec["dtype"])


def _from_stage(value: np.ndarray, spec: Mapping) -> np.ndarray:
    q = spec["quantization"]
    if q is not None:
        return dequantize(value, q["scale"], q["zero_point"])
    return np.asarray(value, dtype=np.float32)


def run_stages(out_dir: Path, model_inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The last stage's outputs (float32, by IR name) for float model inputs (by IR name)."""
    plan = json.loads((Path(out_dir) / "plan.json").read_text())
    floats = dict(model_inputs)
    for stage in plan["stages"]:
        runner = open_builtin((Path(out_dir) / stage["file"]).read_bytes()).get_signature_runner()
        feeds = {spec["tflite_name"] or spec["name"]: _to_stage(floats[spec["name"]], spec)
                 for spec in stage["inputs"]}
        raw = runner(**feeds)
        for spec in stage["outputs"]:
            floats[spec["name"]] = _from_stage(np.array(raw[spec["tflite_name"] or spec["name"]]),
                                               spec)
    return {spec["name"]: floats[spec["name"]] for spec in plan["stages"][-1]["outputs"]}


def keras_outputs(model, model_inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The Keras model's outputs in its own output order (float32)."""
    feeds = [model_inputs[t.name.split(":")[0]] for t in model.inputs]
    outputs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    return [np.asarray(o, dtype=np.float32) for o in outputs]


def tflite_outputs(content: bytes, model_inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The unsplit ``.tflite`` model's outputs (dequantized), inputs in its input order."""
    interpreter = open_builtin(content)
    for detail, value in zip(interpreter.get_input_details(), model_inputs, strict=True):
        scale, zero_point = detail["quantization"]
        dtype = np.dtype(detail["dtype"]).name
        fed = quantize(value, scale, zero_point, dtype) if scale else value.astype(dtype)
        interpreter.set_tensor(detail["index"], fed)
    interpreter.invoke()
    outputs = []
    for detail in interpreter.get_output_details():
        raw = np.array(interpreter.get_tensor(detail["index"]))
        scale, zero_point = detail["quantization"]
        outputs.append(dequantize(raw, scale, zero_point) if scale else raw.astype(np.float32))
    return outputs


def relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| over the largest |want|: the scale the fp32 tolerance is stated in."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = float(np.max(np.abs(want)))
    return float(np.max(np.abs(got - want))) / (scale if scale > 0 else 1.0)


def random_inputs(model, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``count`` samples for a batch-1 Keras model, keyed by input name, uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    return [{t.name.split(":")[0]: rng.random(tuple(t.shape), dtype=np.float32)
             for t in model.inputs} for _ in range(count)]


def assert_split_equals_keras(out_dir: Path, model, samples, output_names: Sequence[str],
                              tolerance: float) -> float:
    """Every output of the hand-run stages within ``tolerance`` (relative to the output's
    magnitude) of the Keras model, on every sample; returns the worst relative difference."""
    worst = 0.0
    for sample in samples:
        split = run_stages(out_dir, sample)
        whole = keras_outputs(model, sample)
        assert sorted(split) == sorted(output_names)
        for name, expected in zip(output_names, whole, strict=True):
            worst = max(worst, relative_difference(split[name], expected))
    assert worst <= tolerance, f"{out_dir}: split differs from Keras by {worst:.3g} (relative)"
    return worst


def top1_agreement(out_dir: Path, model, samples, output_name: str) -> float:
    """Fraction of samples whose hand-run split and Keras model pick the same class."""
    same = [int(np.argmax(run_stages(out_dir, s)[output_name]) ==
                np.argmax(keras_outputs(model, s)[0])) for s in samples]
    return sum(same) / len(same)
