"""Fixtures shared by all edgefleet tests.

End-to-end tests run the real thing: ``edgefleet server`` and ``edgefleet worker`` as
subprocesses on loopback, real subprocess jobs and a real database (a SQLite file, or a fresh
PostgreSQL database per test when ``EDGEFLEET_TEST_PG_URL`` is set). Helpers live in
``tests/support``; see its ``__init__`` for the list.

Fixture overview (function-scoped unless named ``module_*``):

- ``database_url``        URL of a new, empty (unmigrated) database
- ``schema_template``     SchemaTemplate (session): ``.apply(url)`` migrates a new database
- ``edgefleet_home``      an empty EDGEFLEET_HOME directory
- ``edgefleet_env``       dict: the environment for edgefleet subprocesses (see below)
- ``patient_liveness``    before ``server``: workers offline after 60 s of silence, not 10
- ``processes``           ProcessRegistry: owns every subprocess; logs shown if a test fails
- ``server_factory``      ``(migrate=True, env=None, wait=True, extra_args=(), tls=None,
                          mutual=False) -> ServerProcess`` (``tls``: serve HTTPS)
- ``server``              a migrated, healthy server (``.url``, ``.pid``, ``.log_text()``)
- ``admin_api``           AdminApi (httpx) for ``server`` with an admin token
- ``start_worker``        ``(hostname, concurrency=2, queues="default", *, heartbeat_interval=1,
                          extra_args=(), env=None, wait=True, timeout=30) -> WorkerProcess``
- ``cli`` / ``cli_json``  run the ``edgefleet`` console script with ``edgefleet_env``
- ``job_recorder``        JobRecorder: jobs that record their own start/end times
- ``tls_files``           TlsFiles: a throwaway CA, server and client certificates (PEM paths)
- ``module_env``, ``module_processes``, ``module_server``, ``module_start_worker``: the
                          same, module-scoped, for modules whose tests share one server
                          and fleet; ``module_logs`` prints their logs when a test fails
- ``migrated_database_url``, ``app_settings``, ``app``, ``app_client``, ``session_factory``:
                          in-process server pieces for unit tests (no subprocesses; on
                          PostgreSQL one migrated database per test process, emptied per test)
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import (
    AdminApi,
    Cli,
    JobRecorder,
    ProcessRegistry,
    SchemaTemplate,
    ServerProcess,
    TlsFiles,
    WorkerProcess,
    free_port,
    fresh_database,
    make_tls,
    subprocess_env,
    wait_until,
)

#: Seconds of heartbeat silence after which the server shows a worker as offline, in tests:
#: the product's own floor (``liveness.FLOOR``), which a loaded machine's delayed beats need.
OFFLINE_TIMEOUT = 10


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "same_on_every_backend: what it checks does not depend on the database (TLS, the "
        "browser, roles, a worker's own behaviour on a link or a signal); run in the SQLite "
        "pass only unless EDGEFLEET_TEST_EVERY_BACKEND is set",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The suite runs twice, on SQLite and on PostgreSQL; a test whose subject does not
    depend on the database runs once, in the SQLite pass, to keep CI within its time
    (``EDGEFLEET_TEST_EVERY_BACKEND=1`` runs it on PostgreSQL too)."""
    if not os.environ.get("EDGEFLEET_TEST_PG_URL") or os.environ.get(
        "EDGEFLEET_TEST_EVERY_BACKEND"
    ):
        return
    skip = pytest.mark.skip(reason="same on every backend: runs in the SQLite pass")
    for item in items:
        if item.get_closest_marker("same_on_every_backend"):
            item.add_marker(skip)


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


# --- database and environment ---------------------------------------------------------


