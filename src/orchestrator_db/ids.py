"""Record ids: time-ordered UUIDv7 strings."""

from __future__ import annotations

import random
import threading
import time

_uuid_lock = threading.Lock()
_uuid_last_ms = 0
_uuid_seq = 0


def uuid7() -> str:
    """Return a new time-ordered UUIDv7 string (monotonic within this process).

    Time-ordered ids append to the primary-key index instead of splitting random pages, and the
    12-bit sequence keeps ids created in the same millisecond in creation order, so that
    ``(created_at, id)`` order is insertion order within a process.
    """
    global _uuid_last_ms, _uuid_seq
    # `random` is reseeded in a forked child, so forked workers do not repeat each other; the
    # ids need uniqueness, not secrecy, and this costs a tenth of an os.urandom() syscall.
    rand = random.getrandbits(64)
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _uuid_last_ms:
            _uuid_last_ms = ms
            _uuid_seq = rand >> 53  # random start in the lower half of the 12-bit sequence
        else:
            _uuid_seq += 1
            if _uuid_seq > 0xFFF:
                _uuid_last_ms += 1
                _uuid_seq = 0
            ms = _uuid_last_ms
        seq = _uuid_seq
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


