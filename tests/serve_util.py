"""Helpers of the server's tests: an in-process server, the example client, reference finals."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from contextlib import contextmanager

from conftest import REPO

from streamer.serve.server import ServerConfig, StreamServer

HELLO = REPO / "examples" / "hello.wav"


def _load_client():
    spec = importlib.util.spec_from_file_location("ws_client", REPO / "examples" / "ws_client.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ws_client"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


client = _load_client()


def reference_finals(rec, path=HELLO, hotwords=()) -> list[str]:
    """The file decoded as one stream in-process, in 0.1-s blocks (what examples/stream_file.py prints)."""
    from streamer.audio import load_audio
    from streamer.results import Final

    audio = load_audio(path)
    stream = rec.create_stream(hotwords)
    events = []
    for i in range(0, len(audio), 1600):
        events += rec.feed(stream, audio[i:i + 1600])
    events += rec.input_finished(stream)
    return [e.text for e in events if isinstance(e, Final)]


@contextmanager
def running(rec, **config):
    """A server on a free port of 127.0.0.1, in a thread, stopped (gracefully) on exit."""
    server = StreamServer(rec, ServerConfig(port=0, **config))
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as err:  # noqa: BLE001
            failure.append(err)
            return
        finally:
            started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield server, f"ws://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
