#!/usr/bin/env python3
"""Splits the real speech (`tools/data/real_audio.py`) into what training learns from and the fixed
held-out pieces that predict how the model will hear real people.

    python tools/data/real_split.py --real data/real --labels tools/data/labels

Writes, beside ``real.tsv``:

* ``train.tsv``: every piece with a non-empty hama phone string that is not held out and is not a
  Tux Paint sound effect (hama's "phones" on a meow teach hallucination); English pieces carry
  Whisper tiny.en's text as their transcript, the others none (they teach through the labels alone).
* ``heldout.tsv``: the held-out pieces of every language, untranscribed: the phone error rate
  against hama's strings is measured there.
* ``heldout-en.tsv``: the held-out English pieces with Whisper's text as the transcript: the
  character output's WER against Whisper is measured there.

Held out, fixed by the audio's content hash (so the split does not move when pieces are added):
every 50th Tux Paint / ktuberling piece of a language other than English (``int(key[:8], 16) %
50 == 0``) and every other English piece (``% 2 == 0``); the keys are also written to
``heldout.keys`` (here and beside the labels, where it is committed). The Asterisk prompts are
never among the pieces (`tools/data/real_audio.py`).
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

from streamer.train.data import load_waveform
from streamer.train.labels import LabelStore
from streamer.train.targets import audio_key

#: One held-out piece in this many, for languages other than English.
HELDOUT_EVERY = 50
#: One held-out piece in this many, for English (the little real English there is predicts the most).
HELDOUT_EVERY_EN = 2


def held_out(key: str, language: str) -> bool:
    """Whether a piece belongs to the fixed held-out set (see the module docstring)."""
    return int(key[:8], 16) % (HELDOUT_EVERY_EN if language == "en" else HELDOUT_EVERY) == 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, default=Path("data/real"), help="real_audio.py's folder (default: %(default)s)")
    p.add_argument("--labels", type=Path, default=Path("tools/data/labels"),
                   help="teacher_labels.py's folder (default: %(default)s)")
    args = p.parse_args(argv)
    rows = (args.real / "real.tsv").read_text(encoding="utf-8").splitlines()
    lengths = (args.real / "real.lengths").read_text().splitlines()
    languages = (args.real / "real.languages").read_text().splitlines()
    if not len(rows) == len(lengths) == len(languages):
        print(f"error: {args.real}: real.tsv, real.lengths and real.languages differ in length; rerun real_audio.py",
              file=sys.stderr)
        return 1
    phones = LabelStore(args.labels / "hama")
    whisper = {}
    for line in (args.labels / "whisper-tiny.en.tsv").read_text(encoding="utf-8").splitlines():
        key, _, text = line.partition("\t")
        whisper[key] = text
    out: dict[str, list[tuple[str, str]]] = {"train": [], "heldout": [], "heldout-en": []}
    keys, dropped = [], {"sound effect": 0, "no label": 0, "empty phone string": 0}
    for row, length, lang in tqdm(list(zip(rows, lengths, languages)), desc="split", unit="piece",
                                  mininterval=0.1 if sys.stderr.isatty() else 60):
        path = row.split("\t")[0]
        if lang == "sfx":
            dropped["sound effect"] += 1
            continue
        key = audio_key(load_waveform(args.real / path))
        ids = phones.get(key)
        if ids is None:
            dropped["no label"] += 1
            continue
        if not len(ids):
            dropped["empty phone string"] += 1
            continue
        text = whisper.get(key, "") if lang == "en" else ""
        if held_out(key, lang):
            keys.append(key)
            out["heldout"].append((path, length))
            if lang == "en" and text:
                out["heldout-en"].append((path + "\t" + text, length))
        else:
            out["train"].append((path + ("\t" + text if text else "\t"), length))
    for name, items in out.items():
        (args.real / f"{name}.tsv").write_text("".join(f"{r}\n" if "\t" in r else f"{r}\t\n" for r, _ in items),
                                               encoding="utf-8")
        (args.real / f"{name}.lengths").write_text("".join(f"{n}\n" for _, n in items))
        hours = sum(float(n) for _, n in items) / 3600
        print(f"{args.real / (name + '.tsv')}: {len(items)} pieces, {hours:.2f} h")
    listing = "".join(f"{k}\n" for k in sorted(set(keys)))
    (args.real / "heldout.keys").write_text(listing)
    (args.labels / "heldout.keys").write_text(listing)  # committed beside the labels: the fixed list
    print("left out: " + ", ".join(f"{v} {k}" for k, v in dropped.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
