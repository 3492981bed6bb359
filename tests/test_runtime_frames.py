"""Frames, requantization and serial framing: every malformed input is rejected."""

from __future__ import annotations

import os
import struct
import threading
import zlib

import numpy as np
import pytest
from waiting import wait_until

from hwsched.deployment import Quantization, TensorSpec
from hwsched.errors import TransportError
from hwsched.handoff import convert, from_float, to_float
from hwsched.runtime.frames import (
    HEADER,
    KIND_ACK,
    KIND_END,
    FrameError,
    decode_message,
    encode_control,
    encode_data,
)
from hwsched.runtime.framing import Deframer, cobs_decode, cobs_encode, encode_packet
from hwsched.runtime.transport import SerialChannel, open_channel, parse_endpoint

A = TensorSpec("a", (1, 4, 4, 2), "float32")
B = TensorSpec("b:0", (1, 3), "int8", Quantization(0.05, -3))
SPECS = {"a": A, "b:0": B}


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.random(A.shape, dtype=np.float32),
            "b:0": rng.integers(-128, 127, B.shape, dtype=np.int8)}


def test_roundtrip_by_name():
    arrays = _arrays()
    message = decode_message(encode_data(42, 123.5, arrays, SPECS), SPECS)
    assert (message.kind, message.seq, message.origin_s) == ("data", 42, 123.5)
    for name, array in arrays.items():
        np.testing.assert_array_equal(message.tensors[name], array)
    assert message.payload_bytes == 4 * 32 + 3


def test_control_messages():
    assert decode_message(encode_control(KIND_ACK, 9), {}).kind == "ack"
    assert decode_message(encode_control(KIND_END, 10, 1.0), SPECS).seq == 10


def _patch(frame: bytes, **fields) -> bytes:
    names = ["magic", "version", "kind", "part", "parts", "seq", "origin_s", "dtype", "ndim",
             "has_quant", "pad", "scale", "zero_point", "name_len", "payload_len",
             "alternative", "sent_s"]
    values = dict(zip(names, HEADER.unpack_from(frame), strict=True))
    values.update(fields)
    return HEADER.pack(*values.values()) + frame[HEADER.size:]


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda f: _patch(f, magic=b"XXXX"), "bad magic"),
    (lambda f: _patch(f, version=9), "version"),
    (lambda f: _patch(f, kind=77), "unknown frame kind"),
    (lambda f: _patch(f, dtype=3), "dtype int8"),
    (lambda f: _patch(f, payload_len=1 << 30), "payload"),
    (lambda f: _patch(f, name_len=60000), "too large"),
    (lambda f: _patch(f, ndim=200), "too large"),
    (lambda f: f[:-1], "payload of|follow the header"),
    (lambda f: f + b"\0", "follow the header"),
    (lambda f: f[:20], "shorter"),
    (lambda f: _patch(f, seq=5), "disagree"),
])
def test_malformed_first_frame_is_rejected(mutate, match):
    frames = encode_data(1, 0.0, _arrays(), SPECS)
    with pytest.raises(FrameError, match=match):
        decode_message([mutate(frames[0]), frames[1]], SPECS)


def test_shape_name_quantization_and_count_checked_against_plan():
    frames = encode_data(1, 0.0, _arrays(), SPECS)
    other_shape = {"a": TensorSpec("a", (1, 8, 2, 2), "float32"), "b:0": B}
    with pytest.raises(FrameError, match="shape"):
        decode_message(frames, other_shape)
    other_quant = {"a": A, "b:0": TensorSpec("b:0", (1, 3), "int8", Quantization(0.1, -3))}
    with pytest.raises(FrameError, match="quantization"):
        decode_message(frames, other_quant)
    with pytest.raises(FrameError, match="does not cross"):
        decode_message(frames, {"a": A, "c": B})
    with pytest.raises(FrameError, match="carries 2"):
        decode_message(frames[:1], SPECS)
    with pytest.raises(FrameError, match="twice|numbered"):
        decode_message([frames[0], frames[0]], SPECS)
    with pytest.raises(FrameError, match="exceeds"):
        decode_message(frames, SPECS, max_payload_bytes=64)


def test_frame_count_is_checked_before_any_header_is_parsed():
    tiny = [b"x"] * 10_000  # not even headers: the count alone rejects them
    with pytest.raises(FrameError, match="10000 frames; this hop carries 2"):
        decode_message(tiny, SPECS)


def test_size_limit_is_per_tensor_so_a_multi_tensor_message_may_exceed_one_payload_cap():
    big = {name: TensorSpec(name, (1, 768), "float32") for name in ("p", "q")}  # 3 KiB each
    arrays = {name: np.ones(spec.shape, np.float32) for name, spec in big.items()}
    message = decode_message(encode_data(0, 0.0, arrays, big), big, max_payload_bytes=4096)
    assert message.payload_bytes == 6144


def test_encode_refuses_arrays_that_do_not_match_the_plan():
    arrays = _arrays()
    arrays["a"] = arrays["a"].astype(np.float64)
    with pytest.raises(FrameError, match="float64"):
        encode_data(0, 0.0, arrays, SPECS)


