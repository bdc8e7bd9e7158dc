"""Log streaming: ordered chunks, a flush at close, a stop after the server's 413."""

from __future__ import annotations

import asyncio

import pytest

from edgefleet.worker.logs import MAX_CHUNK_CHARS, LogStreamer

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


class Sink:
    def __init__(self, room: int = 10**9) -> None:
        self.chunks: list[tuple[int, str]] = []
        self.room = room

    def __call__(self, seq: int, text: str) -> bool:
        if len(text) > self.room:
            return False
        self.room -= len(text)
        self.chunks.append((seq, text))
        return True

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.chunks)


async def test_output_is_cut_into_numbered_chunks() -> None:
    sink = Sink()
    streamer = LogStreamer(sink, interval=0.01)
    streamer.start()
    streamer.write(b"hello ")
    await asyncio.sleep(0.05)
    streamer.write("wörld".encode()[:2])  # a character split across reads
    streamer.write("wörld".encode()[2:])
    await streamer.close()
    assert sink.text == "hello wörld"
    assert [seq for seq, _ in sink.chunks] == list(range(len(sink.chunks)))
    assert len(sink.chunks) >= 2


async def test_big_output_is_split_at_the_chunk_size() -> None:
    sink = Sink()
    streamer = LogStreamer(sink, interval=60)
    streamer.start()
    streamer.write(b"x" * (MAX_CHUNK_CHARS * 2 + 10))
    assert [len(t) for _, t in sink.chunks] == [MAX_CHUNK_CHARS, MAX_CHUNK_CHARS]
    await streamer.close()
    assert [len(t) for _, t in sink.chunks][-1] == 10


async def test_after_stop_output_is_discarded() -> None:
    sink = Sink()
    streamer = LogStreamer(sink, interval=60)
    streamer.start()
    streamer.write(b"kept\n")
    await asyncio.sleep(0)
    streamer.stop("413 from the server")
    streamer.write(b"dropped\n")
    await streamer.close()
    assert "dropped" not in sink.text


async def test_chunks_the_spool_has_no_room_for_are_counted_and_noted() -> None:
    sink = Sink(room=300)
    streamer = LogStreamer(sink, interval=60)
    streamer.start()
    streamer.write(b"a" * 100)
    await streamer.close()
    streamer2 = LogStreamer(sink, interval=60)
    streamer2.start()
    streamer2.write(b"b" * 500)
    await streamer2.close()
    assert streamer2.dropped == 500
    assert "500 characters of output were dropped" in sink.text


async def test_nul_bytes_are_shown_replaced_as_no_text_column_holds_them() -> None:
    sink = Sink()
    streamer = LogStreamer(sink, interval=60)
    streamer.start()
    streamer.write(b"a\x00b")
    await streamer.close()
    assert sink.text == "a\ufffdb"
