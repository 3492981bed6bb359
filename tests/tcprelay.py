"""A TCP relay on loopback between two runners: the cable a test can pull.

Runner A connects to the relay instead of runner B; the relay forwards bytes both ways.
:meth:`Relay.cut` arms a cut: the next time the connecting side sends bytes, the relay discards
them, aborts every connection (``SO_LINGER 0``: unsent bytes are discarded, the peers see a
reset) and, for the given duration, closes every new connection as soon as it is accepted —
what a runner sees when the link between two boards drops for a while. The message in flight
at the cut is lost, so only the runners' own resends can complete the stream.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass

CHUNK_BYTES = 1 << 16
SELECT_S = 0.02
#: A blocked forward longer than this means the far side is gone: drop the connection.
SEND_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 5.0


@dataclass
class RelayCounters:
    accepted: int = 0
    refused: int = 0  # connections closed on accept while the link was down
    aborted: int = 0  # connections cut by cut()
    bytes_forwarded: int = 0


def _abort(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Relay:
    """Forward ``127.0.0.1:port`` to ``127.0.0.1:target_port`` in a background thread."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.counters = RelayCounters()
        self.peers: dict[socket.socket, socket.socket] = {}
        self.down_until = 0.0
        self._cut_s: float | None = None  # armed cut: outage duration
        self.clients: set[socket.socket] = set()
        self.cut_at_s: float | None = None  # host time the link went down
        #: host time of the first connection let through after the outage (the link is back)
        self.resumed_at_s: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        self._thread.start()
        return self

    def cut(self, duration_s: float) -> None:
        """When the connecting side next sends bytes, discard them, drop every connection
        and refuse new ones for ``duration_s``: a message is lost in flight."""
        with self._lock:
            self._cut_s = duration_s

    def close(self) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT_S)
        for sock in list(self.peers):
            _abort(sock)
        self.listener.close()

    # -- the relay thread ------------------------------------------------------------------
    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(SELECT_S):
                    if key.fileobj is self.listener:
                        self._accept(selector)
                    else:
                        self._forward(selector, key.fileobj)
        finally:
            selector.close()

    def _take_cut(self, sock: socket.socket) -> bool:
        with self._lock:
            duration, armed = self._cut_s, self._cut_s is not None and sock in self.clients
            if armed:
                self._cut_s = None
        if armed:
            self.down_until = time.monotonic() + duration
            self.cut_at_s = time.time()
        return armed

    def _cut_all(self, selector: selectors.BaseSelector) -> None:
        for sock in list(self.peers):
            if sock in self.peers:
                self._drop(selector, sock)
                self.counters.aborted += 1

    def _accept(self, selector: selectors.BaseSelector) -> None:
        client, _ = self.listener.accept()
        if time.monotonic() < self.down_until:
            self.counters.refused += 1
            _abort(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=SEND_TIMEOUT_S)
        except OSError:
            _abort(client)
            return
        for sock in (client, server):
            sock.settimeout(SEND_TIMEOUT_S)
            selector.register(sock, selectors.EVENT_READ)
        self.peers[client], self.peers[server] = server, client
        self.clients.add(client)
        self.counters.accepted += 1
        if self.cut_at_s is not None and self.resumed_at_s is None:
            self.resumed_at_s = time.time()

    def _forward(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        if sock not in self.peers:
            return  # its partner was dropped earlier in this round of events
        try:
            data = sock.recv(CHUNK_BYTES)
            if data and self._take_cut(sock):
                self._cut_all(selector)  # these bytes, and whatever follows, are lost
                return
            if data:
                self.peers[sock].sendall(data)
                self.counters.bytes_forwarded += len(data)
                return
        except OSError:
            pass
        self._drop(selector, sock)

    def _drop(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        other = self.peers.pop(sock)
        self.peers.pop(other, None)
        self.clients.difference_update((sock, other))
        for s in (sock, other):
            selector.unregister(s)
            _abort(s)
