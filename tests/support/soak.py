"""The soak: a fleet under steady work and steady chaos, then an exact count of every job.

Run by tests/e2e/test_soak.py (a short one) and bench/soak.py (ten minutes). Two ``edgefleet
server`` replicas on one PostgreSQL database, ``workers`` real workers in four
sites, each site reaching each replica through its own fault proxy; every worker is given
both replicas (``--api-url A,B``), its first choice alternating. Jobs arrive at
``rate`` per second: short ones (0.1-2 s, queue ``default``) and long ones (10-30 s by
default, ``long_max``; queue ``long``), each allowed retries. Every ``chaos_interval``
seconds the chaos loop does one of: SIGKILL a worker (restarted 1-5 s later), SIGTERM one
(it drains for its 3 s grace period, then is restarted), SIGKILL a replica (restarted 2-5 s
later), cut a site's link to one or both replicas for 1-5 s, slow one for 5-15 s,
``set-worker-concurrency --all``, or drop or add back the ``long`` queue fleet-wide. Outages
stay well below the workers' offline tolerance: a longer cut is documented to re-queue a job
that still runs (docs/jobs.md).
After ``duration`` everything is healed and the jobs are drained.

What counts, from the jobs' own side effects: each execution appends a ``start`` line (job id,
attempt, worker, a random token of its own) and, when it ran to its end, an ``end`` line to
one file. At start it also tries to take an exclusive ``flock`` on a per-job lock file, which
the kernel drops the instant that process dies (``SIGKILL`` included).

- **run twice**: (a) two executions of one job alive at once (the later one found the lock
  held); (b) one attempt number executed twice; (c) an execution that starts after another
  execution of the job ran to its end, unless the server did not record that attempt as
  succeeded and its worker was stopped between that end and the re-run (from the SIGKILL, or
  the end of a SIGTERM's grace period, until the harness saw the worker gone; a job outlives
  its killed worker by the moment that worker takes to die): the at-least-once window
  between a job's last line and the worker's fsync of its result, which stretches to seconds
  on a saturated host (a job killed while its interpreter shuts down has written its end
  mark but not exited). Shown as "re-run after an
  unrecorded end", not a failure; the harness cannot tell it from a result lost from the
  spool, which tests/e2e/test_faults_worker_crash.py covers. A job re-queued after its worker was
  killed mid-run is a legitimate new attempt: its first execution held the lock until it died.
- **lost**: a job the server acknowledged (or lists) that is not ``success``/``failed`` at the
  end of the drain, or is ``success`` without an execution of that attempt on that worker that
  ran to its end.
- **longest unclaimed with a free slot**: for each interval a job sat ``queued`` (from
  ``submitted``, or a re-queueing ``lost``/``failed``/``released`` event, to the next ``started``;
  retries have no delay), the longest stretch during which every fleet sample (one a second,
  ``GET /workers``) showed a worker with a free slot for it: process alive, link and replica
  up (as the harness knows them), state ``idle``/``running``, converged desired state, serving
  the job's queue, ``jobs_running`` below its concurrency. Sampling makes it exact to about
  one second, and a failed sample breaks a stretch.
"""

from __future__ import annotations

import heapq
import itertools
import random
import secrets
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.api import AdminApi
from support.cli import Cli
from support.database import fresh_database, upgrade_database
from support.network import FaultProxy
from support.processes import ProcessRegistry, free_port, subprocess_env
from support.soak_accounting import FINAL, JOB_SOURCE, Execution, Outcome, Stop, read_executions
from support.waiting import wait_until

SITES = 4
GRACE = 3.0


@dataclass(frozen=True)
class Settings:
    """One soak's size; the defaults are the ten-minute run."""

    duration: float = 600.0  # seconds of load and chaos
    workers: int = 20
    rate: float = 3.0  # jobs submitted per second
    chaos_interval: float = 3.0  # seconds between chaos actions
    drain: float = 240.0  # seconds the jobs get to finish at the end
    max_cut: float = 5.0  # longest link cut (past the offline tolerance a cut-off run retries)
    long_max: float = 30.0  # longest long job (shortest: a third)
    seed: int = 11


#: The suite's profile (tests/e2e/test_soak.py; ``bench/soak.py --quick``).
QUICK = Settings(duration=40.0, workers=8, rate=2.0, long_max=9.0)


