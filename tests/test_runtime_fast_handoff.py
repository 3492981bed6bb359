"""The one-frame hand-off's fast paths keep every guarantee of the slow ones.

* :class:`~hwsched.runtime.frames.HopDecoder` decodes exactly what
  :func:`~hwsched.runtime.frames.decode_message` (the reference, which parses and checks every
  field) decodes, and refuses exactly what it refuses: checked by hypothesis on random plans
  and on frames with random bytes changed, cut or added.
* A sender stamps a fresh message in place (no copy of its tensor) but never changes bytes a
  transport was given: the bytes each send handed over are snapshotted and compared after
  resends and a fan-out's second send.
* A scalar (0-d) tensor crosses a hop (``encode_data`` refused it: ``ascontiguousarray`` makes
  a 0-d array 1-d).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memchannel import MemoryChannel, RefusingChannel

from hwsched.deployment import Quantization, TensorSpec
from hwsched.runtime.frames import (
    DTYPE_CODES,
    HEADER_BYTES,
    KIND_ACK,
    SENT_S_OFFSET,
    FrameError,
    HopDecoder,
    decode_message,
    encode_control,
    encode_data,
)
from hwsched.runtime.reliable import Receiver, Sender

DTYPES = sorted(DTYPE_CODES)


@st.composite
def hop_specs(draw) -> dict[str, TensorSpec]:
    """One to three tensors of any wire dtype and rank 0..3, some quantized."""
    specs = {}
    for i in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["x", "y:0", "block/add", "é"])) + str(i)
        dtype = draw(st.sampled_from(DTYPES))
        shape = tuple(draw(st.lists(st.integers(1, 4), max_size=3)))
        quant = draw(st.one_of(st.none(), st.builds(
            Quantization, st.floats(1e-3, 1.0), st.integers(-128, 127))))
        specs[name] = TensorSpec(name, shape, dtype, quant)
    return specs


def _arrays(specs: dict[str, TensorSpec], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.integers(0, 2, size=s.shape).astype(s.dtype) for n, s in specs.items()}


def _outcome(decode, frames):
    """What a decoder makes of ``frames``: the error's text, or every field of the message
    with each tensor as (dtype, shape, bytes)."""
    try:
        m = decode(frames)
    except FrameError as error:
        return ("refused", str(error))
    tensors = {n: (a.dtype.str, a.shape, a.tobytes()) for n, a in m.tensors.items()}
    return (m.kind, m.seq, m.origin_s, m.payload_bytes, m.alternative, m.sent_s, m.report,
            m.probe, tensors)


def _same(decoder: HopDecoder, frames, specs, alternatives=None) -> None:
    reference = _outcome(lambda f: decode_message(f, specs, alternatives=alternatives), frames)
    fast = _outcome(decoder.decode, frames)
    assert repr(fast) == repr(reference)  # repr: NaN stamps compare equal too


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=hop_specs(), seed=st.integers(0, 2**16), seq=st.integers(0, 2**40),
       origin=st.floats(allow_nan=False), edits=st.lists(st.tuples(
           st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
       cut=st.integers(-3, 3))
def test_fast_decoder_agrees_with_the_reference(specs, seed, seq, origin, edits, cut):
    frames = [bytearray(f) for f in encode_data(seq, origin, _arrays(specs, seed), specs)]
    for part, offset, value in edits:  # change bytes, mostly in the headers, names and dims
        frame = frames[part % len(frames)]
        frame[offset % min(len(frame), HEADER_BYTES + 40)] = value
    if cut > 0:
        frames[-1] += bytes(cut)
    elif cut < 0:
        frames[-1] = frames[-1][:cut]
    _same(HopDecoder(specs), frames, specs)
    _same(HopDecoder(specs), [memoryview(f) for f in frames], specs)  # as ZeroMQ hands them


@settings(max_examples=60, deadline=None)
@given(first=hop_specs(), second=hop_specs(), alt=st.integers(0, 3), seed=st.integers(0, 99),
       swap=st.booleans())
def test_fast_decoder_agrees_on_adaptive_hops_and_foreign_messages(first, second, alt, seed,
                                                                   swap):
    alternatives = {0: first, 1: second}
    specs = alternatives.get(alt, first)
    frames = encode_data(seq := seed, 0.5, _arrays(specs, seed), specs, alternative=alt)
    if swap and len(frames) > 1:
        frames = [frames[1], frames[0], *frames[2:]]  # valid to the reference when names differ
    decoder = HopDecoder({}, alternatives=alternatives)
    _same(decoder, frames, {}, alternatives)
    _same(decoder, encode_control(KIND_ACK, seq), {}, alternatives)


def test_fast_decoder_applies_the_payload_limit_as_the_reference():
    specs = {"x": TensorSpec("x", (1, 64), "float32")}
    frames = encode_data(0, 0.0, {"x": np.ones((1, 64), np.float32)}, specs)
    with pytest.raises(FrameError, match="exceeds"):
        HopDecoder(specs, max_payload_bytes=128).decode(frames)


def test_a_scalar_tensor_crosses_a_hop():
    specs = {"score": TensorSpec("score", (), "float32")}
    channel = MemoryChannel()
    channel.inbox.append(encode_data(4, 1.0, {"score": np.float32(0.25)}, specs))
    (message,) = Receiver(channel, specs).messages()
    assert message.tensors["score"].shape == () and float(message.tensors["score"]) == 0.25


def _snapshots(channel: MemoryChannel) -> list[list[bytes]]:
    return [[bytes(p) for p in parts] for parts in channel.sent]


def test_a_sender_never_changes_bytes_a_transport_was_given(monkeypatch):
    from hwsched.runtime import reliable

    now = [100.0]  # the senders' timers: a refused send is retried REFUSED_RETRY_S later
    monkeypatch.setattr(reliable.time, "monotonic", lambda: now[0])
    specs = {"x": TensorSpec("x", (1, 4096), "float32")}
    wire = encode_data(0, 0.0, {"x": np.arange(4096, dtype=np.float32)[None]}, specs)
    clock = iter([10.0, 10.0001, 10.0003, 12.0, 14.0]).__next__
    first, second = RefusingChannel(1), MemoryChannel()
    a = Sender(first, resend_after_s=0.0, clock=clock)
    b = Sender(second, resend_after_s=0.0, clock=clock)
    a.send(0, wire)  # refused: nothing held, so the message stays fresh
    b.send(0, wire)  # a fan-out's other downstream: stamps in place (10.0001)
    held = _snapshots(second)
    now[0] += reliable.REFUSED_RETRY_S
    a.service()  # its retry: sends the same bytes, as stamped
    a.service()  # a resend at 12.0: a copy, stamped anew
    b.service()  # a resend at 14.0
    assert second.sent[0][0] is wire[0] and first.sent[0][0] is wire[0]  # no copy made
    assert _snapshots(second)[:1] == held  # the bytes given to b's transport never changed
    assert bytes(first.sent[0][0]) == held[0][0]
    stamps = [decode_message(p, specs).sent_s for p in [*first.sent, *second.sent]]
    assert stamps == [10.0001, 12.0, 10.0001, 14.0]
    assert all(bytes(p[0])[:SENT_S_OFFSET] == held[0][0][:SENT_S_OFFSET]
               for p in [*first.sent, *second.sent])


@pytest.mark.parametrize("floats", [10, 100_000])  # ZeroMQ hands these over as bytes, views
def test_frames_as_zeromq_delivers_them_take_the_fast_path(floats):
    """The fast path is what a real hop takes (a template that never matched would leave every
    frame on the slow path, correct and slow): frames through a ZeroMQ pair on loopback."""
    from waiting import wait_until

    from hwsched.runtime.transport import open_channel

    specs = {"x": TensorSpec("x", (1, floats), "float32"),
             "q": TensorSpec("q", (), "int8", Quantization(0.5, 3))}
    up = open_channel("tcp://127.0.0.1:0", listen=True, specs=specs)
    down = open_channel(up.bound_url, listen=False, specs=specs)
    try:
        sender = Sender(down)
        tensor = np.arange(floats, dtype=np.float32)[None]
        sender.send(0, encode_data(0, 1.0, {"x": tensor, "q": np.int8(7)}, specs))
        received = []

        def arrived() -> bool:
            sender.service()
            got = up.receive()
            if got is not None:
                received.append(got[1])
            return bool(received)

        wait_until(arrived, timeout_s=30.0)
        message = Receiver(up, specs).decoder._fast(received[0])
        assert message is not None
        assert np.array_equal(message.tensors["x"], tensor) and int(message.tensors["q"]) == 7
    finally:
        up.close()
        down.close()
