"""What every request handler needs, built once per app from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server.notifier import Notifier
from edgefleet.settings import Settings


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    db: sessionmaker[Session]
    notifier: Notifier
    secret: str
