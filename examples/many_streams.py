#!/usr/bin/env python3
"""Recognize several files at once as live streams: one batched encoder forward per step for all.

    python examples/many_streams.py examples/hello.wav examples/hello.wav
    python examples/many_streams.py a.wav b.flac c.mp3 --mode cached --chunk 0.32

Each file is fed in 100-ms blocks to its own stream, as if it were a live source; after each round
`Recognizer.decode_streams` runs the ready streams' steps together and returns each stream's events
(the same events each stream would get alone).
"""

import argparse

import streamer
from streamer.audio import load_audio


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    p.add_argument("--model", default="demo-en")
    p.add_argument("--mode", choices=["window", "cached"], default="window")
    p.add_argument("--chunk", type=float, default=0.64, help="seconds of audio per encoder step")
    p.add_argument("--no-lm", action="store_true")
    return p.parse_args()


def create_recognizer(args: argparse.Namespace) -> streamer.Recognizer:
    return streamer.load(args.model, lm=None if args.no_lm else "auto",
                         streaming=streamer.StreamingConfig.from_seconds(args.mode, args.chunk))


def main() -> None:
    args = get_args()
    rec = create_recognizer(args)
    audio = [load_audio(f) for f in args.files]
    streams = [rec.create_stream() for _ in audio]
    block = 1600  # 100 ms
    for start in range(0, max(len(a) for a in audio) + block, block):
        for a, s in zip(audio, streams):
            if start < len(a):
                s.accept_waveform(a[start:start + block])
            elif not s.done:
                s.input_finished()
        for name, events in zip(args.files, rec.decode_streams(streams)):
            for event in events:
                if isinstance(event, streamer.Final):
                    print(f"{name} [{event.start:.2f}-{event.end:.2f}] {event.text}")


if __name__ == "__main__":
    main()
