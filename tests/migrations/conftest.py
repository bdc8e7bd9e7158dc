"""Fixtures of the migration tests: a fresh, empty database per test on every backend.

SQLite always; PostgreSQL too when ``EDGEFLEET_TEST_PG_URL`` names a server (a database on
it that we may connect to, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``):
each test then gets its own database created there and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url

from edgefleet.db.session import make_engine

PG_URL_VARIABLE = "EDGEFLEET_TEST_PG_URL"


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_URL_VARIABLE) else ["sqlite"]


@pytest.fixture(params=_backends())
def migration_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'edgefleet.db'}"
    else:
        yield from _fresh_pg_database(os.environ[PG_URL_VARIABLE])


def _fresh_pg_database(server_url: str) -> Iterator[str]:
    admin = create_engine(
        server_url, isolation_level="AUTOCOMMIT", connect_args={"client_encoding": "utf8"}
    )
    name = f"edgefleet_migrations_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def migration_engine(migration_url: str) -> Iterator[Engine]:
    engine = make_engine(migration_url)
    yield engine
    engine.dispose()


#: ``edgefleet`` as installed for this interpreter; append the arguments.
EDGEFLEET = [sys.executable, "-c", "from edgefleet.cli.main import run; run()"]


@pytest.fixture
def cli_env(migration_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env.update(EDGEFLEET_DB_URL=migration_url, EDGEFLEET_HOME=str(tmp_path / "home"))
    return env


@pytest.fixture
def cli(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """Run ``edgefleet ARGS...`` in this process against the test's database; the result has
    ``exit_code``, ``stdout`` and ``stderr``."""
    from click.testing import CliRunner

    from edgefleet.cli.main import app

    for name in list(os.environ):
        if name.startswith("EDGEFLEET_"):
            monkeypatch.delenv(name)
    for name, value in cli_env.items():
        if name.startswith("EDGEFLEET_"):
            monkeypatch.setenv(name, value)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args))

    return run


@pytest.fixture
def spawn_cli(cli_env: dict[str, str]):
    """Start ``edgefleet ARGS...`` without waiting; output goes to the given files."""

    def spawn(*args: str, stdout, stderr) -> subprocess.Popen:
        return subprocess.Popen(
            [*EDGEFLEET, *args],
            env=cli_env,
            stdout=stdout,
            stderr=stderr,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    return spawn
