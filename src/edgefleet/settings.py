"""Settings read once at each entry point from ``EDGEFLEET_*`` variables and passed down."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgefleet import MAX_CONCURRENCY  # noqa: F401 (its home before; imported from here)
from edgefleet.client_settings import (
    DEFAULT_API_URL,
    MIN_SECRET_LENGTH,
    default_home,
    existing_secret,
)
from edgefleet.errors import ConfigurationError
from edgefleet.private_files import ensure_private_dir, publish_new

#: The smallest request-body cap the server accepts: the largest message a worker sends (a
#: log chunk, see ``worker/logs.py``, or a batch of results) is below it, whatever it holds.
MIN_BODY_BYTES = 2 * 1024 * 1024


class Settings(BaseSettings):
    """Everything configurable through the environment; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    db_url: str | None = None
    #: Shared token secret; at least 32 characters, as HS256 wants a key of 256 bits.
    secret: str | None = Field(default=None, min_length=MIN_SECRET_LENGTH)
    api_url: str = DEFAULT_API_URL
    #: The longest heartbeat silence before a worker is offline; one beating faster is offline
    #: sooner, after a few of its own intervals (``server.services.liveness``).
    worker_offline_timeout: float = 150.0
    #: Upper bound of a worker's long-poll on the server, in seconds.
    watch_timeout: float = 30.0
    #: How often a waiting long-poll re-reads the database: the fallback when a wake-up from
    #: another replica is lost. Unset: never on SQLite (one process sees every change), every
    #: 15 s on PostgreSQL. Wake-ups themselves are immediate.
    watch_recheck: float | None = Field(default=None, gt=0)
    #: Seconds the server keeps an idle connection open. Longer than the workers' heartbeat
    #: interval, so each worker's beats reuse one connection instead of opening a new one per
    #: beat (worker clients drop idle connections after 60 s, before the server does).
    keep_alive: int = Field(default=75, ge=1)
    #: Finished jobs, with their logs and history, are deleted this many seconds after they
    #: ended (default 7 days).
    job_retention: float = Field(default=7 * 24 * 3600.0, gt=0)
    #: Audit log entries are deleted this many seconds after they were written (default 90
    #: days).
    audit_retention: float = Field(default=90 * 24 * 3600.0, gt=0)
    #: The most log output kept per job, in bytes; past it the rest is discarded (413).
    job_log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: Seconds between the server's sweeps for lost jobs and due retries; by default a fifth
    #: of the offline timeout, between 0.2 and 5 seconds.
    sweep_interval: float | None = Field(default=None, gt=0)
    #: An operator token (``efo_...``) the CLI sends instead of minting one from the secret.
    token: str | None = None
    #: A file holding that token (``--token-file``); read before ``token``.
    token_file: Path | None = None
    #: A join token (``efj_...``) a worker exchanges for a credential of its own.
    join_token: str | None = None

    #: Requests a second each operator token or worker credential may make (bursts up to
    #: ``rate_burst``); past it the server answers 429 with Retry-After. 0 turns it off.
    #: Tokens minted from the shared secret are not limited.
    rate_limit: float = Field(default=200.0, ge=0)
    rate_burst: float = Field(default=400.0, ge=1)
    #: Serve /metrics without a token (for a scraper that sends none).
    public_metrics: bool = False
    #: Serve /docs, /redoc and /openapi.json without a token.
    public_docs: bool = False
    #: A concurrency beyond this many per CPU the worker reports is refused (operator
    #: overrides and concurrency rules) unless forced; 0 turns the check off.
    max_concurrency_per_cpu: float = Field(default=8.0, ge=0)
    #: Lifetime of a worker's credential; the worker rotates it when half is gone.
    credential_ttl: float = Field(default=30 * 24 * 3600.0, ge=600)
    #: Request bodies larger than this many bytes are refused (413) before they are read.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=MIN_BODY_BYTES)
    #: Clients (workers, the CLI): the CA bundle that signed the server's certificate, in
    #: place of the system store.
    ca_file: Path | None = None
    #: Clients: a certificate (and its key, unless in the same file) shown to a server that
    #: requires one (mutual TLS).
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def effective_sweep_interval(self) -> float:
        if self.sweep_interval is not None:
            return self.sweep_interval
        return min(5.0, max(0.2, self.worker_offline_timeout / 5))

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.home / 'edgefleet.db'}"

    @property
    def secret_file(self) -> Path:
        return self.home / "secret"

    def signing_secret(self) -> str:
        """The token secret: from the environment, else from the home's secret file, which
        is generated (mode 0600, in a home made 0700) when there is none. Processes racing to
        generate it all end up with the one that was published first."""
        existing = self.existing_secret()
        if existing is not None:
            return existing
        ensure_private_dir(self.home)
        publish_new(self.secret_file, secrets.token_urlsafe(32).encode())
        value = self.existing_secret()
        if value is None:  # removed again at once by someone else: nothing sane to do
            raise ConfigurationError(f"the secret file {self.secret_file} vanished as it was made")
        return value

    def existing_secret(self) -> str | None:
        """The token secret from ``EDGEFLEET_SECRET`` or the home's secret file, or None when
        there is neither; never generates one (``edgefleet.client_settings.existing_secret``).

        A worker uses this to tell whether it holds the secret (and with it full rights) or
        must authenticate with a credential of its own.
        """
        return existing_secret(self.secret, self.home)
