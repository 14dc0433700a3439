"""The key count an RDB file declares in its header (Redis 7, Valkey 8/9), read without a server.

An RDB file starts with a 9-byte signature: ``REDIS`` and four version digits (``REDIS0010`` from
Redis 7.0) or ``VALKEY`` and three (``VALKEY080`` from Valkey 9). Opcodes follow: AUX fields,
functions, then per database a SELECTDB and a RESIZEDB whose first length is the number of keys
in that database, then the database's key records, and at the end EOF and a checksum.

``declared_keys`` walks the opcodes from the signature and sums the RESIZEDB key counts it meets
before the first key record (or EOF). It stops at the first key record: it cannot skip values,
whose encodings are many. With several databases that sum is only database 0's count (the
RESIZEDB of database 1 comes after database 0's keys); a cluster-mode node has only database 0, so
there it is the node's whole key count (DBSIZE when the snapshot was taken). A database with no
keys writes no RESIZEDB, so an empty snapshot declares 0.
"""

from __future__ import annotations

from pathlib import Path

# At most this much of a file is read: the opcodes before the first key (AUX fields, function
# libraries, slot annotations) are far smaller in practice.
HEAD_BYTES = 4 * 1024 * 1024

SIGNATURE_BYTES = 9

OPCODE_SLOT_IMPORT = 0xF3  # Valkey 9: an ongoing atomic slot migration (a string, ranges)
OPCODE_SLOT_INFO = 0xF4  # Redis 7.4 / Valkey before 8.1: slot id, keys, expires (3 lengths)
OPCODE_FUNCTION2 = 0xF5  # one function library: a string
OPCODE_FUNCTION_PRE_GA = 0xF6  # Redis 7.0 release candidates only; no GA server reads it
OPCODE_MODULE_AUX = 0xF7  # module id, when opcode, when, module values up to their EOF
OPCODE_IDLE = 0xF8  # LRU idle time of the next key: starts a key record
OPCODE_FREQ = 0xF9  # LFU frequency of the next key: starts a key record
OPCODE_AUX = 0xFA  # two strings
OPCODE_RESIZEDB = 0xFB  # keys, keys with an expire (two lengths)
OPCODE_EXPIRETIME_MS = 0xFC  # expire of the next key: starts a key record
OPCODE_EXPIRETIME = 0xFD  # expire of the next key: starts a key record
OPCODE_SELECTDB = 0xFE  # a length
OPCODE_EOF = 0xFF

# Value types (a key record's type byte) are small: 0-25 in Redis 7.4, fewer in Valkey. Bytes
# between this bound and the opcodes are not RDB.
VALUE_TYPE_MAX = 0x3F

# Opcodes that belong to a key record (they precede its type byte).
KEY_PREFIXES = frozenset({OPCODE_IDLE, OPCODE_FREQ, OPCODE_EXPIRETIME_MS, OPCODE_EXPIRETIME})

# Module values inside MODULE_AUX (rdbLoadCheckModuleValue).
MODULE_EOF, MODULE_SINT, MODULE_UINT, MODULE_FLOAT, MODULE_DOUBLE, MODULE_STRING = range(6)

# Special string encodings (the two top bits of a length byte are 11).
ENC_INT8, ENC_INT16, ENC_INT32, ENC_LZF = range(4)


class _Unwalkable(Exception):
    """The bytes are not an RDB this walk understands (or end too early)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise _Unwalkable(f"truncated at {self.pos} (wanted {count} bytes)")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def length(self) -> tuple[int, bool]:
        """A length-encoded value and whether it is a special (string) encoding instead."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return int.from_bytes(self.take(4), "big"), False
        if first == 0x81:
            return int.from_bytes(self.take(8), "big"), False
        raise _Unwalkable(f"bad length encoding 0x{first:02x} at {self.pos - 1}")

    def plain_length(self) -> int:
        value, encoded = self.length()
        if encoded:
            raise _Unwalkable(f"encoded value where a length belongs, at {self.pos}")
        return value

    def skip_string(self) -> None:
        value, encoded = self.length()
        if not encoded:
            self.take(value)
        elif value == ENC_INT8:
            self.take(1)
        elif value == ENC_INT16:
            self.take(2)
        elif value == ENC_INT32:
            self.take(4)
        elif value == ENC_LZF:
            compressed = self.plain_length()
            self.plain_length()  # the uncompressed length
            self.take(compressed)
        else:
            raise _Unwalkable(f"unknown string encoding {value} at {self.pos}")

    def skip_module_values(self) -> None:
        while True:
            opcode = self.plain_length()
            if opcode == MODULE_EOF:
                return
            if opcode in (MODULE_SINT, MODULE_UINT):
                self.length()
            elif opcode == MODULE_FLOAT:
                self.take(4)
            elif opcode == MODULE_DOUBLE:
                self.take(8)
            elif opcode == MODULE_STRING:
                self.skip_string()
            else:
                raise _Unwalkable(f"unknown module value opcode {opcode} at {self.pos}")


def declared_keys(path: Path) -> int | None:
    """The keys the RDB file at ``path`` declares (the RESIZEDB counts before its first key
    record; see the module docstring for what that covers), else None when the file is not an
    RDB this walk understands. Reads at most the first HEAD_BYTES of the file."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    return declared_keys_in(head)


def declared_keys_in(head: bytes) -> int | None:
    """``declared_keys`` on the first bytes of an RDB file (all of it, or at least up to its
    first key record)."""
    signature = head[:SIGNATURE_BYTES]
    if signature.startswith(b"VALKEY") and signature[6:].isdigit():
        valkey = True
    elif signature.startswith(b"REDIS") and signature[5:].isdigit():
        valkey = False
    else:
        return None
    reader = _Reader(head)
    reader.pos = SIGNATURE_BYTES
    total = 0
    resized = False
    try:
        while True:
            opcode = reader.byte()
            if opcode == OPCODE_EOF:
                return total
            if opcode == OPCODE_RESIZEDB:
                total += reader.plain_length()
                reader.plain_length()  # keys with an expire
                resized = True
            elif opcode == OPCODE_AUX:
                reader.skip_string()
                reader.skip_string()
            elif opcode == OPCODE_SELECTDB:
                reader.plain_length()
            elif opcode == OPCODE_FUNCTION2:
                reader.skip_string()
            elif opcode == OPCODE_MODULE_AUX:
                reader.plain_length()  # module id
                reader.plain_length()  # when opcode
                reader.plain_length()  # when
                reader.skip_module_values()
            elif opcode == OPCODE_SLOT_INFO:
                for _ in range(3):  # slot id, keys in it, keys with an expire in it
                    reader.plain_length()
            elif opcode == OPCODE_SLOT_IMPORT and valkey:
                reader.skip_string()  # the migration job's name
                for _ in range(2 * reader.plain_length()):  # each range's start and end
                    reader.plain_length()
            elif opcode <= VALUE_TYPE_MAX or opcode in KEY_PREFIXES:
                # The first key record. Old RDBs (before version 7) have no RESIZEDB at all.
                return total if resized else None
            else:
                # FUNCTION_PRE_GA, Redis 8's per-key metadata (0xF3 under REDIS), or not RDB.
                return None
    except _Unwalkable:
        return None
