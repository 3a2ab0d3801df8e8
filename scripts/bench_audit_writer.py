"""Bench: the audit writer alone, CPU per record, by batch size and by what the table holds.

    scripts/bench audit_writer      (not in `all`: it writes two SQLite files of ~450 MB)

The writer (`AuditWriter`, SQLite, the engine's own PRAGMAs) appends egress-like records in
batches of BATCHES, on an empty table and on tables already holding BENCH_AUDIT_ROWS records
(1,000,000) whose targets take BENCH_AUDIT_TARGETS distinct values (50 and 2,000); the new
records use as many targets. Records are queued and then drained in one batch at a time, and
the process's CPU time (every thread: SQLite works in aiosqlite's) is divided by the records.
The cases alternate for BENCH_ROUNDS rounds (3); each figure is the median of its rounds.
A table grows at every index its records land in at scattered places: `target` above all.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench_serve import machine_speed
from bench_table import NONE, emit

from vivified.egress.records import Outcome, build_event
from vivified.registry.audit.rows import insert_sql
from vivified.registry.audit.writer import AuditEvent, AuditWriter
from vivified.registry.store.engine import create_engine, migrate, session_factory

ROWS = int(os.environ.get("BENCH_AUDIT_ROWS", "1000000"))
TARGETS = tuple(int(t) for t in os.environ.get("BENCH_AUDIT_TARGETS", "50,2000").split(","))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCHES = (50, 200)
RECORDS = 8000  # per measurement
ACTORS = 50


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def make_table(path: Path, rows: int, targets: int) -> None:
    """A migrated registry whose audit table holds `rows` records (the chain head moved to
    them: the writer appends after them; their hashes are not a chain)."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    await engine.dispose()
    if not rows:
        return
    rnd = random.Random(1)
    start = time.time() - rows * 0.01
    detail = json.dumps({"host": "h", "port": 443, "mode": "enforce", "path": "/x"})

    def values() -> Iterator[tuple[object, ...]]:
        for i in range(1, rows + 1):
            yield (
                i,
                start + i * 0.01,
                f"plugin-{rnd.randrange(ACTORS)}",
                rnd.choice(("operator", "egress", "events", "registry")),
                "request",
                f"host{rnd.randrange(targets)}.example.com:443",
                rnd.choice(("allow", "deny")),
                "allowed",
                os.urandom(8).hex(),
                200,
                1.5,
                10,
                100,
                detail,
                "0" * 64,
                "f" * 64,
            )

    db = sqlite3.connect(path)
    try:
        db.executemany(insert_sql("qmark"), values())
        db.execute(
            "UPDATE audit_chain_head SET last_id = ?, last_hash = ? WHERE id = 1", (rows, "f" * 64)
        )
        db.commit()
    finally:
        db.close()


async def measure(path: Path, targets: int, batch: int) -> float:
    """µs of CPU per record, appending RECORDS egress-like records in batches of `batch`."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    writer = AuditWriter(session_factory(engine), flush_interval=0)

    def event(i: int) -> AuditEvent:
        o = Outcome(
            "request",
            f"plugin-{i % ACTORS}",
            f"host{random.randrange(targets)}.example.com",
            443,
            decision="allow",
            reason="allowed",
            status=200,
            request_id=os.urandom(8).hex(),
            address="127.0.0.1",
            method="GET",
            path="/x?a=1",
            mode="enforce",
            started=time.time(),
            bytes_in=11,
        )
        return build_event(o, time.time())

    try:
        for i in range(batch):  # warm: the pool's connection, the statements
            writer.record_nowait(event(i))
        await writer._drain_once()
        began = cpu()
        for _ in range(RECORDS // batch):
            for i in range(batch):
                writer.record_nowait(event(i))
            await writer._drain_once()
        return (cpu() - began) / (RECORDS // batch * batch) * 1e6
    finally:
        await engine.dispose()


async def main() -> None:
    print(machine_speed(), flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cases: dict[str, tuple[Path, int]] = {}
        for targets in TARGETS:
            path = tmp / f"empty-{targets}.db"
            await make_table(path, 0, targets)
            cases[f"empty table, {targets} targets"] = (path, targets)
        for targets in TARGETS:
            began = time.perf_counter()
            path = tmp / f"full-{targets}.db"
            await make_table(path, ROWS, targets)
            took = time.perf_counter() - began
            print(f"seeded {ROWS:,} records, {targets} targets, in {took:.0f} s", flush=True)
            cases[f"{ROWS:,} records, {targets} targets"] = (path, targets)
        got: dict[tuple[str, int], list[float]] = {}
        for _ in range(ROUNDS):
            for name, (path, targets) in cases.items():
                for batch in BATCHES:
                    got.setdefault((name, batch), []).append(await measure(path, targets, batch))
    print(f"audit writer alone, µs of CPU per record (median of {ROUNDS} rounds [range])")
    print(f"{'table':<40}" + "".join(f"{f'batches of {b}':>26}" for b in BATCHES))
    for name in cases:
        cells = []
        for batch in BATCHES:
            runs = got[(name, batch)]
            cells.append(f"{statistics.median(runs):7.1f} [{min(runs):.0f}-{max(runs):.0f}]")
        print(f"{name:<40}" + "".join(f"{c:>26}" for c in cells))
    for targets in TARGETS:
        empty = statistics.median(got[(f"empty table, {targets} targets", BATCHES[0])])
        full = statistics.median(got[(f"{ROWS:,} records, {targets} targets", BATCHES[0])])
        emit(
            "audit_writer",
            f"audit writer alone, CPU per record in batches of {BATCHES[0]}, table of "
            f"{ROWS:,} records vs empty, {targets} distinct targets",
            rate=f"{full:.0f} µs/record",
            reference=f"empty table {empty:.0f} µs/record",
            ratio=full / empty,
            target=NONE,
            met=None,
        )


if __name__ == "__main__":
    asyncio.run(main())
