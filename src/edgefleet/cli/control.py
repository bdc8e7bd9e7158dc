"""Control commands: change workers' desired state, one worker or many at once.

Each takes a target: ``-H NAME`` (a name, or a glob such as ``'site-a-*'``), ``--selector
KEY=VALUE[,...]`` (worker labels) or ``--all``. Each sends one change (``PATCH /workers``),
prints every worker touched, and with ``--wait`` blocks until every targeted online worker
has acknowledged the change. The options they share are written once, in ``control_command``.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import typer

from edgefleet import MAX_CONCURRENCY, parsing
from edgefleet.cli.api import AdminClient
from edgefleet.cli.common import ForceOption, OutputOption
from edgefleet.cli.context import admin_client, fail, parsed
from edgefleet.cli.output import CHANGE_COLUMNS, OutputFormat, print_json, print_table

#: Read as a list so that a second -H is refused rather than quietly replacing the first.
TargetHostname = Annotated[
    list[str] | None,
    typer.Option("--edge-hostname", "-H", help="Worker name, or a glob like 'site-a-*'."),
]
Selector = Annotated[
    str | None, typer.Option("--selector", "-l", help="Worker labels: KEY=VALUE[,KEY=VALUE].")
]
AllWorkers = Annotated[bool, typer.Option("--all", help="Every worker.")]
Wait = Annotated[
    bool, typer.Option("--wait", help="Block until every targeted online worker acknowledged.")
]
#: Seconds ``--wait`` waits unless ``--timeout`` says otherwise.
WAIT_SECONDS = 30.0
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", min=0.1, help=f"Seconds --wait waits (default {WAIT_SECONDS:g})."),
]
Queues = Annotated[str, typer.Option("--queues", "-q", help="Comma-separated queue names.")]
Comments = Annotated[str, typer.Option("--comments", "-c", help="Why (kept in the audit log).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

#: States in which a worker cannot acknowledge anything now; it will when it is back.
NOT_ONLINE = frozenset({"offline", "stopped", "unknown"})


def parse_selector(text: str) -> dict[str, str]:
    return parsed(parsing.parse_selector, text)


@dataclass(frozen=True)
class Targeting:
    """The options every control command shares, read once: which workers, and how to report."""

    edge_hostname: list[str] | None = None
    selector: str | None = None
    all_workers: bool = False
    wait: bool = False
    timeout: float | None = None
    output: OutputFormat = OutputFormat.TABLE

    @property
    def wait_seconds(self) -> float:
        return WAIT_SECONDS if self.timeout is None else self.timeout

    def target(self) -> dict[str, Any]:
        """The request's ``target``; exactly one of name, selector or all must be given. Every
        command calls it before it sends anything, so the shared options are checked here
        (``--timeout`` only with ``--wait``) and a refusal changes nothing."""
        names = self.edge_hostname or []
        given = sum([bool(names), self.selector is not None, self.all_workers])
        if given != 1:
            fail("name the workers with exactly one of -H/--edge-hostname, --selector or --all", 2)
        if self.timeout is not None and not self.wait:
            fail("--timeout goes with --wait (it is how long --wait waits)", 2)
        if "" in names:
            fail("-H/--edge-hostname: the worker name is empty", 2)
        if len(names) > 1:
            fail(
                "give -H/--edge-hostname once; for several workers use a glob such as "
                "'site-a-*' or --selector KEY=VALUE",
                2,
            )
        if self.all_workers:
            return {"all": True}
        if self.selector is not None:
            return {"selector": parse_selector(self.selector)}
        return {"edge_hostname": names[0]}


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


NAMED_OPTIONS = (
    _option("edge_hostname", TargetHostname, None),
    _option("selector", Selector, None),
)
ALL_OPTION = (_option("all_workers", AllWorkers, False),)
WAIT_OPTIONS = (_option("wait", Wait, False), _option("timeout", Timeout, None))
OUTPUT_OPTION = (_option("output", OutputOption, OutputFormat.TABLE),)


def control_command(
    targets: Literal["any", "named", "all"] = "any", wait: bool = True
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared options and hand them to it as one ``targeting`` argument.

    ``targets``: ``any`` takes -H, --selector and --all; ``named`` leaves out --all;
    ``all`` takes no target option and means every worker. ``wait`` adds --wait/--timeout.
    The command declares ``ctx``, ``targeting: Targeting`` and its own options only.
    """
    before = (() if targets == "all" else NAMED_OPTIONS) + (ALL_OPTION if targets == "any" else ())
    after = (WAIT_OPTIONS if wait else ()) + OUTPUT_OPTION
    names = [option.name for option in before + after]
    fixed = {"all_workers": True} if targets == "all" else {}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True).parameters
        ctx, *rest = (p for name, p in own.items() if name != "targeting")
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest]
        params = [ctx, *before, *keyword, *after]

        @functools.wraps(command)
        def run(**given: Any) -> None:
            targeting = Targeting(**fixed, **{name: given.pop(name) for name in names})
            command(targeting=targeting, **given)

        # Typer reads the options from the signature and the types from the annotations.
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate


