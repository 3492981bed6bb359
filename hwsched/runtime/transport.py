"""Channels: how messages (lists of byte parts) travel between runners.

Two kinds behind one interface (:class:`Channel`): ``send(parts, peer)`` and ``receive()``,
which returns one ``(peer, parts)`` or None. Back-pressure differs by kind: a ZeroMQ DEALER's
``send`` does not block on a full queue (it returns False and the caller retries later), while
a ROUTER drops a reply to a peer that is gone; a serial ``send`` writes the whole packet,
blocking while the line drains, and returns True. Lost or dropped messages are recovered by the
acknowledgements and resends of :mod:`hwsched.runtime.reliable`.

* ``tcp://HOST:PORT`` — ZeroMQ. The receiving side *binds* a ROUTER exactly where told
  (``--listen``), so acknowledgements go back to whichever upstream sent the frame, also after it
  restarted (port 0 lets the OS choose a free one: :attr:`ZmqChannel.bound_url` tells which);
  the sending side *connects* a DEALER (``--next``). High-water marks bound every
  queue, ``MAXMSGSIZE`` drops peers that send more than the plan allows, ``IMMEDIATE`` keeps
  frames off connections that are not up. Optional CurveZMQ (see :func:`curve_setup`).
* ``serial://PORT?baud=N`` — pyserial (``serial:///dev/ttyUSB0?baud=921600``, or any pyserial
  URL such as ``serial://loop://``), COBS + CRC32 packets (:mod:`hwsched.runtime.framing`).
  A serial line is point to point: both directions share it and ``peer`` is always ``b""``.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import zmq

from hwsched.deployment import TensorSpec
from hwsched.errors import TransportError
from hwsched.runtime.defaults import DEFAULT_HWM
from hwsched.runtime.frames import max_frame_bytes, max_message_bytes
from hwsched.runtime.framing import Deframer, encode_packet

log = logging.getLogger("hwsched.runtime")

DEFAULT_BAUD = 115200
RECONNECT_IVL_MS = 50
RECONNECT_IVL_MAX_MS = 500
CLOSE_LINGER_MS = 500
#: Acknowledgements a listening channel queues per peer before ZeroMQ drops one (see
#: :meth:`ZmqChannel._open`): a window's burst is at most four windows (a receiver's hold).
ACK_SNDHWM = 1024
#: Largest message size ZeroMQ's MAXMSGSIZE option (a signed 64-bit integer) can express.
MAX_MESSAGE_BYTES = 2**63 - 1
#: Largest read from a serial port per ``receive`` call.
SERIAL_READ_BYTES = 1 << 16
#: Poll interval for channels with no pollable handle (pyserial's loop://).
UNPOLLABLE_WAIT_S = 0.002


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``--listen``/``--next`` address."""

    scheme: str  # "tcp" or "serial"
    address: str  # "host:port" or the pyserial URL/path
    baud: int = DEFAULT_BAUD

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"


#: TCP ports a runner may connect to; a listening runner may also bind port 0 ("any free
#: port", which the OS chooses and the runner reports), which no peer could connect to.
TCP_PORTS = range(1, 65536)


def parse_endpoint(text: str, *, listen: bool = False) -> Endpoint:
    """Check an address before anything is opened.

    >>> parse_endpoint("tcp://127.0.0.1:5555").url
    'tcp://127.0.0.1:5555'
    >>> parse_endpoint("tcp://127.0.0.1:99999")
    Traceback (most recent call last):
    hwsched.errors.TransportError: 'tcp://127.0.0.1:99999': port 99999 is not in 1..65535
    >>> parse_endpoint("tcp://127.0.0.1:0", listen=True).url
    'tcp://127.0.0.1:0'
    """
    if text.startswith("tcp://"):
        host, _, port = text[len("tcp://"):].rpartition(":")
        if not host or not port.isdigit():
            raise TransportError(f"{text!r}: a TCP endpoint is tcp://HOST:PORT")
        if int(port) not in TCP_PORTS and not (listen and int(port) == 0):
            lowest = 0 if listen else 1
            raise TransportError(f"{text!r}: port {int(port)} is not in {lowest}..65535")
        return Endpoint("tcp", f"{host}:{port}")
    if text.startswith("serial://"):
        rest = text[len("serial://"):]
        address, _, query = rest.partition("?")
        if not address:
            raise TransportError(f"{text!r}: a serial endpoint is serial://PORT?baud=N")
        params = parse_qs(query)
        try:
            baud = int(params.get("baud", [DEFAULT_BAUD])[0])
        except ValueError:
            raise TransportError(f"{text!r}: baud must be an integer") from None
        if baud < 1:
            raise TransportError(f"{text!r}: baud must be positive")
        return Endpoint("serial", address, baud)
    raise TransportError(f"{text!r}: endpoints are tcp://HOST:PORT or serial://PORT?baud=N")


