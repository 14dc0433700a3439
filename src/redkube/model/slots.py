"""Hash slots and contiguous slot ranges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TOTAL_SLOTS = 16384
ALL_SLOTS: frozenset[int] = frozenset(range(TOTAL_SLOTS))


@dataclass(frozen=True, order=True)
class SlotRange:
    """An inclusive range of hash slots, like Redis writes them: ``0-5460``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < TOTAL_SLOTS:
            raise ValueError(f"invalid slot range {self.start}-{self.end}")

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __contains__(self, slot: object) -> bool:
        return isinstance(slot, int) and self.start <= slot <= self.end

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"

    def slots(self) -> range:
        return range(self.start, self.end + 1)


def ranges_of(slots: Iterable[int]) -> tuple[SlotRange, ...]:
    """Compress a set of slots into the fewest sorted contiguous ranges."""
    ordered = sorted(set(slots))
    ranges: list[SlotRange] = []
    if not ordered:
        return ()
    start = previous = ordered[0]
    for slot in ordered[1:]:
        if slot != previous + 1:
            ranges.append(SlotRange(start, previous))
            start = slot
        previous = slot
    ranges.append(SlotRange(start, previous))
    return tuple(ranges)


def slots_of(ranges: Iterable[SlotRange]) -> frozenset[int]:
    return frozenset(slot for r in ranges for slot in r.slots())


def describe_ranges(ranges: Iterable[SlotRange]) -> str:
    text = ",".join(str(r) for r in ranges)
    return text or "-"


def _crc16_table() -> tuple[int, ...]:
    """CRC-16/XMODEM (polynomial 0x1021), the checksum Redis Cluster hashes keys with."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC16 = _crc16_table()


def key_slot(key: bytes) -> int:
    """The hash slot of a key, as CLUSTER KEYSLOT computes it: CRC16 of the key, or of its hash
    tag (what lies between the first ``{`` and the next ``}``, when that is not empty), mod
    16384."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc % TOTAL_SLOTS
