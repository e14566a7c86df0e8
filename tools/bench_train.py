#!/usr/bin/env python3
"""Training-step numbers: the fast step (`streamer.train.fast`) beside the classic trainer, one run.

For each pipeline, on the same utterances and the same batch budget (padded seconds per batch):

* **data**: the data pipeline alone (load/gather, edge padding, augmentation, masks), in audio
  seconds per second;
* **model**: forward + loss + backward + optimizer update on batches made in advance;
* **whole**: the training step as the loop runs it; **outside** = 1 − model / whole, the share of
  the step spent outside forward/backward/update.

The classic pipeline is the project's `BatchIterator` (files decoded per batch, numpy `Augmenter`
per utterance, `span_mask` on the host); its whole step is measured by running
`streamer.train.trainer.train` itself for a few steps (log every step) on a manifest of the same
utterances. The fast pipeline is `FastStep` (int16 bank in device memory, on-device augmentation
and masks, fixed bucket shapes, no per-step sync).

On a GPU (when one is present) timings use CUDA events and the device's utilisation is sampled
during the whole steps (``torch.cuda.utilization``, needs pynvml), and the share of wall time with a
kernel running is read from `torch.profiler` (no NVML needed). ``--profile`` prints where a
fast step's time goes (`torch.profiler`, grouped by the step's labelled parts).

    nice -n 10 python tools/bench_train.py --train data/corpus-s1/train.tsv --utterances 300 --threads 1
    python tools/bench_train.py --train data/corpus-s1/train.tsv --device cuda --steps 50   # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import types
from pathlib import Path

import torch

from streamer.constants import SAMPLE_RATE
from streamer.model.config import DropoutConfig
from streamer.train.data import read_manifest
from streamer.train.fast import AudioBank, FastConfig, FastStep, StepBatch, chunk_allowed, time_span_mask
from streamer.train.trainer import TrainConfig, build_model, train
from streamer.vocab import english_characters


class Clock:
    """Seconds of an interval: CUDA events (queue drained at both ends) on a GPU; on a CPU the
    process's CPU time, so other processes on a shared machine do not count (with one thread it
    equals wall time on an idle machine)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0

    def __enter__(self) -> "Clock":
        if self.cuda:
            torch.cuda.synchronize()
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.end_event = torch.cuda.Event(enable_timing=True)
            self.start_event.record()
        self.t0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.end_event.record()
            torch.cuda.synchronize()
            self.seconds = self.start_event.elapsed_time(self.end_event) / 1000.0
        else:
            self.seconds = time.process_time() - self.t0


class Utilisation:
    """Samples the GPU's busy share in a thread while active (None when unavailable)."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[int] = []
        self.ok = device.type == "cuda"
        if self.ok:
            try:
                torch.cuda.utilization()
            except Exception:  # pynvml missing or no NVML: report nothing rather than a guess
                self.ok = False

    def __enter__(self) -> "Utilisation":
        self.stop = threading.Event()
        if self.ok:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(torch.cuda.utilization())

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.ok:
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def _config(args: argparse.Namespace, manifest: str, out: str) -> TrainConfig:
    return TrainConfig(train_manifests=(manifest,), out_dir=out, preset=args.preset, max_batch_seconds=args.batch_seconds,
                       max_utterance_seconds=16.0, threads=args.threads, device=args.device, seed=0,
                       dropout=DropoutConfig(hidden=0.1, attention=0.1, activation=0.05, feat_proj=0.05),
                       warmup_steps=1, max_steps=10**6, eval_every=10**6, log_every=1, save_every_minutes=10**6)


def bench_fast(args: argparse.Namespace, cfg: TrainConfig, waves: list, texts: list, device: torch.device) -> dict:
    """Data, model and whole-step timings of `FastStep`."""
    vocab = english_characters()
    t = time.perf_counter()
    bank = AudioBank.from_waves(waves, texts, vocab).to(device)
    bank_s = time.perf_counter() - t
    torch.manual_seed(0)
    model = build_model(cfg, vocab).to(device).train()
    step = FastStep(model, bank, cfg, FastConfig(buckets=args.buckets, compile=args.compile), device, seed=0)
    plan = step.buckets.epoch(seed=0)
    n = min(args.steps, len(plan) - 1)
    clock = Clock(device)
    todo = plan[:n]
    # warm-up: one step per shape used (first-call allocations; compilation with --compile)
    for bucket in sorted({b for b, _ in todo}):
        rows = next(r for b, r in plan[n:] + todo if b == bucket)
        step.model_step(step.batch(bucket, rows, True), 1e-4)
    step.read_and_reset()
    with clock:
        batches = [step.batch(b, r, True) for b, r in todo]
    data_s = clock.seconds
    audio = sum(x.audio_samples for x in batches) / SAMPLE_RATE
    area = sum(x.waveform.numel() for x in batches) / SAMPLE_RATE
    with clock:
        for x in batches:
            step.model_step(x, 1e-4)
    model_s = clock.seconds
    del batches
    inner_data = 0.0
    with Utilisation(device) as util, clock:
        for b, r in todo:
            t = time.process_time()
            x = step.batch(b, r, True)
            inner_data += time.process_time() - t  # exact on a CPU (synchronous); queue time on a GPU
            step.model_step(x, 1e-4)
    whole_s = clock.seconds
    kernel_share = _gpu_kernel_share(step, todo) if device.type == "cuda" else None
    loss, _ = step.read_and_reset()
    return {"kernel_share": kernel_share, "steps": n, "audio_s_per_step": audio / n, "data_audio_s_per_s": audio / data_s, "model_s": model_s / n,
            "whole_s": whole_s / n, "outside": 1 - model_s / whole_s, "util": util.mean, "loss": loss,
            "inner_data_share": inner_data / whole_s if device.type == "cpu" else None,
            "bank_s": bank_s, "fill": audio / area,
            "shapes": list(zip([round(w / SAMPLE_RATE, 1) for w in step.buckets.widths], step.buckets.rows)),
            "step": step, "todo": todo}


def _gpu_kernel_share(step: FastStep, todo: list) -> float:
    """Share of the wall time of some whole steps during which a CUDA kernel ran (torch.profiler;
    one stream, so kernel times do not overlap)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for b, r in todo:
            step.model_step(step.batch(b, r, True), 1e-4)
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    kernels = sum(getattr(e, "self_device_time_total", 0.0) for e in prof.key_averages()) / 1e6
    return kernels / wall