@pytest.fixture(scope="session")
def schema_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaTemplate]:
    """Migrates a test's database: a copy of one migrated SQLite file per test process (or
    a migration in place on PostgreSQL). ``edgefleet db migrate`` itself is tested on its
    own (tests/e2e/test_core_cli.py, the demo)."""
    template = SchemaTemplate(tmp_path_factory.mktemp("schema"))
    yield template
    template.close()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A new, empty database: ``sqlite:///<tmp>/edgefleet.db``, or with
    ``EDGEFLEET_TEST_PG_URL`` set, a uniquely named PostgreSQL database dropped afterwards."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def edgefleet_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def edgefleet_env(edgefleet_home: Path, database_url: str) -> dict[str, str]:
    """The environment for edgefleet subprocesses of this test.

    A copy of ``os.environ`` without any outside ``EDGEFLEET_*`` variables, plus:
    ``EDGEFLEET_HOME`` (tmp dir), ``EDGEFLEET_DB_URL`` (``database_url``), ``EDGEFLEET_SECRET``
    (random), ``EDGEFLEET_API_URL`` (``http://127.0.0.1:<free port>``, where ``server``
    listens; rewritten in place if that port turns out to be taken),
    ``EDGEFLEET_WORKER_OFFLINE_TIMEOUT`` (10 s) and ``EDGEFLEET_ACTOR``. Edit it before starting
    processes to change their settings; ``cli`` and the factories read it at call time.
    """
    return _environment(edgefleet_home, database_url)


@pytest.fixture
def patient_liveness(edgefleet_env: dict[str, str]) -> None:
    """Listed before ``server``: a minute of silence before a worker counts as offline, for
    tests that restart a worker and are about something other than liveness (starting a
    worker on a loaded machine can take longer than the suite's timeout)."""
    edgefleet_env["EDGEFLEET_WORKER_OFFLINE_TIMEOUT"] = "60"


def _environment(home: Path, database_url: str) -> dict[str, str]:
    return subprocess_env(
        EDGEFLEET_HOME=str(home),
        EDGEFLEET_DB_URL=database_url,
        EDGEFLEET_SECRET=secrets.token_urlsafe(32),
        EDGEFLEET_API_URL=f"http://127.0.0.1:{free_port()}",
        EDGEFLEET_WORKER_OFFLINE_TIMEOUT=str(OFFLINE_TIMEOUT),
        EDGEFLEET_ACTOR="test-operator",
    )


@pytest.fixture
def cli(edgefleet_env: dict[str, str]) -> Cli:
    """``cli("list-workers", "--output", "json", check=False, timeout=60, env=None)``:
    runs the ``edgefleet`` console script, returns a text ``CompletedProcess``."""
    return Cli(edgefleet_env)


@pytest.fixture
def cli_json(cli: Cli) -> Callable[..., object]:
    """``cli_json("jobs", "show", 3)``: adds ``--output json``, asserts exit 0, parses stdout."""
    return cli.json


# --- processes ------------------------------------------------------------------------


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessRegistry]:
    """Owns all subprocesses of a test; stops workers (and their jobs), then servers."""
    registry = ProcessRegistry(tmp_path / "logs")
    yield registry
    if _test_failed(request) and registry.processes:
        print(f"\n===== process logs =====\n{registry.logs_report()}")
    registry.cleanup()


@pytest.fixture
def server_factory(
    edgefleet_env: dict[str, str], processes: ProcessRegistry, schema_template: SchemaTemplate
) -> Callable[..., ServerProcess]:
    """Start ``edgefleet server`` on the port in ``EDGEFLEET_API_URL``.

    ``server_factory(migrate=True, env=None, wait=True, extra_args=(), tls=None,
    mutual=False)``: runs ``edgefleet db migrate`` first unless ``migrate=False``. With
    ``tls`` (a ``TlsFiles``) it serves HTTPS with ``tls.server`` and ``EDGEFLEET_API_URL``
    becomes ``https://...`` (clients still need the CA: ``--ca-file`` or
    ``EDGEFLEET_CA_FILE``); ``mutual`` also requires client certificates signed by
    ``tls.ca``. With ``wait`` blocks until
    ``GET /api/v1/health`` answers and the server proves it is ours (it accepts a token
    signed with this test's secret). A port found taken is replaced by a free one (and
    ``EDGEFLEET_API_URL`` updated) up to three times. Stopped at teardown (SIGTERM, then KILL).
    """

    def start(
        migrate: bool = True,
        env: dict[str, str] | None = None,
        wait: bool = True,
        extra_args: tuple[str, ...] = (),
        tls: TlsFiles | None = None,
        mutual: bool = False,
    ) -> ServerProcess:
        env = edgefleet_env if env is None else env
        return _start_server(
            env, processes, schema_template, migrate, wait, extra_args, tls, mutual
        )

    return start