class Fleet:
    """The replicas, the site links and the workers, and what the harness did to each."""

    def __init__(self, registry: ProcessRegistry, env: dict[str, str]) -> None:
        self.registry, self.env = registry, env
        self.ports = [free_port(), free_port()]
        self.replica_up = [True, True]
        self.links: list[list[FaultProxy]] = []
        self.cut: set[tuple[int, int]] = set()
        self.stops: dict[str, list[Stop]] = defaultdict(list)  # when a worker's jobs could die
        self.clients: dict[str, AdminApi] = {}

    def start(self, workers: int) -> None:
        self.servers = [self._start_server(r) for r in (0, 1)]
        self.links = [[FaultProxy(port).start() for port in self.ports] for _ in range(SITES)]
        self.hosts = [f"soak-{n % SITES}-{n // SITES}" for n in range(workers)]
        self.workers = {host: self._start_worker(host) for host in self.hosts}

    def _start_server(self, replica: int):
        server = self.registry.start_server(
            self.env, self.ports[replica], ("--log-level", "warning")
        )
        server.wait_healthy(60)
        return server

    def replicas_of(self, host: str) -> list[int]:
        """The replicas a worker is given, its first choice alternating across the fleet."""
        first = int(host.rsplit("-", 1)[1]) % 2
        return [first, 1 - first]

    def _start_worker(self, host: str):
        site = int(host.split("-")[1])
        urls = ",".join(self.links[site][r].url for r in self.replicas_of(host))
        args = ["-c", "3", "-q", "default,long", "--heartbeat-interval", "3"]
        args += ["--grace-period", str(GRACE), "--api-url", urls]
        return self.registry.start_worker(self.env, host, args)

    def reachable(self, host: str) -> bool:
        site = int(host.split("-")[1])
        return self.workers[host].alive() and any(
            self.replica_up[r] and (site, r) not in self.cut for r in self.replicas_of(host)
        )

    def api(self) -> AdminApi:
        """A client of a replica that is up (kept: a restarted replica keeps its port)."""
        up = [r for r in (0, 1) if self.replica_up[r]] or [0]
        url = self.servers[random.choice(up)].url
        if url not in self.clients:
            self.clients[url] = AdminApi(url, self.env["EDGEFLEET_SECRET"])
        return self.clients[url]

    def get(self, path: str) -> object:
        return self.api().call("GET", path)

    # --- chaos and its undoing --------------------------------------------------------

    def kill_worker(self, host: str) -> None:
        # Until the harness sees it gone: its jobs die a moment after the signal, not with it.
        self.stops[host].append(Stop(time.time()))
        self.workers[host].kill()

    def term_worker(self, host: str) -> None:
        self.stops[host].append(Stop(time.time() + GRACE))
        self.workers[host].send(signal.SIGTERM)

    def restart_worker(self, host: str) -> bool:
        if self.workers[host].alive():
            return False
        for stop in self.stops[host]:
            stop.latest = min(stop.latest, time.time())
        self.workers[host] = self._start_worker(host)
        return True

    def kill_replica(self, replica: int) -> None:
        self.replica_up[replica] = False
        self.servers[replica].kill()

    def restart_replica(self, replica: int) -> None:
        self.servers[replica] = self._start_server(replica)
        self.replica_up[replica] = True

    def set_link(self, site: int, replica: int, cut: bool, delay: float = 0.0) -> None:
        proxy = self.links[site][replica]
        proxy.delay(delay)
        if cut:
            self.cut.add((site, replica))
            proxy.cut()
        else:
            self.cut.discard((site, replica))
            proxy.heal()

    def control(self, *args: str) -> bool:
        """An operator's fleet-wide change through the CLI, on a replica that is up."""
        for replica in (0, 1):
            if self.replica_up[replica]:
                env = {**self.env, "EDGEFLEET_API_URL": self.servers[replica].url}
                if Cli(env)(*args, "--all", timeout=60).returncode == 0:
                    return True
        return False

    def heal(self) -> None:
        for site, replica in [(s, r) for s in range(SITES) for r in (0, 1)]:
            self.set_link(site, replica, cut=False)
        for replica in (0, 1):
            if not self.replica_up[replica]:
                self.restart_replica(replica)
        for host in self.hosts:
            wait_until(lambda h=host: self.restart_worker(h) or self.workers[h].alive(), 60)
        self.control("reset-worker-queues")
        self.control("set-worker-concurrency", "--reset")

    def close(self) -> None:
        for proxy in [p for site in self.links for p in site]:
            proxy.close()
        for client in self.clients.values():
            client.close()


