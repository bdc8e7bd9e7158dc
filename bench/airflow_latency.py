"""Airflow task queued -> running on an edgefleet worker, with a real Airflow 3 deployment.

Airflow (SQLite; api-server and scheduler, ``EdgefleetExecutor``), one edgefleet server and
one worker run ``--runs`` DAG runs, started ``--spacing`` seconds apart, of ``--tasks``
independent tasks that end at once. For every task it reports, from Airflow's queued time
(``queued_dttm``):

- dispatch: until the edgefleet job started on the worker (edgefleet's share; under the edge3
  provider a worker polls for jobs every ``[edge] job_poll_interval``, 5 s by default:
  up to 5 s, 2.5 s on average);
- running: until Airflow's ``start_date`` (the Task SDK started on the worker and told
  Airflow; this adds Python and Airflow's imports, the same under either executor).

    EDGEFLEET_TEST_AIRFLOW_PYTHON=.venv-airflow/bin/python \\
        .venv/bin/python bench/airflow_latency.py      # 16 tasks, ~3 minutes (--quick: 2)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
from _common import SUMMARY_HEADERS, Bench, install_signal_exit, print_table, summarize, summary_row

from support.airflow_stack import (
    AIRFLOW_PYTHON_ENV,
    AirflowApi,
    AirflowProcess,
    airflow_python,
    copy_home,
    deployment_env,
    make_home_template,
)
from support.processes import free_port, spawn
from support.waiting import wait_until

DAGS = Path(__file__).resolve().parent / "airflow_dags"
EDGE3_POLL = 5.0  # [edge] job_poll_interval's default


def seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def deploy(bench: Bench, python: str, concurrency: int) -> AirflowApi:
    """Airflow and one worker on the bench's server; back once Airflow's API answers."""
    with bench.admin() as api:
        body = {"role": "operator", "name": "airflow"}
        token = api.call("POST", "/tokens", expect=201, json=body)["token"]
    token_file = bench.home / "token"
    token_file.write_text(token)
    template = make_home_template(python, bench.home / "template", bench.home / "t.log", DAGS)
    port = free_port()
    airflow_env = deployment_env(
        copy_home(template, bench.home / "airflow"),
        python,
        port,
        bench.secret,
        bench.api_url,
        token_file,
        DAGS,
    )
    env = {**bench.env(), **airflow_env}
    for command in ("api-server", "scheduler"):
        argv = [python, "-m", "airflow", command]
        log_path = bench.registry.log_path("airflow-" + command)
        bench.registry.add(AirflowProcess(command, argv, spawn(argv, env, log_path), log_path))
    bench.registry.start_worker(env, "site-a-1", ["-c", str(concurrency), "-q", "default"])
    airflow = AirflowApi(f"http://127.0.0.1:{port}")
    wait_until(airflow.sign_in, timeout=600, ignore=(httpx.HTTPError,), message="api-server")
    return airflow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2, help="per DAG run")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--spacing", type=float, default=6.0, help="seconds between runs")
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's")
    parser.add_argument("--quick", action="store_true", help="2 runs of 1 task: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.runs, args.spacing = 1, 2, 1.0
    python = airflow_python()
    if python is None:
        parser.error(f"set {AIRFLOW_PYTHON_ENV} to a Python with edgefleet[airflow] installed")
    install_signal_exit()
    os.environ["LATENCY_TASKS"] = str(args.tasks)  # read when the DAG is parsed
    with Bench() as bench:
        bench.start_server()
        airflow = deploy(bench, python, args.concurrency)
        runs = [f"r{n}" for n in range(args.runs)]
        for n, run in enumerate(runs):  # spread out, so tasks are queued at different times
            if n:
                time.sleep(args.spacing)
            body = {"dag_run_id": run, "logical_date": None}
            airflow.call("POST", "/dags/latency/dagRuns", json=body)
        found = []
        for run in runs:
            wait_until(
                lambda run=run: (
                    airflow.call("GET", f"/dags/latency/dagRuns/{run}")["state"] == "success"
                ),
                timeout=1200,
                interval=1,
                ignore=(httpx.TransportError,),  # a busy api-server's slow answer
                message=lambda run=run: str(airflow.tasks("latency", run)),
            )
            path = f"/dags/latency/dagRuns/{run}/taskInstances"
            found += airflow.call("GET", path)["task_instances"]
        with bench.admin() as api:
            started = {j["key"]: j["started_at"] for j in api.jobs()}
    dispatch, running = [], []
    failed = [ti for ti in found if ti["state"] != "success"]
    for ti in found:
        job_started = started[f"airflow:{ti['id']}:{ti['try_number']}"]
        dispatch.append(seconds(job_started, ti["queued_when"]))
        if ti["start_date"]:
            running.append(seconds(ti["start_date"], ti["queued_when"]))
    print_table(
        f"{len(found)} tasks, worker concurrency {args.concurrency}, "
        f"load {os.getloadavg()[0]:.1f}",
        SUMMARY_HEADERS,
        [summary_row("queued -> job started", summarize(dispatch)),
         summary_row("queued -> running", summarize(running))],
    )  # fmt: skip
    if failed:  # e.g. Airflow's api-server timing out the Task SDK's calls on a busy host
        print(f"{len(failed)} task(s) did not succeed: {[ti['state'] for ti in failed]}")
    print(f"edge3 polling alone: up to {EDGE3_POLL:g} s, {EDGE3_POLL / 2:g} s on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
