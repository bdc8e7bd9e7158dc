"""The signing secret and the SQLite files on disk: created private (0600 in a 0700 home),
generated once however many processes race for it, checked when read, never half-read."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from edgefleet.db.migrate import migration_lock
from edgefleet.db.session import make_engine
from edgefleet.errors import ConfigurationError
from edgefleet.private_files import publish_new, replace_private
from edgefleet.settings import Settings

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

RACERS = 6


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _settings(home: Path, **fields) -> Settings:
    return Settings(home=home, secret=None, **fields)


def test_a_generated_secret_is_private_and_kept(tmp_path):
    home = tmp_path / "new" / "home"
    settings = _settings(home)
    assert settings.existing_secret() is None
    assert not home.exists(), "existing_secret() never creates anything"

    secret = settings.signing_secret()
    assert len(secret) >= 32
    assert _mode(home) == 0o700
    assert _mode(home / "secret") == 0o600
    assert (home / "secret").read_text() == secret
    assert settings.signing_secret() == secret
    assert _settings(home).existing_secret() == secret
    assert [p.name for p in home.iterdir()] == ["secret"], "no temporary file is left behind"


def test_a_home_that_exists_keeps_its_mode(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    _settings(home).signing_secret()
    assert _mode(home) == 0o755
    assert _mode(home / "secret") == 0o600


def test_the_environment_wins_and_nothing_is_written(tmp_path):
    home = tmp_path / "home"
    settings = Settings(home=home, secret="s" * 32)
    assert settings.existing_secret() == "s" * 32
    assert settings.signing_secret() == "s" * 32
    assert not home.exists()


def _race(home: str, barrier, answers) -> None:  # pragma: no cover - runs in a child
    barrier.wait()
    answers.put(Settings(home=Path(home), secret=None).signing_secret())


def test_processes_racing_to_create_the_secret_all_get_the_same_one(tmp_path):
    home = tmp_path / "home"
    context = multiprocessing.get_context("fork")
    barrier, answers = context.Barrier(RACERS), context.Queue()
    racers = [context.Process(target=_race, args=(str(home), barrier, answers)) for _ in range(6)]
    for racer in racers:
        racer.start()
    secrets = {answers.get(timeout=60) for _ in racers}
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    assert secrets == {(home / "secret").read_text()}
    assert [p.name for p in home.iterdir()] == ["secret"]


@pytest.mark.parametrize("content", ["", "\n", "too-short", "x" * 31])
def test_an_empty_or_short_secret_file_is_refused(tmp_path, content):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_text(content)
    for ask in (_settings(home).existing_secret, _settings(home).signing_secret):
        with pytest.raises(ConfigurationError, match="at least 32") as refused:
            ask()
        assert str(home / "secret") in refused.value.message
    assert (home / "secret").read_text() == content, "a bad file is reported, not replaced"


def test_the_cli_reports_a_short_secret_file_in_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_text("weak")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env["EDGEFLEET_HOME"] = str(home)
    edgefleet = Path(sys.executable).with_name("edgefleet")
    done = subprocess.run(
        [str(edgefleet), "ui-token"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    assert done.stderr.startswith("error: the secret file ")
    assert "Traceback" not in done.stderr and done.stdout == ""


def _die_before_publishing(home: str) -> None:  # pragma: no cover - runs in a child
    import edgefleet.private_files as files

    def crash(_fd: int) -> None:  # the data is written, the file is not yet published
        os._exit(3)

    files.os.fsync = crash
    Settings(home=Path(home), secret=None).signing_secret()


def test_a_writer_that_dies_mid_way_leaves_no_secret_to_read(tmp_path):
    home = tmp_path / "home"
    writer = multiprocessing.get_context("fork").Process(
        target=_die_before_publishing, args=(str(home),)
    )
    writer.start()
    writer.join(60)
    assert writer.exitcode == 3
    (leftover,) = home.iterdir()
    assert leftover.name.startswith(".secret.") and leftover.stat().st_size > 0
    assert _mode(leftover) == 0o600

    settings = _settings(home)
    assert settings.existing_secret() is None, "the unpublished file is never read"
    secret = settings.signing_secret()
    assert (home / "secret").read_text() == secret and len(secret) >= 32


def _read_while_published(path: str, rounds: int, seen) -> None:  # pragma: no cover - child
    for _ in range(rounds):
        try:
            seen.put(Path(path).read_bytes())
        except FileNotFoundError:
            seen.put(None)


def test_a_reader_sees_no_file_or_the_whole_file(tmp_path):
    """Publishing a large file while another process keeps reading it: every read finds no
    file or all of it, never a prefix."""
    path = tmp_path / "published"
    data = os.urandom(4 * 1024 * 1024)
    context = multiprocessing.get_context("fork")
    seen = context.Queue()
    reader = context.Process(target=_read_while_published, args=(str(path), 200, seen))
    reader.start()
    assert publish_new(path, data)
    reads = [seen.get(timeout=60) for _ in range(200)]
    reader.join(60)
    assert all(read in (None, data) for read in reads)
    assert not publish_new(path, b"second"), "the first file stands"
    assert path.read_bytes() == data and _mode(path) == 0o600


def test_replace_private_swaps_the_whole_file(tmp_path):
    path = tmp_path / "credential"
    replace_private(path, b"one")
    replace_private(path, b"two")
    assert path.read_bytes() == b"two" and _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["credential"]


def test_the_sqlite_database_its_wal_shm_and_migration_lock_are_private(tmp_path):
    folder = tmp_path / "data"
    database = folder / "edgefleet.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        with migration_lock(engine):
            pass
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT x FROM t")).scalar() == 1
            files = {p.name: _mode(p) for p in folder.iterdir()}
    finally:
        engine.dispose()
    assert _mode(folder) == 0o700
    assert {"edgefleet.db", "edgefleet.db-wal", "edgefleet.db-shm"} <= set(files)
    assert "edgefleet.db.migrate-lock" in files
    assert set(files.values()) == {0o600}, files