#: Seconds between two looks of ``--wait``: short at first (a worker is woken at once and
#: usually acknowledges within a moment), then growing to at most ``MAX_POLL``.
FIRST_POLL = 0.1
MAX_POLL = 1.0


def target_query(target: dict[str, Any]) -> dict[str, str]:
    """The ``/workers`` filter that lists the workers a change targeted: the same name, glob
    or selector (the server narrows its read with it), or nothing for ``--all``."""
    if target.get("edge_hostname") is not None:
        return {"edge_hostname": target["edge_hostname"]}
    if target.get("selector"):
        return {"selector": parsing.format_selector(target["selector"])}
    return {}


def wait_for_acks(
    client: AdminClient,
    versions: dict[str, int],
    timeout: float,
    target: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[str], list[str]]:
    """Poll until each online targeted worker's applied version reaches its desired one;
    each look asks only about the targeted workers.

    Returns (workers that did not acknowledge in time, workers skipped as not online).
    """
    deadline = time.monotonic() + timeout
    query = target_query(target or {})
    pause = FIRST_POLL
    while True:
        rows = {row["hostname"]: row for row in client.get("/workers", params=query)}
        skipped = sorted(h for h in versions if rows.get(h, {}).get("state") in NOT_ONLINE)
        pending = sorted(
            h
            for h, version in versions.items()
            if h in rows and h not in skipped and rows[h]["applied_version"] < version
        )
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            return pending, skipped
        sleep(min(pause, left))
        pause = min(MAX_POLL, pause * 1.5)


def run_change(ctx: typer.Context, targeting: Targeting, change: dict[str, Any]) -> None:
    """Send one change (``PATCH /workers``) to the targeted workers and report it."""
    target = targeting.target()
    body = {"target": target, "change": change}
    report(ctx, targeting, target, lambda client: client.request("PATCH", "/workers", json=body))


def report(
    ctx: typer.Context,
    targeting: Targeting,
    target: dict[str, Any],
    send: Callable[[AdminClient], dict[str, Any]],
) -> None:
    """Send a control request, print what it touched, optionally wait for acknowledgements."""
    with admin_client(ctx) as client:
        result = send(client)
        pending: list[str] = []
        skipped: list[str] = []
        online = False
        if targeting.wait:
            versions = result["versions"]
            pending, skipped = wait_for_acks(client, versions, targeting.wait_seconds, target)
            online = len(skipped) < len(versions)
    if targeting.output is OutputFormat.JSON:
        waited = {"not_acknowledged": pending, "not_online": skipped}
        print_json({**result, **waited} if targeting.wait else result)
    else:
        _print_changes(result)
        if skipped:
            print(f"not online, will apply on return: {', '.join(skipped)}")
        if targeting.wait and not pending:
            print(
                "acknowledged by every targeted online worker"
                if online
                else "no targeted worker is online: none has acknowledged yet"
            )
    if pending:
        fail(f"not acknowledged within {targeting.wait_seconds:g}s by: {', '.join(pending)}")


def _print_changes(result: dict[str, Any]) -> None:
    changed = {change["hostname"] for change in result["changes"]}
    if result["changes"]:
        print_table(result["changes"], CHANGE_COLUMNS)
    for hostname in result["workers"]:
        if hostname not in changed:
            print(f"{hostname}: unchanged (desired version {result['versions'][hostname]})")


