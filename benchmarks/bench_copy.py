"""``orchestrator-db copy`` SQLite → PostgreSQL against ``pgloader`` on the same file, same run.

    python -m benchmarks.bench_copy                 # 1,000,000 agent_logs rows
    BENCH_COPY_ROWS=100000 python -m benchmarks.bench_copy   # a quick run
    BENCH_COPY_REPEAT=3 python -m benchmarks.bench_copy      # best of 3 of each
    BENCH_COPY_BARE=1 python -m benchmarks.bench_copy        # also a bare asyncpg COPY
    BENCH_COPY_DATA=/tmp/x python -m benchmarks.bench_copy   # cache the source elsewhere

The source is generated once with raw sqlite3 under benchmarks/.data/ (git-ignored) and reused:
one agent, ``ROWS`` agent_logs rows, and the change log the triggers wrote for them.

Both tools run as the user would run them, each as its own process into a new, empty database:
``pgloader sqlite:///… postgresql://…`` (every column as text, its change-log copy included,
no verification) and ``orchestrator-db copy sqlite:///… postgresql://…`` (native types,
verified). Wall time and peak resident memory (of the process and its children, sampled) are
measured for both; the ratio pgloader / copy is printed against issue 12's target (≥ 1.5×,
≤ 200 MB).
pgloader is a Debian package: when it is missing and this runs as root it is installed with
``apt-get install -y pgloader``; otherwise only ``copy`` is measured.

PostgreSQL comes from ORCHESTRATOR_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test);
each run creates its own database and drops it at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from orchestrator_db import DatabaseManager, render_sqlite_schema
from orchestrator_db.ids import uuid7
from orchestrator_db.models import format_ts
from orchestrator_db.tables import COLUMNS

PG_URL = os.environ.get("ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = int(os.environ.get("BENCH_COPY_ROWS", "1000000"))
# Best of REPEAT runs of each tool: the machine is shared, the best run is the least noisy.
REPEAT = int(os.environ.get("BENCH_COPY_REPEAT", "1"))
BARE = os.environ.get("BENCH_COPY_BARE", "") not in ("", "0")
# Where the source is cached (and the tools' logs go): BENCH_COPY_DATA to use another place, e.g.
# to keep the shared cache at its schema version while a migration is being written.
DATA = Path(os.environ.get("BENCH_COPY_DATA") or Path(__file__).parent / ".data")
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")
TARGET_RATIO = 1.5
TARGET_RSS_MB = 200


def make_source(rows: int) -> Path:
    """Create (once) a SQLite database with one agent and ``rows`` agent_logs rows."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"copy_source_{rows}.db"
    if path.exists():
        with sqlite3.connect(path) as conn:
            (n,) = conn.execute("SELECT count(*) FROM agent_logs").fetchone()
        if n == rows:
            # copy reads only a source at the newest schema: bring a file cached by an older
            # package up to date (the same as a user would, with `orchestrator-db upgrade`).
            subprocess.run([sys.executable, "-m", "orchestrator_db.cli", "upgrade", "--db",
                            str(path)], check=True, stdout=subprocess.DEVNULL)
            return path
        path.unlink()
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    conn.executescript(render_sqlite_schema())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = format_ts(start)
    oa, agent = uuid7(), uuid7()
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO orchestrator_agents (id, name, status, created_at, updated_at) "
        "VALUES (?, 'bench', 'active', ?, ?)", (oa, now, now))
    conn.execute(
        "INSERT INTO agents (id, orchestrator_agent_id, session_id, status, created_at, "
        "updated_at) VALUES (?, ?, 'bench-session', 'completed', ?, ?)", (agent, oa, now, now))

    def logs() -> Iterator[tuple[str, ...]]:
        for i in range(rows):
            yield (uuid7(), agent, LEVELS[i % len(LEVELS)], "event",
                   f"step {i} done: ünïcode ✓ and some text of a typical log line",
                   json.dumps({"i": i, "step": "build", "ok": i % 7 != 0}),
                   format_ts(start + timedelta(microseconds=i * 10)))

    conn.executemany("INSERT INTO agent_logs (id, agent_id, log_level, log_type, message, "
                     "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", logs())
    conn.execute("COMMIT")
    conn.close()
    tmp.rename(path)
    return path


@dataclass
class Run:
    """One tool's run: wall seconds and peak resident memory of its process tree."""

    seconds: float
    rss_mb: float


