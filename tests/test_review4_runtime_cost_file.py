"""A hop-cost file with a non-finite term is refused when read, naming the file and field.

Python's json reads ``NaN`` and ``Infinity``; ``value < 0`` is false for NaN, so a NaN term
passed, ``analyze --runtime-cost`` ranked every split as nan ms and 'inf x higher throughput'
and only failed writing its JSON, naming a candidate instead of the file at fault.
"""

from __future__ import annotations

import pytest

from hwsched.cli import main
from hwsched.costs.runtime import load_runtime_cost
from hwsched.errors import ProfileError


@pytest.mark.parametrize(("field", "text"), [
    ("frame_ms", '{"frame_ms": NaN, "per_byte_ms": 1e-6}'),
    ("per_byte_ms", '{"frame_ms": 0.05, "per_byte_ms": Infinity}'),
    ("sender_frame_ms", '{"frame_ms": 0.05, "per_byte_ms": 1e-6, "sender_frame_ms": NaN}'),
])
def test_a_non_finite_term_is_refused_naming_its_field(tmp_path, field, text):
    path = tmp_path / "hop.json"
    path.write_text(text)
    match = rf"hop\.json: field '{field}' must be a number >= 0, got (nan|inf)"
    with pytest.raises(ProfileError, match=match):
        load_runtime_cost(path)


def test_analyze_refuses_it_in_one_line_before_loading_the_model(tmp_path, capsys):
    path = tmp_path / "hop.json"
    path.write_text('{"frame_ms": NaN, "per_byte_ms": 1e-6}')
    # a model that does not exist: the cost file must be judged first
    assert main(["analyze", str(tmp_path / "absent.keras"), "--runtime-cost", str(path),
                 "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hop.json: field 'frame_ms'" in err[0]