class Chaos:
    """One action every interval; undoing actions (restarts, heals) come due on a heap."""

    def __init__(self, fleet: Fleet, rng: random.Random, max_cut: float) -> None:
        self.fleet, self.rng, self.max_cut = fleet, rng, max_cut
        self.due: list[tuple[float, int, Callable[[], object]]] = []
        self.order = itertools.count()
        self.done: Counter[str] = Counter()
        self.down: set[str] = set()

    def later(self, delay: float, action: Callable[[], object]) -> None:
        heapq.heappush(self.due, (time.monotonic() + delay, next(self.order), action))

    def run_due(self) -> None:
        while self.due and self.due[0][0] <= time.monotonic():
            heapq.heappop(self.due)[2]()

    def step(self) -> None:
        fleet, rng = self.fleet, self.rng
        kind = rng.choices(
            ["kill", "term", "replica", "cut", "slow", "concurrency", "queues"],
            weights=[25, 15, 10, 15, 10, 10, 15],
        )[0]
        up = [h for h in fleet.hosts if h not in self.down]
        if kind in ("kill", "term") and len(self.down) < max(2, len(fleet.hosts) // 5):
            host = rng.choice(up)
            self.down.add(host)
            (fleet.kill_worker if kind == "kill" else fleet.term_worker)(host)
            self.later(rng.uniform(1, 5), lambda: self._restart(host))
        elif kind == "replica" and all(fleet.replica_up):
            replica = rng.randrange(2)
            fleet.kill_replica(replica)
            self.later(rng.uniform(2, 5), lambda: fleet.restart_replica(replica))
        elif kind in ("cut", "slow"):
            site, replicas = rng.randrange(SITES), rng.choice([[0], [1], [0, 1]])
            for replica in replicas:
                cut = kind == "cut"
                fleet.set_link(site, replica, cut=cut, delay=0 if cut else rng.uniform(0.05, 0.3))
                undo = rng.uniform(1, self.max_cut) if cut else rng.uniform(5, 15)
                self.later(undo, lambda s=site, r=replica: fleet.set_link(s, r, cut=False))
        elif kind == "concurrency":
            if not fleet.control("set-worker-concurrency", "-c", str(rng.randint(1, 4))):
                kind = "control refused"
        elif kind == "queues":
            change = rng.choice(["remove-worker-queues", "add-worker-queues"])
            if not fleet.control(change, "-q", "long"):
                kind = "control refused"
        else:
            return
        self.done[kind] += 1

    def _restart(self, host: str) -> None:
        if self.fleet.restart_worker(host):
            self.down.discard(host)
        else:  # still draining after SIGTERM
            self.later(1.0, lambda: self._restart(host))


class Load(threading.Thread):
    """Submits jobs at a steady rate to whichever replica answers, and samples the fleet's
    free slots once a second (until ``closing``, after the drain)."""

    def __init__(self, fleet: Fleet, args: Settings, marks: Path) -> None:
        super().__init__(daemon=True)
        self.fleet, self.args, self.marks = fleet, args, marks
        self.rng = random.Random(args.seed + 1)
        self.submitting, self.closing = threading.Event(), threading.Event()
        self.submitting.set()
        self.acked: list[int] = []
        self.unanswered = 0
        self.samples: list[tuple[float, set[str]]] = []

    def run(self) -> None:
        next_job = next_sample = time.monotonic()
        while not self.closing.wait(0.02):
            if self.submitting.is_set() and time.monotonic() >= next_job:
                next_job += self.rng.expovariate(self.args.rate)
                self.submit()
            if time.monotonic() >= next_sample:
                next_sample += 1.0
                self.samples.append((time.time(), self.free_queues()))

    def submit(self) -> None:
        long = self.rng.random() < 0.15
        longest = self.args.long_max
        seconds = self.rng.uniform(longest / 3, longest) if long else self.rng.uniform(0.1, 2.0)
        command = [sys.executable, "-I", "-S", "-c", JOB_SOURCE, str(self.marks)]
        body = {
            "command": [*command, f"{seconds:.2f}"],
            "queue": "long" if long else "default",
            "retries": 8,
            "retry_delay": 0,
        }
        for _ in range(3):
            try:
                response = self.fleet.api().request("POST", "/jobs", json=body)
            except httpx.ConnectError:
                continue  # nothing sent: try again
            except httpx.HTTPError:
                break  # sent, no answer: the job may exist; the final listing finds it
            if response.status_code == 201:
                self.acked.append(response.json()["id"])
                return
        self.unanswered += 1

    def free_queues(self) -> set[str]:
        """The queues some reachable worker could take a job from right now."""
        reachable = {h for h in self.fleet.hosts if self.fleet.reachable(h)}
        try:
            views = self.fleet.get("/workers")
        except (httpx.HTTPError, AssertionError):
            return set()
        free: set[str] = set()
        for view in views:
            slots = min(view["concurrency"], view["applied_concurrency"] or 0)
            if (
                view["hostname"] in reachable
                and view["state"] in ("idle", "running")
                and view["converged"]
                and view["jobs_running"] < slots
            ):
                free.update(view["queues"])
        return free


def drain(fleet: Fleet, ids: set[int], timeout: float) -> dict[int, dict]:
    """The server's views of all jobs once every one has ended (or ``timeout`` passed)."""

    def views() -> dict[int, dict]:
        return {job["id"]: job for job in fleet.get("/jobs?limit=10000")}

    def finished() -> dict[int, dict] | None:
        now = views()
        return now if all(now.get(i, {}).get("state") in FINAL for i in ids | set(now)) else None

    with suppress(AssertionError):
        return wait_until(finished, timeout, interval=2.0, ignore=(httpx.HTTPError,))
    return views()


def account(fleet: Fleet, load: Load, marks: Path, drain_timeout: float) -> Outcome:
    views = drain(fleet, set(load.acked), drain_timeout)
    by_job: dict[int, list[Execution]] = defaultdict(list)
    for run in read_executions(marks):
        by_job[run.job].append(run)
    outcome = Outcome(executions=sum(len(runs) for runs in by_job.values()))
    for job in sorted(set(load.acked) | set(views)):
        view = fleet.get(f"/jobs/{job}") if job in views else None
        outcome.judge(job, view, by_job[job], fleet.stops, load.samples)
    return outcome


def run_soak(args: Settings, base: Path, pg_url: str) -> Outcome:
    """The whole soak in ``base``, on a new database of the PostgreSQL server ``pg_url``."""
    random.seed(args.seed)
    marks = base / "marks"
    marks.mkdir()
    with ExitStack() as stack:
        db_url = stack.enter_context(fresh_database(base, server_url=pg_url))
        upgrade_database(db_url)
        env = subprocess_env(
            EDGEFLEET_HOME=str(base / "home"),
            EDGEFLEET_DB_URL=db_url,
            EDGEFLEET_SECRET=secrets.token_urlsafe(32),
            EDGEFLEET_WORKER_OFFLINE_TIMEOUT="30",
            EDGEFLEET_ACTOR="soak",
        )
        registry = ProcessRegistry(base / "logs")
        fleet = Fleet(registry, env)
        stack.callback(fleet.close)  # after the processes: workers hold links open
        stack.callback(registry.cleanup)
        fleet.start(args.workers)
        wait_until(lambda: len(fleet.get("/workers")) == args.workers, 120, interval=0.5)
        load, chaos = Load(fleet, args, marks), Chaos(fleet, random.Random(args.seed), args.max_cut)
        load.start()
        stack.callback(load.closing.set)
        started = time.monotonic()
        next_action = started + args.chaos_interval
        while time.monotonic() - started < args.duration:
            chaos.run_due()
            if time.monotonic() >= next_action:
                chaos.step()
                next_action += args.chaos_interval
            time.sleep(0.1)
        load.submitting.clear()
        fleet.heal()
        outcome = account(fleet, load, marks, args.drain)
        outcome.chaos = chaos.done
        outcome.acked, outcome.unanswered = len(load.acked), load.unanswered
        return outcome
