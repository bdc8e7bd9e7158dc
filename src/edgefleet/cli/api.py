"""The admin commands' HTTP client: every admin command goes through the server's API."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

import httpx

from edgefleet import API_PREFIX
from edgefleet.auth import Identity, TokenAuth
from edgefleet.settings import Settings


class ApiError(Exception):
    """The server refused a request or could not be reached; the message says which."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


def operator_name() -> str:
    """Who the audit log names for changes made from this shell."""
    return os.environ.get("EDGEFLEET_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def _describe(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):  # validation errors
            return "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}"
                for e in detail
            )
        return str(detail)
    return str(body)


class AdminClient:
    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = settings.api_url.rstrip("/")
        identity = Identity(subject=operator_name(), role="admin")
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            auth=TokenAuth(settings.signing_secret(), identity),
            timeout=httpx.Timeout(30.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the edgefleet server at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(_describe(body), response.status_code, body)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)
