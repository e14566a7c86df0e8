#!/usr/bin/env python3
"""Training on a borrowed GPU: pack the corpus, train inside a time budget, bring the model back.

The GPU machine (one H200, Python 3.12, torch + CUDA; no soundfile, no soxr, no network) takes at
most 64 MiB per call and returns at most 8 files of 16 MiB. So:

1. **pack** (here): the training and dev manifests become Ogg/Opus streams + an index
   (`streamer.train.pack`; 12 kbps ≈ 5.4 MB per hour of audio, decoded sample-exact at the offsets)::

       python tools/gpu_train.py pack --train data/corpus/train.tsv --dev data/corpus/dev.tsv \\
           --hours 8 --out .carry/corpus

2. **run** (there): the fast step (`streamer.train.fast`: audio in GPU memory, augmentation and masks
   on the device) trains for ``--budget-minutes`` of wall-clock time, summed over calls; the
   learning rate anneals inside the budget. The run folder (git-ignored ``runs/``) survives between
   calls while the machine stays warm, so a second call resumes exactly. The weights and training
   state come back as ≤ 16 MiB parts in ``--return-dir``::

       python tools/gpu_train.py run --corpus .carry/corpus --out runs/gpu --budget-minutes 12 \\
           --return-dir "$OUT"

   On a fresh machine, carry the parts back and add ``--resume-from .carry/return`` (weights, step,
   epoch and budget continue; the AdamW moments restart).

3. **join** (here): the parts become a streamer model folder and a resumable checkpoint::

       python tools/gpu_train.py join --parts <files_at>/return --out runs/gpu

``run --dry-run`` does the same on the CPU with the tiny preset for a few steps (CI runs it).

Decoding Opus on the GPU machine needs soundfile (carry its manylinux wheel and cffi's:
``pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 soundfile
cffi pycparser -d .carry/wheels`` and ``pip install --no-index .carry/wheels/*.whl`` there) or an
``ffmpeg`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from streamer.train.pack import PART_BYTES


def cmd_pack(args: argparse.Namespace) -> int:
    from streamer.train.pack import check_pack, pack_corpus

    total = 0
    for split, manifest, hours in (("train", args.train, args.hours), ("dev", args.dev, args.dev_hours)):
        if manifest is None:
            continue
        t = time.time()
        s = pack_corpus(manifest, Path(args.out) / split, max_hours=hours, shard_hours=args.shard_hours,
                        bitrate_kbps=args.bitrate)
        total += s.bytes
        print(f"{split}: {s.utterances} utterances, {s.seconds / 3600:.2f} h in {s.shards} shard(s), "
              f"{s.bytes / 1e6:.1f} MB ({s.megabytes_per_hour:.2f} MB/h), packed in {time.time() - t:.0f} s")
        if args.check:
            c = check_pack(s.folder, manifest, limit=args.check)
            print(f"  decode check ({c.utterances} utterances): stream lengths {'exact' if c.streams_exact else 'DIFFER'}; "
                  f"{c.exact} at lag 0, lags {c.lags}, "
                  f"median signal-to-error {c.median_ser_db:.1f} dB")
    print(f"total {total / 2**20:.1f} MiB (a device call carries at most 64 MiB with the code)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from streamer.model.config import DropoutConfig
    from streamer.train.fast import FastConfig, train_fast
    from streamer.train.pack import export_compact, import_compact
    from streamer.train.trainer import TrainConfig

    corpus = Path(args.corpus)
    out = Path(args.out)
    if args.resume_from and not (out / "checkpoint.pt").exists():
        import_compact(args.resume_from, out)
    dry = args.dry_run
    cfg = TrainConfig(
        train_manifests=(str(corpus / "train"),),
        dev_manifest=str(corpus / "dev") if (corpus / "dev").is_dir() else None,
        out_dir=str(out), preset="tiny" if dry else args.preset, init_from=args.init_from,
        max_steps=args.max_steps if args.max_steps else (6 if dry else 10**7),
        warmup_steps=2 if dry else args.warmup_steps, peak_lr=args.peak_lr,
        time_budget_minutes=args.budget_minutes, max_batch_seconds=8.0 if dry else args.batch_seconds,
        dropout=DropoutConfig(hidden=0.1, attention=0.1, activation=0.05, feat_proj=0.05),
        eval_every=3 if dry else args.eval_every, log_every=3 if dry else args.log_every,
        save_every_minutes=args.save_minutes, seed=args.seed, threads=args.threads,
        device="cpu" if dry else args.device, eval_max_utterances=args.eval_utterances,
    )
    fast = FastConfig(buckets=2 if dry else args.buckets, compile=args.compile)
    summary = train_fast(cfg, fast)
    best = summary.best
    print(f"done: {summary.steps} steps, {summary.audio_hours:.2f} h of audio in {summary.seconds / 60:.1f} min"
          + (f"; best dev WER {best.wer:.3f} CER {best.cer:.3f} at step {best.step}" if best else ""))
    if args.return_dir:
        parts = export_compact(out, args.return_dir, args.part_bytes)
        (Path(args.return_dir) / "summary.json").write_text(json.dumps({
            "steps": summary.steps, "seconds": summary.seconds, "audio_hours": summary.audio_hours,
            "best": None if best is None else best.__dict__}, indent=2) + "\n")
        print(f"returned {len(parts)} part(s) of at most {args.part_bytes / 2**20:.0f} MiB in {args.return_dir}: "
              + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in parts))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from streamer.checkpoint import save_checkpoint
    from streamer.model.config import EncoderConfig
    from streamer.model.model import Wav2Vec2CTC
    from streamer.train.pack import import_compact
    from streamer.train.trainer import load_training_checkpoint
    from streamer.vocab import english_characters

    out = Path(args.out)
    path = import_compact(args.parts, out)
    saved = load_training_checkpoint(path)
    model = Wav2Vec2CTC(EncoderConfig.from_dict(saved["encoder"]))
    model.load_state_dict(saved["model"])
    folder = save_checkpoint(out / "last", model.eval(), english_characters(),
                             {"training": saved["config"], "step": saved["state"]["step"]})
    print(f"step {saved['state']['step']}, {saved['state']['train_seconds'] / 60:.1f} min trained: "
          f"model in {folder}, resumable checkpoint {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="pack manifests as Opus shards + index")
    pk.add_argument("--train", required=True, metavar="TSV")
    pk.add_argument("--dev", metavar="TSV")
    pk.add_argument("--out", required=True, help="carry folder (gets train/ and dev/)")
    pk.add_argument("--hours", type=float, default=None, help="training audio to pack (default: all)")
    pk.add_argument("--dev-hours", type=float, default=0.2, help="dev audio to pack (default: 0.2 h)")
    pk.add_argument("--shard-hours", type=float, default=1.0)
    pk.add_argument("--bitrate", type=int, default=12, help="Opus kbit/s (default: 12)")
    pk.add_argument("--check", type=int, default=0, metavar="N", help="check the decoded offsets of the first N utterances")
    pk.set_defaults(func=cmd_pack)
    r = sub.add_parser("run", help="time-budgeted training on a packed corpus")
    r.add_argument("--corpus", required=True, help="carry folder written by pack")
    r.add_argument("--out", required=True, help="run folder (resumes when it holds checkpoint.pt)")
    r.add_argument("--budget-minutes", type=float, required=True, help="wall-clock budget summed over calls")
    r.add_argument("--return-dir", help="write the weights and state here as <= 16 MiB parts (e.g. $OUT)")
    r.add_argument("--resume-from", metavar="DIR", help="parts returned by an earlier call (fresh machine)")
    r.add_argument("--dry-run", action="store_true", help="CPU, tiny preset, a few steps (CI)")
    r.add_argument("--preset", default="demo-small")
    r.add_argument("--init-from", help="warm start from a streamer model folder")
    r.add_argument("--batch-seconds", type=float, default=100.0)
    r.add_argument("--buckets", type=int, default=8, help="fixed batch shapes")
    r.add_argument("--compile", action="store_true", help="torch.compile the forward (one graph per bucket)")
    r.add_argument("--peak-lr", type=float, default=1e-3)
    r.add_argument("--warmup-steps", type=int, default=1000)
    r.add_argument("--max-steps", type=int, default=0, help="0 = the budget decides")
    r.add_argument("--eval-every", type=int, default=2000)
    r.add_argument("--eval-utterances", type=int, default=300)
    r.add_argument("--log-every", type=int, default=100)
    r.add_argument("--save-minutes", type=float, default=3.0)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1, help="CPU threads (dry run)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--part-bytes", type=int, default=PART_BYTES, help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)
    j = sub.add_parser("join", help="returned parts -> model folder + resumable checkpoint")
    j.add_argument("--parts", required=True)
    j.add_argument("--out", required=True)
    j.set_defaults(func=cmd_join)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
