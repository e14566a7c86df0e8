"""Training corpus for one language other than English, from offline Debian data only.

    nice -n 10 python tools/data/make_corpus.py --language ru --out data/corpus-ru --synth-hours 2.5

Sources (training and dev only; the language's Asterisk prompts are the TEST set and are never read):

* **Tux Paint stamp descriptions** (``tuxpaint-stamps-default``): real people reading one sentence per
  stamp, ``<stamp>_desc_<lang>.ogg``, with the transcript on the ``<lang>.utf8=`` line of ``<stamp>.txt``;
* **espeak-ng** in the language, with its voice variants and random rate and pitch;
* **festival** where Debian has a voice for the language (``festvox-ru``: ``msu_ru_nsh_clunits``;
  ``festvox-italp16k`` / ``-itapc16k`` for Italian), with random speaking rate.

Synthesized sentences come from ``fortunes-<lang>`` (Debian's fortune files) and the Tux Paint
descriptions; a sentence with digits or Latin letters (in a non-Latin language) is skipped, because
the engines would read them in ways the label cannot say. Dev sentences are never used for training.

Output (paths relative to ``--out``, the layout of :mod:`streamer.train.corpus.build`)::

    audio/tuxpaint/*.flac  audio/espeak/*.flac  audio/festival/*.flac   16-kHz mono FLAC
    train.tsv dev.tsv (+ .lengths)          path<TAB>raw transcript (normalized at training time
                                            by the model's vocabulary, see streamer.text)
    lm/train.txt                            raw sentences for the LM (no dev sentence)
    meta.json                               sources, counts and hours

Rerunning resumes: existing FLAC files are not synthesized again.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.constants import SAMPLE_RATE
from streamer.files import atomic_files
from streamer.train.corpus.tts import check_audio, to_mono_16k, trim_silence

STAMPS = Path("/usr/share/tuxpaint/stamps")
FORTUNES = Path("/usr/share/games/fortunes")

#: espeak-ng voice variants (``espeak-ng-data/voices/!v``) that sound like a speaker.
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "Andy", "Annie", "adam", "aunty", "benjamin", "david", "edward", "grandma",
                   "grandpa", "linda", "max", "michel", "paul", "rob", "robert", "steph", "travis", "victor")
#: Festival voices per language (``(voice_<name>)``), where Debian packages one.
FESTIVAL_VOICES = {"ru": ("msu_ru_nsh_clunits",), "it": ("lp_diphone", "pc_diphone")}
#: Letters a sentence may use, per language (others are skipped: the engines would spell them).
SCRIPTS = {
    "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    "bg": "абвгдежзийклмнопрстуфхцчшщъьюя",
    "es": "abcdefghijklmnñopqrstuvwxyzáéíóúü",
    "fr": "abcdefghijklmnopqrstuvwxyzàâæçéèêëîïôœùûüÿ",
    "it": "abcdefghijklmnopqrstuvwxyzàèéìíòóùú",
}
_PUNCT = set(" ,.!?;:-—–«»\"'()…")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Item:
    """One utterance of the corpus."""

    relpath: str
    text: str
    duration: float


def tuxpaint_items(language: str, out: Path) -> list[tuple[Path, str, Path]]:
    """(ogg, transcript, flac target) of every stamp description read in ``language``."""
    found = []
    for ogg in sorted(STAMPS.rglob(f"*_desc_{language}.ogg")):
        txt = ogg.with_name(ogg.name[: -len(f"_desc_{language}.ogg")] + ".txt")
        if not txt.is_file():
            continue
        text = None
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(f"{language}.utf8="):
                text = line.split("=", 1)[1].strip()
                break
        if text:
            rel = ogg.relative_to(STAMPS).with_suffix("")
            found.append((ogg, text, out / "audio" / "tuxpaint" / (str(rel).replace("/", "_") + ".flac")))
    return found


def sentence_ok(text: str, language: str, min_words: int = 3, max_words: int = 16) -> bool:
    """Whether a sentence is speakable without spelling digits or foreign letters."""
    letters = SCRIPTS[language]
    for ch in text.lower():
        if ch not in letters and ch not in _PUNCT:
            return False
    n = len(_WORD.findall(text))
    return min_words <= n <= max_words and len(text) <= 140


def fortune_sentences(language: str) -> list[str]:
    """Sentences of ``fortunes-<language>``: quotes split at sentence ends, attributions dropped."""
    folder = FORTUNES / language
    out = []
    for f in sorted(folder.iterdir()) if folder.is_dir() else []:
        if f.suffix in (".dat", ".u8") or f.is_symlink():
            continue
        for block in f.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            text = " ".join(lines)
            for s in re.split(r"(?<=[.!?…])\s+", text):
                s = s.strip(" -—–")
                if sentence_ok(s, language):
                    out.append(s)
    return sorted(set(out))


def decode_ogg(src: Path) -> np.ndarray:
    """float32 mono 16-kHz samples of an Ogg Vorbis file."""
    samples, rate = sf.read(str(src), dtype="float32", always_2d=True)
    return to_mono_16k(samples, rate)


def speak(engine: str, voice: str, text: str, rng: random.Random, workdir: Path) -> np.ndarray:
    """One sentence through espeak-ng or festival, with random rate (and pitch for espeak)."""
    wav = workdir / f"{engine}.wav"
    if engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(175 * rng.uniform(0.8, 1.2))),
               "-p", str(int(50 * rng.uniform(0.7, 1.3))), "-w", str(wav), "--stdin"]
        subprocess.run(cmd, input=text.encode("utf-8"), check=True, capture_output=True, timeout=120)
    else:
        txt = workdir / "festival.txt"
        txt.write_text(text + "\n", encoding="utf-8")
        cmd = ["text2wave", "-eval", f"(voice_{voice})", "-eval",
               f"(Parameter.set 'Duration_Stretch {rng.uniform(0.85, 1.2):.3f})", "-o", str(wav), str(txt)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    samples, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    wave = trim_silence(to_mono_16k(samples, rate))
    check_audio(wave, text)
    return wave * np.float32(0.5 / float(np.max(np.abs(wave))))


def write_flac(path: Path, wave: np.ndarray) -> float:
    """Writes 16-bit FLAC atomically; returns its duration in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_files([path], overwrite=True) as (tmp,):
        sf.write(str(tmp), wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return len(wave) / SAMPLE_RATE


def write_manifest(out: Path, split: str, items: list[Item]) -> None:
    """``<split>.tsv`` (path, raw text) and ``<split>.lengths``."""
    (out / f"{split}.lengths").write_text("".join(f"{i.duration:.3f}\n" for i in items))
    (out / f"{split}.tsv").write_text("".join(f"{i.relpath}\t{i.text}\n" for i in items), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """``tools/data/make_corpus.py --language CODE ...`` (any language but English)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--language", required=True, choices=sorted(SCRIPTS))
    p.add_argument("--out", required=True)
    p.add_argument("--synth-hours", type=float, default=2.5, help="synthetic speech to make (hours)")
    p.add_argument("--festival-share", type=float, default=0.4, help="share of synthetic utterances by festival")
    p.add_argument("--dev-sentences", type=int, default=80, help="synthetic dev utterances (held-out sentences)")
    p.add_argument("--dev-tuxpaint", type=int, default=60, help="Tux Paint descriptions kept for dev")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    lang, out = args.language, Path(args.out)
    rng = random.Random(args.seed)
    out.mkdir(parents=True, exist_ok=True)

    # Real speech: Tux Paint descriptions.
    tux = tuxpaint_items(lang, out)
    rng.shuffle(tux)
    tux_items: list[Item] = []
    for ogg, text, flac in tux:
        if not sentence_ok(text, lang, min_words=1, max_words=60):  # digits, letter names, foreign words
            continue
        if flac.is_file():
            dur = sf.info(str(flac)).duration
        else:
            try:
                dur = write_flac(flac, decode_ogg(ogg))
            except Exception as err:  # a broken file in the package: skip it, say so
                print(f"skip {ogg}: {err}", file=sys.stderr)
                continue
        if 0.5 <= dur <= 16.0:
            tux_items.append(Item(str(flac.relative_to(out)), text, dur))
    tux_dev, tux_train = tux_items[: args.dev_tuxpaint], tux_items[args.dev_tuxpaint:]
    print(f"tuxpaint: {len(tux_items)} descriptions, {sum(i.duration for i in tux_items) / 60:.1f} min", flush=True)

    # Synthetic speech: sentences from fortunes + Tux Paint texts (dev sentences held out).
    sentences = fortune_sentences(lang) + sorted({t for _, t, _ in tux if sentence_ok(t, lang)})
    rng.shuffle(sentences)
    dev_sents, train_sents = sentences[: args.dev_sentences], sentences[args.dev_sentences:]
    lm_dir = out / "lm"
    lm_dir.mkdir(exist_ok=True)
    dev_set = set(dev_sents) | {i.text for i in tux_dev}
    (lm_dir / "train.txt").write_text("".join(s + "\n" for s in sentences if s not in dev_set), encoding="utf-8")
    print(f"sentences: {len(sentences)} usable ({len(dev_sents)} for dev)", flush=True)

    engines = [("espeak", f"{lang}+{v}") for v in ESPEAK_VARIANTS]
    fest = [("festival", v) for v in FESTIVAL_VOICES.get(lang, ())]
    synth: dict[str, list[Item]] = {"train": [], "dev": []}
    target = {"train": args.synth_hours * 3600, "dev": float("inf")}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="corpus-lang-") as tmp:
        workdir = Path(tmp)
        for split, pool in (("dev", dev_sents), ("train", train_sents)):
            if split == "train":  # dev is complete: write it before the long training synthesis
                write_manifest(out, "dev", tux_dev + synth["dev"])
            total = 0.0
            for n, text in enumerate(pool):
                if total >= target[split]:
                    break
                srng = random.Random(f"{args.seed}:{split}:{n}")
                engine, voice = fest[srng.randrange(len(fest))] if fest and srng.random() < args.festival_share \
                    else engines[srng.randrange(len(engines))]
                flac = out / "audio" / engine / split / f"{n:06d}-{voice.replace('+', '_')}.flac"
                if flac.is_file():
                    dur = sf.info(str(flac)).duration
                else:
                    try:
                        dur = write_flac(flac, speak(engine, voice, text, srng, workdir))
                    except Exception as err:  # an engine failing on one sentence: skip it
                        print(f"skip {engine}:{voice} {text[:40]!r}: {err}", file=sys.stderr)
                        continue
                if dur > 16.0:
                    continue
                synth[split].append(Item(str(flac.relative_to(out)), text, dur))
                total += dur
                if len(synth[split]) % 200 == 0:
                    write_manifest(out, split, synth[split] + (tux_train if split == "train" else tux_dev))
                    print(f"{split}: {len(synth[split])} synthesized, {total / 3600:.2f} h, "
                          f"{time.time() - started:.0f} s", flush=True)
    train = tux_train + synth["train"]
    dev = tux_dev + synth["dev"]
    write_manifest(out, "train", train)
    write_manifest(out, "dev", dev)
    meta = {"language": lang, "seed": args.seed,
            "train": {"utterances": len(train), "hours": sum(i.duration for i in train) / 3600,
                      "tuxpaint_hours": sum(i.duration for i in tux_train) / 3600},
            "dev": {"utterances": len(dev), "hours": sum(i.duration for i in dev) / 3600},
            "engines": sorted({e for e, _ in engines + fest}), "status": "complete"}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta), flush=True)

