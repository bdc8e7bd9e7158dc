"""Unauthenticated liveness probe."""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet import __version__
from edgefleet.contract import API_VERSION

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__, "api": API_VERSION}
