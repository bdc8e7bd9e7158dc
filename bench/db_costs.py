"""What the server's hot-path database calls cost, alone and under thread contention.

No server, no network: the service functions the worker API runs, called directly on a fresh
temporary SQLite database (``edgefleet db`` schema, ``--workers`` registered workers),
through the engine of ``edgefleet.db.session.make_engine``.

1. One thread: wall and CPU time per call of each function. The long-poll's re-read round
   (``current_desired`` + ``take_new_cancels`` + ``has_queued``) times the fleet size over
   ``watch_recheck`` is the database work an idle fleet costs every second.
2. The re-read round from T threads at once (the server's thread pool has 40), with the
   project's engine (``BEGIN IMMEDIATE`` for every transaction, reads included) and, as the
   baseline in the same run, the same engine whose read-only sessions start with a plain
   ``BEGIN`` (WAL readers then never queue for the write lock). Rounds per second show what
   one process can sustain; latency shows what contention adds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import git_state, print_table, summarize  # noqa: E402
from sqlalchemy import event  # noqa: E402

from edgefleet.contract import Heartbeat, Registration  # noqa: E402
from edgefleet.db import session as db_session  # noqa: E402
from edgefleet.db.migrate import upgrade  # noqa: E402
from edgefleet.server.services import dispatch, workers  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=1000, help="worker rows in the DB")
    parser.add_argument("--calls", type=int, default=1000, help="calls per function (part 1)")
    parser.add_argument("--threads", default="1,8,40", help="thread counts (part 2)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per cell of part 2")
    args = parser.parse_args()
    args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    if not (1 <= args.workers <= 100000 and 1 <= args.calls <= 100000):
        parser.error("--workers and --calls must be positive")
    if any(not 1 <= t <= 200 for t in args.thread_counts) or not 0 < args.seconds <= 60:
        parser.error("--threads 1..200 each, --seconds up to 60")
    return args


def deferred_reads(engine) -> None:
    """Swap the project's BEGIN IMMEDIATE hook for: writes IMMEDIATE, read-only sessions BEGIN.

    Write transactions are the ``db.begin()`` blocks of the services; they run with
    ``local.write`` set by ``WriteMarking`` below.
    """
    event.remove(engine, "begin", db_session._sqlite_on_begin)

    def on_begin(connection) -> None:
        write = getattr(_local, "write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "begin", on_begin)


_local = threading.local()


class WriteMarking:
    """A sessionmaker proxy whose ``begin()`` marks the thread as writing."""

    def __init__(self, maker) -> None:
        self._maker = maker

    def __call__(self, *args, **kwargs):
        return self._maker(*args, **kwargs)

    def begin(self):
        maker = self._maker

        class _Ctx:
            def __enter__(self):
                _local.write = True
                self._cm = maker.begin()
                return self._cm.__enter__()

            def __exit__(self, *exc):
                try:
                    return self._cm.__exit__(*exc)
                finally:
                    _local.write = False

        return _Ctx()


def seed(path: Path, count: int) -> list[tuple[str, str]]:
    engine = db_session.make_engine(f"sqlite:///{path}")
    upgrade(engine)
    db = db_session.make_sessionmaker(engine)
    names = []
    for i in range(count):
        name, instance = f"w{i:05d}", uuid.uuid4().hex
        reg = Registration(
            instance_id=instance, concurrency=2, queues=["default"], heartbeat_interval=30.0
        )
        workers.register(db, name, reg, 150.0)
        names.append((name, instance))
    engine.dispose()
    return names


def recheck_round(db, name: str, instance: str) -> None:
    """The database work of one turn of the long-poll loop (routes/edge.py ``watch``)."""
    desired = workers.current_desired(db, name, instance)
    dispatch.take_new_cancels(db, name)
    dispatch.has_queued(db, desired.queues, 2)


def single_thread(path: Path, names, calls: int) -> list[list[object]]:
    engine = db_session.make_engine(f"sqlite:///{path}")
    db = db_session.make_sessionmaker(engine)
    seq: dict[str, int] = {}

    def claim(name: str, instance: str) -> None:
        seq[name] = seq.get(name, 0) + 1
        dispatch.claim(db, name, instance, 2, seq[name])

    def beat(name: str, instance: str) -> None:
        hb = Heartbeat(instance_id=instance, state="idle", applied_version=1, applied_concurrency=2)
        workers.heartbeat(db, name, hb)

    cases = [
        ("current_desired (watch, read)", lambda n, i: workers.current_desired(db, n, i)),
        ("take_new_cancels (watch, read)", lambda n, i: dispatch.take_new_cancels(db, n)),
        ("has_queued (watch, read)", lambda n, i: dispatch.has_queued(db, ["default"], 2)),
        ("= one watch re-read round", lambda n, i: recheck_round(db, n, i)),
        ("heartbeat (write)", beat),
        ("claim / fetch, nothing queued (write)", claim),
    ]
    rows = []
    for label, fn in cases:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for k in range(calls):
            fn(*names[k % len(names)])
        wall = (time.perf_counter() - wall0) / calls
        cpu = (time.process_time() - cpu0) / calls
        rows.append([label, f"{wall * 1000:.2f} ms", f"{cpu * 1000:.2f} ms", f"{1 / wall:.0f}/s"])
    engine.dispose()
    return rows


def contended(path: Path, names, threads: int, seconds: float, deferred: bool) -> dict:
    engine = db_session.make_engine(f"sqlite:///{path}")
    if deferred:
        deferred_reads(engine)
    db = WriteMarking(db_session.make_sessionmaker(engine))
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        mine = []
        i = k
        while time.monotonic() < stop:
            name, instance = names[i % len(names)]
            i += threads
            t0 = time.monotonic()
            recheck_round(db, name, instance)
            mine.append(time.monotonic() - t0)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    t0 = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 120)
    elapsed = time.monotonic() - t0
    engine.dispose()
    return {"rate": len(latencies) / elapsed, "lat": summarize(latencies)}


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefleet-db-costs-") as tmp:
        path = Path(tmp) / "bench.db"
        names = seed(path, args.workers)
        rows = single_thread(path, names, args.calls)
        print(f"\nDB costs: {args.workers} workers in a fresh SQLite DB; code: {git_state()}")
        print_table(
            f"1. one thread, {args.calls} calls each",
            ["call", "wall", "CPU", "rate"],
            rows,
        )
        rows = []
        for threads in args.thread_counts:
            base = None
            for label, deferred in (("deferred reads (baseline)", True), ("project engine", False)):
                res = contended(path, names, threads, args.seconds, deferred)
                base = base or res["rate"]
                s = res["lat"]
                rows.append(
                    [
                        threads,
                        label,
                        f"{res['rate']:.0f}/s",
                        f"{res['rate'] / base:.2f}x",
                        f"{s.p50 * 1000:.1f} ms",
                        f"{s.p99 * 1000:.1f} ms",
                        f"{s.max * 1000:.0f} ms",
                    ]
                )
    print_table(
        "2. watch re-read rounds from T threads (rate vs the baseline at the same T)",
        ["T", "engine", "rounds", "vs baseline", "p50", "p99", "max"],
        rows,
    )
    print(
        "\n  an idle fleet of N long-polls needs N / watch_recheck rounds per second"
        " (1000 / 5 s = 200/s), before any HTTP, auth or thread-pool overhead"
    )


if __name__ == "__main__":
    main()
