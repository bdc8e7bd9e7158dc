"""The DAG the Airflow end-to-end test runs on edgefleet workers (two queues, a retry, a
task cleared while it runs)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def fleet():
    @task(queue="default")
    def first():
        print("hello from first")
        return 1

    @task(queue="site-b", retries=1, retry_delay=0)
    def flaky(x):
        marker = Path(os.environ["FLEET_MARKERS"]) / "flaky"
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("the first try fails on purpose")
        return x + 1

    @task(queue="default", retries=1, retry_delay=0)
    def cleared():
        """Its first try runs until the test clears it; the next one ends at once."""
        if get_current_context()["ti"].try_number == 1:
            (Path(os.environ["FLEET_MARKERS"]) / "cleared-running").write_text("running")
            time.sleep(300)

    flaky(first())
    cleared()


fleet()
