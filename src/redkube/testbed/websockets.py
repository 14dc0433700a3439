"""WebSocket framing (RFC 6455) on the stdlib, without I/O.

The caller owns the socket: it feeds received bytes to a `FrameParser` and gets whole messages
back (fragmented messages reassembled, control frames passed through as they arrive), and it
sends what `encode_frame` returns.

    parser = FrameParser(expect_masked=True)          # a server: client frames are masked
    for message in parser.feed(sock.recv(65536)):
        if message.opcode is Opcode.PING:
            sock.sendall(encode_frame(Opcode.PONG, message.data))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from enum import IntEnum

ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"
MAX_CONTROL_PAYLOAD = 125
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= Opcode.CLOSE


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class ProtocolError(Exception):
    """The peer broke RFC 6455; close the connection with `code`."""

    def __init__(self, message: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Message:
    """A whole data message (TEXT or BINARY) or one control frame (CLOSE, PING, PONG)."""

    opcode: Opcode
    data: bytes


# --- the opening handshake -----------------------------------------------------------------


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value that answers the client's Sec-WebSocket-Key."""
    digest = hashlib.sha1((key.strip() + ACCEPT_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_key(key: str) -> bool:
    """Whether a Sec-WebSocket-Key is the base64 encoding of 16 bytes, as RFC 6455 requires."""
    try:
        return len(base64.b64decode(key.strip().encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        return False


def new_key() -> str:
    """A fresh Sec-WebSocket-Key, for a client."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def header_tokens(value: str | None) -> list[str]:
    """The comma-separated tokens of a header (Connection, Sec-WebSocket-Protocol), trimmed."""
    if not value:
        return []
    return [token.strip() for token in value.split(",") if token.strip()]


def select_subprotocol(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first subprotocol the client offers that is supported, or None."""
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


# --- frames ----------------------------------------------------------------------------------


def _xor_mask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    if size == 0:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def encode_frame(
    opcode: Opcode, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame. Servers send unmasked frames; a client passes a 4-byte `mask`."""
    if opcode.is_control and (len(payload) > MAX_CONTROL_PAYLOAD or not fin):
        raise ValueError("a control frame carries at most 125 bytes and cannot be fragmented")
    if mask is not None and len(mask) != 4:
        raise ValueError("a frame mask is 4 bytes")
    first = (0x80 if fin else 0) | int(opcode)
    mask_bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if mask is None:
        return header + payload
    return header + mask + _xor_mask(payload, mask)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a CLOSE frame; the reason is cut to fit the 125-byte limit."""
    encoded = reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2]
    return struct.pack("!H", code) + encoded.decode("utf-8", errors="ignore").encode("utf-8")


def _valid_close_code(code: int) -> bool:
    reserved = (1004, CloseCode.NO_STATUS, CloseCode.ABNORMAL, 1015)
    return (1000 <= code <= 1014 and code not in reserved) or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """The status code (None when absent) and reason of a CLOSE frame; raises ProtocolError."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError("a close frame payload of one byte")
    (code,) = struct.unpack("!H", payload[:2])
    if not _valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError("close reason is not UTF-8", CloseCode.INVALID_PAYLOAD) from error
    return code, reason


class FrameParser:
    """Incremental frame parser: `feed` bytes, get complete messages.

    Checks what RFC 6455 requires of the peer: masking (clients mask, servers do not), no
    reserved bits (no extension is negotiated), known opcodes, control frames unfragmented and
    at most 125 bytes, continuation frames only inside a fragmented message, 64-bit lengths
    with the top bit clear, text that is UTF-8; and keeps messages under `max_message` bytes.
    After a CLOSE frame the parser takes no more input.
    """

    def __init__(self, *, expect_masked: bool, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.expect_masked = expect_masked
        self.max_message = max_message
        self.closed = False
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._fragment_opcode: Opcode | None = None

    def feed(self, data: bytes) -> list[Message]:
        if self.closed:
            return []
        self._buffer += data
        messages: list[Message] = []
        while not self.closed:
            message = self._next_frame()
            if message is None:
                break
            if message is not _INCOMPLETE_MESSAGE:
                messages.append(message)
        return messages

    def _next_frame(self) -> Message | None:
        """The next message or control frame, _INCOMPLETE_MESSAGE for a fragment, or None."""
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        fin = bool(first & 0x80)
        if first & 0x70:
            raise ProtocolError("reserved bits set without a negotiated extension")
        try:
            opcode = Opcode(first & 0x0F)
        except ValueError:
            raise ProtocolError(f"unknown opcode {first & 0x0F:#x}") from None
        masked = bool(second & 0x80)
        if masked != self.expect_masked:
            raise ProtocolError("client frames must be masked, server frames must not be")
        size = second & 0x7F
        offset = 2
        if size == 126:
            if len(buffer) < 4:
                return None
            (size,) = struct.unpack_from("!H", buffer, 2)
            offset = 4
        elif size == 127:
            if len(buffer) < 10:
                return None
            (size,) = struct.unpack_from("!Q", buffer, 2)
            if size >> 63:
                raise ProtocolError("a 64-bit frame length with the top bit set")
            offset = 10
        if opcode.is_control:
            if not fin:
                raise ProtocolError("a fragmented control frame")
            if size > MAX_CONTROL_PAYLOAD:
                raise ProtocolError("a control frame longer than 125 bytes")
        elif self._fragment_size + size > self.max_message:
            raise ProtocolError(
                f"a message longer than {self.max_message} bytes", CloseCode.MESSAGE_TOO_BIG
            )
        mask = b""
        if masked:
            if len(buffer) < offset + 4:
                return None
            mask = bytes(buffer[offset : offset + 4])
            offset += 4
        if len(buffer) < offset + size:
            return None
        payload = bytes(buffer[offset : offset + size])
        del buffer[: offset + size]
        if masked:
            payload = _xor_mask(payload, mask)
        if opcode.is_control:
            if opcode is Opcode.CLOSE:
                parse_close(payload)
                self.closed = True
            return Message(opcode, payload)
        return self._data_frame(opcode, fin, payload)

    def _data_frame(self, opcode: Opcode, fin: bool, payload: bytes) -> Message:
        if opcode is Opcode.CONTINUATION:
            if self._fragment_opcode is None:
                raise ProtocolError("a continuation frame outside a fragmented message")
        elif self._fragment_opcode is not None:
            raise ProtocolError("a new data frame inside a fragmented message")
        else:
            self._fragment_opcode = opcode
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if not fin:
            return _INCOMPLETE_MESSAGE
        whole = Message(self._fragment_opcode, b"".join(self._fragments))
        self._fragments = []
        self._fragment_size = 0
        self._fragment_opcode = None
        if whole.opcode is Opcode.TEXT:
            try:
                whole.data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ProtocolError(
                    "a text message that is not UTF-8", CloseCode.INVALID_PAYLOAD
                ) from error
        return whole


_INCOMPLETE_MESSAGE = Message(Opcode.CONTINUATION, b"")
"""Marks a fragment that did not finish its message; never returned by `feed`."""


__all__ = [
    "CloseCode",
    "FrameParser",
    "Message",
    "Opcode",
    "ProtocolError",
    "accept_key",
    "close_payload",
    "encode_frame",
    "header_tokens",
    "new_key",
    "parse_close",
    "select_subprotocol",
    "valid_key",
]
