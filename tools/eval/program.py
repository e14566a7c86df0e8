#!/usr/bin/env python3
"""Accuracy of exported programs: the streaming step in ExecuTorch (XNNPACK), fp32 and int8, beside eager.

For each quantization (none = fp32, dynamic int8) the
model's streaming step is exported, then the same held-out utterances are streamed through

* the eager PyTorch `StreamingEncoder` (reference),
* each ``.pte`` program on the ExecuTorch runtime,

with greedy decoding and no two-pass re-decoding, so every row is the exported step alone. Printed:
program size, export time, greedy WER/CER, share of utterances whose text equals the eager text,
and compute per audio second (RTF) at the given thread count.

    python tools/eval/program.py --limit 60                       # bundled demo-en, cached 0.32 s
    python tools/eval/program.py --streaming window --chunk 0.64 --quantize none dynamic
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from streamer.constants import SAMPLE_RATE
from streamer.checkpoint import load_checkpoint
from streamer.export.executorch import QUANTIZATIONS, ExportConfig, export_streaming
from streamer.metrics import corpus_rates
from streamer.recognizer import Recognizer
from streamer.streaming import StreamingConfig
from streamer.train.data import load_waveform, read_manifest


def _run(rec: Recognizer, waves: list, refs: list[str]) -> tuple[list[str], float, float, float]:
    """Hypotheses, corpus WER, CER and compute seconds of one recognizer over the utterances."""
    t = time.perf_counter()
    hyps = [rec.transcribe(x).text for x in waves]
    elapsed = time.perf_counter() - t
    return (hyps, *corpus_rates(zip(refs, hyps)), elapsed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo-en")
    p.add_argument("--manifest", default="data/corpus/test.tsv", help="held-out utterances to stream")
    p.add_argument("--limit", type=int, default=60)
    p.add_argument("--streaming", choices=["window", "cached"], default="cached")
    p.add_argument("--chunk", type=float, default=0.32)
    # static int8 needs calibration speech (tools/bench/ondevice.py measures it)
    p.add_argument("--quantize", nargs="+", choices=[q for q in QUANTIZATIONS if q != "static"],
                   default=[q for q in QUANTIZATIONS if q != "static"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", help="keep the programs here (default: a temporary folder)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    ck = load_checkpoint(args.model)
    streaming = StreamingConfig.from_seconds(args.streaming, args.chunk)
    utts = read_manifest(args.manifest)[: args.limit]
    waves = [load_waveform(u.path) for u in utts]
    refs = [u.text for u in utts]
    audio_s = sum(len(x) for x in waves) / SAMPLE_RATE
    print(f"{len(utts)} utterances, {audio_s / 60:.1f} min from {args.manifest}; model {args.model}; "
          f"{args.streaming} mode, {args.chunk:.2f}-s chunks; {args.threads} thread(s)\n")

    eager = Recognizer.load(args.model, lm=None, streaming=streaming, stream_files=True, two_pass=False)
    ref_hyps, w, c, t = _run(eager, waves, refs)
    rows = [("eager PyTorch (fp32)", "-", "-", w, c, 1.0, t / audio_s)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for q in args.quantize:
            t0 = time.perf_counter()
            path = export_streaming(ck, ExportConfig(streaming, q), folder / f"step-{q}.pte", overwrite=True)
            export_s = time.perf_counter() - t0
            rec = Recognizer.load(args.model, lm=None, stream_files=True, two_pass=False, step_program=path)
            hyps, w, c, t = _run(rec, waves, refs)
            same = sum(a == b for a, b in zip(hyps, ref_hyps)) / len(hyps)
            label = {"none": "ExecuTorch fp32", "dynamic": "ExecuTorch int8 (dynamic)"}[q]
            rows.append((label, f"{path.stat().st_size / 1e6:.1f}", f"{export_s:.0f}", w, c, same,
                         t / audio_s))
    print("| step | size (MB) | export (s) | WER | CER | text == eager | RTF |\n|---|---|---|---|---|---|---|")
    for name, size, ex, wer, cer, same, rtf in rows:
        print(f"| {name} | {size} | {ex} | {wer:.3f} | {cer:.3f} | {same:.0%} | {rtf:.3f} |")


if __name__ == "__main__":
    main()
