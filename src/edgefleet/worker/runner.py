"""Runs one job's command as a subprocess in its own process group.

The group is the unit of control: a timeout, a cancel or a stop signals the whole group
(SIGTERM, then SIGKILL after a grace), and when the job's main process exits, whatever it
left behind in its group is killed, so nothing a job spawned outlives it. On Linux the main
process also dies with the worker (``PR_SET_PDEATHSIG``), so a crashed worker's job does not
keep running while the server re-queues it elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgefleet.contract import JobState

READ_SIZE = 64 * 1024
#: Seconds between SIGTERM and SIGKILL when a job is stopped.
KILL_GRACE = 5.0
#: How long output still open after the main process exited is read before giving up.
DRAIN_TIMEOUT = 2.0
#: Variables of the worker's own environment that a job must not see (the shared secret).
PRIVATE_PREFIX = "EDGEFLEET_"
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """Resolved once in the parent: the forked child must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


@dataclass(frozen=True)
class Outcome:
    state: JobState
    exit_code: int | None
    reason: str | None


def _describe_exit(code: int) -> str | None:
    if code == 0:
        return None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {name}"
    return f"exited with code {code}"


def job_environment(base: Mapping[str, str], job_env: Mapping[str, str], own: Mapping[str, str]):
    """The worker's environment without its ``EDGEFLEET_*`` settings, then the job's own
    variables, then the ``EDGEFLEET_JOB_*`` ones that tell the job who it is."""
    env = {k: v for k, v in base.items() if not k.startswith(PRIVATE_PREFIX)}
    env.update(job_env)
    env.update(own)
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """In the child before exec: be killed when the worker dies (Linux only)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the main process exits, even while its pipes are still held open by
    something it spawned (``Process.wait`` waits for the pipes too)."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class JobProcess:
    """One run of a job's command. ``run()`` returns its outcome; ``kill()`` stops it early
    with an outcome of the caller's choosing (cancelled, killed, ...)."""

    def __init__(
        self,
        command: list[str],
        on_output: Callable[[bytes], None],
        env: Mapping[str, str],
        cwd: str | None = None,
        timeout: float | None = None,
        kill_grace: float = KILL_GRACE,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        self.command = command
        self.on_start = on_start
        self.on_output = on_output
        self.env = dict(env)
        self.cwd = cwd
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.pid: int | None = None
        self._verdict: Outcome | None = None
        self._escalation: asyncio.TimerHandle | None = None
        self._killed = asyncio.Event()
        #: Set once spawned; its ``exited`` is done from the moment the loop sees the exit.
        self._protocol: _Protocol | None = None

    @property
    def stopping(self) -> bool:
        return self._verdict is not None

    def kill(self, state: JobState, reason: str) -> None:
        """Stop the job's process group: SIGTERM now, SIGKILL after the grace. The first
        reason given is the one reported. A main process that has already exited keeps its
        own outcome: a kill that came after the work was done must not make it run again."""
        if self._protocol is not None and self._protocol.exited.done():
            return
        if self._verdict is None:
            self._verdict = Outcome(state, None, reason)
        self._killed.set()
        if self.pid is None:
            return  # not started yet: run() will not start it
        signal_group(self.pid, signal.SIGTERM)
        if self._escalation is None:
            loop = asyncio.get_running_loop()
            self._escalation = loop.call_later(self.kill_grace, signal_group, self.pid)

    async def run(self) -> Outcome:
        if self._verdict is not None:
            return self._verdict
        try:
            transport, process, protocol = await self._spawn()
        except (OSError, ValueError) as exc:
            detail = getattr(exc, "strerror", None) or str(exc)
            where = f" in {self.cwd}" if self.cwd and isinstance(exc, FileNotFoundError) else ""
            return Outcome(
                JobState.FAILED, None, f"could not start {self.command[0]!r}{where}: {detail}"
            )
        self.pid, self._protocol = process.pid, protocol
        if self.on_start is not None:
            self.on_start(process.pid)
        if self._verdict is not None:  # killed while starting
            self.kill(self._verdict.state, self._verdict.reason or "")
        reader = asyncio.create_task(self._pump(process))
        try:
            timed_out = await self._wait_exit(protocol)
            if timed_out:
                self.kill(JobState.FAILED, f"timed out after {self.timeout:g}s")
                await protocol.exited
        except asyncio.CancelledError:
            signal_group(process.pid)
            with contextlib.suppress(Exception):
                await asyncio.shield(protocol.exited)
            reader.cancel()
            raise
        finally:
            if self._escalation is not None:
                self._escalation.cancel()
        signal_group(process.pid)  # whatever the job left behind in its group
        await _finish_reading(reader, transport)
        code = process.returncode
        if self._verdict is not None:
            return Outcome(self._verdict.state, code, self._verdict.reason)
        assert code is not None
        return Outcome(
            JobState.SUCCESS if code == 0 else JobState.FAILED, code, _describe_exit(code)
        )

    async def _spawn(
        self,
    ) -> tuple[asyncio.SubprocessTransport, asyncio.subprocess.Process, _Protocol]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _Protocol(limit=READ_SIZE, loop=loop),
            *self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
            cwd=self.cwd,
            preexec_fn=_die_with_parent,
        )
        return transport, asyncio.subprocess.Process(transport, protocol, loop), protocol

    async def _wait_exit(self, protocol: _Protocol) -> bool:
        """Wait for the main process to exit; True if the timeout struck first."""
        if self.timeout is None:
            await protocol.exited
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(protocol.exited)
        except TimeoutError:
            return not protocol.exited.done()
        return False

    async def _pump(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(READ_SIZE):
            self.on_output(chunk)


async def _finish_reading(reader: asyncio.Task[None], transport: asyncio.SubprocessTransport):
    """Read what is left; output held open by an escaped descendant is abandoned."""
    done, _ = await asyncio.wait({reader}, timeout=DRAIN_TIMEOUT)
    if not done:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        transport.close()


def signal_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def kill_leftover_group(pid: int, start: int | None, current_start: int | None) -> bool:
    """Kill a job's process group left by a crashed worker; True if there was one.

    ``start`` is the leader's start time recorded when the job began. A live leader with
    another start time is a reused pid and is left alone; with the leader gone, a group that
    still exists is the job's (Linux does not reuse a pid while its group lives on).
    """
    if current_start is not None:
        if start is None or current_start != start:
            return False
    else:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
    signal_group(pid, signal.SIGKILL)
    return True
