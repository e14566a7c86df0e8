#!/usr/bin/env python3
"""Error rates on real recorded speech in another language: that language's Asterisk prompts.

    python tools/eval/real_speech_lang.py --language ru --model runs/xlsr-ru/best
    python tools/eval/real_speech_lang.py --language ru --model runs/xlsr-ru/best --lm runs/xlsr-ru/lm/lm.binary

The Asterisk core prompts (Debian: ``asterisk-core-sounds-<lang>-g722`` for 16-kHz G.722 audio,
``asterisk-core-sounds-<lang>`` for the transcripts in /usr/share/doc) are one professional speaker
reading ~500 telephony prompts. They are the TEST set: nothing is ever trained or tuned on them.

References and hypotheses are normalized for the model's vocabulary (`streamer.text.normalize_text`),
so the scores are in the model's own script; a per-character vocabulary (Chinese, Japanese, Thai)
is scored by CER (its WER counts characters as words). Prints WER/CER and the real-time factor, and
writes per-prompt results to --out (JSON lines) when given.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from streamer.metrics import corpus_rates
from streamer.text import normalize_text

#: Folder of each language's prompts (the Debian package's voice).
SOUNDS = {
    "es": "es_MX_f_Allison", "fr": "fr_CA_f_June", "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU",
    "en": "en_US_f_Allison",
}
SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")


def read_prompts(language: str) -> list[tuple[str, str]]:
    """(key, transcript as written) of every spoken prompt whose audio exists (tones skipped)."""
    sounds = SOUNDS_ROOT / SOUNDS[language]
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


def decode_g722(language: str, key: str, cache: Path) -> Path:
    """16-kHz mono WAV of a prompt, decoded once with ffmpeg into the cache."""
    wav = cache / f"{key}.wav"
    if not wav.is_file():
        wav.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "g722", "-i",
                        str(SOUNDS_ROOT / SOUNDS[language] / f"{key}.g722"), "-ar", "16000", "-ac", "1", str(wav)],
                       check=True)
    return wav


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--language", required=True, choices=sorted(SOUNDS))
    p.add_argument("--model", required=True, help="streamer model folder (e.g. runs/xlsr-ru/best)")
    p.add_argument("--lm", help="KenLM file for beam search (built with 'streamer lm build --model ...'); default greedy")
    p.add_argument("--limit", type=int, help="first N prompts only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write per-prompt results here (JSON lines)")
    args = p.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to decode G.722: apt-get install ffmpeg")
    import soundfile as sf
    import torch

    from streamer.recognizer import Recognizer

    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.model, lm=args.lm)
    vocab = rec.vocab
    prompts = [(k, t, normalize_text(t, vocab)) for k, t in read_prompts(args.language)]
    prompts = [x for x in prompts if x[2]][: args.limit]
    cache = Path("data") / f"asterisk-{args.language}"
    wavs = [decode_g722(args.language, k, cache) for k, _, _ in prompts]
    seconds = sum(sf.info(str(w)).duration for w in wavs)
    print(f"{len(prompts)} prompts, {seconds / 60:.1f} min of real speech (one speaker); decoder {rec.decoder_name}")
    t = time.perf_counter()
    hyps = [normalize_text(rec.transcribe(w).text, vocab) for w in wavs]
    elapsed = time.perf_counter() - t

    def units(text: str) -> str:  # per-character scripts: characters are the words
        return " ".join(text) if vocab.per_character else text

    wer, _ = corpus_rates((units(ref), units(hyp)) for (_, _, ref), hyp in zip(prompts, hyps))
    _, cer = corpus_rates((ref, hyp) for (_, _, ref), hyp in zip(prompts, hyps))
    print(f"| model | decoder | prompts | WER | CER | RTF |\n|---|---|---|---|---|---|\n"
          f"| {args.model} | {rec.decoder_name} | {len(prompts)} | {wer:.3f} | {cer:.3f} | {elapsed / seconds:.3f} |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for (key, raw, ref), hyp in zip(prompts, hyps):
                f.write(json.dumps({"key": key, "text": raw, "ref": ref, "hyp": hyp}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
