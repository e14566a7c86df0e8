#!/usr/bin/env python3
"""Runs a real-speech teacher once over corpora and stores its frame-aligned targets.

    # hama's phone log-posteriors for a synthetic corpus and the real audio (about 14 audio-s per CPU-s)
    python tools/data/teacher_targets.py --teacher hama --out data/targets/hama \\
        data/corpus-s4/train.tsv data/corpus-s4/dev.tsv data/real/real.tsv

    # Whisper tiny.en's encoder states (about 40 audio-s per CPU-s)
    python tools/data/teacher_targets.py --teacher whisper-tiny.en --out data/targets/whisper ...

Targets are keyed by the audio's content hash (`streamer.train.targets`), so rerunning skips what
the store has, and a manifest still growing can be passed again later. ``streamer train --distill``
reads the store beside the audio. Needs ``pip install 'streamer[distill]'``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    import streamer  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tqdm import tqdm

from streamer.constants import SAMPLE_RATE
from streamer.errors import StreamerError
from streamer.train.data import load_waveform, read_manifest
from streamer.train.targets import TargetWriter, audio_key
from streamer.train.teachers import TEACHERS, load_teacher


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", type=Path, help="manifests (path<TAB>text; the text is not used)")
    p.add_argument("--teacher", required=True, choices=sorted(TEACHERS))
    p.add_argument("--out", required=True, type=Path, help="target store folder (resumed when it exists)")
    p.add_argument("--threads", type=int, default=1, help="teacher threads (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        teacher = load_teacher(args.teacher, threads=args.threads)
        writer = TargetWriter(args.out, teacher.meta)
        utterances = [u for m in args.manifests for u in read_manifest(m, normalize=False)]
    except StreamerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    audio_s = compute_s = 0.0
    bar = tqdm(utterances, desc=args.teacher, unit="utt")
    try:
        for u in bar:
            try:
                wave = load_waveform(u.path)
            except StreamerError as err:
                tqdm.write(f"skipped {u.path}: {err}")
                continue
            key = audio_key(wave)
            if key in writer:
                continue
            t0 = time.process_time()
            writer.add(key, teacher(wave))
            compute_s += time.process_time() - t0
            audio_s += len(wave) / SAMPLE_RATE
            bar.set_postfix(audio_h=f"{audio_s / 3600:.2f}", speed=f"{audio_s / max(compute_s, 1e-9):.0f}x")
    finally:
        writer.close()
    print(f"{args.out}: {audio_s / 3600:.2f} h of new audio in {compute_s / 60:.1f} CPU-min "
          f"({audio_s / max(compute_s, 1e-9):.1f} audio-s per CPU-s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