def bench_classic(args: argparse.Namespace, cfg: TrainConfig, manifest: str, device: torch.device,
                  step_for_model: FastStep) -> dict:
    """Data, model and whole-step timings of the classic trainer on the same utterances."""
    from streamer.corpus.augment import AugmentConfig, Augmenter
    from streamer.train.data import BatchIterator, length_batches

    vocab = english_characters()
    utts = read_manifest(manifest)
    batches = length_batches([u.duration for u in utts], cfg.max_batch_seconds, random.Random(0))
    n = min(args.steps, len(batches) - 1)
    it = BatchIterator(utts, vocab, batches[:n], Augmenter(AugmentConfig(), seed=0), pad_seconds=cfg.pad_seconds, seed=0)
    t = time.perf_counter()
    made = list(it)
    data_s = time.perf_counter() - t
    audio = sum(float(b.lengths.sum()) for b in made) / SAMPLE_RATE
    # The model step on these batches (same model code; masks drawn as the fast step draws them).
    model = step_for_model.model
    clock = Clock(device)
    ready = []
    for b in made:
        frames = model.config.num_frames(b.waveform.shape[1])
        flen = model.frame_lengths(b.lengths)
        ready.append(StepBatch(b.waveform.to(device), b.lengths.to(device), b.labels.to(device), flen, b.label_lengths,
                               chunk_allowed(frames, cfg.dynamic_chunk, step_for_model.gen, device),
                               time_span_mask(flen.to(device), frames, cfg.specaugment.time_prob, cfg.specaugment.time_length,
                                              step_for_model.gen), None, int(b.lengths.sum())))
    area = sum(x.waveform.numel() for x in ready) / SAMPLE_RATE
    with clock:
        for x in ready:
            step_for_model.model_step(x, 1e-4)
    model_s = clock.seconds
    step_for_model.read_and_reset()
    # The whole step: the trainer itself, a few steps, logging every step. On a CPU its clock is
    # switched to the process's CPU time for the call (see `Clock`), so its log's "elapsed" is too.
    import streamer.train.trainer as trainer_module

    warm = 2
    with tempfile.TemporaryDirectory() as tmp:
        run = _config(args, manifest, tmp)
        run = TrainConfig.from_dict({**run.to_dict(), "max_steps": warm + n, "sorted_first_epoch": False})
        real_time = trainer_module.time
        if device.type == "cpu":
            trainer_module.time = types.SimpleNamespace(time=time.process_time)
        try:
            with Utilisation(device) as util:
                train(run, show_progress=False)
        finally:
            trainer_module.time = real_time
        log = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    elapsed = [r["elapsed"] for r in log]
    hours = [r["audio_hours"] for r in log]
    whole = (elapsed[-1] - elapsed[warm - 1]) / n
    audio_whole = (hours[-1] - hours[warm - 1]) * 3600 / n
    return {"steps": n, "audio_s_per_step": audio / n, "whole_audio_s_per_step": audio_whole,
            "data_audio_s_per_s": audio / data_s, "model_s": model_s / n, "whole_s": whole,
            "outside": 1 - (model_s / n) / whole, "util": util.mean, "fill": audio / area, "inner_data_share": None}


