"""Documents a reader must refuse although every field is there: a ``kind`` marker that is not
a string. Real command output ('hwsched power energy' on the shipped log, no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsched.cli import main
from hwsched.documents import load_document
from hwsched.errors import HwschedError
from hwsched.power.energy import PipelineEnergy

POWER_LOGS = Path(__file__).parent.parent / "power_logs"


@pytest.fixture(scope="module")
def energy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("energy") / "energy.json"
    assert main(["power", "energy", str(POWER_LOGS / "example_ina219.csv"), "--events",
                 str(POWER_LOGS / "example_ina219.events.jsonl"), "--json", str(path)]) == 0
    return path


@pytest.mark.parametrize("marker", [5, None, ["hwsched-energy"], {"kind": "hwsched-energy"}])
def test_a_kind_that_is_not_a_string_is_refused(energy, tmp_path, marker):
    """Failed before the fix: a non-string ``kind`` counted as 'carries the marker' and the
    document was read as whatever its fields looked like."""
    data = json.loads(energy.read_text())
    load_document(PipelineEnergy, energy)  # the real document reads
    data["kind"] = marker
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(HwschedError, match=rf"^{bad}: field 'kind' must be a string"):
        load_document(PipelineEnergy, bad)
