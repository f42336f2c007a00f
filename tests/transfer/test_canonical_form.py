"""The canonical line of a row is fixed: the row-by-row comparisons of a copy are built on it."""

from __future__ import annotations

import json

from orchestrator_db.transfer import canonical_line

COLUMNS = ("id", "message", "details", "created_at")
ROW = {
    "id": "01a20000-0000-7000-8000-000000000001",
    "message": "ünïcode “quoted” 🚀 \u2028 \\ \"",
    "details": {"z": [1, 2.5, None, True], "a": {"y": 1e20, "b": 1e-7}, "é": "計画"},
    "created_at": "2026-01-01T00:00:00Z",
}


def test_canonical_line_is_pinned() -> None:
    # Sorted keys, no ASCII escaping, compact separators; floats written with "e+" compared as
    # ints (jsonb gives 1e20 back as 100000000000000000000); timestamps in the one shape.
    assert canonical_line(ROW, COLUMNS) == (
        '["01a20000-0000-7000-8000-000000000001","ünïcode “quoted” 🚀 \u2028 \\\\ \\"",'
        '{"a":{"b":1e-07,"y":100000000000000000000},"z":[1,2.5,null,true],"é":"計画"},'
        '"2026-01-01T00:00:00.000000+00:00"]\n'
    ).encode()


def test_canonical_line_matches_json_dumps_without_exponents() -> None:
    row = {**ROW, "details": {"b": [1.5, "ß"], "a": None}, "created_at": None}
    expected = json.dumps([row[c] for c in COLUMNS], sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))
    assert canonical_line(row, COLUMNS) == (expected + "\n").encode()
