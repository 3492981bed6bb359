import doctest

import pytest

import hwsched.power.energy
import hwsched.power.meters
import hwsched.power.record
import hwsched.power.timebase

MODULES = [hwsched.power.meters, hwsched.power.timebase, hwsched.power.energy, hwsched.power.record]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
