"""The benchmarks' harness: real processes from ``tests/support``, statistics and tables."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import (  # noqa: E402
    PG_URL_ENV,
    AdminApi,
    Cli,
    PgCluster,
    ProcessRegistry,
    ServerProcess,
    WorkerProcess,
    free_port,
    subprocess_env,
    upgrade_database,
)


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like ^C, so every ``finally`` still stops the children."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


class Bench:
    """One run's EDGEFLEET_HOME, secret and processes (stopped on exit, workers first)."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="edgefleet-bench-"))
        self.secret = secrets.token_urlsafe(32)
        self.registry = ProcessRegistry(self.home / "logs")
        self.servers: list[ServerProcess] = []
        self.db_url = ""  # the servers' database, once the first one started
        self._engine = None

    def __enter__(self) -> Bench:
        exit_on_sigterm()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        if wanted > soft:  # children inherit it: one socket per long-poll
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self.registry.cleanup()
        shutil.rmtree(self.home, ignore_errors=True)

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    @property
    def ports(self) -> list[int]:
        return [int(server.url.rsplit(":", 1)[1]) for server in self.servers]

    def env(self, api_url: str | None = None, **settings: str) -> dict[str, str]:
        """The environment of an edgefleet process of this run."""
        return subprocess_env(
            EDGEFLEET_HOME=str(self.home),
            EDGEFLEET_SECRET=self.secret,
            EDGEFLEET_API_URL=api_url or (self.servers[0].url if self.servers else ""),
            EDGEFLEET_ACTOR="bench",
            NO_PROXY="*",
            **settings,
        )

    def start_server(self, db_url: str | None = None, **settings: str) -> ServerProcess:
        """``edgefleet server`` on a migrated ``db_url`` (default: SQLite in the home),
        migrated by the code the server runs (``PYTHONPATH`` in ``settings``: another's)."""
        db_url = db_url or f"sqlite:///{self.home}/edgefleet.db"
        if not self.servers:
            if "PYTHONPATH" in settings:
                Cli(self.env(EDGEFLEET_DB_URL=db_url, **settings))("db", "migrate", check=True)
            else:
                upgrade_database(db_url)
            self.db_url = db_url
        self.servers.append(self._serve(free_port(), EDGEFLEET_DB_URL=db_url, **settings))
        return self.servers[-1]

    def restart_server(self, index: int) -> ServerProcess:
        """Server ``index`` again, on its port and the run's database (after a kill)."""
        self.servers[index] = self._serve(self.ports[index], EDGEFLEET_DB_URL=self.db_url)
        return self.servers[index]

    def _serve(self, port: int, **settings: str) -> ServerProcess:
        env = self.env(f"http://127.0.0.1:{port}", **settings)
        server = self.registry.start_server(env, port, ("--log-level", "warning"))
        server.wait_healthy(60)
        return server

    def start_worker(self, hostname: str, *args: str) -> WorkerProcess:
        """``edgefleet worker -H HOSTNAME ARGS``, once the server lists it acknowledged."""
        worker = self.registry.start_worker(self.env(), hostname, args)
        with self.admin() as api:
            api.wait_for_worker(
                hostname,
                lambda v: v["pid"] == worker.pid and v["applied_version"] == v["desired_version"],
                timeout=60,
            )
        return worker

    def admin(self) -> AdminApi:
        return AdminApi(self.servers[0].url, self.secret, subject="bench")

    def worker_rows(self, *columns) -> list[tuple]:
        """``columns`` of every worker, read from the database: asking the server would load
        the server being measured."""
        self._engine = self._engine or create_engine(self.db_url)
        with self._engine.connect() as connection:
            return [tuple(row) for row in connection.execute(select(*columns))]

    def errors(self) -> list[str]:
        """Tracebacks and errors the servers logged."""
        lines = [ln for s in self.servers for ln in s.log_text().splitlines()]
        return [ln for ln in lines if "Traceback" in ln or " ERROR" in ln or ln.startswith("ERROR")]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """``EDGEFLEET_TEST_PG_URL``, else a throwaway cluster's URL."""
    exit_on_sigterm()
    with contextlib.ExitStack() as stack:
        yield os.environ.get(PG_URL_ENV) or stack.enter_context(PgCluster()).url


def session_cpu(*leaders: int) -> float:
    """CPU seconds of the sessions ``leaders`` lead (forks included): the figure a busy host
    disturbs least."""
    total = 0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) in leaders:  # field 6 of stat, the session id
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Summary:
    n: int
    missed: int
    p50: float
    p95: float
    p99: float
    max: float


def summarize(values: Iterable[float | None]) -> Summary:
    """Latencies in seconds (``None``: never completed); percentiles interpolated as numpy's."""
    values = list(values)
    done = [v for v in values if v is not None and math.isfinite(v)]
    if len(done) > 1:
        cuts = statistics.quantiles(done, n=100, method="inclusive")
        pcts = [cuts[49], cuts[94], cuts[98]]
    else:
        pcts = (done or [math.nan]) * 3
    return Summary(len(done), len(values) - len(done), *pcts, max(done, default=math.nan))


def fmt_ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if abs(seconds) >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.1f} ms" if abs(seconds) < 1 else f"{seconds:.2f} s"


def fmt_rate(value: float | None) -> str:
    return f"{value:.0f}/s" if value is not None and math.isfinite(value) else "-"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join([row[0].ljust(widths[0]), *rest]))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git_state() -> str:
    """The commit measured (and whether src/ differs from it), and the host's load."""

    def git(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            run = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=10)
            return run.stdout.decode().strip()
        return ""

    dirty = " + uncommitted changes in src/" if git("status", "--porcelain", "src") else ""
    return (
        f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}, load {os.getloadavg()[0]:.1f}"
    )
