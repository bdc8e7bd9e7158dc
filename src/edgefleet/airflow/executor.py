"""``EdgefleetExecutor``: an Airflow 3 executor whose tasks run as edgefleet jobs.

Each queued task workload becomes one job (``edgefleet.airflow.jobs``) that runs the Task
SDK's workload entry point on a worker serving the task's queue; the task talks to Airflow's
execution API itself, as it does under Airflow's own remote executors. ``sync`` asks the
server about every running job in one request; a scheduler that restarts finds its jobs
again by the key each one carries.

Configuration, the Airflow way (``airflow.cfg`` or ``AIRFLOW__EDGEFLEET__*``)::

    [edgefleet]
    api_url = https://edgefleet.example:8080     # several, comma-separated: replicas
    token_file = /etc/airflow/edgefleet-token     # an operator token (edgefleet token create)
    ca_file = /etc/airflow/edgefleet-ca.pem       # optional: the server's CA
    python = python3                              # Airflow's Python on the workers
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.executors import workloads
from airflow.executors.base_executor import BaseExecutor
from airflow.utils.state import TaskInstanceState

from edgefleet.airflow.jobs import TaskFacts, UnsubmittableTask, job_key, job_request, outcome
from edgefleet.cli.api import AdminClient, ApiError
from edgefleet.contract import MAX_BATCH_JOBS, MAX_STATUS_LOOKUP
from edgefleet.settings import Settings

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancekey import TaskInstanceKey
    from sqlalchemy.orm import Session

SECTION = "edgefleet"


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EdgefleetExecutor(BaseExecutor):
    """Runs Airflow task workloads as edgefleet jobs; retries stay Airflow's."""

    supports_ad_hoc_ti_run = True
    serve_logs = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: AdminClient | None = None
        self._python = "python3"
        #: Running tasks -> their edgefleet job id.
        self._job_ids: dict[TaskInstanceKey, int] = {}
        #: ``execution_timeout`` (seconds) of queued tasks, read when they are queued.
        self._timeouts: dict[TaskInstanceKey, float | None] = {}
        self._dag_bag: Any = None

    # --- set-up ---------------------------------------------------------------------------

    def start(self) -> None:
        self._client = self._make_client()

    def _make_client(self) -> AdminClient:
        def option(name: str) -> str | None:
            value = self.conf.get(SECTION, name, fallback=None)
            return value.strip() if value and value.strip() else None

        self._python = option("python") or "python3"
        fields: dict[str, Any] = {"api_url": option("api_url") or "http://127.0.0.1:8080"}
        for name in ("token_file", "ca_file"):
            if option(name):
                fields[name] = Path(option(name))
        return AdminClient(Settings(**fields))

    @property
    def client(self) -> AdminClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    # --- queueing ---------------------------------------------------------------------------

    def queue_workload(self, workload: Any, session: Session) -> None:
        super().queue_workload(workload, session)
        if isinstance(workload, workloads.ExecuteTask):
            self._timeouts[workload.ti.key] = self._execution_timeout(workload, session)

    def _execution_timeout(self, workload: workloads.ExecuteTask, session: Session) -> float | None:
        """The task's ``execution_timeout`` from its serialized DAG (the workload has none)."""
        try:
            if self._dag_bag is None:
                from airflow.models.dagbag import DBDagBag

                self._dag_bag = DBDagBag()
            dag = self._dag_bag.get_dag(workload.ti.dag_version_id, session=session)
            timeout = dag.get_task(workload.ti.task_id).execution_timeout if dag else None
        except Exception:  # a missing task or DAG version: the job simply has no timeout
            self.log.warning("no execution_timeout found for %s", workload.ti.key, exc_info=True)
            return None
        return timeout.total_seconds() if timeout else None

    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        """Submit the workloads as jobs, up to 1000 per request (one transaction each)."""
        tasks = [w for w in workload_items if isinstance(w, workloads.ExecuteTask)]
        requests: list[tuple[TaskInstanceKey, str, dict]] = []
        for workload in tasks:
            key = workload.ti.key
            self.queued_tasks.pop(key, None)
            try:
                requests.append((key, self._job_key(workload), self._request(workload)))
            except UnsubmittableTask as exc:
                self.log.error("task %s cannot run on edgefleet: %s", key, exc)
                self.fail(key, str(exc))
        for chunk in _chunks(requests, MAX_BATCH_JOBS):
            try:
                body = self.client.request(
                    "POST", "/jobs/batch", json={"jobs": [job for _, _, job in chunk]}
                )
            except ApiError as exc:
                for key, _, _ in chunk:
                    self.log.error("edgefleet refused task %s: %s", key, exc)
                    self.fail(key, f"edgefleet refused the job: {exc}")
                continue
            for (key, stored, _), job_id in zip(chunk, body["ids"], strict=True):
                self.running.add(key)
                self._job_ids[key] = job_id
                # Recorded as the task's external_executor_id: adoption looks it up.
                self.event_buffer[key] = (TaskInstanceState.QUEUED, stored)
                self.log.info("task %s is edgefleet job %s", key, job_id)

    @staticmethod
    def _job_key(workload: workloads.ExecuteTask) -> str:
        return job_key(str(workload.ti.id), workload.ti.try_number)

    def _request(self, workload: workloads.ExecuteTask) -> dict:
        ti = workload.ti
        facts = TaskFacts(
            ti_id=str(ti.id),
            try_number=ti.try_number,
            queue=ti.queue,
            pool_slots=ti.pool_slots,
            priority_weight=ti.priority_weight,
            execution_timeout=self._timeouts.pop(ti.key, None),
            workload_json=workload.model_dump_json(),
        )
        return job_request(facts, self._python)

    # --- state ------------------------------------------------------------------------------

    def _statuses(self, ids: list[int] = (), keys: list[str] = ()) -> list[dict]:
        """``POST /jobs/status``: one request per 10,000 jobs asked about."""
        names = [("ids", i) for i in ids] + [("keys", k) for k in keys]
        found: list[dict] = []
        for chunk in _chunks(names, MAX_STATUS_LOOKUP):
            body = {
                "ids": [v for kind, v in chunk if kind == "ids"],
                "keys": [v for kind, v in chunk if kind == "keys"],
            }
            found += self.client.request("POST", "/jobs/status", json=body)
        return found

    def sync(self) -> None:
        """Read back every running job in one request and report the ended ones."""
        if not self._job_ids:
            return
        try:
            statuses = {s["id"]: s for s in self._statuses(ids=list(self._job_ids.values()))}
        except ApiError as exc:
            self.log.warning("cannot read job states from edgefleet: %s", exc)
            return
        for key, job_id in list(self._job_ids.items()):
            status = statuses.get(job_id)
            if status is None:
                self._forget(key)
                self.fail(key, f"edgefleet job {job_id} no longer exists")
                continue
            ended = outcome(status)
            if ended is None:
                continue
            self._forget(key)
            if ended.succeeded:
                self.success(key)
            else:
                self.log.error("task %s failed: %s", key, ended.reason)
                self.fail(key, ended.reason)

    def _forget(self, key: TaskInstanceKey) -> int | None:
        self._timeouts.pop(key, None)
        return self._job_ids.pop(key, None)

    # --- stopping -------------------------------------------------------------------------

    def _cancel(self, job_id: int) -> None:
        try:
            self.client.request("POST", f"/jobs/{job_id}/cancel")
        except ApiError as exc:  # ended meanwhile (409) or unreachable: nothing more to do
            self.log.info("cancelling edgefleet job %s: %s", job_id, exc)

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Cancel the task's job and forget it; the task's state is Airflow's to set."""
        self.queued_tasks.pop(ti.key, None)
        self.running.discard(ti.key)
        job_id = self._forget(ti.key)
        if job_id is not None:
            self._cancel(job_id)

    def terminate(self) -> None:
        """Cancel every job this executor runs."""
        for key in list(self._job_ids):
            job_id = self._forget(key)
            self.running.discard(key)
            if job_id is not None:
                self._cancel(job_id)

    def end(self) -> None:
        """Report what ended and leave the rest running: the scheduler calls this on every
        exit, a restart included, and the next scheduler adopts the jobs by their key."""
        self.sync()
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- logs -----------------------------------------------------------------------------

    def get_task_log(self, ti: TaskInstance, try_number: int) -> tuple[list[str], list[str]]:
        """A running task's output so far, from its job (Airflow asks while the task runs;
        afterwards it reads the log file the task wrote)."""
        key = job_key(str(ti.id), try_number)
        try:
            found = self._statuses(keys=[key])
            if not found:
                return [], []
            job_id = max(status["id"] for status in found)
            body = self.client.request("GET", f"/jobs/{job_id}/logs")
        except ApiError as exc:
            return [f"edgefleet: cannot read the output of {key}: {exc}"], []
        return [f"edgefleet job {job_id}"], [body["log"]]

    # --- adoption -------------------------------------------------------------------------

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Take over the jobs of tasks a dead scheduler left running, found by their key;
        the tasks without a live job are handed back to the scheduler."""
        by_key = {job_key(str(ti.id), ti.try_number): ti for ti in tis}
        try:
            statuses = self._statuses(keys=list(by_key))
        except ApiError as exc:
            self.log.warning("cannot look up jobs to adopt: %s", exc)
            return tis
        adopted: set[str] = set()
        for status in sorted(statuses, key=lambda s: s["id"]):  # the newest job of a key wins
            ti = by_key[status["key"]]
            if status["state"] == "cancelled":
                continue
            self.running.add(ti.key)
            self._job_ids[ti.key] = status["id"]
            adopted.add(status["key"])
        if adopted:
            self.log.info("adopted %d running task(s) from edgefleet", len(adopted))
        return [ti for k, ti in by_key.items() if k not in adopted]
