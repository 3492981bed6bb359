"""An in-memory :class:`~hwsched.runtime.transport.Channel` for driving runtime loops in tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from hwsched.runtime.transport import Channel


class MemoryChannel(Channel):
    """What the test puts in ``inbox`` the code under test receives; what it sends lands in
    ``sent``."""

    def __init__(self) -> None:
        self.inbox: deque[list[bytes]] = deque()
        self.sent: list[list[bytes]] = []

    def send(self, parts: Sequence[bytes], peer: bytes = b"") -> bool:
        self.sent.append(list(parts))
        return True

    def receive(self) -> tuple[bytes, list[bytes]] | None:
        return (b"peer", self.inbox.popleft()) if self.inbox else None

    def poll_handle(self) -> None:
        return None

    def close(self) -> None:
        pass


class RefusingChannel(MemoryChannel):
    """A transport whose queue is full (every send refused) for its first ``refusals`` sends,
    or, with None, until the test sets ``open``; every attempt is counted."""

    def __init__(self, refusals: int | None = None) -> None:
        super().__init__()
        self.refusals, self.open, self.attempts = refusals, False, 0

    def send(self, parts: Sequence[bytes], peer: bytes = b"") -> bool:
        self.attempts += 1
        if self.refusals is not None:
            if self.refusals:
                self.refusals -= 1
                return False
        elif not self.open:
            return False
        return super().send(parts, peer)
