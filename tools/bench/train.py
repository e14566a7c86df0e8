#!/usr/bin/env python3
"""Training-step numbers, side by side in one run: where a step's time goes, per batch source and loss.

For each variant, on the same utterances, model and batch budget (padded seconds per batch):

* **data**: making the batches alone (gather or file reads, edge silence, augmentation, masks and
  teacher targets), in audio seconds per second;
* **model**: forward + losses + backward + update on batches made in advance, per step;
* **whole**: the step as the training loop runs it; **outside** = 1 − model / whole.

Variants: the in-memory source and the file source (CTC only), and, with ``--distill STORE``, the
in-memory source with that teacher's targets as a second loss. Timings are the process's CPU time
on a CPU (other processes on a shared machine do not count) and CUDA events on a GPU.

    nice -n 10 python tools/bench/train.py --train data/corpus/train.tsv --utterances 300 --threads 1 \\
        --distill data/targets/hama
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from streamer.constants import SAMPLE_RATE
from streamer.train.bank import load_source
from streamer.train.config import DistillConfig, DistillTarget, TrainConfig
from streamer.train.data import read_manifest
from streamer.train.run import build_model
from streamer.train.step import TrainStep
from streamer.train.targets import TargetStore
from streamer.vocab import english_characters


class Clock:
    """Seconds of an interval: CUDA events on a GPU, the process's CPU time on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0

    def __enter__(self) -> "Clock":
        if self.cuda:
            torch.cuda.synchronize()
        self.t0 = time.perf_counter() if self.cuda else time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.t0
        else:
            self.seconds = time.process_time() - self.t0


def bench(cfg: TrainConfig, manifest: str, device: torch.device, steps: int) -> dict[str, float]:
    """Data, model and whole-step timings of one variant."""
    vocab = english_characters()
    stores = [TargetStore(t.store) for t in cfg.distill.targets] if cfg.distill else []
    source, _ = load_source([manifest], vocab, device, in_memory=cfg.in_memory, stores=stores)
    torch.manual_seed(0)
    model = build_model(cfg, vocab).to(device).train()
    step = TrainStep(model, source, cfg, device, vocab.blank_id, [s.meta for s in stores], seed=0)
    plan = step.buckets.epoch(seed=0)
    todo = plan[:min(steps, len(plan))]
    for bucket in sorted({b for b, _ in todo}):  # warm-up: one step per shape
        step.model_step(step.batch(bucket, next(r for b, r in todo if b == bucket), True), 1e-4)
    step.read_and_reset()
    clock = Clock(device)
    with clock:
        batches = [step.batch(b, r, True) for b, r in todo]
    data_s = clock.seconds
    audio = sum(x.audio_samples for x in batches) / SAMPLE_RATE
    with clock:
        for x in batches:
            step.model_step(x, 1e-4)
    model_s = clock.seconds
    del batches
    with clock:
        for b, r in todo:
            step.model_step(step.batch(b, r, True), 1e-4)
    whole_s = clock.seconds
    n = len(todo)
    return {"data": audio / data_s, "model": model_s / n, "whole": whole_s / n, "outside": 1 - model_s / whole_s,
            "audio": audio / n}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, metavar="TSV", help="manifest; its first --utterances are used")
    p.add_argument("--utterances", type=int, default=300)
    p.add_argument("--preset", default="demo-small")
    p.add_argument("--batch-seconds", type=float, default=100.0)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--distill", metavar="STORE", help="also time a step with this teacher's targets")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.set_num_threads(args.threads)
    import tempfile
    from pathlib import Path

    utts = [u for u in read_manifest(args.train) if u.duration <= 16.0][: args.utterances]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "bench.tsv"
        manifest.write_text("".join(f"{u.path.resolve()}\t{u.text}\n" for u in utts))
        (Path(tmp) / "bench.lengths").write_text("".join(f"{u.duration}\n" for u in utts))
        base = TrainConfig(train_manifests=(str(manifest),), out_dir=tmp, preset=args.preset,
                           max_batch_seconds=args.batch_seconds, threads=args.threads, device=device.type)
        variants = [("memory, CTC", base), ("files, CTC", dataclasses.replace(base, in_memory=False))]
        if args.distill:
            variants.append(("memory, CTC + distill", dataclasses.replace(
                base, distill=DistillConfig((DistillTarget(args.distill),)))))
        print(f"{len(utts)} utterances, {sum(u.duration for u in utts) / 60:.1f} min; {args.preset}, "
              f"{args.batch_seconds:.0f}-s batches, device {device}, {torch.get_num_threads()} thread(s), "
              f"{args.steps} timed steps each", flush=True)
        unit = "CPU-s" if device.type == "cpu" else "s"
        print(f"{'variant':24s} {'data audio-s/s':>15s} {'model ' + unit + '/step':>16s} {'whole ' + unit + '/step':>16s} "
              f"{'outside':>8s} {'audio-s/step':>13s}")
        rows = {}
        for name, cfg in variants:
            r = rows[name] = bench(cfg, str(manifest), device, args.steps)
            print(f"{name:24s} {r['data']:15.0f} {r['model']:16.3f} {r['whole']:16.3f} {r['outside']:8.1%} "
                  f"{r['audio']:13.1f}", flush=True)
        first = rows["memory, CTC"]["whole"]
        print("whole step relative to memory, CTC: "
              + ", ".join(f"{name} {r['whole'] / first:.2f}x" for name, r in rows.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
