"""Shared helpers for the edgefleet benchmarks: a real server process, admin HTTP, statistics.

Everything here talks to 127.0.0.1 only. A benchmark gets a fresh temporary EDGEFLEET_HOME
(with its own SQLite database), a random EDGEFLEET_SECRET and a free loopback port, runs
``edgefleet db migrate`` and then ``edgefleet server`` as a subprocess in its own session,
and tears all of it down on exit (also on Ctrl-C).

``EDGEFLEET_BENCH_SRC=DIR`` runs everything (this process, the server, the workers) against
the package in DIR instead of the installed one, e.g. a fixed snapshot while others edit the
working tree::

    mkdir -p /tmp/snap && git archive HEAD src | tar -x -C /tmp/snap \
        && git rev-parse --short HEAD > /tmp/snap/COMMIT
    EDGEFLEET_BENCH_SRC=/tmp/snap/src python bench/control_plane.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

#: An alternative source tree for the edgefleet package (see the module docstring).
BENCH_SRC = os.environ.get("EDGEFLEET_BENCH_SRC") or None
if BENCH_SRC:
    BENCH_SRC = str(Path(BENCH_SRC).resolve())
    sys.path.insert(0, BENCH_SRC)

from edgefleet.auth import Identity, TokenAuth  # noqa: E402
from edgefleet.contract import API_PREFIX  # noqa: E402

LOOPBACK = "127.0.0.1"
T = TypeVar("T")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes ----------------------------------------------------------------------------


def edgefleet_cmd() -> list[str]:
    """The ``edgefleet`` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "edgefleet"
    if script.exists():
        return [str(script)]
    found = shutil.which("edgefleet")
    if found:
        return [found]
    return [sys.executable, "-c", "from edgefleet.cli.main import run; run()"]


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file soft limit towards ``wanted``; returns the new limit.

    Children (server, workers) inherit it, so the server can hold one socket per long-poll.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU time of a process (not its children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class CpuMeter:
    """CPU used by a process between start() and stop(), as a share of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu0 = 0.0
        self._t0 = 0.0
        self.share = float("nan")

    def start(self) -> CpuMeter:
        self._cpu0 = cpu_seconds(self.pid) or 0.0
        self._t0 = time.monotonic()
        return self

    def stop(self) -> float:
        cpu = cpu_seconds(self.pid)
        elapsed = time.monotonic() - self._t0
        if cpu is not None and elapsed > 0:
            self.share = (cpu - self._cpu0) / elapsed
        return self.share


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the benchmark dies, so no server outlives a crashed run."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


class MachineMeter:
    """CPU busy on the whole machine between start() and stop(), in cores (0..ncpu).

    The benchmark shares the host with whatever else runs; subtracting what the server and
    this process used gives the load from other processes, printed next to the figures.
    """

    def __init__(self) -> None:
        self.ncpu = os.cpu_count() or 1
        self._b0 = self._t0 = 0
        self.cores = float("nan")

    def start(self) -> MachineMeter:
        self._b0, self._t0 = machine_jiffies()
        return self

    def stop(self) -> float:
        busy, total = machine_jiffies()
        if total > self._t0:
            self.cores = self.ncpu * (busy - self._b0) / (total - self._t0)
        return self.cores


def wait_for_quiet_host(max_cores: float | None, timeout: float = 600.0) -> float:
    """Wait (bounded) until other processes use less than ``max_cores`` cores; None: don't.

    The host may be shared; a benchmark started while something else saturates the CPU
    measures the scheduler, not edgefleet. Returns the last sample (cores busy).
    """
    if max_cores is None:
        return float("nan")
    deadline = time.monotonic() + timeout
    while True:
        meter = MachineMeter().start()
        time.sleep(2.0)
        busy = meter.stop()
        if busy <= max_cores:
            print(f"host busy {busy:.2f} cores: starting", file=sys.stderr, flush=True)
            return busy
        if time.monotonic() > deadline:
            print(f"host still busy ({busy:.2f} cores); starting anyway", file=sys.stderr)
            return busy
        print(f"host busy {busy:.2f} cores > {max_cores:g}: waiting", file=sys.stderr, flush=True)
        time.sleep(8.0)


def _terminate_group(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class BenchEnv:
    """A temporary EDGEFLEET_HOME, a random secret and the matching environment."""

    home: Path
    secret: str
    port: int
    keep: bool = False

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def environ(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("EDGEFLEET_")]:
            del env[key]
        env.update(
            EDGEFLEET_HOME=str(self.home),
            EDGEFLEET_SECRET=self.secret,
            EDGEFLEET_API_URL=self.api_url,
            EDGEFLEET_ACTOR="bench",
            NO_PROXY="*",
            no_proxy="*",
        )
        if BENCH_SRC:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [BENCH_SRC, env.get("PYTHONPATH")]))
        env.update(extra)
        return env

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.home, ignore_errors=True)


def new_env(keep: bool = False) -> BenchEnv:
    home = Path(tempfile.mkdtemp(prefix="edgefleet-bench-"))
    return BenchEnv(home=home, secret=secrets.token_urlsafe(32), port=free_port(), keep=keep)


class ServerProcess:
    """``edgefleet db migrate`` then ``edgefleet server`` on the env's loopback port."""

    def __init__(
        self,
        env: BenchEnv,
        log_level: str = "warning",
        nofile: int = 65536,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.env = env
        self.extra_env = dict(extra_env or {})
        self.log_level = log_level
        self.nofile = nofile
        self.proc: subprocess.Popen | None = None
        self.log_path = env.home / "server.log"
        self._log = None
        self._pyspy: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> ServerProcess:
        raise_nofile(self.nofile)
        migrate = subprocess.run(
            [*edgefleet_cmd(), "db", "migrate"],
            env=self.env.environ(**self.extra_env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"edgefleet db migrate failed:\n{migrate.stdout}{migrate.stderr}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [
            *edgefleet_cmd(),
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(self.env.port),
            "--log-level",
            self.log_level,
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env.environ(**self.extra_env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        url = f"{self.env.api_url}{API_PREFIX}/health"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become healthy:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no server log)"

    def error_lines(self) -> list[str]:
        """Tracebacks and errors the server logged (at warning level and above)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [
            line
            for line in text.splitlines()
            if "Traceback" in line or " ERROR" in line or line.startswith("ERROR")
        ]

    def profile(self, out: str, duration: float, rate: int = 100) -> None:
        """Sample the server with py-spy (if installed) for ``duration`` seconds into ``out``."""
        pyspy = Path(sys.executable).parent / "py-spy"
        exe = str(pyspy) if pyspy.exists() else shutil.which("py-spy")
        if exe is None:
            print("note: py-spy not installed; --py-spy ignored", file=sys.stderr)
            return
        fmt = "raw" if out.endswith((".txt", ".raw")) else "speedscope"
        self._pyspy = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.pid),
                "--duration",
                str(max(1, int(duration))),
                "--rate",
                str(rate),
                "--threads",
                "--format",
                fmt,
                "--output",
                out,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self._pyspy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._pyspy.wait(30)
            _terminate_group(self._pyspy, 2)
        if self.proc is not None:
            _terminate_group(self.proc, 8)
        if self._log is not None:
            self._log.close()
            self._log = None


def parse_server_env(items: Sequence[str]) -> dict[str, str]:
    """``--server-env KEY=VALUE`` options: settings for the server process only."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("EDGEFLEET_"):
            raise SystemExit(f"--server-env wants EDGEFLEET_KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def install_signal_exit() -> None:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks clean up children."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


# --- real workers and their jobs' start markers ------------------------------------------


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a benchmark's client on uvloop when it is installed: the simulated fleet's own
    per-request cost then takes less of the machine the server runs on."""
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def job_command(marker_dir: Path, seconds: int) -> list[str]:
    """A job that stamps "PID WALLTIME" into MARKER_DIR/JOB_ID.start, then sleeps.

    The stamp is taken by the job itself (``date +%s.%N``, CLOCK_REALTIME) the moment its
    process runs, and the file appears atomically (rename). ``exec`` keeps the pid.
    """
    d = shlex.quote(str(marker_dir))
    script = (
        f'echo "$$ $(date +%s.%N)" > {d}/$EDGEFLEET_JOB_ID.tmp'
        f" && mv {d}/$EDGEFLEET_JOB_ID.tmp {d}/$EDGEFLEET_JOB_ID.start"
        f"; exec sleep {seconds}"
    )
    return ["sh", "-c", script]


def process_alive(pid: int) -> bool:
    """True for a live process (a zombie, dead but not yet reaped, counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def is_our_sleep(pid: int, seconds: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return cmdline[:2] == [b"sleep", str(seconds).encode()]


@dataclass
class Markers:
    """The start markers of one worker's jobs: job id -> (pid, wall-clock start)."""

    directory: Path
    starts: dict[int, tuple[int, float]] = field(default_factory=dict)

    def scan(self) -> dict[int, tuple[int, float]]:
        for entry in os.scandir(self.directory):
            if not entry.name.endswith(".start"):
                continue
            job_id = int(entry.name.split(".", 1)[0])
            if job_id in self.starts:
                continue
            with contextlib.suppress(ValueError, OSError):
                pid, stamp = Path(entry.path).read_text().split()
                self.starts[job_id] = (int(pid), float(stamp))
        return self.starts

    def running(self) -> dict[int, tuple[int, float]]:
        return {j: v for j, v in self.scan().items() if process_alive(v[0])}


def start_worker(
    env: BenchEnv,
    hostname: str,
    queue: str,
    concurrency: int,
    heartbeat_interval: float,
    long_poll: bool = True,
    extra: Sequence[str] = (),
) -> subprocess.Popen:
    """A real ``edgefleet worker`` process in its own session, logging to the bench home."""
    cmd = [
        *edgefleet_cmd(),
        "--log-level",
        "WARNING",
        "worker",
        "-H",
        hostname,
        "-c",
        str(concurrency),
        "-q",
        queue,
        "--heartbeat-interval",
        str(heartbeat_interval),
        *([] if long_poll else ["--no-long-poll"]),
        *extra,
    ]
    with open(env.home / f"worker-{hostname}.log", "ab") as log:
        return subprocess.Popen(
            cmd,
            env=env.environ(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def stop_worker(proc: subprocess.Popen | None, markers: Markers | None, seconds: int) -> None:
    """SIGTERM twice (the second kills running jobs), then kill leftover job processes."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if markers is not None:
        for pid, _ in markers.scan().values():
            if process_alive(pid) and is_our_sleep(pid, seconds):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.005):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


# --- admin HTTP ---------------------------------------------------------------------------

#: Drop idle pooled connections before uvicorn does (its keep-alive timeout is 5 s): reusing
#: one the server is closing at that very moment fails with a ReadError.
KEEPALIVE = 2.0


def admin_auth(secret: str) -> TokenAuth:
    return TokenAuth(secret, Identity(subject="bench", role="admin"))


def admin_client(env: BenchEnv, timeout: float = 60.0) -> httpx.Client:
    return httpx.Client(
        base_url=env.api_url + API_PREFIX,
        auth=admin_auth(env.secret),
        timeout=timeout,
        limits=httpx.Limits(keepalive_expiry=KEEPALIVE),
        trust_env=False,
    )


def async_admin_client(env: BenchEnv, timeout: float = 60.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=env.api_url + API_PREFIX,
        auth=admin_auth(env.secret),
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE
        ),
        trust_env=False,
    )


# --- a light HTTP/1.1 client for simulated fleets ----------------------------------------


class HttpError(Exception):
    """The connection failed or the answer could not be read."""


class Conn:
    """One keep-alive HTTP/1.1 connection over asyncio streams, one request at a time.

    httpx costs a few hundred microseconds of CPU per request and its pool scans all of its
    connections on every request; with a thousand simulated workers on a two-core host that
    makes the client, not the server, the bottleneck. This does the minimum: a request line,
    headers, a Content-Length (or chunked) body. An idle connection is dropped after
    ``KEEPALIVE`` seconds (before uvicorn's 5 s), and a request on a reused connection that
    fails before any answer arrives is retried once on a new one.
    """

    def __init__(self, host: str, port: int, keepalive: float | None = None) -> None:
        self.host = host
        self.port = port
        #: Seconds an idle connection is kept (``KEEPALIVE`` unless the server keeps longer).
        self.keepalive = KEEPALIVE if keepalive is None else keepalive
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._idle_since = 0.0

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: object = None,
        timeout: float = 60.0,
    ) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        for attempt in (0, 1):
            if self._writer is not None and time.monotonic() - self._idle_since > self.keepalive:
                self.close()
            reused = self._writer is not None
            try:
                async with asyncio.timeout(timeout):
                    if self._writer is None:
                        self._reader, self._writer = await asyncio.open_connection(
                            self.host, self.port
                        )
                    self._writer.write(data)
                    status, keep, answer = await self._read()
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.close()
                if reused and attempt == 0:
                    continue
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                self.close()
                raise HttpError("timeout") from exc
            if keep:
                self._idle_since = time.monotonic()
            else:
                self.close()
            return status, answer
        raise HttpError("unreachable")

    async def _read(self) -> tuple[int, bool, bytes]:
        assert self._reader is not None
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self._reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            answer = b"".join(chunks)
        else:
            answer = await self._reader.readexactly(int(fields.get("content-length", "0")))
        keep = fields.get("connection", "").lower() != "close"
        return status, keep, answer


# --- statistics and tables ----------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    n: int
    missed: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def summarize(values: Iterable[float | None]) -> Summary:
    """Latencies in seconds; ``None`` (or inf) marks a sample that never completed."""
    allv = list(values)
    done = [v for v in allv if v is not None and math.isfinite(v)]
    missed = len(allv) - len(done)
    return Summary(
        n=len(done),
        missed=missed,
        p50=percentile(done, 50),
        p95=percentile(done, 95),
        p99=percentile(done, 99),
        max=max(done) if done else float("nan"),
        mean=sum(done) / len(done) if done else float("nan"),
    )


def fmt_ms(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if abs(seconds) >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.1f} ms" if abs(seconds) < 1 else f"{seconds:.2f} s"


def fmt_ratio(value: float, baseline: float) -> str:
    if not (math.isfinite(value) and math.isfinite(baseline)) or value <= 0:
        return "-"
    return f"{baseline / value:.1f}x"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    print()
    if title:
        print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def summary_row(label: str, summary: Summary, *extra: object) -> list[object]:
    return [
        label,
        summary.n,
        summary.missed,
        fmt_ms(summary.p50),
        fmt_ms(summary.p95),
        fmt_ms(summary.p99),
        fmt_ms(summary.max),
        *extra,
    ]


SUMMARY_HEADERS = ["case", "n", "missed", "p50", "p95", "p99", "max"]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def git_state() -> str:
    """The commit (and whether the tree differs from it) the measurement ran against."""
    if BENCH_SRC:
        commit = Path(BENCH_SRC).parent / "COMMIT"
        label = commit.read_text().strip() if commit.exists() else "unknown commit"
        return f"{label} (snapshot in {BENCH_SRC})"
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}"
