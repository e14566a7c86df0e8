#!/usr/bin/env python3
"""Simulate live recognition: feed a file in 100-ms blocks and print partials and finals as they come.

    python examples/stream_file.py examples/hello.wav
    python examples/stream_file.py examples/hello.wav --mode cached --chunk 0.32
"""

import argparse
from dataclasses import replace

import streamer
from streamer.audio import load_audio
from streamer.grid import XLSR_GRID


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("--model", default="demo-en")
    p.add_argument("--mode", choices=["window", "cached"], help="streaming mode (default: the library's, window)")
    p.add_argument("--chunk", type=float, help="seconds of audio per encoder step (default: the library's, 0.64)")
    p.add_argument("--no-lm", action="store_true")
    return p.parse_args()


def create_recognizer(args: argparse.Namespace) -> streamer.Recognizer:
    config = streamer.RecognizerConfig()  # the defaults; replace only what was asked for
    if args.mode or args.chunk:
        chunk = args.chunk or XLSR_GRID.seconds(config.streaming.chunk_frames)
        config = replace(config, streaming=streamer.StreamingConfig.from_seconds(args.mode or "window", chunk))
    return streamer.Recognizer.load(args.model, config, lm=None if args.no_lm else "auto")


def main() -> None:
    args = get_args()
    rec = create_recognizer(args)
    audio = load_audio(args.file)
    stream = rec.create_stream()
    block = 1600  # 100 ms
    for i in range(0, len(audio), block):
        for event in rec.feed(stream, audio[i:i + block]):
            show(event)
    for event in rec.input_finished(stream):
        show(event)


def show(event) -> None:
    if isinstance(event, streamer.Final):
        print(f"FINAL   [{event.start:.2f}-{event.end:.2f}] {event.text}")
    else:
        print(f"partial @{event.time:5.2f}s  {event.committed} [{event.tentative}]")


if __name__ == "__main__":
    main()
