"""Co-runners need a CPU beside the timed ones: ``hwsched profile --co-run`` or
``--pacing-variants`` with as many ``--threads`` as CPUs is one line naming the flag the user
gave, before the model loads. Failed before: the model loaded, ``--pacing-variants`` timed
every segment twice and then failed naming ``--co-run``, a flag the user never gave."""

from __future__ import annotations

import os

import pytest

from hwsched.cli import main


@pytest.mark.parametrize("flags", [["--co-run"], ["--gap-ms", "5", "--pacing-variants"]])
def test_co_runners_without_a_spare_cpu_are_one_line_before_loading(flags, tmp_path, capsys):
    cpus = len(os.sched_getaffinity(0))
    missing = tmp_path / "no_such_model.keras"  # never read: the CPUs are checked first
    code = main(["profile", str(missing), *flags, "--threads", str(cpus),
                 "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert f"{flags[-1]} needs more CPUs than --threads {cpus}" in err
    assert "no_such_model" not in err
