"""Unit factors, defined once: every module that converts seconds or watts imports them here.

Names say what a value is multiplied by: ``seconds * MS_PER_S`` is milliseconds.

>>> 0.25 * MS_PER_S, 1.5 * MW_PER_W
(250.0, 1500.0)
"""

from __future__ import annotations

#: Milliseconds in one second.
MS_PER_S = 1000.0
#: Milliwatts in one watt.
MW_PER_W = 1000.0
