"""``streamer serve``: live recognition for many WebSocket clients from one loaded model.

One `Recognizer` is shared by every connection; each connection is one `Stream`. The event loop
only reads, checks and queues audio and writes results: all recognizer work runs on one worker
thread, one *tick* at a time. A tick hands each stream the audio that arrived since the last one,
then runs the ready streams through `Recognizer.decode_streams` (one batched encoder forward per
step, at most ``max_batch`` streams each; beam decoding per stream), and its events go back to the
connections. Audio that arrives during a tick waits for the next, so under load more streams share
each forward::

    rec = streamer.load()
    asyncio.run(StreamServer(rec, ServerConfig(port=8765)).run())   # until SIGTERM / Ctrl-C

The wire protocol is `streamer.serve.protocol` (docs/protocol.md). Besides WebSocket connections the
server answers ``GET /health`` (model, open streams, load) and serves a browser page at ``/``.

Failures stay with their connection: a malformed message, an unsupported rate, a frame over the
limit, an idle or vanished client closes that connection alone, with a close code and a reason.
SIGTERM (and Ctrl-C) stops accepting connections, ends every open stream and sends each its last
``final`` before closing it with 1001.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

from streamer.errors import ConfigError, ProtocolError, StreamerError, missing_dependency
from streamer.grid import XLSR_GRID
from streamer.recognizer import Recognizer, Stream
from streamer.serve import protocol as P

log = logging.getLogger("streamer.serve")

#: Seconds over which ``/health`` measures the load (the share of time the worker was busy).
LOAD_WINDOW_SECONDS = 10.0
#: Messages a connection may have waiting to be sent before it counts as not reading and is closed.
MAX_OUTBOX = 2000
#: Files of the browser page, served at ``/`` (index.html) and by name, with their content types.
WEB_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
             "capture-worklet.js": "text/javascript; charset=utf-8"}


def check_installed() -> None:
    """Raises `MissingDependencyError` (with the install command) when websockets is missing."""
    _import_websockets()


def _import_websockets() -> Any:
    try:
        import websockets.asyncio.server as ws_server
    except ImportError as err:
        raise missing_dependency("websockets", "serve", "The streaming server") from err
    return ws_server


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens and the limits it enforces (all on by default).

    Attributes:
        host: Interface to bind; 127.0.0.1 (this machine only) unless told otherwise.
        port: TCP port; 0 picks a free one (`StreamServer.port` tells which).
        max_connections: Open connections at most; one more is closed at once with 1013 ("busy").
        max_frame_bytes: Largest message (binary frame or JSON), in bytes; a larger one closes the
            connection with 1009. The default holds 2.7 s of 48-kHz float32 audio.
        max_audio_seconds: Longest stream, in seconds of audio; past it the stream is ended, its
            last final sent, and the connection closed with 1008.
        idle_timeout: Seconds a connection may stay silent (before ``start``, or between messages)
            before it is closed with 1008.
        max_batch: Most streams in one encoder forward; 1 decodes each stream alone (no batching).
        max_backlog_seconds: Audio a stream may have waiting to be decoded before the server stops
            reading from its connection (TCP then slows a client that sends faster than real time).
        shutdown_seconds: On SIGTERM, how long the open streams get to be finalized.
        token: Shared secret; when set, a client must give it (``Authorization: Bearer <token>`` or
            the ``token`` field of ``start``) before any audio is accepted.
        web: Serve the browser page at ``/``.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    max_connections: int = 32
    max_frame_bytes: int = 256 * 1024
    max_audio_seconds: float = 3600.0
    idle_timeout: float = 30.0
    max_batch: int = 32
    max_backlog_seconds: float = 5.0
    shutdown_seconds: float = 30.0
    token: str | None = None
    web: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"server host: expected an interface name or address, found {self.host!r}")
        for name, low, high in (("port", 0, 65535), ("max_connections", 1, 100_000),
                                ("max_frame_bytes", 1024, 64 << 20), ("max_batch", 1, 4096)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"server {name}: expected an integer from {low} to {high}, found {value!r}")
        for name in ("max_audio_seconds", "idle_timeout", "max_backlog_seconds", "shutdown_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"server {name}: expected a positive number of seconds, found {value!r}")
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            raise ConfigError("server token: expected a non-empty string, found an empty one")
        if not isinstance(self.web, bool):
            raise ConfigError(f"server web: expected True or False, found {self.web!r}")


@dataclass(frozen=True)
class _Close:
    """The writer's last item: close the connection with this code and reason."""

    code: int
    reason: str


