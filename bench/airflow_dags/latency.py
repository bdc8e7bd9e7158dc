"""The DAG bench/airflow_latency.py runs: independent tasks that end at once, so the time
from queued to running is all there is to measure."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def latency():
    @task(queue="default")
    def noop(i: int) -> None:
        print(f"task {i}")

    noop.expand(i=list(range(int(os.environ.get("LATENCY_TASKS", "8")))))


latency()
