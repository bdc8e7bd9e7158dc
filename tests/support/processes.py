"""Real ``edgefleet server`` and ``edgefleet worker`` processes, and their clean-up.

Every process writes stdout and stderr to its own log file, so a failing test can show what
the process said (``log_text()``). A ``ProcessRegistry`` owns all processes of one test and
stops them at teardown in a safe order: workers (and their jobs) first, then servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from support.cli import EDGEFLEET
from support.waiting import wait_until


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server retries on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env(**settings: str) -> dict[str, str]:
    """The environment for an edgefleet subprocess: ``os.environ`` without any outside
    ``EDGEFLEET_*`` variables (they would change what is tested), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    return {**env, "PYTHONUNBUFFERED": "1", **settings}


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc); empty where /proc is unavailable."""
    children = []
    proc = Path("/proc")
    if not proc.is_dir():
        return children
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def kill_process_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill the process group led by ``pid`` (edgefleet runs each job in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def spawn(args: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``args`` with stdout+stderr appended to ``log_path``, in a session of its own."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(args),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class ManagedProcess:
    """A subprocess with a log file. ``proc`` is the ``subprocess.Popen``."""

    kind = "process"

    def __init__(self, name: str, args: Sequence[str], proc: subprocess.Popen, log_path: Path):
        self.name = name
        self.args = list(args)
        self.proc = proc
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid} rc={self.proc.poll()}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit by itself; returns its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self!r} still running after {timeout:g}s; log:\n{self.log_tail()}"
            ) from None

    def send(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, like a crash; returns once the process is gone."""
        self.send(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def terminate(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.send(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.poll()


class ServerProcess(ManagedProcess):
    """``edgefleet server``; ``url`` is its base URL (``http://127.0.0.1:PORT``, or https);
    ``verify`` is what the test harness verifies it with (httpx's ``verify=``)."""

    kind = "server"

    def __init__(self, url: str, args, proc, log_path, verify: ssl.SSLContext | bool = True):
        super().__init__(f"server {url}", args, proc, log_path)
        self.url = url
        self.verify = verify

    def healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/api/v1/health", timeout=2.0, verify=self.verify)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(
                    f"server exited with {self.returncode} before it was healthy; log:\n"
                    f"{self.log_tail()}"
                )
            return self.healthy()

        wait_until(ready, timeout=timeout, interval=0.05, message=lambda: self.log_tail())

    def stop(self, grace: float = 0.5) -> int | None:
        """SIGTERM; after ``grace`` s a SIGINT (uvicorn's "force quit"); SIGKILL as last resort.

        On SIGTERM uvicorn waits up to 5 s for requests still open, such as workers'
        long-polls; tests need not sit through that.
        """
        if self.alive():
            self.send(signal.SIGTERM)
            for sig, timeout in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
                try:
                    self.proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    self.send(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        return self.proc.poll()


class WorkerProcess(ManagedProcess):
    """``edgefleet worker -H hostname ...``."""

    kind = "worker"

    def __init__(self, hostname: str, args, proc, log_path) -> None:
        super().__init__(f"worker {hostname}", args, proc, log_path)
        self.hostname = hostname

    def job_pids(self) -> list[int]:
        """PIDs of the jobs this worker runs now (each leads its own process group)."""
        return child_pids(self.pid) if self.alive() else []

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful stop as an operator does it: SIGTERM, then wait for the worker to drain.

        Returns the exit code; fails the test if the worker does not exit within ``timeout``.
        """
        self.send(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the worker (a crash) and the process groups of the jobs it was running."""
        jobs = self.job_pids()
        super().kill()
        for pid in jobs:
            kill_process_group(pid)

    def cleanup(self) -> None:
        """Teardown: SIGTERM; if jobs keep it alive, a second SIGTERM (kills jobs); then KILL."""
        if not self.alive():
            return
        jobs = self.job_pids()
        self.send(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=3)
            return
        jobs = sorted(set(jobs) | set(self.job_pids()))
        self.send(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.kill()
        for pid in jobs:
            kill_process_group(pid)


class ProcessRegistry:
    """Every process a test started; ``cleanup()`` stops workers first, then the rest.

    A background thread reaps processes as soon as they exit, as an init system would: an
    unreaped child stays a zombie that ``kill(pid, 0)`` still reports alive, which would
    mislead anything that watches the pid (``edgefleet worker stop --wait``, for one).
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []
        self._counter = 0
        self._closed = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="process-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        while not self._closed.wait(0.05):
            for process in list(self.processes):
                process.proc.poll()

    def log_path(self, stem: str) -> Path:
        self._counter += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        return self.log_dir / f"{self._counter:02d}-{safe}.log"

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def start_server(
        self,
        env: Mapping[str, str],
        port: int,
        extra_args=(),
        *,
        scheme: str = "http",
        verify: ssl.SSLContext | bool = True,
    ) -> ServerProcess:
        url = f"{scheme}://127.0.0.1:{port}"
        args = [str(EDGEFLEET), "server", "--host", "127.0.0.1", "--port", str(port), *extra_args]
        log_path = self.log_path(f"server-{port}")
        process = ServerProcess(url, args, spawn(args, env, log_path), log_path, verify)
        self.add(process)
        return process

    def verify_for(self, url: str) -> ssl.SSLContext | bool:
        """How the harness verifies the server this registry started at ``url``."""
        for process in self.processes:
            if isinstance(process, ServerProcess) and process.url == url:
                return process.verify
        return True

    def start_worker(self, env: Mapping[str, str], hostname: str, args: Sequence[str]):
        argv = [str(EDGEFLEET), "worker", "-H", hostname, *args]
        log_path = self.log_path(f"worker-{hostname}")
        process = WorkerProcess(hostname, argv, spawn(argv, env, log_path), log_path)
        self.add(process)
        return process

    def logs_report(self, lines: int = 60) -> str:
        parts = []
        for process in self.processes:
            parts.append(f"----- {process!r} ({process.log_path}) -----\n{process.log_tail(lines)}")
        return "\n".join(parts)

    def cleanup(self) -> None:
        self._closed.set()
        self._reaper.join()
        for process in self.processes:
            if isinstance(process, WorkerProcess):
                process.cleanup()
        for process in self.processes:
            if isinstance(process, ServerProcess):
                process.stop()
        for process in self.processes:
            process.terminate()
