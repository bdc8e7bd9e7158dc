"""The servers a client may talk to, and the one it talks to now.

Replicas of the server share one database, so a client (a worker, the CLI) can be given all
of them: ``--api-url URL1,URL2`` (the option may also be repeated) or ``EDGEFLEET_API_URL``
with commas. A client sticks to one server until it fails it (it cannot be reached, times
out, or answers 5xx), then moves to the next in the list, round and round. A refusal (4xx)
or a rate limit (429) says nothing about the server's health and moves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edgefleet.tls import ClientConfigError, check_api_url


def parse_api_urls(values: str | Iterable[str]) -> list[str]:
    """Every URL in ``values`` (each may hold several, separated by commas), checked and
    without trailing slashes, in order and without repeats; a one-line error for an empty
    element or a malformed URL."""
    items = [values] if isinstance(values, str) else list(values)
    urls: list[str] = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                raise ClientConfigError(
                    f"bad API URL list {item!r}: an empty entry (give URL1,URL2,...; "
                    "--api-url or EDGEFLEET_API_URL)"
                )
            url = check_api_url(part.strip())
            if url not in urls:
                urls.append(url)
    if not urls:
        raise ClientConfigError("no API URL given (--api-url or EDGEFLEET_API_URL)")
    return urls


class ServerList:
    """An ordered list of server URLs and the current one.

    Several calls may be in flight at once (a heartbeat, a long-poll, a fetch): when they all
    fail on the same dead server, only the first failure moves on. ``moves`` counts the moves,
    so a caller can tell whether the server it used is still the current one.
    """

    def __init__(self, urls: str | Iterable[str]) -> None:
        self.urls = parse_api_urls(urls)
        self._index = 0
        self.moves = 0
        self._listeners: list[Callable[[str, str], None]] = []

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def __len__(self) -> int:
        return len(self.urls)

    def __str__(self) -> str:
        return ",".join(self.urls)

    def on_move(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(old, new)`` after each move."""
        self._listeners.append(listener)

    def failed(self, url: str) -> bool:
        """``url`` failed a call. If it is the current server, move to the next one and
        return True; otherwise (another call moved already, or a single server) False."""
        if len(self.urls) < 2 or url != self.current:
            return False
        self._index = (self._index + 1) % len(self.urls)
        self.moves += 1
        for listener in self._listeners:
            listener(url, self.current)
        return True

    def use(self, url: str) -> None:
        """Make ``url`` (one of the list) the current server without counting a move: at
        start-up, the first server that answers."""
        self._index = self.urls.index(url)