def _tree_rss_mb(root: int) -> float:
    """The resident memory of ``root`` and its descendants, now (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew = bool(more)
        tree |= more
    return sum(rss.get(pid, 0) for pid in tree) / 2**20


def _database_url(name: str) -> str:
    parts = urlsplit(PG_URL)
    return urlunsplit(parts._replace(path=f"/{name}", query=""))


async def _fresh_database(admin: asyncpg.Connection, name: str) -> str:
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    return _database_url(name)


def _measure(command: list[str], log: Path) -> Run:
    """Run ``command`` to its end: its wall time and the peak resident memory of its process
    tree, sampled every 0.1 s, or its ``ru_maxrss`` if larger (SystemExit if it fails)."""
    peak = [0.0]
    with log.open("wb") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], _tree_rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({proc.returncode}); see {log}:\n"
                         f"{log.read_text(errors='replace')[-2000:]}")
    return Run(seconds, max(peak[0], usage.ru_maxrss / 1024))  # ru_maxrss: KiB on Linux


def ensure_pgloader() -> str | None:
    """Return the pgloader command, installing the Debian package when missing (as root)."""
    found = shutil.which("pgloader")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("pgloader missing: apt-get install -y pgloader")
        subprocess.run(["apt-get", "install", "-y", "pgloader"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        found = shutil.which("pgloader")
    return found


async def run_pgloader(admin: asyncpg.Connection, pgloader: str, source: Path, name: str) -> Run:
    url = await _fresh_database(admin, name)
    try:
        run = _measure([pgloader, f"sqlite://{source.resolve()}", url],
                       DATA / "pgloader.log")
        conn = await asyncpg.connect(url)
        try:
            n = await conn.fetchval("SELECT count(*) FROM agent_logs")
        finally:
            await conn.close()
        assert n == ROWS, f"pgloader loaded {n} agent_logs rows, not {ROWS}"
        return run
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def run_copy(admin: asyncpg.Connection, source: Path, name: str) -> Run:
    url = await _fresh_database(admin, name)
    env_log = DATA / "copy.log"
    try:
        run = _measure([sys.executable, "-m", "orchestrator_db.cli", "copy",
                        f"sqlite:///{source.resolve()}", url, "--json"], env_log)
        text = env_log.read_text()
        report = json.loads(text[text.index("{"):])
        assert report["verified"] is True, report
        assert report["copied_rows"] == ROWS + 2, report
        return run
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def bare_copy(admin: asyncpg.Connection, source: Path, name: str) -> float:
    """Seconds for one copy_records_to_table of every row, held in memory as driver values."""
    with sqlite3.connect(source) as lite:
        rows = lite.execute(f"SELECT {', '.join(COLUMNS['agent_logs'])} FROM agent_logs "
                            "ORDER BY created_at, id").fetchall()
    records = [(uuid.UUID(r[0]), uuid.UUID(r[1]), r[2], r[3], r[4], json.loads(r[5]),
                datetime.fromisoformat(r[6]), r[7], r[8]) for r in rows]
    del rows
    url = await _fresh_database(admin, name)
    try:
        async with DatabaseManager(source) as src:
            oa = (await src.list_orchestrator_agents())[0]
            agent = (await src.list_agents())[0]
        async with DatabaseManager(url=url):  # the package's schema
            pass
        conn = await asyncpg.connect(url)
        try:
            await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + json.dumps(v).encode(),
                                      decoder=lambda b: json.loads(b[1:]), schema="pg_catalog",
                                      format="binary")
            await conn.execute(
                "INSERT INTO orchestrator_agents (id, name, status, created_at, updated_at) "
                "VALUES ($1, $2, 'active', now(), now())", oa["id"], oa["name"])
            await conn.execute(
                "INSERT INTO agents (id, orchestrator_agent_id, session_id, status, created_at, "
                "updated_at) VALUES ($1, $2, 'x', 'completed', now(), now())", agent["id"],
                oa["id"])
            t = time.perf_counter()
            await conn.copy_records_to_table("agent_logs", records=records,
                                             columns=list(COLUMNS["agent_logs"]))
            return time.perf_counter() - t
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def main() -> None:
    t0 = time.perf_counter()
    source = make_source(ROWS)
    print(f"source: {ROWS:,} agent_logs rows in {source} ({time.perf_counter() - t0:.1f} s)")
    pgloader = ensure_pgloader()
    if pgloader is None:
        print("pgloader is not installed (apt-get install pgloader): measuring copy alone")
    admin = await asyncpg.connect(PG_URL)
    suffix = uuid.uuid4().hex[:8]
    loads: list[Run] = []
    copies: list[Run] = []
    try:
        # Alternate the tools, so both see the same machine (it is shared and noisy).
        for i in range(REPEAT):
            if pgloader is not None:
                loads.append(await run_pgloader(admin, pgloader, source, f"bench_pgl_{suffix}"))
                print(f"run {i + 1}: pgloader {loads[-1].seconds:6.2f} s "
                      f"{loads[-1].rss_mb:6.0f} MB", flush=True)
            copies.append(await run_copy(admin, source, f"bench_copy_{suffix}"))
            print(f"run {i + 1}: copy     {copies[-1].seconds:6.2f} s "
                  f"{copies[-1].rss_mb:6.0f} MB", flush=True)
        bare = await bare_copy(admin, source, f"bench_bare_{suffix}") if BARE else None
    finally:
        await admin.close()

    ours = min(copies, key=lambda r: r.seconds)
    print(f"\nbest of {REPEAT} run(s) each, {ROWS:,} agent_logs rows SQLite → PostgreSQL")
    print(f"{'':<52} {'wall':>9} {'peak RSS':>9}")
    if loads:
        theirs = min(loads, key=lambda r: r.seconds)
        print(f"{'pgloader (text columns, change log copied, unverified)':<52} "
              f"{theirs.seconds:7.2f} s {theirs.rss_mb:6.0f} MB")
    print(f"{'orchestrator-db copy (native types, verified)':<52} "
          f"{ours.seconds:7.2f} s {max(r.rss_mb for r in copies):6.0f} MB")
    if bare is not None:
        print(f"{'bare asyncpg copy_records_to_table (in memory)':<52} {bare:7.2f} s")
    if loads:
        ratio = theirs.seconds / ours.seconds
        pairs = ", ".join(f"{a.seconds / b.seconds:.2f}x" for a, b in zip(loads, copies,
                                                                           strict=True))
        rss = max(r.rss_mb for r in copies)
        print(f"copy is {ratio:.2f}x faster than pgloader (per run: {pairs}); target ≥ "
              f"{TARGET_RATIO}x {'✔' if ratio >= TARGET_RATIO else '✘'}, peak RSS ≤ "
              f"{TARGET_RSS_MB} MB {'✔' if rss <= TARGET_RSS_MB else '✘'}")


if __name__ == "__main__":
    asyncio.run(main())
