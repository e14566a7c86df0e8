#!/usr/bin/env python3
"""Package a training run as a bundled model: weights, vocabulary, KenLM language model, tuned LM weights.

    python tools/package_model.py --run runs/demo-en --out models/demo-en \\
        --lm-text data/corpus/lm/train.txt --dev data/corpus/dev.tsv

1. copies the run's best checkpoint (``<run>/best``) into ``--out`` (streamer format, safetensors),
   with the training recipe and the corpus summary in its metadata;
2. builds a KenLM model from ``--lm-text`` into ``<out>/lm/lm.binary`` (+ its word list);
3. tunes the LM weight (alpha) and word bonus (beta) on the DEV manifest by grid search and writes
   them to ``<out>/lm/attrs.json``. Test sets are never used here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from streamer.checkpoint import load_checkpoint, save_checkpoint
from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig
from streamer.decoding.build_lm import build_lm
from streamer.decoding.lm_bundle import LM_FOLDER, LmBundle
from streamer.metrics import ErrorRate, char_errors, word_errors
from streamer.model.model import count_parameters
from streamer.text import normalize_text
from streamer.train.data import load_waveform, read_manifest


def tune(vocab, logits: list[torch.Tensor], refs: list[str], lm: LmBundle, beam: int,
         alphas: list[float], betas: list[float]) -> tuple[float, float, float, list[tuple[float, float, float]]]:
    """Grid search of alpha/beta by dev WER (CER for a per-character vocabulary); returns the best
    (alpha, beta, error rate) and the whole grid."""
    errors, name = (char_errors, "CER") if vocab.per_character else (word_errors, "WER")
    refs = [normalize_text(r, vocab) for r in refs]
    grid = []
    for a, b in itertools.product(alphas, betas):
        dec = BeamSearchDecoder(vocab, DecoderConfig(beam_width=beam, alpha=a, beta=b), lm)
        err = ErrorRate(0, 0)
        for x, r in zip(logits, refs):
            err = err + errors(r, dec.decode(x).text)
        grid.append((a, b, err.rate))
        print(f"  alpha {a:.2f} beta {b:.2f}: dev {name} {err.rate:.4f}", flush=True)
    best = min(grid, key=lambda g: g[2])
    return best[0], best[1], best[2], grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="training run folder (uses <run>/best)")
    p.add_argument("--out", required=True, help="bundled model folder to (re)write")
    p.add_argument("--lm-text", help="LM training text (none: ship without an LM)")
    p.add_argument("--order", type=int, default=4)
    p.add_argument("--prune", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--quantize", type=int, default=8, help="LM trie quantization bits (0: probing, unquantized)")
    p.add_argument("--dev", help="dev manifest for alpha/beta tuning")
    p.add_argument("--dev-limit", type=int, default=200)
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    p.add_argument("--description", default="English demo model: XLSR-architecture CTC (6.9M parameters) trained "
                                            "from scratch on synthetic speech; block-causal for cached streaming")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run, out = Path(args.run), Path(args.out)
    ck = load_checkpoint(run / "best")
    meta = dict(ck.metadata)
    corpus_meta = {}
    train_cfg = meta.get("training", {})
    manifests = train_cfg.get("train_manifests", [])
    if manifests:
        m = Path(manifests[0]).parent / "meta.json"
        if m.is_file():
            cm = json.loads(m.read_text())
            corpus_meta = {k: cm.get(k) for k in ("seed", "hours_target", "engine_weights", "held_out_voices",
                                                   "sentences", "hours")}
    meta.update({"description": args.description, "parameters": count_parameters(ck.model), "corpus": corpus_meta,
                 "streaming": {"recommended": "cached", "chunk_seconds": 0.32, "left_chunks": 4}})
    if out.exists():
        shutil.rmtree(out / "lm", ignore_errors=True)
    save_checkpoint(out, ck.model, ck.vocab, meta, preprocess=ck.preprocess)
    size = (out / "model.safetensors").stat().st_size / 1e6
    print(f"model: {count_parameters(ck.model) / 1e6:.2f}M parameters, {size:.1f} MB -> {out}")
    if not args.lm_text:
        return
    built = build_lm(args.lm_text, out / LM_FOLDER / "lm.binary", order=args.order, prune=tuple(args.prune),
                     vocab=ck.vocab, quantize_bits=args.quantize or None)
    print(f"LM: {built}")
    bundle = LmBundle.for_file(out / LM_FOLDER / "lm.binary", alpha=0.5, beta=1.0, unit=built.unit)
    facts = {"order": args.order, "prune": args.prune, "quantize_bits": args.quantize, "text": args.lm_text}
    if args.dev:
        utts = read_manifest(args.dev)[: args.dev_limit]
        model = ck.model.eval()
        with torch.no_grad():
            logits = [model(torch.from_numpy(load_waveform(u.path))[None])[0][0] for u in utts]
        refs = [u.text for u in utts]
        a, b, wer, grid = tune(ck.vocab, logits, refs, bundle, args.beam, args.alphas, args.betas)
        bundle = replace(bundle, alpha=a, beta=b)
        metric = "cer" if ck.vocab.per_character else "wer"
        facts.update({"tuned_on": f"{args.dev} (first {len(utts)})", f"dev_{metric}": wer,
                      "grid": [{"alpha": g[0], "beta": g[1], metric: g[2]} for g in grid]})
        print(f"tuned on dev: alpha {a}, beta {b}, dev {metric.upper()} {wer:.4f}")
    bundle.save(out, **facts)


if __name__ == "__main__":
    main()
