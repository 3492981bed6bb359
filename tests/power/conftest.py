"""Fixtures for the power tests; the helpers live in power_fixtures.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from power_fixtures import HannProfile, Pty, SyntheticMeter, five_windows


@pytest.fixture
def pty_factory() -> Iterator:
    made: list[Pty] = []

    def make() -> Pty:
        made.append(Pty())
        return made[-1]

    yield make
    for pty in made:
        pty.close()


@pytest.fixture
def synthetic_meter(pty_factory):
    def make(**options) -> SyntheticMeter:
        windows = five_windows()
        duration_s = windows[-1][1] + 0.3
        return SyntheticMeter(pty_factory(), HannProfile(windows), duration_s, **options)

    return make
