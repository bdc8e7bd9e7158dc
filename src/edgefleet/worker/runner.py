"""Runs one job's command as a subprocess in its own process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from edgefleet.contract import JobState

READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    state: JobState
    exit_code: int | None
    reason: str | None


def _describe_exit(code: int) -> str | None:
    if code == 0:
        return None
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exited with code {code}"


async def run_command(
    command: list[str], on_output: Callable[[bytes], None], env: dict[str, str]
) -> Outcome:
    """Run ``command`` without a shell; stdout and stderr arrive interleaved at ``on_output``.

    Cancelling the coroutine kills the job's whole process group, so nothing it spawned lingers.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env},
        )
    except OSError as exc:
        return Outcome(JobState.FAILED, None, f"could not start {command[0]!r}: {exc.strerror}")
    try:
        assert process.stdout is not None
        while chunk := await process.stdout.read(READ_SIZE):
            on_output(chunk)
        code = await process.wait()
    except asyncio.CancelledError:
        kill_group(process.pid)
        with contextlib.suppress(Exception):
            await asyncio.shield(process.wait())
        raise
    state = JobState.SUCCESS if code == 0 else JobState.FAILED
    return Outcome(state, code, _describe_exit(code))


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