@control_command()
def set_worker_concurrency(
    ctx: typer.Context,
    targeting: Targeting,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=MAX_CONCURRENCY,
            help=f"New concurrency, 1 to {MAX_CONCURRENCY}.",
        ),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset", help="Hand control back to the standing rules or each worker's -c flag."
        ),
    ] = False,
    force: ForceOption = False,
    for_: Annotated[
        str | None,
        typer.Option("--for", help="End by itself after this long: 30s, 15m, 2h, 1h30m, 1d."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="End by itself at HH:MM (local) or an ISO time with offset."),
    ] = None,
) -> None:
    """Set workers' concurrency centrally; each adopts it at once, without restart. With
    --for or --until it ends by itself and each worker falls back to the layer below."""
    if reset == (concurrency is not None):
        fail("give exactly one of --concurrency N or --reset", code=2)
    value: dict[str, Any] = {"reset": True} if reset else {"concurrency": concurrency}
    if force:
        value["force"] = True
    ends = None
    if for_ is not None or until is not None:
        if reset:
            fail("--for and --until set when a concurrency ends; --reset ends it now", code=2)
        ends = expiry(for_, until)
        value["until"] = ends.isoformat()
    run_change(ctx, targeting, {"action": "set-concurrency", **value})
    if ends is not None:  # only once the change is made: a refusal has said why already
        print(f"until {ends:%Y-%m-%d %H:%M:%S %Z} ({ends.isoformat()})", file=sys.stderr)


def expiry(for_: str | None, until: str | None, now: datetime | None = None) -> datetime:
    """When an override given ``--for`` a duration or ``--until`` a time ends (aware, in
    the local time zone); a bad, zero or past one exits 2."""
    if for_ is not None and until is not None:
        fail("give at most one of --for and --until", code=2)
    now = now or datetime.now().astimezone()
    if until is not None:
        return parsed(lambda text: parsing.parse_until(text, now), until, "--until")
    seconds = parsed(parsing.parse_duration, for_ or "", "--for")
    if seconds <= 0:
        fail(f"--for must be longer than 0s, not {for_!r}", code=2)
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        fail(f"--for {for_!r} is too long", code=2)


@control_command()
def add_worker_queues(ctx: typer.Context, targeting: Targeting, queues: Queues) -> None:
    """Make workers also take jobs from these queues."""
    run_change(ctx, targeting, {"action": "add-queues", "queues": _queue_list(queues)})


@control_command()
def remove_worker_queues(ctx: typer.Context, targeting: Targeting, queues: Queues) -> None:
    """Stop workers taking jobs from these queues (a worker keeps at least one queue)."""
    run_change(ctx, targeting, {"action": "remove-queues", "queues": _queue_list(queues)})


@control_command()
def reset_worker_queues(ctx: typer.Context, targeting: Targeting) -> None:
    """Hand workers' queues back to their own --queues flag."""
    run_change(ctx, targeting, {"action": "reset-queues"})


@control_command()
def request_maintenance(ctx: typer.Context, targeting: Targeting, comments: Comments) -> None:
    """Drain workers: they finish running jobs, take no new ones, and report maintenance."""
    run_change(ctx, targeting, {"action": "request-maintenance", "comments": comments})


@control_command()
def exit_maintenance(ctx: typer.Context, targeting: Targeting) -> None:
    """Let workers in maintenance take jobs again."""
    run_change(ctx, targeting, {"action": "exit-maintenance"})


@control_command(wait=False)
def update_maintenance_comment(
    ctx: typer.Context, targeting: Targeting, comments: Comments
) -> None:
    """Change the comment of workers already in maintenance."""
    run_change(ctx, targeting, {"action": "update-maintenance-comment", "comments": comments})


@control_command(targets="named")
def shutdown_remote_worker(ctx: typer.Context, targeting: Targeting) -> None:
    """Ask workers to finish their running jobs and then exit cleanly."""
    run_change(ctx, targeting, {"action": "shutdown"})


@control_command(targets="all")
def shutdown_all_workers(ctx: typer.Context, targeting: Targeting, yes: Yes = False) -> None:
    """Ask every worker to finish its jobs and exit."""
    confirm_or_abort("Shut down ALL edge workers?", yes)
    run_change(ctx, targeting, {"action": "shutdown"})


def confirm_or_abort(question: str, yes: bool) -> None:
    """Ask ``question`` unless ``--yes`` was given; a no (or no terminal) changes nothing."""
    if yes:
        return
    try:
        confirmed = typer.confirm(question, default=False)
    except typer.Abort:
        confirmed = False
    if not confirmed:
        fail("aborted; nothing changed (use --yes to skip this question)")


def _queue_list(text: str) -> list[str]:
    return parsed(parsing.parse_queues, text)
