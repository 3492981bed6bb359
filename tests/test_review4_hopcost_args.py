"""``python -m hwsched.runtime.hopcost`` refuses bad arguments in one line with exit code 2,
before measuring: a size list that is not numbers was a ValueError traceback, one size a
TransportError traceback after the whole measurement, ``--frames 0`` a StatisticsError."""

from __future__ import annotations

import pytest

from hwsched.runtime.hopcost import main


@pytest.mark.parametrize(("argv", "said"), [
    (["--sizes", "abc"], "argument --sizes: 'abc' is not a list of byte counts"),
    (["--sizes", "4096"], "argument --sizes: '4096': give at least two different"),
    (["--sizes", "4096,4096"], "argument --sizes: '4096,4096': give at least two different"),
    (["--sizes=-5,10"], "argument --sizes: '-5,10': give at least two different"),
    (["--frames", "0"], "argument --frames: '0' is not a whole number >= 1"),
    (["--repeats", "x"], "argument --repeats: 'x' is not a whole number >= 1"),
])
def test_bad_arguments_are_refused_before_measuring(argv, said, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err
