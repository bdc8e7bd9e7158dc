"""The Airflow executor's requests per scheduler heartbeat with many running tasks.

One ``edgefleet server`` (SQLite) holds ``--tasks`` jobs keyed as the executor keys them (on
a queue no worker serves, so they stay in flight). ``EdgefleetExecutor``, under Airflow's
Python, adopts them all by key as a restarted scheduler would, then syncs for a few seconds;
every request it sends is counted. Passes if the adoption took one request and every sync
one request.

    EDGEFLEET_TEST_AIRFLOW_PYTHON=.venv-airflow/bin/python \
        .venv/bin/python bench/airflow_executor.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid
from pathlib import Path
from statistics import median

from _common import Bench, fmt_ms, install_signal_exit, verdict

from edgefleet.airflow.jobs import job_key
from support.airflow_stack import AIRFLOW_PYTHON_ENV, airflow_python, base_env

PROBE = Path(__file__).resolve().parent.parent / "tests" / "support" / "airflow_probe.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to keep syncing")
    args = parser.parse_args()
    python = airflow_python()
    if python is None:
        print(f"error: set {AIRFLOW_PYTHON_ENV} to a Python with edgefleet[airflow]")
        return 2
    install_signal_exit()
    with Bench() as bench:
        bench.start_server()
        ids = [str(uuid.uuid4()) for _ in range(args.tasks)]
        with bench.admin() as api:
            for start in range(0, len(ids), 1000):
                jobs = [
                    {"command": ["true"], "queue": "in-flight", "key": job_key(ti, 1)}
                    for ti in ids[start : start + 1000]
                ]
                api.call("POST", "/jobs/batch", expect=201, json={"jobs": jobs})
            body = {"role": "operator", "name": "airflow"}
            token = api.call("POST", "/tokens", expect=201, json=body)
        token_file = bench.home / "token"
        token_file.write_text(token["token"])
        env = {
            **bench.env(),
            **base_env(bench.home / "airflow"),
            "AIRFLOW__EDGEFLEET__API_URL": bench.api_url,
            "AIRFLOW__EDGEFLEET__TOKEN_FILE": str(token_file),
        }
        spec = {"tis": [[ti, 1] for ti in ids], "timeout": args.seconds}
        done = subprocess.run(
            [python, "-P", str(PROBE), json.dumps(spec)], env=env, capture_output=True, text=True
        )
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    report = json.loads(done.stdout.strip().splitlines()[-1])
    syncs = report["requests_per_sync"]
    adopt = report["adopt_requests"]
    print(f"tasks adopted by key: {report['adopted']} of {args.tasks}, in {adopt} request(s)")
    print(
        f"syncs: {len(syncs)}, requests per sync: min {min(syncs)}, max {max(syncs)}; "
        f"median sync {fmt_ms(median(report['sync_seconds']))}"
    )
    ok = report["adopted"] == args.tasks and adopt == 1 and set(syncs) == {1}
    print(f"{verdict(ok)}: {args.tasks} running tasks cost 1 request per heartbeat")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
