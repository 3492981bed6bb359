"""Seeded mutations of a real exported plan.json through every reader of it.

A plan exported from the digits_cnn tail (a .tflite, so no TensorFlow is needed) is mutated a
few hundred times — a field replaced by a hostile value, or bytes of the text flipped — and fed
to what ``verify``, ``emulate`` and ``hwsched-runner`` do with it: read it, check each stage
file, load each stage and push one frame through the chain. Each mutant is either refused with
a :class:`HwschedError` or runs; anything else is a defect.
"""

import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hwsched.deployment import PLAN_FILE, check_stage_file, load_plan
from hwsched.errors import HwschedError
from hwsched.export.api import export
from hwsched.load import load_model
from hwsched.runtime.interpreter import StageModel
from hwsched.runtime.routing import hop_specs

SEED_MODEL = Path(__file__).parent / "data" / "digits_tail_fp16.tflite"
MUTATIONS = 300
DEADLINE_S = 300
HOSTILE_VALUES = (
    1e999, -1e999, -1, 0, 2**70, 4000000000, 0.5, True, None, "", "x", "../../escaped",
    "/etc/passwd", "stage0_jetson_nano.tflite", [], [4000000000, 4000000000], [1, 32], {},
    {"scale": 1e999, "zero_point": 1e999}, {"stage": 7, "tensor": "nope"}, 5,
)


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "split"
    # cut before the softmax: a stage 0 of only DEQUANTIZE ops trips XNNPACK at invoke
    export(load_model(str(SEED_MODEL)), ["jetson_nano", "jetson_nano"], out, cut_positions=[4],
           samples=2)
    return out


def paths(data, prefix=()):
    """Every (path, value) in a JSON document."""
    yield prefix, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(
        data, list) else ()
    for key, value in items:
        yield from paths(value, (*prefix, key))


def set_at(data, path, value):
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def mutate(text: str, rng: random.Random) -> str:
    if rng.random() < 0.2:  # bytes of the text
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = chr(rng.randrange(32, 127))
        return "".join(chars)
    data = json.loads(text)
    if rng.random() < 0.05:
        return "[" * 100_000 + "]" * 100_000
    path = rng.choice([p for p, _ in paths(data) if p])
    set_at(data, path, rng.choice(HOSTILE_VALUES))
    return json.dumps(data)


def run_plan(directory: Path) -> None:
    """What the readers of a plan do: verify's and emulate's checks, a runner's stages."""
    plan = load_plan(directory)
    for stage in plan.stages:
        check_stage_file(directory, stage)
    arrived = {name: np.zeros(spec.shape, spec.dtype) for name, spec in hop_specs(plan, 0).items()}
    for stage in plan.stages:
        arrived = StageModel(plan, directory, stage.index).run(arrived)
    hop_specs(plan, len(plan.stages))


def try_one(text: str, seed_dir: Path, work: Path) -> str:
    shutil.copytree(seed_dir, work)
    (work / PLAN_FILE).write_text(text)
    try:
        run_plan(work)
    except HwschedError:
        return "refused"
    except Exception as error:  # the defect this test exists to catch
        return f"crash: {type(error).__name__}: {str(error)[:200]}"
    return "ran"


def run_all(seed_dir: Path, tmp_path: Path) -> list[str]:
    rng = random.Random(15)
    text = (seed_dir / PLAN_FILE).read_text()
    return [try_one(mutate(text, rng), seed_dir, tmp_path / f"m{k}") for k in range(MUTATIONS)]


def test_the_seed_plan_runs(plan_dir, tmp_path):
    assert try_one((plan_dir / PLAN_FILE).read_text(), plan_dir, tmp_path / "seed") == "ran"


def test_mutated_plans_never_crash_or_hang(plan_dir, tmp_path):
    with ThreadPoolExecutor(max_workers=1) as pool:
        results = pool.submit(run_all, plan_dir, tmp_path).result(timeout=DEADLINE_S)
    crashes = [r for r in results if r.startswith("crash")]
    assert not crashes, f"{len(crashes)} crashes, e.g. {sorted(set(crashes))[:5]}"
    assert {"refused", "ran"} <= set(results)
