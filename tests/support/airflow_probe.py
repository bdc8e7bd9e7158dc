"""Run ``EdgefleetExecutor`` outside a scheduler, as a scheduler that just restarted would:
adopt task instances by their key, then sync until the adopted jobs end.

Runs under Airflow's Python (``python -P airflow_probe.py '<json>'``), with the executor's
``[edgefleet]`` settings in the environment. Input: ``{"tis": [[ti_id, try_number], ...],
"timeout": seconds, "keep": n, "logs": bool}``: stop syncing when ``n`` adopted tasks are
still running, and read their output if ``logs``. Prints one JSON object: the ti ids handed
back, the state each adopted task reached, the output of those still running
(``get_task_log``), the requests adoption and each ``sync`` sent.
"""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace


def main() -> None:
    from airflow.models.taskinstancekey import TaskInstanceKey

    from edgefleet.airflow.executor import EdgefleetExecutor

    spec = json.loads(sys.argv[1])
    executor = EdgefleetExecutor()
    executor.start()
    requests: list[str] = []
    send = executor.client.request

    def counted(method: str, path: str, **kwargs):
        requests.append(f"{method} {path}")
        return send(method, path, **kwargs)

    executor.client.request = counted  # type: ignore[method-assign]
    tis = [
        SimpleNamespace(id=ti_id, try_number=tries, key=TaskInstanceKey("d", ti_id, "r", tries))
        for ti_id, tries in spec["tis"]
    ]
    left = executor.try_adopt_task_instances(tis)
    adopted = len(executor.running)
    adopt_requests = len(requests)
    per_sync: list[int] = []
    sync_seconds: list[float] = []
    deadline = time.monotonic() + spec.get("timeout", 60)
    while len(executor.running) > spec.get("keep", 0) and time.monotonic() < deadline:
        before, began = len(requests), time.perf_counter()
        executor.sync()
        sync_seconds.append(time.perf_counter() - began)
        per_sync.append(len(requests) - before)
        if executor.running:
            time.sleep(0.2)
    running = set(executor.running)
    events = executor.event_buffer.items()
    logs = {
        ti.id: executor.get_task_log(ti, ti.try_number)
        for ti in tis
        if ti.key in running and spec.get("logs")
    }
    states = {key.task_id: getattr(state, "value", state) for key, (state, _) in events}
    before = len(requests)
    executor.end()
    report = {
        "left": [ti.id for ti in left],
        "adopted": adopted,
        "adopt_requests": adopt_requests,
        "states": states,
        "still_running": [key.task_id for key in executor.running],
        "requests_per_sync": per_sync,
        "sync_seconds": sync_seconds,
        "logs": logs,
        "end_requests": requests[before:],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