class Channel(abc.ABC):
    """Interface of a message channel (see the module docstring)."""

    rejected = 0

    @abc.abstractmethod
    def send(self, parts: Sequence[bytes], peer: bytes = b"") -> bool: ...

    @abc.abstractmethod
    def receive(self) -> tuple[bytes, list[bytes]] | None: ...

    @abc.abstractmethod
    def poll_handle(self) -> zmq.Socket | int | None: ...

    def pending(self) -> bool:
        """True when ``receive`` has a message without waiting."""
        return False

    def wait_writable(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for room to send; False: no room (or this transport
        cannot tell, so the caller gives up at once)."""
        return False

    @property
    def bound_url(self) -> str | None:
        """The address this channel really uses, when it has one to tell (see ZmqChannel)."""
        return None

    @abc.abstractmethod
    def close(self) -> None: ...


# -- ZeroMQ -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveKeys:
    """CurveZMQ material from ``--curve-keys DIR`` (see :func:`curve_setup`)."""

    public: bytes
    secret: bytes
    authorized_dir: Path
    server_public: bytes | None


def curve_setup(directory: Path) -> CurveKeys:
    """Read ``DIR/self.key_secret`` (this runner's keypair), ``DIR/authorized/*.key`` (peers
    allowed to send to ``--listen``) and ``DIR/next.key`` (the ``--next`` runner's public key).
    Files are ZeroMQ certificates, as :func:`make_curve_keys` or ``zmq.auth`` writes them."""
    import zmq.auth

    own = directory / "self.key_secret"
    if not own.is_file():
        raise TransportError(f"{own}: missing CurveZMQ keypair (see hwsched-runner --help)")
    public, secret = zmq.auth.load_certificate(str(own))
    server = directory / "next.key"
    server_public = zmq.auth.load_certificate(str(server))[0] if server.is_file() else None
    if secret is None:
        raise TransportError(f"{own}: has no secret key")
    return CurveKeys(public, secret, directory / "authorized", server_public)


def make_curve_keys(directory: Path, names: Sequence[str]) -> dict[str, Path]:
    """Create one keypair per name under ``directory/NAME.key[_secret]`` (for set-up scripts
    and tests); returns the secret-file paths."""
    import zmq.auth

    directory.mkdir(parents=True, exist_ok=True)
    return {name: Path(zmq.auth.create_certificates(str(directory), name)[1]) for name in names}


class _Authenticator:
    """One ZAP authenticator per process, started on the first CurveZMQ server socket."""

    thread = None

    @classmethod
    def allow(cls, context: zmq.Context, authorized_dir: Path) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        if not authorized_dir.is_dir():
            raise TransportError(f"{authorized_dir}: no directory of authorized peer keys")
        if cls.thread is None:
            cls.thread = ThreadAuthenticator(context)
            cls.thread.start()
        cls.thread.configure_curve(domain="*", location=str(authorized_dir))


#: Frames at least this large are read in place (a memoryview of ZeroMQ's buffer, which
#: ``decode_message`` turns into arrays without a copy); smaller ones as bytes, cheaper to make.
ZERO_COPY_MIN_BYTES = 64 * 1024


def _contents(frame: zmq.Frame) -> bytes | memoryview:
    """A received frame's bytes; a large tensor's are not copied out of ZeroMQ's buffer (a
    copy cost its receiving core ~0.1 ms per 878 KB frame, on top of the interpreter's own)."""
    return frame.buffer if len(frame) >= ZERO_COPY_MIN_BYTES else frame.bytes


class ZmqChannel(Channel):
    """A bound ROUTER (``listen=True``) or a connected DEALER."""

    def __init__(self, endpoint: Endpoint, *, listen: bool, max_message_bytes: int,
                 hwm: int = DEFAULT_HWM, curve: CurveKeys | None = None) -> None:
        self.endpoint, self.listen = endpoint, listen
        if not 0 < max_message_bytes <= MAX_MESSAGE_BYTES:
            raise TransportError(f"{endpoint.url}: a message of this hop may be "
                                 f"{max_message_bytes} bytes, more than ZeroMQ can carry "
                                 f"({MAX_MESSAGE_BYTES}); check the plan's tensor shapes")
        context = zmq.Context.instance()
        self.socket = context.socket(zmq.ROUTER if listen else zmq.DEALER)
        try:
            self._open(context, max_message_bytes, hwm, curve)
        except BaseException:
            # an open socket left behind makes the process's Context.term() wait forever
            self.socket.close(0)
            raise

    def _open(self, context: zmq.Context, max_message_bytes: int, hwm: int,
              curve: CurveKeys | None) -> None:
        # a listening ROUTER sends only acknowledgements (a few dozen bytes each) and drops
        # what exceeds its high-water mark: with the data's mark, a window of more than `hwm`
        # frames lost acknowledgements in every burst, each a resend one timeout later
        send_hwm = max(hwm, ACK_SNDHWM) if self.listen else hwm
        for option, value in ((zmq.LINGER, 0), (zmq.SNDHWM, send_hwm), (zmq.RCVHWM, hwm),
                              (zmq.MAXMSGSIZE, max_message_bytes),
                              (zmq.RECONNECT_IVL, RECONNECT_IVL_MS),
                              (zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)):
            self.socket.setsockopt(option, value)
        if curve is not None:
            self._secure(context, curve)
        try:
            if self.listen:
                self.socket.bind(self.endpoint.url)
            else:
                self.socket.setsockopt(zmq.IMMEDIATE, 1)
                self.socket.connect(self.endpoint.url)
        except zmq.ZMQError as error:
            verb = "bind" if self.listen else "connect to"
            raise TransportError(f"cannot {verb} {self.endpoint.url}: {error}") from None

    def _secure(self, context: zmq.Context, curve: CurveKeys) -> None:
        self.socket.curve_publickey, self.socket.curve_secretkey = curve.public, curve.secret
        if self.listen:
            _Authenticator.allow(context, curve.authorized_dir)
            self.socket.curve_server = True
        elif curve.server_public is None:
            raise TransportError("CurveZMQ client needs next.key (the --next runner's key)")
        else:
            self.socket.curve_serverkey = curve.server_public

    def send(self, parts: Sequence[bytes], peer: bytes = b"") -> bool:
        """Part by part, as ``send_multipart`` does minus its per-part type checks (the parts
        are the runner's own buffers): ZeroMQ queues a multipart message whole or, when its
        first part is refused, not at all."""
        frames = [peer, *parts] if self.listen else parts
        last = len(frames) - 1
        try:
            for i, frame in enumerate(frames):
                self.socket.send(frame, zmq.NOBLOCK | (zmq.SNDMORE if i < last else 0),
                                 copy=False)
        except zmq.Again:
            return False  # queue full or peer not connected: back-pressure, retry later
        except zmq.ZMQError as error:
            if error.errno == zmq.EHOSTUNREACH:
                return False
            raise
        return True

    def wait_writable(self, timeout_s: float) -> bool:
        """Room below the high-water mark again: the I/O thread moved messages to the wire."""
        return bool(self.socket.poll(max(0, int(timeout_s * 1000)), zmq.POLLOUT))

    def receive(self) -> tuple[bytes, list[bytes]] | None:
        # Asking first is cheaper than the exception an empty queue raises (~8 µs warm, and
        # several times that cold, as a loop's code is after an idle wait): every pass of a
        # runner's loop ends on an empty queue.
        if not self.socket.get(zmq.EVENTS) & zmq.POLLIN:
            return None
        try:
            received = [self.socket.recv(zmq.NOBLOCK, copy=False)]
            while received[-1].more:  # the frame says so: no RCVMORE query per part
                received.append(self.socket.recv(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            return None
        frames = [_contents(frame) for frame in received]
        if self.listen:
            return bytes(frames[0]), frames[1:]  # type: ignore[return-value]
        return b"", frames  # type: ignore[return-value]

    @property
    def bound_url(self) -> str:
        """The address bound (listening) or connected to. ``--listen tcp://HOST:0`` lets the OS
        pick a free port at bind time; this reads it back. Probing for a free port and passing
        it on instead leaves a window in which another process can take it."""
        if not self.listen:
            return self.endpoint.url
        return self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()

    def poll_handle(self) -> zmq.Socket:
        return self.socket

    def close(self) -> None:
        # A short linger lets the last acknowledgements leave; longer would only delay exit.
        self.socket.close(linger=CLOSE_LINGER_MS)


# -- serial -----------------------------------------------------------------------------------
class SerialChannel(Channel):
    """A pyserial port carrying COBS/CRC32 packets in both directions."""

    def __init__(self, endpoint: Endpoint, *, max_message_bytes: int, port=None) -> None:
        from hwsched.extras import PYSERIAL, require

        require("runner", f"serial endpoint {endpoint.url}", [PYSERIAL])
        import serial

        self.endpoint = endpoint
        try:
            self.port = port or serial.serial_for_url(
                endpoint.address, baudrate=endpoint.baud, timeout=0, write_timeout=None
            )
        except (serial.SerialException, ValueError) as error:
            raise TransportError(f"cannot open serial port {endpoint.address}: {error}") from None
        self.deframer = Deframer(max_message_bytes)
        self.inbox: deque[list[bytes]] = deque()
        self._reported = 0

    @property
    def rejected(self) -> int:  # type: ignore[override]
        return self.deframer.rejected

    def send(self, parts: Sequence[bytes], peer: bytes = b"") -> bool:
        self.port.write(encode_packet([bytes(p) for p in parts]))
        return True

    def receive(self) -> tuple[bytes, list[bytes]] | None:
        if not self.inbox:
            waiting = self.port.in_waiting
            if waiting:
                self.inbox.extend(self.deframer.feed(self.port.read(min(waiting,
                                                                        SERIAL_READ_BYTES))))
                self._log_rejections()
        return (b"", self.inbox.popleft()) if self.inbox else None

    def _log_rejections(self) -> None:
        new = self.deframer.rejected - self._reported
        for reason in self.deframer.errors[-new:] if new > 0 else ():
            log.warning("serial %s: dropped a packet: %s", self.endpoint.address, reason)
        self._reported = self.deframer.rejected

    def pending(self) -> bool:
        return bool(self.inbox)

    def poll_handle(self) -> int | None:
        try:
            return self.port.fileno()
        except (AttributeError, OSError, NotImplementedError, ValueError):
            return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.port.close()


def shutdown() -> None:
    """End ZeroMQ for this process, waiting (up to each socket's linger) until queued
    messages — typically the last acknowledgements — have left."""
    if _Authenticator.thread is not None:
        _Authenticator.thread.stop()
        _Authenticator.thread = None
    # destroy, not term: a socket some error path left open is closed (with the linger) instead
    # of making term() wait for it forever
    zmq.Context.instance().destroy(linger=CLOSE_LINGER_MS)


def open_channel(text: str, *, listen: bool, specs: Mapping[str, TensorSpec],
                 hwm: int = DEFAULT_HWM, curve: CurveKeys | None = None) -> Channel:
    """A channel for the hop carrying ``specs``, its inbound size limit taken from them: ZeroMQ
    receives each frame as its own part (:func:`max_frame_bytes`), a serial packet holds every
    frame of a message (:func:`max_message_bytes`)."""
    endpoint = parse_endpoint(text, listen=listen)
    if endpoint.scheme == "tcp":
        return ZmqChannel(endpoint, listen=listen, max_message_bytes=max_frame_bytes(specs),
                          hwm=hwm, curve=curve)
    return SerialChannel(endpoint, max_message_bytes=max_message_bytes(specs))


class Waiter:
    """Waits until one of a fixed set of channels may have a message: a runner's loop waits on
    every pass, and building and registering a ZeroMQ poller each time was per-frame work on
    the frame's way (the wait that ends when it arrives)."""

    def __init__(self, channels: Sequence[Channel], wake_fds: Sequence[int] = ()) -> None:
        """``wake_fds``: descriptors that end a wait too, drained when they do (a
        :attr:`~hwsched.runtime.process.StopFlag.wake_fd`)."""
        self.channels = list(channels)
        self.wake_fds = tuple(wake_fds)
        handles = [c.poll_handle() for c in self.channels]
        self.unpollable = any(h is None for h in handles)
        self.poller: zmq.Poller | None = None
        for handle in (*handles, *self.wake_fds):
            if handle is not None:
                self.poller = self.poller or zmq.Poller()
                self.poller.register(handle, zmq.POLLIN)

    def wait(self, timeout_s: float) -> None:
        """Block until one channel may have a message, a wake descriptor is readable, or
        ``timeout_s`` passes."""
        if any(c.pending() for c in self.channels):
            return
        if self.unpollable:
            timeout_s = min(timeout_s, UNPOLLABLE_WAIT_S)
        if self.poller is not None:
            # whole ms, rounded up: pyzmq drops the fraction, and a timer due in 0.9 ms made
            # poll(0), so the loop spun until it was due (a refused send's retry, a resend);
            # a message still ends the wait at once, a timer may now fire up to 1 ms late
            # (an emulated link delay of 0.05 ms on an idle stage: about 1 ms)
            ready = self.poller.poll(math.ceil(max(timeout_s, 0.0) * 1000))
            for handle, _ in ready:
                if handle in self.wake_fds:
                    _drain(handle)
        else:
            time.sleep(max(timeout_s, 0.0))


def _drain(fd: int) -> None:
    """Read what a wake descriptor holds, so it does not end every later wait at once."""
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while os.read(fd, 512):
            pass


def wait_readable(channels: Sequence[Channel], timeout_s: float) -> None:
    """Block until one channel may have a message, or ``timeout_s`` passes (a loop that waits
    on the same channels every pass keeps a :class:`Waiter`)."""
    Waiter(channels).wait(timeout_s)
