"""Serial framing: a message (list of byte parts) as one COBS packet with a CRC32.

Packet before stuffing: ``count u16 | (len u32 | bytes) × count | crc32 u32`` (CRC over all
that precedes it). COBS removes every zero byte, so a single ``0x00`` delimits packets and a
receiver that starts mid-stream, or loses bytes, resynchronises at the next delimiter.
:class:`Deframer` never buffers more than ``max_packet_bytes``: an oversized or corrupt packet
is dropped, counted, and the stream goes on.

>>> d = Deframer(max_packet_bytes=1024)
>>> d.feed(encode_packet([b"ab\\x00c", b""]) + b"garbage\\x00" + encode_packet([b"x"]))
[[b'ab\\x00c', b''], [b'x']]
>>> d.rejected
1
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence

from hwsched.errors import TransportError

DELIMITER = b"\x00"
COBS_BLOCK = 254
PACKET_COUNT_BYTES, PART_LENGTH_BYTES, CRC_BYTES = 2, 4, 4


def cobs_max_bytes(n: int) -> int:
    """COBS adds one byte per 254 plus one: the stuffed size of ``n`` raw bytes is at most this."""
    return n + n // COBS_BLOCK + 2


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result contains no zero byte."""
    out = bytearray()
    for chunk in data.split(DELIMITER):
        while len(chunk) >= COBS_BLOCK:
            out.append(0xFF)
            out += chunk[:COBS_BLOCK]
            chunk = chunk[COBS_BLOCK:]
        out.append(len(chunk) + 1)
        out += chunk
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            raise TransportError("COBS block runs past the end of the packet")
        block = data[i + 1 : i + code]
        if DELIMITER in block:
            raise TransportError("zero byte inside a COBS block")
        out += block
        i += code
        if code < 0xFF and i < n:
            out += DELIMITER
    return bytes(out)


def packet_bytes(part_lengths: Sequence[int]) -> int:
    """Size of the packet (before stuffing) carrying parts of these lengths."""
    return PACKET_COUNT_BYTES + sum(PART_LENGTH_BYTES + n for n in part_lengths) + CRC_BYTES


def encode_packet(parts: Sequence[bytes]) -> bytes:
    body = bytearray(struct.pack("<H", len(parts)))
    for part in parts:
        body += struct.pack("<I", len(part))
        body += part
    body += struct.pack("<I", zlib.crc32(body))
    return cobs_encode(bytes(body)) + DELIMITER


def decode_packet(stuffed: bytes) -> list[bytes]:
    body = cobs_decode(stuffed)
    if len(body) < 6:
        raise TransportError(f"packet of {len(body)} B is too short")
    (crc,) = struct.unpack_from("<I", body, len(body) - 4)
    if zlib.crc32(body[:-4]) != crc:
        raise TransportError("CRC32 mismatch")
    (count,) = struct.unpack_from("<H", body)
    parts, offset, end = [], 2, len(body) - 4
    for _ in range(count):
        if offset + 4 > end:
            raise TransportError("packet ends inside a part length")
        (length,) = struct.unpack_from("<I", body, offset)
        offset += 4
        if offset + length > end:
            raise TransportError("part runs past the end of the packet")
        parts.append(body[offset : offset + length])
        offset += length
    if offset != end:
        raise TransportError(f"{end - offset} stray bytes after the last part")
    return parts


class Deframer:
    """Splits a byte stream into messages; counts and drops bad packets."""

    def __init__(self, max_packet_bytes: int) -> None:
        self.max_stuffed_bytes = cobs_max_bytes(max_packet_bytes)
        self._buffer = bytearray()
        self._discarding = False
        self.rejected = 0
        self.errors: list[str] = []

    def feed(self, chunk: bytes) -> list[list[bytes]]:
        messages = []
        for packet in self._complete_packets(chunk):
            try:
                messages.append(decode_packet(packet))
            except TransportError as error:
                self._reject(str(error))
        return messages

    def _complete_packets(self, chunk: bytes) -> Iterator[bytes]:
        """Append ``chunk`` to the buffer and yield each packet a delimiter completes."""
        start = 0
        while True:
            stop = chunk.find(DELIMITER, start)
            if not self._discarding:
                self._buffer += chunk[start:] if stop < 0 else chunk[start:stop]
                if len(self._buffer) > self.max_stuffed_bytes:
                    self._reject(f"packet exceeds {self.max_stuffed_bytes} B")
                    self._buffer = bytearray()
                    self._discarding = True  # drop everything up to the next delimiter
            if stop < 0:
                return
            packet, self._buffer = bytes(self._buffer), bytearray()
            if self._discarding:
                self._discarding = False
            elif packet:  # back-to-back delimiters are an idle line, not a packet
                yield packet
            start = stop + 1

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        self.errors.append(reason)
        del self.errors[:-16]  # keep the last few reasons for logs, bounded
