"""Record ids: UUIDv7, strictly increasing within a process, one at a time or in batches."""

from __future__ import annotations

import threading
import time
import uuid

from orchestrator_db.ids import uuid7, uuid7_many


def test_ids_one_by_one_and_in_batches_increase_together() -> None:
    # More than the 4,096 ids a millisecond's sequence holds: the overflow moves on to the next
    # millisecond, in order.
    ids = [*uuid7_many(10_000), uuid7(), *uuid7_many(1), uuid7(), *uuid7_many(5_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 15_003
    parsed = [uuid.UUID(i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert [str(u) for u in parsed] == ids  # canonical text
    # The first 48 bits are the time in milliseconds.
    assert abs((parsed[0].int >> 80) - time.time_ns() // 1_000_000) < 60_000
    assert uuid7_many(0) == []


def test_threads_never_share_an_id() -> None:
    made: list[list[str]] = []

    def make() -> None:
        made.append([*uuid7_many(2_000), *(uuid7() for _ in range(500))])

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(batch == sorted(batch) for batch in made)
    assert len({i for batch in made for i in batch}) == 4 * 2_500