def test_random_garbage_never_crashes_the_decoder():
    rng = np.random.default_rng(3)
    good = encode_data(1, 0.0, _arrays(), SPECS)
    for _ in range(300):
        frame = bytearray(good[0])
        for i in rng.integers(0, len(frame), size=4):
            frame[i] = int(rng.integers(0, 256))
        try:
            message = decode_message([bytes(frame), good[1]], SPECS)
        except FrameError:
            continue
        assert message.tensors["a"].shape == A.shape  # a payload-only flip still decodes


def test_convert_requantizes_between_scales():
    wire = TensorSpec("t", (4,), "int8", Quantization(0.1, 0))
    target = TensorSpec("t", (4,), "int8", Quantization(0.2, 10))
    values = np.array([-100, -1, 0, 50], np.int8)
    np.testing.assert_array_equal(convert(values, wire, target), [-40, 9, 10, 35])
    as_float = convert(values, wire, TensorSpec("t", (4,), "float32"))
    np.testing.assert_allclose(as_float, values * 0.1, rtol=1e-6)
    assert convert(values, wire, wire) is values  # equal specs: raw bytes pass unchanged


def test_convert_rounds_half_away_from_zero_like_export():
    half = TensorSpec("t", (4,), "int8", Quantization(0.5, 0))
    real = np.array([0.25, 0.75, -0.25, 1.25], np.float32)
    as_float = TensorSpec("t", (4,), "float32")
    expected = from_float(real, half).tolist()
    assert convert(real, as_float, half).tolist() == expected == [1, 2, -1, 3]
    wire = TensorSpec("t", (4,), "int8", Quantization(0.25, 0))
    values = np.array([1, 3, -1, 5], np.int8)  # the same reals, quantized at scale 0.25
    assert convert(values, wire, half).tolist() == from_float(to_float(values, wire), half).tolist()
    assert convert(values, wire, half).tolist() == [1, 2, -1, 3]


# -- serial framing ----------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 253, 254, 255, 508, 1000])
@pytest.mark.parametrize("fill", ["random", "zeros"])
def test_cobs_roundtrip_has_no_zero(n, fill):
    data = os.urandom(n) if fill == "random" else bytes(n)
    encoded = cobs_encode(data)
    assert b"\0" not in encoded
    assert cobs_decode(encoded) == data


def test_deframer_resynchronises_and_rejects_corrupt_and_oversized_packets():
    deframer = Deframer(max_packet_bytes=2000)
    good = encode_packet([b"hello", b"\0\0\0"])
    corrupt = bytearray(encode_packet([b"world"]))
    corrupt[3] ^= 0x40
    oversized = encode_packet([os.urandom(5000)])
    stream = b"noise-before" + b"\0" + good + bytes(corrupt) + oversized + good
    received = []
    for i in range(0, len(stream), 97):  # arrives in arbitrary chunks
        received += deframer.feed(stream[i:i + 97])
    assert received == [[b"hello", b"\0\0\0"]] * 2
    assert deframer.rejected == 3  # the noise, the corrupt packet, the oversized one
    assert any("CRC" in e for e in deframer.errors)
    assert any("exceeds" in e for e in deframer.errors)


def test_crc_covers_the_part_table():
    body = bytearray(struct.pack("<HI", 1, 3) + b"abc")
    body += struct.pack("<I", zlib.crc32(bytes(body)))
    body[2] = 2  # length field changed, CRC not updated
    deframer = Deframer(100)
    assert deframer.feed(cobs_encode(bytes(body)) + b"\0") == []
    assert deframer.rejected == 1


def test_serial_loop_channel_carries_messages_and_survives_line_noise():
    channel = SerialChannel(parse_endpoint("serial://loop://?baud=921600"),
                            max_message_bytes=1 << 16)
    try:
        frames = encode_data(3, 1.0, _arrays(), SPECS)
        channel.port.write(b"\x13\x37garbage\0")
        assert channel.send(frames)
        received = None
        for _ in range(100):
            received = channel.receive()
            if received:
                break
        assert received is not None
        message = decode_message(received[1], SPECS)
        np.testing.assert_array_equal(message.tensors["a"], _arrays()["a"])
        assert channel.rejected == 1
    finally:
        channel.close()


def test_serial_channel_carries_a_message_of_several_large_tensors():
    # Two 32 KiB tensors make one 65 KiB packet: more than one frame's bound.
    big = {name: TensorSpec(name, (1, 8192), "float32") for name in ("p", "q")}
    arrays = {name: np.full(spec.shape, i + 1, np.float32)
              for i, (name, spec) in enumerate(big.items())}
    master, slave = os.openpty()
    channel = open_channel(f"serial://{os.ttyname(slave)}?baud=921600", listen=True, specs=big)
    packet = encode_packet(encode_data(0, 1.0, arrays, big))
    writer = threading.Thread(target=os.write, args=(master, packet), daemon=True)
    writer.start()  # a pty holds less than the packet: write while the channel reads
    try:
        received = wait_until(channel.receive, what="the packet to arrive whole")
        assert not channel.deframer.errors
        message = decode_message(received[1], big)
        np.testing.assert_array_equal(message.tensors["q"], arrays["q"])
    finally:
        channel.close()
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("text", ["udp://x:1", "tcp://nohost", "serial://", "serial://a?baud=x"])
def test_bad_endpoints(text):
    with pytest.raises(TransportError):
        parse_endpoint(text)
