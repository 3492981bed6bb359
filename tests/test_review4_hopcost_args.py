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
    (["--sizes=-5,10"], "argument --sizes: '-5,10': payload sizes are bytes, each >= 0"),
    (["--frames", "0"], "argument --frames: '0' is not a whole number >= 1"),
    (["--repeats", "x"], "argument --repeats: 'x' is not a whole number >= 1"),
    (["--runner-evict-mib", "48"], "argument --runner-evict-mib: only with --runners"),
    (["--runners", "--runner-evict-mib", "0"],
     "argument --runner-evict-mib: '0' is not a whole number >= 1"),
])
def test_bad_arguments_are_refused_before_measuring(argv, said, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_one_end_of_a_measurement_takes_a_single_size():
    """``measure_hop_ms`` times one size: its ends must accept it (the two-size rule is the
    fit's, and refusing it in the ends broke every single-size measurement)."""
    from hwsched.runtime.hopcost import measure_hop_ms

    assert 0 < measure_hop_ms(4096, frames=10, warmup=2) < 1000


@pytest.mark.parametrize(("flags", "sweeps"), [([], True), (["--idle-cores"], False)])
def test_idle_cores_holds_with_gap_ms(flags, sweeps, monkeypatch, capsys):
    """``--gap-ms`` measures the cores' shares back to back first; ``--idle-cores`` was
    ignored there (each core still swept its cache). The ends started are recorded by
    wrapping the real starter: the measurement itself runs."""
    from hwsched.runtime import hopcost

    started = []
    real = hopcost._start_end

    def recording(end, cpu, sizes):
        started.append(end)
        return real(end, cpu, sizes)

    monkeypatch.setattr(hopcost, "_start_end", recording)
    assert main(["--sizes", "64,4096", "--frames", "2", "--repeats", "1", "--gap-ms", "1",
                 *flags]) == 0
    assert ("evict" in started) is sweeps
    assert started.count("receive") == 2  # back to back, then paced
    assert '"runtime_cost"' in capsys.readouterr().out