def _start_server(
    env: dict[str, str],
    processes: ProcessRegistry,
    schema_template: SchemaTemplate,
    migrate: bool = True,
    wait: bool = True,
    extra_args: tuple[str, ...] = (),
    tls: TlsFiles | None = None,
    mutual: bool = False,
) -> ServerProcess:
    """What ``server_factory`` does, for any environment and registry (the module-scoped
    server too)."""
    if migrate:
        schema_template.apply(env["EDGEFLEET_DB_URL"])
    scheme, verify = "http", True
    if tls is not None:
        scheme, verify = "https", tls.client_context()
        extra_args = (*extra_args, "--ssl-certfile", str(tls.server))
        if mutual:
            extra_args = (*extra_args, "--ssl-client-ca", str(tls.ca))
    for _ in range(3):
        port = int(env["EDGEFLEET_API_URL"].rsplit(":", 1)[1])
        env["EDGEFLEET_API_URL"] = f"{scheme}://127.0.0.1:{port}"
        server = processes.start_server(env, port, extra_args, scheme=scheme, verify=verify)
        if not wait:
            return server
        try:
            server.wait_healthy()
        except AssertionError:
            if "address already in use" not in server.log_text().lower():
                raise
        else:
            if _answers_to(server, env["EDGEFLEET_SECRET"]):
                return server
            server.stop()  # another test's server holds the port and answered for ours
        env["EDGEFLEET_API_URL"] = f"http://127.0.0.1:{free_port()}"
    raise AssertionError("could not find a free port for the server")


def _answers_to(server: ServerProcess, secret: str) -> bool:
    """Whether the server at ``server.url`` is ours: it accepts this test's secret."""
    with AdminApi(server.url, secret, verify=server.verify) as api:
        return api.request("GET", "/workers").status_code == 200


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A healthy ``edgefleet server`` on a migrated ``database_url``."""
    return server_factory()


@pytest.fixture
def admin_api(server: ServerProcess, edgefleet_env: dict[str, str]) -> Iterator[AdminApi]:
    """An admin HTTP client for ``server`` (token subject ``test-admin``)."""
    with AdminApi(server.url, edgefleet_env["EDGEFLEET_SECRET"], verify=server.verify) as api:
        yield api


@pytest.fixture
def start_worker(
    edgefleet_env: dict[str, str], processes: ProcessRegistry
) -> Callable[..., WorkerProcess]:
    """Start ``edgefleet worker -H NAME -c N -q QUEUES --heartbeat-interval S [extra_args]``.

    ``start_worker(hostname, concurrency=2, queues="default", *, heartbeat_interval=1.0,
    extra_args=(), env=None, wait=True, timeout=30)``. With ``wait`` it returns once the
    server lists this process (same pid) as the worker and it has acknowledged its desired
    state; without, right after spawning (for workers expected to be refused). The handle has
    ``.proc``, ``.pid``, ``.log_text()``, ``.stop()`` (SIGTERM + wait) and ``.kill()``
    (SIGKILL, a crash). Leftovers and their jobs are killed at teardown.
    """
    return _worker_starter(edgefleet_env, processes)


def _worker_starter(
    edgefleet_env: dict[str, str], processes: ProcessRegistry
) -> Callable[..., WorkerProcess]:
    """``start_worker`` for any environment and registry (the module-scoped ones too)."""

    def start(
        hostname: str,
        concurrency: int = 2,
        queues: str = "default",
        *,
        heartbeat_interval: float = 1.0,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> WorkerProcess:
        env = edgefleet_env if env is None else env
        args = [
            "-c",
            str(concurrency),
            "-q",
            queues,
            "--heartbeat-interval",
            str(heartbeat_interval),
            *extra_args,
        ]
        worker = processes.start_worker(env, hostname, args)
        if wait:
            verify = processes.verify_for(env["EDGEFLEET_API_URL"])
            _wait_registered(worker, env, timeout, verify)
        return worker

    return start


def _wait_registered(worker: WorkerProcess, env: dict[str, str], timeout: float, verify) -> None:
    with AdminApi(env["EDGEFLEET_API_URL"], env["EDGEFLEET_SECRET"], verify=verify) as api:

        def registered() -> bool:
            if not worker.alive():
                raise AssertionError(
                    f"{worker!r} exited with {worker.returncode} before registering:\n"
                    f"{worker.log_tail()}"
                )
            view = api.find_worker(worker.hostname)
            return bool(
                view
                and view["pid"] == worker.pid
                and view["applied_concurrency"] is not None
                and view["applied_version"] == view["desired_version"]
            )

        wait_until(registered, timeout=timeout, message=lambda: worker.log_tail())


# --- one server for a whole module ----------------------------------------------------
# For modules whose tests can share one server and fleet (starting them is most of such a
# test's time): each test puts back what it changed, or checks only what it did itself.


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``edgefleet_env`` for a whole module: its own home, secret, port and database."""
    directory = tmp_path_factory.mktemp("module")
    home = directory / "home"
    home.mkdir()
    with fresh_database(directory) as url:
        yield _environment(home, url)


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRegistry]:
    """``processes`` for a whole module; ``module_logs`` shows its logs when a test fails."""
    registry = ProcessRegistry(tmp_path_factory.mktemp("module-logs"))
    yield registry
    registry.cleanup()


