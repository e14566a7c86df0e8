#!/usr/bin/env python3
"""Streaming cost and latency, measured side by side in one run.

Compute per second of audio (real-time factor, RTF = compute seconds / audio seconds) of:

* ``offline``       one forward over the whole utterance (reference);
* ``window-naive``  window mode done the obvious way: the whole model (conv front-end included) re-run
                    over left + chunk + right samples every step;
* ``window``        streamer's window mode: projected features are frame-local, so each frame's conv
                    front-end runs once and is kept; only the transformer re-runs over the window;
* ``cached``        block-causal mode with key/value caches (cost independent of stream length);

at chunk sizes 0.32 / 0.64 / 1.0 s, with the algorithmic latency of each setting. Default model: the
XLSR-53-large architecture with random weights (a causal positional conv for the cached rows).

Batched streams (``--streams 1 4 16``): N streams of different lengths fed in 100-ms blocks, decoded
one by one (`Recognizer.decode_stream`, one encoder forward per stream and step) and together
(`Recognizer.decode_streams`, one forward with B = ready streams), in window and cached mode, with
the speed-up (in CPU time of the process) and a check that both give the same text. Model: ``--batch-model`` (default the bundled
demo-en, which must have a causal positional conv for the cached rows), greedy decoding.

    python tools/bench/streaming.py --threads 1 --seconds 8
    python tools/bench/streaming.py --model demo-en --seconds 20
    python tools/bench/streaming.py --threads 1 --chunks --streams 1 4 16 --seconds 10
"""

from __future__ import annotations

import argparse
import time

import torch

from streamer.constants import SAMPLE_RATE
from streamer.results import Final
from streamer.grid import XLSR_GRID
from streamer.model import EncoderConfig, Wav2Vec2CTC, xlsr53_large_config
from streamer.pipeline import stream_whole
from streamer.streaming import StreamingConfig, StreamingEncoder


