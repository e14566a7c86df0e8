#!/usr/bin/env python3
"""Runs a real-speech teacher once over corpora and stores its frame-aligned targets.

    # hama's phone log-posteriors for a synthetic corpus and the real audio (about 14 audio-s per CPU-s)
    python tools/data/teacher_targets.py --teacher hama --out data/targets/hama \\
        data/corpus-s4/train.tsv data/corpus-s4/dev.tsv data/real/real.tsv

    # Whisper tiny.en's encoder states (about 40 audio-s per CPU-s)
    python tools/data/teacher_targets.py --teacher whisper-tiny.en --out data/targets/whisper ...

    # the same states from the torch copy of the encoder, on a GPU, for a packed corpus, from one
    # weights file (written here first with --save-whisper-weights; no faster-whisper needed there)
    python tools/data/teacher_targets.py --save-whisper-weights packs/whisper-tiny.en.safetensors
    python tools/data/teacher_targets.py --teacher whisper-tiny.en-torch --device cuda \
        --whisper-weights packs/whisper-tiny.en.safetensors --out data/targets/whisper packs/s4 packs/real

A source is a manifest or a pack folder (`streamer.train.pack`): a pack's utterances are keyed by
their decoded samples, which is what training reads from it.

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

from typing import Callable

import numpy as np
from tqdm import tqdm

from streamer.constants import INT16_FULL_SCALE, SAMPLE_RATE
from streamer.errors import StreamerError
from streamer.train.data import load_waveform, read_manifest
from streamer.train.pack import read_pack
from streamer.train.targets import TargetWriter, audio_key
from streamer.train.teachers import TEACHERS, load_teacher, save_whisper_encoder


def _items(source: Path) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(name, reader of its float32 samples) for each utterance of a manifest or a pack folder."""
    if source.is_dir():
        samples, entries = read_pack(source)
        return [(f"{source}/{e.shard}@{e.start}",
                 lambda e=e: samples[e.global_start: e.global_start + e.length].astype(np.float32) / INT16_FULL_SCALE)
                for e in entries]
    return [(str(u.path), lambda u=u: load_waveform(u.path)) for u in read_manifest(source, normalize=False)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="*", type=Path,
                   help="manifests (path<TAB>text; the text is not used) or pack folders")
    p.add_argument("--teacher", choices=sorted(TEACHERS))
    p.add_argument("--out", type=Path, help="target store folder (resumed when it exists)")
    p.add_argument("--threads", type=int, default=1, help="teacher threads (default: %(default)s)")
    p.add_argument("--device", help="torch device of whisper-tiny.en-torch (default: cpu)")
    p.add_argument("--whisper-weights", type=Path,
                   help="whisper-tiny.en-torch's weights from a file written by --save-whisper-weights")
    p.add_argument("--save-whisper-weights", type=Path, metavar="FILE",
                   help="write Whisper tiny.en's encoder to FILE (float16 safetensors) and stop")
    args = p.parse_args(argv)
    if args.save_whisper_weights:
        try:
            size = save_whisper_encoder(args.save_whisper_weights)
        except StreamerError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{args.save_whisper_weights}: {size / 1e6:.1f} MB")
        return 0
    if not (args.teacher and args.out and args.manifests):
        p.error("the sources, --teacher and --out are needed (or --save-whisper-weights FILE alone)")
    try:
        teacher = load_teacher(args.teacher, threads=args.threads, device=args.device, weights=args.whisper_weights)
        writer = TargetWriter(args.out, teacher.meta)
        utterances = [item for m in args.manifests for item in _items(m)]
    except StreamerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    audio_s = compute_s = 0.0
    # in a log file (not a terminal), one progress line a minute instead of a redraw every 0.1 s
    bar = tqdm(utterances, desc=args.teacher, unit="utt", mininterval=0.1 if sys.stderr.isatty() else 60)
    try:
        for name, read in bar:
            try:
                wave = read()
            except StreamerError as err:
                tqdm.write(f"skipped {name}: {err}")
                continue
            key = audio_key(wave)
            if key in writer:
                continue
            t0 = time.process_time()
            writer.add(key, teacher(wave))
            compute_s += time.process_time() - t0
            audio_s += len(wave) / SAMPLE_RATE
            bar.set_postfix(audio_h=f"{audio_s / 3600:.2f}", speed=f"{audio_s / max(compute_s, 1e-9):.0f}x", refresh=False)
    finally:
        writer.close()
    print(f"{args.out}: {audio_s / 3600:.2f} h of new audio in {compute_s / 60:.1f} CPU-min "
          f"({audio_s / max(compute_s, 1e-9):.1f} audio-s per CPU-s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
