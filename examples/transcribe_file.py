#!/usr/bin/env python3
"""Transcribe audio files with word timestamps.

    python examples/transcribe_file.py examples/hello.wav
    python examples/transcribe_file.py talk.flac --model facebook/wav2vec2-large-xlsr-53-english --no-lm
"""

import argparse

import streamer


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    p.add_argument("--model", default="demo-en", help="bundled name, folder or hub id")
    p.add_argument("--no-lm", action="store_true", help="greedy decoding")
    return p.parse_args()


def create_recognizer(args: argparse.Namespace) -> streamer.Recognizer:
    return streamer.load(args.model, lm=None if args.no_lm else "auto")


def main() -> None:
    args = get_args()
    rec = create_recognizer(args)
    for path in args.files:
        transcript = rec.transcribe(path)
        print(f"{path} ({transcript.duration:.1f} s, RTF {transcript.info.rtf}): {transcript.text}")
        for word in transcript.words:
            print(f"  {word.start:6.2f} {word.end:6.2f}  {word.text}")


if __name__ == "__main__":
    main()