def _timed(fn, repeats: int, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


@torch.no_grad()
def naive_window(model: Wav2Vec2CTC, x: torch.Tensor, cfg: StreamingConfig) -> None:
    """Window mode without feature caching: the full model over each step's window of samples."""
    n, left, right = cfg.chunk_frames, cfg.left_frames, cfg.right_frames
    frames = model.config.num_frames(len(x))
    for start in range(0, frames, n):
        lo = max(0, start - left)
        hi = min(frames, start + n + right)
        model(x[XLSR_GRID.samples(lo): XLSR_GRID.span_samples(hi)][None])


def _drive(rec, signals: list, batched: bool, block: int = 1600) -> list[str]:
    """Feeds every signal in blocks to its own stream, decoding per block; returns each stream's text."""
    streams = [rec.create_stream() for _ in signals]
    finals: list[list[str]] = [[] for _ in signals]
    for start in range(0, max(len(x) for x in signals) + block, block):
        for x, st in zip(signals, streams):
            if start < len(x):
                st.accept_waveform(x[start:start + block])
            elif start < len(x) + block:
                st.input_finished()
        events = rec.decode_streams(streams) if batched else [rec.decode_stream(st) for st in streams]
        for i, evs in enumerate(events):
            finals[i] += [e.text for e in evs if isinstance(e, Final)]
    return [" ".join(texts) for texts in finals]


def batch_rows(model: str, counts: list[int], seconds: float, chunk: float, repeats: int) -> None:
    """decode_streams vs one decode_stream per stream, for each stream count (see the module docstring)."""
    from streamer.recognizer import Recognizer

    print(f"\nbatched streams: model {model}, greedy, {chunk:.2f}-s chunks, ~{seconds:.0f} s per stream, "
          f"best of {repeats}")
    print("\n| mode | streams | audio (s) | one by one: CPU-s per audio s | decode_streams: CPU-s per audio s | "
          "speed-up | same text |"
          "\n|---|---|---|---|---|---|---|")
    for mode in ("window", "cached"):
        rec = Recognizer.load(model, lm=None, streaming=StreamingConfig.from_seconds(mode, chunk), two_pass=False)
        for n in counts:
            gen = torch.Generator().manual_seed(n)
            signals = [(torch.randn(int((seconds + 0.37 * i) * SAMPLE_RATE), generator=gen) * 0.1).numpy()
                       for i in range(n)]
            audio = sum(len(x) for x in signals) / SAMPLE_RATE
            texts: dict[bool, list[str]] = {}

            def run(batched: bool) -> None:
                texts[batched] = _drive(rec, signals, batched)

            # CPU time of this process: with one thread it is the compute, and a busy machine moves it less.
            alone = _timed(lambda: run(False), repeats, time.process_time) / audio
            together = _timed(lambda: run(True), repeats, time.process_time) / audio
            print(f"| {mode} | {n} | {audio:.0f} | {alone:.4f} | {together:.4f} | {alone / together:.2f}x | "
                  f"{'yes' if texts[True] == texts[False] else 'NO'} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint to measure (default: random-weight XLSR-53-large)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=8.0, help="utterance length")
    p.add_argument("--chunks", type=float, nargs="*", default=[0.32, 0.64, 1.0],
                   help="chunk sizes of the mode rows (none: skip them)")
    p.add_argument("--streams", type=int, nargs="*", default=[], help="stream counts of the batched rows")
    p.add_argument("--batch-model", default="demo-en", help="model of the batched rows")
    p.add_argument("--batch-chunk", type=float, default=0.64, help="chunk of the batched rows (s)")
    p.add_argument("--left", type=float, default=1.28, help="window-mode left context (s)")
    p.add_argument("--right", type=float, default=0.32, help="window-mode look-ahead (s)")
    p.add_argument("--left-chunks", type=int, default=4, help="cached-mode left context (chunks)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.streams:
        batch_rows(args.batch_model, args.streams, args.seconds, args.batch_chunk, args.repeats)
    if not args.chunks:
        return
    if args.model:
        from streamer.checkpoint import load_checkpoint
        base = load_checkpoint(args.model).model
        name = args.model
    else:
        base = Wav2Vec2CTC(xlsr53_large_config()).eval()
        name = "XLSR-53-large architecture, random weights"
    causal_cfg = EncoderConfig.from_dict({**base.config.to_dict(), "pos_conv_causal": True})
    causal = Wav2Vec2CTC(causal_cfg).eval()
    causal.load_state_dict(base.state_dict())
    x = torch.randn(int(args.seconds * SAMPLE_RATE)) * 0.1
    audio = len(x) / SAMPLE_RATE
    print(f"model: {name}; {args.threads} thread(s); utterance {audio:.1f} s; best of {args.repeats}")
    offline = _timed(lambda: base(x[None]), args.repeats) / audio
    rows = [("offline", "-", "whole utterance", offline, None)]
    for c in args.chunks:
        w = StreamingConfig.from_seconds("window", c, args.left, args.right)
        k = StreamingConfig.from_seconds("cached", c, c * args.left_chunks)
        enc_w, enc_k = StreamingEncoder(base, w), StreamingEncoder(causal, k)
        t_naive = _timed(lambda: naive_window(base, x, w), args.repeats) / audio
        t_win = _timed(lambda: stream_whole(enc_w, x), args.repeats) / audio
        t_cached = _timed(lambda: stream_whole(enc_k, x), args.repeats) / audio
        ctx = f"L {XLSR_GRID.seconds(w.left_frames):.2f} s, R {XLSR_GRID.seconds(w.right_frames):.2f} s"
        rows += [("window-naive", f"{c:.2f}", ctx, t_naive, w.latency_seconds),
                 ("window", f"{c:.2f}", ctx, t_win, w.latency_seconds),
                 ("cached", f"{c:.2f}", f"{k.left_chunks} chunks cache", t_cached, k.latency_seconds)]
    print("\n| mode | chunk (s) | context | RTF | x offline | latency (s) |")
    print("|---|---|---|---|---|---|")
    for mode, chunk, ctx, rtf, lat in rows:
        print(f"| {mode} | {chunk} | {ctx} | {rtf:.3f} | {rtf / offline:.2f} | {'-' if lat is None else f'{lat:.3f}'} |")
    by = {(m, c): r for m, c, _, r, _ in rows}
    for c in args.chunks:
        key = f"{c:.2f}"
        print(f"chunk {key} s: feature caching cuts window mode to {by[('window', key)] / by[('window-naive', key)]:.2f}x "
              f"of the naive cost; cached mode costs {by[('cached', key)] / by[('window', key)]:.2f}x window mode")


if __name__ == "__main__":
    main()