def profile_fast(res: dict, device: torch.device, steps: int = 2) -> None:
    """Prints where a fast step's time goes (torch.profiler), by labelled part and by operator."""
    from torch.profiler import ProfilerActivity, profile

    step: FastStep = res["step"]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for b, r in res["todo"][:steps]:
            step.model_step(step.batch(b, r, True), 1e-4)
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    parts = {e.key: e.cpu_time_total for e in events if e.key in ("data", "forward", "backward", "optimizer")}
    total = sum(parts.values())
    print(f"\nprofile of {steps} fast steps (CPU time by part; share of the labelled total {total / 1e6:.2f} s):")
    for k, v in parts.items():
        print(f"  {k:10s} {v / 1e6:7.2f} s  {v / max(1, total):6.1%}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=18))


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, metavar="TSV", help="manifest; its first --utterances are used")
    p.add_argument("--utterances", type=int, default=300)
    p.add_argument("--preset", default="demo-small")
    p.add_argument("--batch-seconds", type=float, default=100.0)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--skip-classic", action="store_true")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    args.device = device.type
    torch.set_num_threads(args.threads)
    from streamer.train.data import load_waveform

    utts = [u for u in read_manifest(args.train) if u.duration <= 16.0][: args.utterances]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "bench.tsv"
        manifest.write_text("".join(f"{u.path.resolve()}\t{u.text}\n" for u in utts))
        (Path(tmp) / "bench.lengths").write_text("".join(f"{u.duration}\n" for u in utts))
        cfg = _config(args, str(manifest), tmp)
        t = time.perf_counter()
        waves = [load_waveform(u.path) for u in utts]
        decode_s = time.perf_counter() - t
        print(f"{len(utts)} utterances, {sum(u.duration for u in utts) / 60:.1f} min of audio (decoded once in {decode_s:.1f} s); "
              f"{args.preset}, {args.batch_seconds:.0f}-s batches, device {device}, {torch.get_num_threads()} thread(s), "
              f"{args.steps} timed steps each", flush=True)
        fast = bench_fast(args, cfg, waves, [u.text for u in utts], device)
        print(f"fast: buckets (s, rows) {fast['shapes']}, bank built in {fast['bank_s']:.2f} s", flush=True)
        classic = None if args.skip_classic else bench_classic(args, cfg, str(manifest), device, fast["step"])
        rows = [("fast", fast)] + ([("classic", classic)] if classic else [])
        unit = "CPU-s" if device.type == "cpu" else "s"
        print(f"\n{'pipeline':9s} {'data audio-s/s':>15s} {'model ' + unit + '/step':>16s} {'whole ' + unit + '/step':>16s} "
              f"{'outside':>8s} {'audio-s/step':>13s} {'fill':>5s} {'trained audio-s/' + unit:>20s} {'GPU busy':>9s}")
        for name, r in rows:
            per_step = r.get("whole_audio_s_per_step", r["audio_s_per_step"])
            busy = "-" if r["util"] is None else f"{r['util']:.0f}%"
            print(f"{name:9s} {r['data_audio_s_per_s']:15.0f} {r['model_s']:16.3f} {r['whole_s']:16.3f} {r['outside']:8.1%} "
                  f"{per_step:13.1f} {r['fill']:5.0%} {per_step / r['whole_s']:20.2f} {busy:>9s}")
        if fast["inner_data_share"] is not None:
            print(f"(fast: data part timed inside the whole steps: {fast['inner_data_share']:.1%} of them; "
                  "fill = share of the batch area that is audio, edge silence included)")
        if classic:
            print(f"\nfast vs classic: whole step {classic['whole_s'] / fast['whole_s']:.2f}x faster per step, "
                  f"{(fast['audio_s_per_step'] / fast['whole_s']) / (classic['whole_audio_s_per_step'] / classic['whole_s']):.2f}x "
                  f"the trained audio per second; data pipeline {fast['data_audio_s_per_s'] / classic['data_audio_s_per_s']:.1f}x")
        goal = 0.10 if device.type == "cpu" else None
        if goal is not None:
            print(f"goal: outside share <= {goal:.0%} on CPU: fast {fast['outside']:.1%} -> "
                  f"{'met' if fast['outside'] <= goal else 'NOT met'}")
        else:
            steps_s = 1 / fast["whole_s"]
            print(f"goal on GPU: >= 25 steps/s at 100-s batches with the GPU >= 80 % busy: {steps_s:.1f} steps/s, "
                  f"busy {_fmt(fast['util'], '.0f')} % (NVML), kernels running {_fmt(fast['kernel_share'], '.0%')} of the "
                  "time (profiler; the profiler slows the host a little)")
        if args.profile:
            profile_fast(fast, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
