"""The CLI's signal handling while a command runs: the first SIGINT or SIGTERM unwinds it
(``KeyboardInterrupt`` / ``Terminated``), a second one cannot cut its clean-up short, an
ignored signal stays ignored, and the previous handlers come back. (That ``emulate`` then
removes its runners and cgroups: ``tests/test_cpucap.py``.)

``signal.raise_signal`` delivers the signal to the calling (main) thread before it returns,
and Python runs its handler at the next bytecode, so the ``time.sleep`` after it is cut short
at once by the handler's exception, or sleeps out its time when no exception comes."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from hwsched.cli import Terminated, _terminate_as_interrupt, main

pytestmark = pytest.mark.usefixtures("signals_not_ignored")


@pytest.mark.parametrize(("number", "raised"), [(signal.SIGTERM, Terminated),
                                                (signal.SIGINT, KeyboardInterrupt)])
def test_the_first_signal_unwinds_and_a_second_one_spares_the_clean_up(number, raised):
    before = signal.getsignal(number)
    cleaned = False
    with pytest.raises(raised) as caught, _terminate_as_interrupt():
        try:
            signal.raise_signal(number)
            time.sleep(30)  # cut short by the handler's exception
        finally:
            signal.raise_signal(signal.SIGTERM)  # the second signal, while cleaning up
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)  # ignored: nothing cuts this short
            cleaned = True
    assert caught.type is raised  # not Terminated for a SIGINT
    assert cleaned
    assert signal.getsignal(number) is before


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_an_ignored_signal_stays_ignored(number):
    signal.signal(number, signal.SIG_IGN)  # the fixture puts the disposition back
    with _terminate_as_interrupt():
        assert signal.getsignal(number) is signal.SIG_IGN
        signal.raise_signal(number)
        time.sleep(0.05)  # nothing raised
    assert signal.getsignal(number) is signal.SIG_IGN


def test_main_exits_143_on_sigterm(monkeypatch, capsys):
    """``main`` turns :class:`Terminated` into one line and 143, whichever command ran (here
    ``hwsched models``, its function replaced by one that is killed)."""
    module, name = _command_func("models")

    def killed(_args):
        signal.raise_signal(signal.SIGTERM)
        time.sleep(30)  # cut short by the handler's exception

    monkeypatch.setattr(module, name, killed)
    assert main(["models"]) == 143
    assert capsys.readouterr().err.strip() == "hwsched: terminated"


def _command_func(command: str) -> tuple[object, str]:
    """The module and name of the function ``hwsched COMMAND`` calls (``register`` looks it
    up when ``main`` builds the parser, so replacing it there takes effect)."""
    from hwsched.cli import build_parser

    func = build_parser().parse_args([command]).func
    return sys.modules[func.__module__], func.__name__
