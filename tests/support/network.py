"""A TCP proxy on loopback that breaks the link it carries on demand.

Put between workers and a server to play a flaky, slow or cut site link: ``pause`` holds
all traffic, ``cut`` resets every connection and refuses new ones, ``delay`` slows it.
Used by the network fault tests and by the soak (``support/soak.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``, with faults on demand.

    Runs its own event loop in a daemon thread, so synchronous tests can drive it.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # --- faults ----------------------------------------------------------------------

    def pause(self) -> None:
        """Hold every byte in both directions (a black hole); connections stay open."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until ``heal``."""
        self._refusing = True
        self._call(self._drop_all())

    def heal(self) -> None:
        self._refusing = False
        self.resume()

    def drop_connections(self) -> None:
        """Reset what is open now; new connections are accepted (a flap)."""
        self._call(self._drop_all())

    def delay(self, seconds: float) -> None:
        """Hold each piece of data this long before passing it on (a slow link)."""
        self._delay = seconds

    # --- internals -------------------------------------------------------------------

    def _call(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                sock = writer.get_extra_info("socket")
                if sock is not None:  # RST rather than FIN: a hard cut
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update({writer, up_writer})
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
