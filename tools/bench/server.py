#!/usr/bin/env python3
"""Load test of `streamer serve` on loopback: how many live clients one server holds in real time.

N simulated clients (1, 2, 4, 8, ... until one is not held) each stream a clip at real-time pace
in 0.1-s int16 frames, started a fraction of a chunk apart, against a server started here as a
subprocess; once with batching (``--max-batch 32``: the ready streams of a tick share one encoder
forward) and once without (``--max-batch 1``), side by side in one run. Per N it reports:

* **held**: every stream finished with its last final, and the p95 partial latency stayed within
  ``--max-latency`` (1 s): the server kept pace with the audio (a server that falls behind sees
  the delay grow with every second of the stream);
* **partial latency** p50 / p95: from the moment a client had sent the audio a partial accounts for
  (its ``time``) to the partial's arrival (queueing, encoder step, beam search, transport; what a
  user waits on top of the chunk length and the look-ahead);
* **final latency** p50 / p95: from the client's ``end`` to its last final;
* **server CPU**: the server process's CPU seconds per wall second (1.00 = one core busy), and the
  streams decoded together per tick (the server's ``/health`` ``mean_batch``);
* **finals = offline**: the share of streams whose finals, joined, equal the offline transcription
  of the same clip (``Recognizer.transcribe``; it cuts and decodes differently, so a share under
  100 % is expected; **WER vs offline** counts the words that differ, with the offline text as the
  reference) and **= stream**: the share equal to the same clip decoded as one stream
  in-process (the server must not change a word; batched forwards differ only by float rounding).

Clips are the held-out real-speech test set when it is installed (Debian's
asterisk-core-sounds-en-g722: prompts of at most 4 s joined with 0.8-s pauses into clips of
``--seconds``), else
the files given, else examples/*.wav. The clients run in this process and share the machine with
the server: numbers are for this machine as it was. The last line is the number of clients held
in real time at the given chunk with batching.

    python tools/bench/server.py                              # 1, 2, 4, ... clients, 0.64-s chunks
    python tools/bench/server.py --clients 1 2 4 8 --seconds 6 --threads 1 --budget 300
    python tools/bench/server.py --chunk 0.32 --files a.wav b.wav
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import streamer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamer.constants import SAMPLE_RATE
from streamer.metrics import edit_distance
from streamer.serve.protocol import PROTOCOL_VERSION, encode_pcm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HELD_OUT = Path("/usr/share/asterisk/sounds/en")
FRAME_SECONDS = 0.1
PAUSE_SECONDS = 0.8
MAX_PROMPT_SECONDS = 4.0


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo-en")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64],
                   help="N to try, in order (each mode stops at the first N not held)")
    p.add_argument("--chunk", type=float, default=0.64, help="streaming chunk in seconds (window mode)")
    p.add_argument("--threads", type=int, default=1, help="the server's CPU threads")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each clip of held-out prompts")
    p.add_argument("--clips", type=int, default=8, help="distinct clips (clients take them in turn)")
    p.add_argument("--files", nargs="*", help="audio files to stream instead of the held-out set")
    p.add_argument("--max-latency", type=float, default=1.0,
                   help="p95 partial latency (s) up to which N clients count as held in real time")
    p.add_argument("--budget", type=float, default=600.0, help="stop starting runs after this many seconds")
    return p.parse_args()


# ----------------------------------------------------------------------------------------------- clips
def held_out_clips(seconds: float, count: int) -> list[np.ndarray]:
    """Held-out prompts (sorted by name) joined with pauses into ``count`` clips of about ``seconds``."""
    from streamer.audio import load_audio

    pause = np.zeros(round(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    clips: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for path in sorted(HELD_OUT.glob("*.g722")):
        prompt = load_audio(path)
        if len(prompt) > MAX_PROMPT_SECONDS * SAMPLE_RATE:  # a few prompts are long readings
            continue
        current += [prompt, pause]
        if sum(len(x) for x in current) >= seconds * SAMPLE_RATE:
            clips.append(np.concatenate(current[:-1]))
            current = []
            if len(clips) == count:
                break
    return clips


def load_clips(args: argparse.Namespace) -> tuple[list[np.ndarray], str]:
    from streamer.audio import load_audio

    if args.files:
        return [load_audio(f) for f in args.files], ", ".join(args.files)
    if HELD_OUT.is_dir() and any(HELD_OUT.glob("*.g722")):
        clips = held_out_clips(args.seconds, args.clips)
        return clips, f"{len(clips)} clips of held-out Asterisk prompts ({min(len(c) for c in clips) / SAMPLE_RATE:.1f}-" \
                      f"{max(len(c) for c in clips) / SAMPLE_RATE:.1f} s)"
    files = sorted((REPO / "examples").glob("*.wav"))
    return [load_audio(f) for f in files], ", ".join(f"examples/{f.name}" for f in files)


def references(args: argparse.Namespace, clips: list[np.ndarray]) -> tuple[list[str], list[str]]:
    """Per clip: the offline transcript, and the finals of one in-process stream, joined."""
    import streamer
    from streamer.results import Final

    rec = streamer.load(args.model, streaming=streamer.StreamingConfig.from_seconds("window", args.chunk),
                        threads=args.threads)
    offline, streamed = [], []
    for clip in clips:
        offline.append(rec.transcribe(clip).text)
        stream = rec.create_stream()
        events = []
        for i in range(0, len(clip), 1600):
            events += rec.feed(stream, clip[i:i + 1600])
        events += rec.input_finished(stream)
        streamed.append(" ".join(e.text for e in events if isinstance(e, Final)))
    return offline, streamed


# ----------------------------------------------------------------------------------------------- server
class Server:
    """`streamer serve` in a subprocess on a free loopback port."""

    def __init__(self, args: argparse.Namespace, max_batch: int) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
        cmd = [sys.executable, "-m", "streamer", "serve", "--model", args.model, "--port", "0",
               "--max-batch", str(max_batch), "--max-connections", "4096", "--threads", str(args.threads),
               "--streaming", "window", "--chunk", str(args.chunk)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=self.log, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = Path(self.log.name).read_text()
            if " on ws://" in text:
                address = text.split(" on ws://", 1)[1].split(",")[0]
                self.url, self.http = f"ws://{address}", f"http://{address}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"the server did not start: {Path(self.log.name).read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def health(self) -> dict:
        with urllib.request.urlopen(self.http + "/health", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.unlink(self.log.name)


# ----------------------------------------------------------------------------------------------- clients
@dataclass
class ClientStats:
    partial_latency: list[float] = field(default_factory=list)
    final_latency: float | None = None
    text: str = ""
    closed: int | None = None


async def one_client(url: str, clip: np.ndarray, delay: float) -> ClientStats:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    stats = ClientStats()
    await asyncio.sleep(delay)
    frame = round(FRAME_SECONDS * SAMPLE_RATE)
    sent_t: list[float] = []      # stream seconds sent after each frame
    sent_wall: list[float] = []   # when
    end_wall: list[float] = []
    finals: list[str] = []
    last_final_wall = None
    async with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start", "version": PROTOCOL_VERSION, "sample_rate": SAMPLE_RATE,
                                  "format": "int16"}))

        async def send() -> None:
            t0 = time.monotonic()
            try:
                for i, at in enumerate(range(0, len(clip), frame)):
                    await asyncio.sleep(max(0.0, t0 + i * FRAME_SECONDS - time.monotonic()))
                    await ws.send(encode_pcm(clip[at:at + frame]))
                    sent_t.append(min(at + frame, len(clip)) / SAMPLE_RATE)
                    sent_wall.append(time.monotonic())
                await ws.send(json.dumps({"type": "end"}))
                end_wall.append(time.monotonic())
            except ConnectionClosed:
                pass

        sender = asyncio.create_task(send())
        try:
            async for text in ws:
                now = time.monotonic()
                m = json.loads(text)
                if m["type"] == "partial" and sent_t:
                    k = min(bisect.bisect_left(sent_t, m["time"] - 1e-3), len(sent_t) - 1)
                    stats.partial_latency.append(now - sent_wall[k])
                elif m["type"] == "final":
                    finals.append(m["text"])
                    last_final_wall = now
        except ConnectionClosed:
            pass
        sender.cancel()
        stats.closed = ws.close_code
    closed_wall = time.monotonic()
    if end_wall:
        after = last_final_wall if last_final_wall is not None and last_final_wall >= end_wall[0] else closed_wall
        stats.final_latency = after - end_wall[0]
    stats.text = " ".join(t for t in finals if t)
    return stats


async def run_clients(url: str, clips: list[np.ndarray], n: int, chunk: float, timeout: float) -> list[ClientStats | None]:
    tasks = [asyncio.create_task(one_client(url, clips[i % len(clips)], chunk * i / n)) for i in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    return [t.result() if t in done and t.exception() is None else None for t in tasks]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Row:
    batching: str
    clients: int
    held: bool
    partial: tuple[float, float]
    final: tuple[float, float]
    cpu: float
    mean_batch: float
    same_offline: float
    wer_offline: float
    same_stream: float
    finished: int


def measure(server: Server, clips: list[np.ndarray], n: int, args: argparse.Namespace, label: str,
            offline: list[str], streamed: list[str]) -> Row:
    longest = max(len(c) for c in clips) / SAMPLE_RATE
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    results = asyncio.run(run_clients(server.url, clips, n, args.chunk, timeout=3 * longest + 30))
    wall = time.monotonic() - t0
    cpu = (server.cpu_seconds() - cpu0) / wall
    mean_batch = server.health()["mean_batch"]
    ok = [(i, r) for i, r in enumerate(results) if r is not None and r.closed == 1000]
    partial = [x for _, r in ok for x in r.partial_latency]
    final = [r.final_latency for _, r in ok if r.final_latency is not None]
    held = len(ok) == n and pct(partial, 95) <= args.max_latency
    same_offline = sum(r.text == offline[i % len(clips)] for i, r in ok) / n
    same_stream = sum(r.text == streamed[i % len(clips)] for i, r in ok) / n
    errors = sum(edit_distance(offline[i % len(clips)].split(), r.text.split()) for i, r in ok)
    words = sum(len(offline[i % len(clips)].split()) for i, _ in ok)
    return Row(label, n, held, (pct(partial, 50), pct(partial, 95)), (pct(final, 50), pct(final, 95)), cpu,
               mean_batch, same_offline, errors / max(words, 1), same_stream, len(ok))


def main() -> None:
    args = get_args()
    t_start = time.monotonic()
    print(machine_line(), flush=True)
    clips, source = load_clips(args)
    offline, streamed = references(args, clips)
    print(f"clips: {source}; model {args.model}, window mode, {args.chunk:g}-s chunks, server threads {args.threads}, "
          f"{os.cpu_count()} CPUs", flush=True)
    rows: list[Row] = []
    stopped = []
    longest = max(len(c) for c in clips) / SAMPLE_RATE
    for label, max_batch in (("on", 32), ("off", 1)):
        server = Server(args, max_batch)
        try:
            for n in args.clients:
                if time.monotonic() - t_start + longest + 15 > args.budget:
                    stopped.append(f"batching {label}: stopped before {n} clients (time budget)")
                    break
                row = measure(server, clips, n, args, label, offline, streamed)
                rows.append(row)
                print(f"  batching {label:3s} {n:3d} clients: held={row.held} p95 partial {row.partial[1]:.2f} s, "
                      f"p95 final {row.final[1]:.2f} s, CPU {row.cpu:.2f}", flush=True)
                if not row.held:
                    break
        finally:
            server.stop()
    print()
    print("| batching | clients | held in real time | partial latency p50 / p95 (s) | final latency p50 / p95 (s) "
          "| server CPU (cores) | streams per tick | finals = offline | WER vs offline | finals = stream |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        held = "yes" if r.held else f"no ({r.finished}/{r.clients} finished)" if r.finished < r.clients else "no"
        print(f"| {r.batching} | {r.clients} | {held} | {r.partial[0]:.2f} / {r.partial[1]:.2f} | "
              f"{r.final[0]:.2f} / {r.final[1]:.2f} | {r.cpu:.2f} | {r.mean_batch:.1f} | "
              f"{100 * r.same_offline:.0f} % | {r.wer_offline:.3f} | {100 * r.same_stream:.0f} % |")
    for line in stopped:
        print(line)
    best = {label: max([r.clients for r in rows if r.batching == label and r.held], default=0) for label in ("on", "off")}
    print(f"\nbatching off held {best['off']} clients; {time.monotonic() - t_start:.0f} s in all")
    print(f"clients held in real time at {args.chunk:.2f}-s chunks with batching: {best['on']}")


if __name__ == "__main__":
    main()
