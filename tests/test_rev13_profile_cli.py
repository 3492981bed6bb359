"""Review of issue 13: the pacing variants (back-to-back and co-run timings) that the wake-once
and co-run pricing read can be recorded by ``hwsched profile`` itself (before, only a
benchmark could make such a profile), and a misuse is one line before the model loads."""

from __future__ import annotations

import json
import os

import pytest

from hwsched.cli import main
from hwsched.costs.profile import load_profile


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    import keras

    inputs = keras.Input(batch_shape=(1, 8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x), name="tiny13")
    path = tmp_path_factory.mktemp("models") / "tiny13.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("extra", [[], ["--gap-ms", "5", "--chained"],
                                   ["--gap-ms", "5", "--co-run"]])
def test_pacing_variants_without_pacing_is_one_line_before_loading(extra, tmp_path, capsys):
    missing = tmp_path / "no_such_model.keras"  # never read: the flag is checked first
    code = main(["profile", str(missing), "--pacing-variants", *extra,
                 "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "--pacing-variants" in err and "no_such_model" not in err
    assert len(err.splitlines()) == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-run needs 2 CPUs")
def test_hwsched_profile_records_the_pacing_variants(tiny_file, tmp_path):
    out = tmp_path / "p.json"
    assert main(["profile", str(tiny_file), "--segments", "2", "--runs", "3", "--warmup", "1",
                 "--gap-ms", "5", "--pacing-variants", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert all(s["back_to_back_ms"] > 0 and s["co_run_ms"] > 0 for s in document["segments"])
    assert document["whole_back_to_back_ms"] > 0
    profile = load_profile(out)
    assert profile.wake_ms is not None and profile.co_running() is not None


def test_the_library_refuses_variants_over_a_co_run_pass(tiny_file):
    """The wake is paced minus back to back, both alone: a co-run paced pass would put the
    co-runners' contention into every stage's wake."""
    from hwsched.errors import ProfileError
    from hwsched.export.profiling import profile_model
    from hwsched.load import load_model

    with pytest.raises(ProfileError, match="pacing variants time their own co-run"):
        profile_model(load_model(str(tiny_file)), gap_ms=5.0, co_run=True, variants=True)



@pytest.mark.parametrize("paced", [[], ["--gap-ms", "5", "--pacing-variants"]])
def test_hwsched_profile_writes_the_measured_overhead_into_its_descriptor(paced, tiny_file,
                                                                          tmp_path):
    """``--descriptor``: the descriptor's per-invocation overhead is the profile's measured one
    (``tests/test_profile_invocation.py`` proves what it prices); paced with variants, the
    wake that the planner charges per stage apart is off it."""
    import yaml

    from hwsched.hardware import load_platform

    if paced and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the pacing variants' co-run pass needs 2 CPUs")
    out, descriptor = tmp_path / "p.json", tmp_path / "tinyhost.yaml"
    assert main(["profile", str(tiny_file), "--segments", "2", "--runs", "3", "--warmup", "1",
                 "--platform", "tinyhost", "--descriptor", str(descriptor), *paced,
                 "--out", str(out)]) == 0
    profile = load_profile(out)
    written = yaml.safe_load(descriptor.read_text())["overhead"]["invoke_ms"]["value"]
    assert written == pytest.approx(profile.invocation_overhead_ms)
    assert load_platform(descriptor).invoke_overhead_ms == pytest.approx(written)
