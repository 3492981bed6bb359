"""Defaults every runner role shares, importable without the runner extra.

``hwsched-runner --help`` and ``hwsched emulate`` read them before they know whether pyzmq and
LiteRT are installed, so this module imports nothing but the standard library.
"""

from __future__ import annotations

#: Frames in flight per hop: the pipeline's back-pressure (see :mod:`hwsched.runtime.reliable`).
DEFAULT_WINDOW = 8
#: Seconds before an unacknowledged frame is sent again.
DEFAULT_RESEND_AFTER_S = 1.0
#: Messages a ZeroMQ socket queues per peer before ``send`` reports back-pressure.
DEFAULT_HWM = 8
#: Seconds in which no stage computed a frame and no role finished before ``hwsched emulate``
#: calls a run stalled (a set rate adds one frame period).
DEFAULT_STALL_TIMEOUT_S = 30.0