class _Session:
    """One connection's state. The event loop owns everything but ``stream``, which only the worker
    thread touches (it is created there, on the stream's first tick)."""

    def __init__(self, conn: Any, number: int, authorized: bool) -> None:
        self.conn = conn
        self.number = number
        self.authorized = authorized
        self.start: P.StartMessage | None = None
        self.stream: Stream | None = None
        self.pending: list[np.ndarray] = []   # audio received since the last tick
        self.pending_samples = 0
        self.received_samples = 0             # at the client's rate
        self.ending: _Close | None = None     # end asked for (by the client, a limit or the shutdown)
        self.end_sent = False                 # the end went to the worker
        self.gone = False                     # closed or failed: results are dropped
        self.outbox: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()
        self.room = asyncio.Event()           # set while the backlog is under the limit
        self.room.set()

    def backlog_seconds(self) -> float:
        return self.pending_samples / self.start.sample_rate if self.start else 0.0

    def put(self, item: dict[str, Any] | _Close) -> None:
        if self.outbox.qsize() >= MAX_OUTBOX and not isinstance(item, _Close):
            raise ProtocolError(P.CLOSE_POLICY, f"the client is not reading its results ({MAX_OUTBOX} waiting)")
        self.outbox.put_nowait(item)


class StreamServer:
    """The WebSocket server (see the module docstring).

    Args:
        recognizer: The loaded recognizer every stream shares.
        config: Address and limits.
    """

    def __init__(self, recognizer: Recognizer, config: ServerConfig | None = None) -> None:
        self.rec = recognizer
        self.config = config if config is not None else ServerConfig()
        self.port: int | None = None
        self._sessions: set[_Session] = set()
        self._count = 0
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="streamer-decode")
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="streamer-hotwords")
        self._busy: deque[tuple[float, float, int]] = deque()  # (end time, seconds busy, streams stepped)
        self._started = time.monotonic()
        self._server: Any = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._closed: asyncio.Event | None = None
        self._web = Path(str(resources.files("streamer.serve") / "web"))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Binds and starts serving (returns at once; `port` is then the bound port).

        Raises:
            MissingDependencyError: websockets is not installed.
            ConfigError: The address cannot be bound.
        """
        ws_server = _import_websockets()
        loop = asyncio.get_running_loop()
        self._wake, self._closed = asyncio.Event(), asyncio.Event()
        self._stopping = loop.create_future()
        try:
            self._server = await ws_server.serve(
                self._handle, self.config.host, self.config.port, process_request=self._process_request,
                max_size=self.config.max_frame_bytes, compression=None, ping_interval=20, ping_timeout=20)
        except OSError as err:
            raise ConfigError(f"server: cannot listen on {self.config.host}:{self.config.port} "
                              f"({err.strerror or err})") from None
        self.port = self._server.sockets[0].getsockname()[1]
        self._scheduler = asyncio.create_task(self._schedule())

    async def stop(self) -> None:
        """Stops accepting connections, finalizes every open stream (each client gets its last final,
        then a 1001 close) and closes the server. Waits at most ``shutdown_seconds``."""
        assert self._stopping is not None and self._closed is not None  # start() ran
        if not self._stopping.done():
            self._stopping.set_result(None)
            self._server.close(close_connections=False)
            for s in list(self._sessions):
                if s.start is None:
                    s.put(_Close(P.CLOSE_GOING_AWAY, "server shutting down"))
                elif s.ending is None:
                    self._end(s, _Close(P.CLOSE_GOING_AWAY, "server shutting down"))
            deadline = time.monotonic() + self.config.shutdown_seconds
            while self._sessions and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            for s in list(self._sessions):
                await s.conn.close(P.CLOSE_GOING_AWAY, "server shutting down (streams not finalized in time)")
            self._server.close()
            await self._server.wait_closed()
            if self._scheduler is not None:
                self._scheduler.cancel()
            self._worker.shutdown(wait=True)
            self._builder.shutdown(wait=False, cancel_futures=True)
            self._closed.set()
        await self._closed.wait()

    async def run(self, on_ready: Callable[["StreamServer"], None] | None = None) -> None:
        """Serves until SIGTERM or SIGINT (Ctrl-C), then stops gracefully (see `stop`)."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        handled = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
        if on_ready is not None:
            on_ready(self)
        try:
            await stop.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.stop()

    # ------------------------------------------------------------------ HTTP: health and the page
    def health(self) -> dict[str, Any]:
        """What ``GET /health`` answers: the model, the open streams and the load."""
        now = time.monotonic()
        while self._busy and self._busy[0][0] < now - LOAD_WINDOW_SECONDS:
            self._busy.popleft()
        window = min(LOAD_WINDOW_SECONDS, max(now - self._started, 1e-3))
        busy = sum(b for _, b, _ in self._busy)
        decoded = [n for _, _, n in self._busy if n]
        stopping = self._stopping is not None and self._stopping.done()
        return {
            "status": "stopping" if stopping else "ok",
            "protocol": P.PROTOCOL_VERSION,
            "model": Path(self.rec.source).name,
            "decoder": self.rec.decoder_name,
            "streaming": self.rec.config.streaming.mode,
            "chunk_seconds": round(XLSR_GRID.seconds(self.rec.config.streaming.chunk_frames), 3),
            "connections": len(self._sessions),
            "streams": sum(1 for s in self._sessions if s.start is not None),
            "max_connections": self.config.max_connections,
            "max_batch": self.config.max_batch,
            "load": round(min(1.0, busy / window), 3),
            "mean_batch": round(sum(decoded) / len(decoded), 2) if decoded else 0.0,
            "uptime_seconds": round(now - self._started, 1),
        }

    def _process_request(self, conn: Any, request: Any) -> Any:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        def respond(status: int, body: bytes, content_type: str) -> Any:
            headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                               ("Cache-Control", "no-store")])
            return Response(status, {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status], headers, body)

        path = request.path.split("?", 1)[0]
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if not upgrade:
            if path == "/health":
                return respond(200, json.dumps(self.health()).encode(), "application/json")
            name = "index.html" if path == "/" else path.lstrip("/")
            if self.config.web and name in WEB_FILES:
                return respond(200, (self._web / name).read_bytes(), WEB_FILES[name])
            return respond(404, b"not found: the server answers /health, the page at /, and WebSocket streams\n",
                           "text/plain; charset=utf-8")
        if self.config.token is not None and request.headers.get("Authorization") is not None \
                and not self._header_token_ok(request):
            return respond(401, b"wrong token\n", "text/plain; charset=utf-8")
        return None

    def _header_token_ok(self, request: Any) -> bool:
        """Whether the opening request's ``Authorization: Bearer`` header holds the token."""
        auth = request.headers.get("Authorization")
        return auth is not None and _same(auth.removeprefix("Bearer ").strip(), self.config.token or "")

    # ------------------------------------------------------------------ one connection
    async def _handle(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        authorized = self.config.token is None or self._header_token_ok(conn.request)
        stopping = self._stopping is not None and self._stopping.done()
        if stopping or len(self._sessions) >= self.config.max_connections:
            reason = ("server shutting down" if stopping else
                      f"busy: {len(self._sessions)} connections open, the limit is {self.config.max_connections}; "
                      "try again later")
            try:
                await conn.send(json.dumps({"type": "error", "message": reason}))
                await conn.close(P.CLOSE_GOING_AWAY if stopping else P.CLOSE_BUSY, P.close_reason(reason))
            except ConnectionClosed:
                pass
            return
        self._count += 1
        s = _Session(conn, self._count, authorized)
        self._sessions.add(s)
        writer = asyncio.create_task(self._write(s))
        try:
            await self._read(s)
            await writer  # returns once the last final went out and the connection closed
        except ProtocolError as err:
            s.gone = True
            writer.cancel()
            log.info("connection %d closed (%d): %s", s.number, err.code, err)
            try:
                await conn.send(json.dumps({"type": "error", "message": str(err)}))
                await conn.close(err.code, P.close_reason(str(err)))
            except ConnectionClosed:
                pass
        except ConnectionClosed as err:
            s.gone = True
            writer.cancel()
            code = err.rcvd.code if err.rcvd is not None else None
            if code == P.CLOSE_TOO_BIG or (err.sent is not None and err.sent.code == P.CLOSE_TOO_BIG):
                log.info("connection %d closed (1009): a frame over %d bytes", s.number, self.config.max_frame_bytes)
            else:
                log.info("connection %d: the client went away", s.number)
        finally:
            s.gone = True
            self._sessions.discard(s)

    async def _recv(self, s: _Session) -> str | bytes | None:
        """The next message; None once the server is stopping.

        Raises:
            ProtocolError: Nothing came for ``idle_timeout`` seconds.
            ConnectionClosed: The client went away.
        """
        assert self._stopping is not None
        recv = asyncio.ensure_future(s.conn.recv())
        done, _ = await asyncio.wait({recv, self._stopping}, timeout=self.config.idle_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if recv in done:
            return recv.result()
        recv.cancel()
        if self._stopping.done():
            return None
        raise ProtocolError(P.CLOSE_POLICY, f"idle: no message for {self.config.idle_timeout:g} s")

    async def _read(self, s: _Session) -> None:
        """Reads the connection until its stream ends (``end``, a limit, or the shutdown)."""
        while s.ending is None:
            message = await self._recv(s)
            if message is None:  # stopping: the stream ends (its last final first), or an unstarted one closes
                if s.start is None:
                    s.put(_Close(P.CLOSE_GOING_AWAY, "server shutting down"))
                elif s.ending is None:
                    self._end(s, _Close(P.CLOSE_GOING_AWAY, "server shutting down"))
                return
            if isinstance(message, bytes):
                if s.start is None:
                    raise ProtocolError(P.CLOSE_POLICY, "expected a start message before any audio")
                self._audio(s, P.decode_pcm(message, s.start.format))
                if not s.room.is_set():
                    await s.room.wait()
                continue
            start = P.parse_message(message)
            if start is None:  # end
                if s.start is None:
                    raise ProtocolError(P.CLOSE_POLICY, "expected a start message before end")
                self._end(s, _Close(P.CLOSE_NORMAL, "end of stream"))
                return
            if s.start is not None:
                raise ProtocolError(P.CLOSE_POLICY, "expected audio or end, found a second start")
            if not s.authorized:
                if start.token is None or not _same(start.token, self.config.token or ""):
                    raise ProtocolError(P.CLOSE_POLICY, "unauthorized: expected the server's token "
                                                        "(Authorization: Bearer header, or 'token' in start)")
                s.authorized = True
            if start.hotwords:  # build (or find) the hotword decoder beside the decoding thread
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        self._builder, self.rec.decoder_for, start.hotwords)
                except StreamerError as err:
                    raise ProtocolError(P.CLOSE_POLICY, f"start: hotwords: {err}") from None
            s.start = start
            s.put({"type": "ready", "version": P.PROTOCOL_VERSION, "model": Path(self.rec.source).name,
                   "sample_rate": start.sample_rate, "format": start.format})

    def _audio(self, s: _Session, samples: np.ndarray) -> None:
        assert s.start is not None
        limit = round(self.config.max_audio_seconds * s.start.sample_rate)
        room = limit - s.received_samples
        over = len(samples) > room
        samples = samples[:room]
        if len(samples):
            s.pending.append(samples)
            s.pending_samples += len(samples)
            s.received_samples += len(samples)
            assert self._wake is not None
            self._wake.set()
        if over:
            self._end(s, _Close(P.CLOSE_POLICY, f"audio limit: streams end after {self.config.max_audio_seconds:g} s"))
        elif s.backlog_seconds() > self.config.max_backlog_seconds:
            s.room.clear()

    def _end(self, s: _Session, close: _Close) -> None:
        s.ending = close
        assert self._wake is not None
        self._wake.set()

    async def _write(self, s: _Session) -> None:
        while True:
            item = await s.outbox.get()
            if isinstance(item, _Close):
                await s.conn.close(item.code, P.close_reason(item.reason))
                return
            await s.conn.send(json.dumps(item, ensure_ascii=False))

    # ------------------------------------------------------------------ the decoding loop
    async def _schedule(self) -> None:
        """Runs ticks while there is work: each hands new audio to the streams and decodes them."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            work = []
            for s in self._sessions:
                if s.gone or s.start is None or (not s.pending and (s.ending is None or s.end_sent)):
                    continue
                audio = np.concatenate(s.pending) if s.pending else None
                s.pending, s.pending_samples = [], 0
                s.room.set()
                finish = s.ending is not None and not s.end_sent
                s.end_sent = s.end_sent or finish
                work.append((s, audio, finish))
            if not work:
                continue
            t0 = time.perf_counter()
            results, decoded = await loop.run_in_executor(self._worker, self._tick, work)
            now = time.monotonic()
            self._busy.append((now, time.perf_counter() - t0, decoded))
            while self._busy[0][0] < now - LOAD_WINDOW_SECONDS:
                self._busy.popleft()
            for s, events in results:
                if s.gone:
                    continue
                try:
                    if isinstance(events, Exception):
                        raise events
                    for event in events:
                        s.put(P.event_message(event, s.start.word_times))
                    if s.stream is not None and s.stream.done:
                        s.put(s.ending or _Close(P.CLOSE_NORMAL, "end of stream"))
                except ProtocolError as err:
                    s.gone = True
                    log.info("connection %d closed (%d): %s", s.number, err.code, err)
                    asyncio.ensure_future(_refuse(s.conn, err))

    def _tick(self, work: list[tuple[_Session, np.ndarray | None, bool]]) -> tuple[list[tuple[_Session, Any]], int]:
        """On the worker thread: new audio into each stream, then the ready streams decoded in batches.

        Returns:
            Each session's events (or the error that ends it), and how many streams were decoded.
        """
        results: dict[_Session, Any] = {}
        live: list[_Session] = []
        for s, audio, finish in work:
            try:
                if s.stream is None:
                    s.stream = self.rec.create_stream(s.start.hotwords)
                if audio is not None:
                    s.stream.accept_waveform(audio, s.start.sample_rate)
                if finish:
                    s.stream.input_finished()
                live.append(s)
                results[s] = []
            except StreamerError as err:
                results[s] = ProtocolError(P.CLOSE_INVALID_DATA, f"audio: {err}")
        ready = [s for s in live if s.stream.ready]
        size = self.config.max_batch
        for group in (ready[i:i + size] for i in range(0, len(ready), size)):
            try:
                for s, events in zip(group, self.rec.decode_streams([s.stream for s in group])):
                    results[s] = events
            except Exception:  # noqa: BLE001  (one stream's failure must not end the others)
                log.exception("a batched step failed; decoding its streams one by one")
                for s in group:
                    try:
                        results[s] = self.rec.decode_stream(s.stream)
                    except Exception as err:  # noqa: BLE001
                        results[s] = ProtocolError(P.CLOSE_INTERNAL, f"internal error: {type(err).__name__}: {err}")
        return list(results.items()), len(ready)


def _same(given: str, expected: str) -> bool:
    """Token comparison in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def _refuse(conn: Any, err: ProtocolError) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        await conn.send(json.dumps({"type": "error", "message": str(err)}))
        await conn.close(err.code, P.close_reason(str(err)))
    except ConnectionClosed:
        pass


def run_server(recognizer: Recognizer, config: ServerConfig | None = None,
               on_ready: Callable[[StreamServer], None] | None = None) -> None:
    """Serves until SIGTERM or Ctrl-C (see `StreamServer.run`)."""
    asyncio.run(StreamServer(recognizer, config).run(on_ready))
