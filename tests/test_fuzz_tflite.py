"""Seeded byte mutations of a small .tflite through ``analyze``'s reader and ``export``.

The oracle is the contract, not the library's verdict: every mutated file either loads, or is
refused with a :class:`HwschedError`; every file that loads either exports or is refused with
one. Any other exception (IndexError, UnicodeDecodeError, LiteRT's ValueError…) is a defect, and
so is a run that does not finish.
"""

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hwsched.cli import main
from hwsched.errors import HwschedError
from hwsched.export.api import export
from hwsched.load import load_model

SEED_MODEL = Path(__file__).parent / "data" / "digits_tail_fp16.tflite"
MUTATIONS = 300
#: Generous: the loop takes ~5 s here; it only has to tell a hang from a slow machine.
DEADLINE_S = 300
#: Values that make a flatbuffer offset, length or index point far away.
EXTREME_WORDS = (b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff\xff\xff", b"\0\0\0\0")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: flip 1-4 bytes, truncate, insert 1-8 bytes, overwrite an aligned word."""
    out = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 1:
        del out[rng.randrange(len(out)):]
    elif kind == 2:
        at = rng.randrange(len(out))
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:
        at = rng.randrange(0, len(out) - 4, 4)
        out[at:at + 4] = rng.choice(EXTREME_WORDS)
    return bytes(out)


def mutants(count: int, seed: int = 15) -> list[bytes]:
    rng = random.Random(seed)
    data = SEED_MODEL.read_bytes()
    return [mutate(data, rng) for _ in range(count)]


def try_one(data: bytes, directory: Path) -> tuple[str, str]:
    """``(outcome, detail)``: outcome is refused/loaded/exported, or crash on anything else."""
    path = directory / "m.tflite"
    path.write_bytes(data)
    try:
        loaded = load_model(str(path))
    except HwschedError:
        return "refused", ""
    except Exception as error:  # the defect this test exists to catch
        return "crash", f"analyze: {type(error).__name__}: {error}"
    try:
        # the seed has 5 layers; a cut after the second keeps both stages non-empty
        export(loaded, ["jetson_nano", "jetson_nano"], directory / "out", cut_positions=[2],
               samples=2)
    except HwschedError:
        return "loaded", ""
    except Exception as error:
        return "crash", f"export: {type(error).__name__}: {error}"
    return "exported", ""


def run_all(datas: list[bytes], tmp_path: Path) -> list[tuple[str, str]]:
    results = []
    for k, data in enumerate(datas):
        directory = tmp_path / f"m{k}"
        directory.mkdir()
        results.append(try_one(data, directory))
    return results


def test_the_seed_model_itself_loads_and_exports(tmp_path):
    assert try_one(SEED_MODEL.read_bytes(), tmp_path) == ("exported", "")


def test_mutated_tflite_files_never_crash_or_hang(tmp_path):
    with ThreadPoolExecutor(max_workers=1) as pool:
        results = pool.submit(run_all, mutants(MUTATIONS), tmp_path).result(timeout=DEADLINE_S)
    crashes = [detail for outcome, detail in results if outcome == "crash"]
    assert not crashes, f"{len(crashes)} crashes, e.g. {crashes[:3]}"
    outcomes = {outcome for outcome, _ in results}
    # the fuzz reaches both sides of the reader: some files refused, some exported
    assert {"refused", "exported"} <= outcomes


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5])
def test_mutated_tflite_through_the_cli_is_one_line(tmp_path, capfd, index):
    path = tmp_path / "m.tflite"
    path.write_bytes(mutants(6, seed=150)[index])
    code = main(["analyze", str(path), "--platforms", "rpi4,jetson_nano", "--no-report"])
    err = capfd.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("hwsched: error: "), err
        assert "Traceback" not in err
