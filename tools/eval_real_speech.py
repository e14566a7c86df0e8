#!/usr/bin/env python3
"""Word error rate on real recorded speech: the Asterisk English prompts, streamer beside pocketsphinx.

The Asterisk core prompts (Debian: asterisk-core-sounds-en-g722 for 16-kHz audio, asterisk-core-sounds-en
for the transcripts) are one professional speaker reading ~560 telephony prompts. They are the
project's real-speech TEST set: nothing is ever trained or tuned on them.

    python tools/eval_real_speech.py                         # bundled model (+ its LM) vs pocketsphinx
    python tools/eval_real_speech.py --model runs/demo/best --no-lm --limit 100

Prints a table of WER/CER per system on the same files, and writes per-utterance hypotheses to
--out (JSON lines) when given.
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

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
CACHE = Path("data/asterisk")


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


def pocketsphinx_transcribe(wavs: list[Path]) -> tuple[list[str], float]:
    """pocketsphinx's default US English acoustic model, dictionary and LM.

    Its output is deterministic and does not depend on streamer, so hypotheses and decode times are
    cached per prompt in ``data/asterisk/pocketsphinx.json`` (keyed by pocketsphinx's version).

    Returns:
        Hypotheses in the order of ``wavs`` and the total decode time in seconds.
    """
    import pocketsphinx
    import soundfile as sf
    from pocketsphinx import Decoder

    cache_path = CACHE / "pocketsphinx.json"
    version = getattr(pocketsphinx, "__version__", "unknown")
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    if cache.get("version") != version:
        cache = {"version": version, "prompts": {}}
    done = cache["prompts"]
    keys = [str(w.relative_to(CACHE).with_suffix("")) for w in wavs]  # e.g. digits/7, distinct from letters/7
    decoder = None
    for i, (w, key) in enumerate(zip(wavs, keys)):
        if key in done:
            continue
        if decoder is None:
            decoder = Decoder(samprate=16000, loglevel="FATAL")
        x, _ = sf.read(str(w), dtype="int16")
        t = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(x.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        done[key] = {"hyp": normalize_text(hyp.hypstr if hyp else ""), "seconds": time.perf_counter() - t}
        if i % 20 == 19:
            cache_path.write_text(json.dumps(cache))
    cache_path.write_text(json.dumps(cache))
    return [done[k]["hyp"] for k in keys], sum(done[k]["seconds"] for k in keys)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo-en", help="streamer model (default: the bundled demo-en)")
    p.add_argument("--no-lm", action="store_true", help="greedy decoding only")
    p.add_argument("--no-pocketsphinx", action="store_true")
    p.add_argument("--no-streamer", action="store_true", help="pocketsphinx only (fills its cache)")
    p.add_argument("--limit", type=int, help="first N prompts only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write per-utterance results here (JSON lines)")
    args = p.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to decode G.722: apt-get install ffmpeg")
    import torch
    torch.set_num_threads(args.threads)
    prompts = read_prompts()[: args.limit]
    wavs = [decode_g722(k) for k, _ in prompts]
    import soundfile as sf
    hours = sum(sf.info(str(w)).duration for w in wavs) / 3600
    print(f"{len(prompts)} prompts, {hours * 60:.1f} min of real speech (one speaker)")

    from streamer.recognizer import Recognizer
    systems: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    variants = [("streamer greedy", False)] + ([] if args.no_lm else [("streamer beam+LM", True)])
    if args.no_streamer:
        variants = []
    for name, use_lm in variants:
        rec = Recognizer.load(args.model, lm="auto" if use_lm else None)
        if use_lm and rec.decoder_name == "greedy":
            print(f"{args.model} ships no language model: skipping '{name}'")
            continue
        t = time.perf_counter()
        systems[name] = [rec.transcribe(w).text for w in wavs]
        timing[name] = time.perf_counter() - t
    if not args.no_pocketsphinx:
        hyps, seconds = pocketsphinx_transcribe(wavs)
        systems["pocketsphinx 5 (en-us)"] = hyps
        timing["pocketsphinx 5 (en-us)"] = seconds

    print("\n| system | WER | CER | RTF |\n|---|---|---|---|")
    for name, hyps in systems.items():
        wer, cer = corpus_rates((ref, hyp) for (_, ref), hyp in zip(prompts, hyps))
        print(f"| {name} | {wer:.3f} | {cer:.3f} | {timing[name] / (hours * 3600):.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            for i, (key, ref) in enumerate(prompts):
                f.write(json.dumps({"key": key, "ref": ref, **{n: h[i] for n, h in systems.items()}}) + "\n")


if __name__ == "__main__":
    main()
