#!/usr/bin/env python3
"""Stream an audio file to `streamer serve` and print its partials and finals.

    streamer serve &                                         # in another terminal
    python examples/ws_client.py examples/hello.wav
    python examples/ws_client.py talk.flac --url ws://10.0.0.5:8765 --token-file secret.txt --realtime
    python examples/ws_client.py examples/hello.wav --hotword alexander --word-times --json

Written from docs/protocol.md alone (it imports nothing from streamer): a `start` message, the
file's samples as int16 frames of 0.1 s, an `end` message; meanwhile it reads `ready`, `partial`
and `final` messages until the server closes the connection. Needs `websockets`, `numpy` and
`soundfile` (``pip install 'streamer[serve]'`` brings them all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

try:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
except ImportError:
    sys.exit("this example needs the websockets package: pip install 'streamer[serve]'")

PROTOCOL_VERSION = 1
FRAME_SECONDS = 0.1


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="audio file (any rate; several channels are averaged)")
    p.add_argument("--url", default="ws://127.0.0.1:8765", help="server address (default: %(default)s)")
    p.add_argument("--token-file", help="file holding the server's shared secret")
    p.add_argument("--hotword", action="append", default=[], help="boost a word in this stream (repeatable)")
    p.add_argument("--word-times", action="store_true", help="ask for word times in partials too")
    p.add_argument("--realtime", action="store_true", help="send at the audio's own pace, as a live source")
    p.add_argument("--json", action="store_true", help="print every message as it arrives, as JSON lines")
    return p.parse_args()


@dataclass
class Result:
    """What one stream got back."""

    finals: list[dict] = field(default_factory=list)
    partials: list[dict] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    error: str | None = None

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals if f["text"])


def read_pcm16(path: str) -> tuple[bytes, int]:
    """The file as mono little-endian int16 bytes, and its sample rate."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return np.clip(np.round(mono * 32768), -32768, 32767).astype("<i2").tobytes(), rate


async def stream_file(url: str, path: str, *, token: str | None = None, hotwords: list[str] | None = None,
                      word_times: bool = False, pace: float | None = None, on_message=None) -> Result:
    """Streams one file as a live source; returns every final and partial, and how the server closed.

    Args:
        url: The server's address, ``ws://host:port``.
        path: The audio file.
        token: The shared secret, sent in ``start`` when given.
        hotwords: Words to boost in this stream.
        word_times: Ask for words in partials.
        pace: Seconds of audio sent per second of wall time: 1.0 is a live source, None sends as fast
            as the server reads.
        on_message: Called with each message the server sends (a dict), as it arrives.
    """
    pcm, rate = read_pcm16(path)
    start = {"type": "start", "version": PROTOCOL_VERSION, "sample_rate": rate, "format": "int16",
             "hotwords": list(hotwords or []), "word_times": word_times}
    if token is not None:
        start["token"] = token
    result = Result()
    frame_bytes = 2 * round(FRAME_SECONDS * rate)
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps(start))

        async def send() -> None:
            t0 = time.monotonic()
            try:
                for i, at in enumerate(range(0, len(pcm), frame_bytes)):
                    if pace is not None:
                        await asyncio.sleep(max(0.0, t0 + i * FRAME_SECONDS / pace - time.monotonic()))
                    await ws.send(pcm[at:at + frame_bytes])
                await ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:
                pass  # the receiver reports why

        sender = asyncio.create_task(send())
        try:
            async for text in ws:
                message = json.loads(text)
                if on_message is not None:
                    on_message(message)
                if message["type"] == "final":
                    result.finals.append(message)
                elif message["type"] == "partial":
                    result.partials.append(message)
                elif message["type"] == "error":
                    result.error = message["message"]
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    return result


def show(message: dict, as_json: bool) -> None:
    tty = sys.stdout.isatty()
    if as_json:
        print(json.dumps(message, ensure_ascii=False), flush=True)
    elif message["type"] == "final":  # on a terminal, over the partial line
        print(f"{chr(13) if tty else ''}FINAL [{message['start']:6.2f}-{message['end']:6.2f}] {message['text']}"
              f"{chr(27) + '[K' if tty else ''}", flush=True)
    elif message["type"] == "partial" and tty:
        print(f"\r  ... {message['text'][-100:]}\033[K", end="", flush=True)
    elif message["type"] == "error":
        print(f"\rerror from the server: {message['message']}", file=sys.stderr)


def main() -> None:
    args = get_args()
    token = open(args.token_file, encoding="utf-8").read().strip() if args.token_file else None
    try:
        result = asyncio.run(stream_file(args.url, args.file, token=token, hotwords=args.hotword,
                                         word_times=args.word_times, pace=1.0 if args.realtime else None,
                                         on_message=lambda m: show(m, args.json)))
    except OSError as err:
        sys.exit(f"cannot connect to {args.url}: {err} (is 'streamer serve' running?)")
    except KeyboardInterrupt:
        sys.exit(130)
    if result.close_code != 1000:
        sys.exit(f"the server closed the stream with {result.close_code}: {result.close_reason}")


if __name__ == "__main__":
    main()
