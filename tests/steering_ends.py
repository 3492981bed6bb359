"""The two ends of the controller's channel for steering tests: the controller's listening
channel and the source's real :class:`~hwsched.runtime.source.Steering`, joined once the
source's first report arrived."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from waiting import wait_until

from hwsched.runtime.frames import Report
from hwsched.runtime.source import Steering
from hwsched.runtime.transport import open_channel


@contextlib.contextmanager
def steering_ends(alternatives: int, schedule=()) -> Iterator[tuple]:
    """(the controller's channel, the source's Steering over ``alternatives`` splits with the
    scripted ``schedule``, the source's peer id); both closed on exit."""
    channel = open_channel("tcp://127.0.0.1:0", listen=True, specs={})
    steer = Steering(alternatives, schedule,
                     open_channel(channel.bound_url, listen=False, specs={}))
    hello = Report(0, 0, None, 5.0, 0)
    try:
        peer, _ = wait_until(lambda: channel.receive() or steer.service([hello]),
                             what="a message from the source")
        yield channel, steer, peer
    finally:
        steer.close()
        channel.close()
