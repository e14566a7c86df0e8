#!/usr/bin/env python3
"""Lists the real human speech this machine's packages hold, as distillation input (no transcripts).

    python tools/data/real_audio.py --out data/real   # data/real/real.tsv + .lengths + .sources + .languages

Every file is converted once to 16-kHz mono FLAC under ``--out/audio`` (long recordings are cut
into pieces of at most ``--max-seconds``), and listed with an empty transcript: the teachers'
targets, not text, are what these files teach. The sources and their licences (Debian packages):

* ``tuxpaint-stamps-default``: spoken stamp descriptions in many languages (GPL-2+)
* ``ktuberling-data``: single words in 25 languages (GPL-2+ / LGPL)
* ``codec2-examples``: about 6 minutes of English test speech (LGPL-2.1)
* ``pocketsphinx-testdata``: a few English utterances (BSD-2-Clause)

The Asterisk prompts are test sets and are never listed. Rerunning skips files already converted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import streamer  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import soundfile as sf
from tqdm import tqdm

from streamer.audio import load_audio
from streamer.constants import SAMPLE_RATE
from streamer.errors import StreamerError

#: (source name, folder, file patterns) of the real speech in Debian packages.
SOURCES = (
    ("tuxpaint", Path("/usr/share/tuxpaint/stamps"), ("*.ogg", "*.wav")),
    ("ktuberling", Path("/usr/share/ktuberling/sounds"), ("*.ogg", "*.wav")),
    ("codec2", Path("/usr/share/codec2/wav"), ("*.wav",)),
    ("codec2", Path("/usr/share/codec2/raw"), ("speech_orig_16k.wav",)),
    ("pocketsphinx", Path("/usr/share/pocketsphinx/test/data"), ("*.wav",)),
)


def find_files() -> list[tuple[str, Path]]:
    """(source, path) of every real-speech file found, sorted, Asterisk never included."""
    found: dict[Path, str] = {}
    for name, folder, patterns in SOURCES:
        if not folder.is_dir():
            continue
        for pattern in patterns:
            for path in folder.rglob(pattern):
                if "asterisk" not in str(path).lower():
                    found.setdefault(path.resolve(), name)
    return sorted(((s, p) for p, s in found.items()), key=lambda x: str(x[1]))


def language_of(source: str, path: Path) -> str:
    """The spoken language of a real-speech file (ISO 639-1 or the package's own code), or ``sfx``
    for a Tux Paint stamp's sound effect (a meow, an engine), which is no speech.

    Tux Paint names a stamp's spoken description ``NAME_desc_LANG.ogg`` (``NAME_desc.ogg`` is the
    English one); ktuberling keeps each language's words in ``sounds/LANG/``; the codec2 and
    pocketsphinx recordings are English.
    """
    if source == "tuxpaint":
        stem = path.stem
        if "_desc" not in stem:
            return "sfx"
        return stem.rsplit("_desc", 1)[1].lstrip("_") or "en"
    if source == "ktuberling":
        parts = path.parts
        return parts[parts.index("sounds") + 1] if "sounds" in parts[:-2] else "sfx"
    return "en"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/real"), help="output folder (default: %(default)s)")
    p.add_argument("--max-seconds", type=float, default=16.0, help="longest piece, seconds (default: %(default)s)")
    p.add_argument("--min-seconds", type=float, default=0.3, help="shortest piece kept, seconds (default: %(default)s)")
    args = p.parse_args(argv)
    files = find_files()
    if not files:
        print("error: no real speech found; install tuxpaint-stamps-default, ktuberling-data, codec2-examples, "
              "pocketsphinx-testdata", file=sys.stderr)
        return 1
    rows, lengths, sources, languages, totals = [], [], [], [], {}
    piece = int(args.max_seconds * SAMPLE_RATE)
    for source, path in tqdm(files, desc="real audio", unit="file", mininterval=0.1 if sys.stderr.isatty() else 60):
        rel = Path("audio") / source / path.relative_to(path.anchor).with_suffix("")
        try:
            wave = None
            first = args.out / f"{rel}-0.flac"
            if not first.is_file():
                wave = load_audio(path)
        except StreamerError as err:
            tqdm.write(f"skipped {path}: {err}")
            continue
        if wave is None:  # converted before: list the pieces on disk
            pieces = sorted(args.out.glob(f"{rel}-*.flac"), key=lambda q: int(q.stem.rsplit("-", 1)[1]))
            spans = [(q, sf.info(str(q)).frames) for q in pieces]
        else:
            spans = []
            for k, start in enumerate(range(0, len(wave), piece)):
                part = wave[start: start + piece]
                if len(part) < args.min_seconds * SAMPLE_RATE:
                    continue
                q = args.out / f"{rel}-{k}.flac"
                q.parent.mkdir(parents=True, exist_ok=True)
                tmp = q.with_suffix(".tmp.flac")
                sf.write(str(tmp), np.clip(part, -1, 1), SAMPLE_RATE, subtype="PCM_16")
                tmp.replace(q)
                spans.append((q, len(part)))
        for q, n in spans:
            rows.append(f"{q.relative_to(args.out)}\t\n")
            lengths.append(f"{n / SAMPLE_RATE:.4f}\n")
            sources.append(f"{source}\n")
            languages.append(f"{language_of(source, path)}\n")
            totals[source] = totals.get(source, 0.0) + n / SAMPLE_RATE
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real.lengths").write_text("".join(lengths))
    (args.out / "real.sources").write_text("".join(sources))
    (args.out / "real.languages").write_text("".join(languages))
    (args.out / "real.tsv").write_text("".join(rows))
    for source, seconds in sorted(totals.items()):
        print(f"{source}: {seconds / 3600:.2f} h")
    print(f"{len(rows)} pieces, {sum(totals.values()) / 3600:.2f} h in {args.out / 'real.tsv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