@pytest.fixture
def module_logs(
    request: pytest.FixtureRequest, module_processes: ProcessRegistry
) -> Iterator[ProcessRegistry]:
    """``module_processes``, with its logs printed after a test that failed."""
    yield module_processes
    if _test_failed(request) and module_processes.processes:
        print(f"\n===== process logs =====\n{module_processes.logs_report()}")


@pytest.fixture(scope="module")
def module_server(
    module_env: dict[str, str],
    module_processes: ProcessRegistry,
    schema_template: SchemaTemplate,
) -> ServerProcess:
    """``server`` for a whole module, on ``module_env``."""
    return _start_server(module_env, module_processes, schema_template)


@pytest.fixture(scope="module")
def module_start_worker(
    module_env: dict[str, str], module_processes: ProcessRegistry
) -> Callable[..., WorkerProcess]:
    """``start_worker`` for a whole module: workers on ``module_env``, living until its end."""
    return _worker_starter(module_env, module_processes)


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    return make_tls(tmp_path / "tls")


@pytest.fixture
def job_recorder(tmp_path: Path) -> JobRecorder:
    """``job_recorder.command(seconds=1.0, exit_code=0)`` builds a job command whose runs
    ``job_recorder.runs()`` reads back; see ``support.records``."""
    return JobRecorder(tmp_path / "job-records.jsonl")


# --- in-process server pieces (unit tests) --------------------------------------------


@pytest.fixture
def migrated_database_url(request: pytest.FixtureRequest, schema_template: SchemaTemplate) -> str:
    """A database at the latest schema, migrated in-process: ``database_url`` migrated, or on
    PostgreSQL, for a test that has no use for ``database_url`` itself (no subprocess shares
    it), this process's one migrated database with every table emptied."""
    server_url = os.environ.get("EDGEFLEET_TEST_PG_URL")
    if server_url and "database_url" not in request.fixturenames:
        return schema_template.emptied_postgres(server_url)
    database_url = request.getfixturevalue("database_url")
    schema_template.apply(database_url)
    return database_url


@pytest.fixture
def app_settings(tmp_path: Path, migrated_database_url: str):
    """Settings for an in-process app on ``migrated_database_url`` with a random secret."""
    from edgefleet.settings import Settings

    return Settings(
        home=tmp_path / "app-home",
        db_url=migrated_database_url,
        secret=secrets.token_urlsafe(32),
        worker_offline_timeout=OFFLINE_TIMEOUT,
        watch_timeout=2.0,
    )


@pytest.fixture
def app(app_settings):
    """``edgefleet.server.app.create_app(app_settings)``."""
    from edgefleet.server.app import create_app

    return create_app(app_settings)


@pytest.fixture
def app_client(app) -> Iterator[object]:
    """A ``fastapi.testclient.TestClient`` for ``app`` (lifespan run), without a token."""
    with warnings.catch_warnings():
        # starlette nags that httpx is deprecated for its TestClient; nothing to act on here
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client
    app.state.context.engine.dispose()


@pytest.fixture
def session_factory(migrated_database_url: str) -> Iterator[object]:
    """A SQLAlchemy ``sessionmaker`` on ``migrated_database_url``, for service-level tests."""
    from edgefleet.db.session import make_engine, make_sessionmaker

    engine = make_engine(migrated_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()
