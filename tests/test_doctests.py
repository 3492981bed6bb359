import doctest

import pytest

import hwsched.cuts
import hwsched.flops
import hwsched.ir


@pytest.mark.parametrize("module", [hwsched.ir, hwsched.cuts, hwsched.flops])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
