#!/usr/bin/env python3
"""Packs a training recipe's audio as Opus and its teacher labels beside it, to carry to another
machine (a GPU, say) in a few tens of MB.

    python tools/data/pack_recipe.py --out packs/hears --labels tools/data/labels/hama \\
        data/corpus-s5/train.tsv data/corpus-s5/dev.tsv data/real/train.tsv data/real/heldout.tsv

Each manifest becomes a pack folder ``OUT/<parent>-<stem>`` (`streamer.train.pack`: Opus shards and
an index with the transcripts), and each label store is rewritten as ``OUT/labels/<name>`` keyed by
the *decoded* Opus samples, which is what training reads from a pack (Opus does not return the
same samples, so the original keys would not match). Pass the pack folders to ``streamer train
--train`` and the rewritten stores to ``--distill``; docs/training.md has the whole command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import streamer  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tqdm import tqdm

from streamer.constants import INT16_FULL_SCALE
from streamer.errors import StreamerError
from streamer.train.data import load_waveform, read_manifest
from streamer.train.labels import LabelStore, write_label_store
from streamer.train.pack import pack_corpus, read_pack
from streamer.train.targets import audio_key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", type=Path, help="training / dev / held-out manifests")
    p.add_argument("--out", type=Path, required=True, help="folder of the packs (new)")
    p.add_argument("--labels", action="append", type=Path, default=[],
                   help="a label store (tools/data/teacher_labels.py); repeat for several")
    args = p.parse_args(argv)
    try:
        stores = [LabelStore(s) for s in args.labels]
        rekeyed: list[dict[str, list[int]]] = [{} for _ in stores]
        for manifest in args.manifests:
            name = f"{manifest.parent.name}-{manifest.stem}"
            summary = pack_corpus(manifest, args.out / name)
            samples, entries = read_pack(args.out / name)
            utts = read_manifest(manifest)
            for u, e in tqdm(list(zip(utts, entries)), desc=name, unit="utt",
                             mininterval=0.1 if sys.stderr.isatty() else 60):
                before = audio_key(load_waveform(u.path))
                after = audio_key(samples[e.global_start: e.global_start + e.length].astype("float32") / INT16_FULL_SCALE)
                for store, out in zip(stores, rekeyed):
                    ids = store.get(before)
                    if ids is not None:
                        out[after] = ids.tolist()
            print(f"{summary.folder}: {summary.utterances} utterances, {summary.seconds / 3600:.2f} h, "
                  f"{summary.bytes / 1e6:.1f} MB")
        for folder, store, out in zip(args.labels, stores, rekeyed):
            dest = args.out / "labels" / folder.name
            write_label_store(dest, store.meta, store.tokens, out)
            print(f"{dest}: labels of {len(out)} packed utterances")
    except StreamerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
