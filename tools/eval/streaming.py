#!/usr/bin/env python3
"""Accuracy of every decoding path on a held-out manifest, measured side by side in one run.

Tables printed (all on the same utterances):

1. ``modes``    greedy WER/CER offline (full context) vs window vs cached streaming at each chunk size;
2. ``decoders`` offline WER with greedy, beam (no LM) and beam + the model's KenLM;
3. ``stability`` for streamed decoding: share of shown words later rewritten ("flicker"), and the
   delay from a word's end to its commit (committed text can no longer change);
4. ``hotwords`` words of the references that the LM does not know and beam+LM gets wrong, decoded
   again with each as a hotword: how many of those errors the boost fixes.

    python tools/eval/streaming.py --manifest data/corpus/test.tsv             # bundled demo-en
    python tools/eval/streaming.py --model runs/demo-en/best --limit 100 --tables modes
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from streamer.constants import SAMPLE_RATE
from streamer.decoding.beam import DecoderConfig
from streamer.metrics import corpus_rates, word_errors
from streamer.recognizer import Recognizer
from streamer.results import Final, Partial
from streamer.streaming import StreamingConfig
from streamer.train.data import load_waveform, read_manifest


@dataclass(frozen=True)
class Score:
    wer: float
    cer: float
    seconds: float


def score(refs: list[str], hyps: list[str], seconds: float) -> Score:
    return Score(*corpus_rates(zip(refs, hyps)), seconds)


def run_files(rec: Recognizer, waves: list[np.ndarray]) -> tuple[list[str], float]:
    t = time.perf_counter()
    hyps = [rec.transcribe(w).text for w in waves]
    return hyps, time.perf_counter() - t


def stream_events(rec: Recognizer, wave: np.ndarray, block: int = 1600) -> list[Partial | Final]:
    s = rec.create_stream()
    events: list[Partial | Final] = []
    for i in range(0, len(wave), block):
        events += rec.feed(s, wave[i:i + block])
    events += rec.input_finished(s)
    return events


def stability(rec: Recognizer, waves: list[np.ndarray]) -> dict[str, float]:
    """Flicker and commit delay of streamed decoding (utterance-level, two-pass off)."""
    shown = rewritten = 0
    delays: list[float] = []
    for wave in waves:
        events = stream_events(rec, wave)
        partials = [e for e in events if isinstance(e, Partial)]
        finals = [e for e in events if isinstance(e, Final)]
        for a, b in zip(partials, partials[1:]):
            wa, wb = a.text.split(), b.text.split()
            if not wb:  # a new utterance started
                continue
            common = 0
            while common < min(len(wa), len(wb)) and wa[common] == wb[common]:
                common += 1
            shown += len(wa)
            rewritten += len(wa) - common
        final_words = [w for f in finals for w in f.words]
        committed_at: dict[int, float] = {}
        offset = 0
        prev_utt_words = 0
        for p in partials:
            n = len(p.committed.split())
            if n < prev_utt_words:  # new utterance
                offset += prev_utt_words
            prev_utt_words = n
            for j in range(n):
                committed_at.setdefault(offset + j, p.time)
        for j, w in enumerate(final_words):
            if j in committed_at:
                delays.append(max(0.0, committed_at[j] - w.end))
    return {"flicker": rewritten / shown if shown else 0.0,
            "commit_delay_median": statistics.median(delays) if delays else float("nan"),
            "commit_delay_p90": float(np.percentile(delays, 90)) if delays else float("nan"),
            "committed_words": len(delays)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo-en")
    p.add_argument("--manifest", default="data/corpus/test.tsv")
    p.add_argument("--limit", type=int)
    p.add_argument("--chunks", type=float, nargs="+", default=[0.32, 0.64, 1.0])
    p.add_argument("--left-chunks", type=int, default=4, help="cached mode: chunks of key/value cache")
    p.add_argument("--tables", nargs="+", default=["modes", "decoders", "stability", "hotwords"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beam", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    utts = read_manifest(args.manifest)[: args.limit]
    refs = [u.text for u in utts]
    waves = [load_waveform(u.path) for u in utts]
    hours = sum(len(w) for w in waves) / SAMPLE_RATE / 3600
    print(f"{len(utts)} utterances, {hours * 60:.1f} min, from {args.manifest}; model {args.model}")

    if "modes" in args.tables:
        rows = []
        hyps, sec = run_files(Recognizer.load(args.model, lm=None), waves)
        rows.append(("offline", "-", score(refs, hyps, sec)))
        for c in args.chunks:
            for mode in ("window", "cached"):
                cfg = StreamingConfig.from_seconds(mode, c, c * args.left_chunks if mode == "cached" else None)
                try:
                    rec = Recognizer.load(args.model, lm=None, streaming=cfg, stream_files=True)
                except Exception as err:  # cached mode needs a block-causal model
                    print(f"{mode} {c}: {err}")
                    continue
                hyps, sec = run_files(rec, waves)
                rows.append((mode, f"{c:.2f} (latency {cfg.latency_seconds:.2f} s)", score(refs, hyps, sec)))
        off = rows[0][2].wer
        print("\n| mode | chunk (s) | WER | CER | rel. to offline | RTF |\n|---|---|---|---|---|---|")
        for mode, chunk, s in rows:
            print(f"| {mode} | {chunk} | {s.wer:.3f} | {s.cer:.3f} | {(s.wer - off) / off * 100:+.1f}% | "
                  f"{s.seconds / (hours * 3600):.3f} |")

    if "decoders" in args.tables:
        rows = []
        beam = DecoderConfig(beam_width=args.beam)
        for name, kw in (("greedy", dict(lm=None)), (f"beam {args.beam}", dict(lm=None, search="beam", decoder=beam)),
                         (f"beam {args.beam} + LM", dict(lm="auto", decoder=beam))):
            rec = Recognizer.load(args.model, **kw)
            if name.endswith("LM") and rec.decoder_name != "beam+lm":
                print(f"{args.model} ships no LM: skipping '{name}'")
                continue
            hyps, sec = run_files(rec, waves)
            rows.append((name, score(refs, hyps, sec)))
        g = rows[0][1].wer
        print("\n| decoder | WER | CER | rel. to greedy | RTF |\n|---|---|---|---|---|")
        for name, s in rows:
            print(f"| {name} | {s.wer:.3f} | {s.cer:.3f} | {(s.wer - g) / g * 100:+.1f}% | {s.seconds / (hours * 3600):.3f} |")

    if "stability" in args.tables:
        print("\n| streaming | decoder | flicker (shown words rewritten) | commit delay median (s) | p90 (s) |"
              "\n|---|---|---|---|---|")
        for mode, c in (("window", 0.64), ("cached", 0.32)):
            cfg = StreamingConfig.from_seconds(mode, c, c * args.left_chunks if mode == "cached" else None)
            for lm in (None, "auto"):
                try:
                    rec = Recognizer.load(args.model, lm=lm, streaming=cfg, two_pass=False)
                except Exception as err:
                    print(f"{mode}: {err}")
                    continue
                st = stability(rec, waves[:150])
                print(f"| {mode} {c:.2f} s | {rec.decoder_name} | {st['flicker']:.3f} | {st['commit_delay_median']:.2f} | "
                      f"{st['commit_delay_p90']:.2f} |")

    if "hotwords" in args.tables:
        beam = DecoderConfig(beam_width=args.beam)
        rec = Recognizer.load(args.model, lm="auto", decoder=beam)
        if rec.decoder_name != "beam+lm":
            print("no LM: hotword table skipped")
            return
        known = set(rec.decoder.lm.words())
        cases = []
        for ref, wave in zip(refs, waves):
            rare = [w for w in ref.split() if w not in known and len(w) > 3]
            if not rare:
                continue
            hyp = rec.transcribe(wave).text.split()
            missed = [w for w in rare if w not in hyp]
            if missed:
                cases.append((ref, wave, missed[0], word_errors(ref, " ".join(hyp)).errors))
        fixed = 0
        print(f"\nhotwords: {len(cases)} utterances where beam+LM misses a word the LM does not know")
        for ref, wave, word, errs in cases[:20]:
            boosted = Recognizer.load(args.model, lm="auto", decoder=replace(beam, hotwords=(word,)))
            hyp = boosted.transcribe(wave).text
            ok = word in hyp.split()
            fixed += ok
            print(f"  {word!r}: {'fixed' if ok else 'still missed'}; errors {errs} -> {word_errors(ref, hyp).errors}")
        print(f"hotword boost recovered {fixed} of {min(20, len(cases))} missed rare words")


if __name__ == "__main__":
    main()
