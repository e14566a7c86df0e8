#!/usr/bin/env python3
"""Live transcription from the default microphone with voice activity detection.

    python examples/live_mic.py
    python examples/live_mic.py --device 2 --mode cached --chunk 0.32

Needs the "mic" extra (sounddevice, webrtcvad-wheels) and PortAudio (apt-get install libportaudio2).
"""

import argparse
import sys

try:
    import sounddevice  # noqa: F401  (checked here to give the install hint before loading the model)
except ImportError:
    sys.exit("this example needs sounddevice: pip install 'streamer[mic]' (and apt-get install libportaudio2)")

import streamer
from streamer.frontend.live import run_mic


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo-en")
    p.add_argument("--device", help="input device index or name")
    p.add_argument("--mode", choices=["window", "cached"], default="window")
    p.add_argument("--chunk", type=float, default=0.64)
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    return p.parse_args()


def create_recognizer(args: argparse.Namespace) -> streamer.Recognizer:
    return streamer.load(args.model, streaming=streamer.StreamingConfig.from_seconds(args.mode, args.chunk))


def main() -> None:
    args = get_args()
    rec = create_recognizer(args)
    try:
        run_mic(rec, device=args.device, seconds=args.seconds)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
