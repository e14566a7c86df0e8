#!/usr/bin/env python3
"""On-device cost of the streaming step, side by side in one run: eager PyTorch vs ExecuTorch (XNNPACK).

Models: the XLSR-53-large architecture with random weights (a causal positional conv, so cached mode
applies; 315 M parameters) and the bundled demo-en. Rows:

* ``eager fp32`` — PyTorch, the offline forward over the whole utterance (the reference of every
  ratio) and the eager streaming step;
* ``ET fp32`` / ``ET int8 dynamic`` / ``ET int8 static`` — the step exported with `streamer export`'s
  code (delegate-friendly rewrite, XNNPACK), each program run in a fresh process per thread count
  (ExecuTorch's thread pool is fixed once a method is loaded), which also gives its own peak RSS;
* ``ET … offline window`` — the full-context forward over fixed windows (no overlap), exported the
  same way;
* ``ORT int8 dynamic (peer)`` — the same streaming step (same rewrite) exported to ONNX and quantized
  with ONNX Runtime's ``quantize_dynamic`` (int8 weights per channel), run by ONNX Runtime's CPU
  provider with that many intra-op threads (``--no-ort`` skips it; needs ``onnx`` and ``onnxruntime``,
  the ``peers`` extra).

Columns: program size, load time, peak RSS of the process that streams, RTF (compute seconds per
audio second; the best of ``--rounds`` fresh processes) at each thread count, RTF as a ratio to eager
fp32 offline at 1 thread (absolute times drift on shared machines; ratios travel), algorithmic
latency, and the delegate segment count. The ratio's eager reference is measured again in this
process before every timed worker, so both sides are best-of measurements taken side by side while
the load changes. Accuracy (demo-en, held-out sentences in held-out voices synthesized anew, or
``--manifest``): greedy WER/CER of each program and the share of frames whose argmax differs from
fp32. The last line states the XLSR-53-large int8 cached 0.64-s RTF at 1 thread.

    nice -n 10 python tools/bench/ondevice.py                                  # the default set
    python tools/bench/ondevice.py --models demo-en --chunks 0.32 0.64 1.0 --modes cached window
    python tools/bench/ondevice.py --models large --quantize dynamic --chunks 0.64 --threads 1

Static int8 is calibrated on a few sentences spoken by training voices (never the held-out ones).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamer.constants import SAMPLE_RATE
from streamer.grid import XLSR_GRID

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line  # noqa: E402

#: Sentences spoken for static-int8 calibration (training voices; not the held-out test sentences).
CALIBRATION_TEXT = (
    "the quick brown fox jumps over the lazy dog near the river bank",
    "please call stella and ask her to bring these things with her from the store",
    "we also need a small plastic snake and a big toy frog for the kids",
    "she can scoop these things into three red bags and we will go meet her on wednesday",
    "a large number of people gathered in the square to hear the news",
    "seven hundred and twenty one miles is a long way to drive in one day",
)
CALIBRATION_VOICES = (("espeak", "en-us"), ("flite", "slt"))
HELDOUT_VOICES = (("flite", "rms"), ("espeak", "en-029+m4"))
LABELS = {"none": "ET fp32", "dynamic": "ET int8 dynamic", "static": "ET int8 static"}
CPP_RUNNER = Path(__file__).resolve().parents[2] / "examples" / "cpp" / "build" / "streamer_runner"


def _peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM of /proc/self/status where there is one. (``ru_maxrss`` is not
    used there: Linux carries it over from the parent across fork + exec, so a worker started by a
    parent holding the large model would report the parent's peak.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn``, in seconds (other load only ever adds time)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# ---------------------------------------------------------------------------------------------- worker
def worker(kind: str, path: str, threads: int, seconds: float, repeats: int) -> None:
    """Runs one program in this (fresh) process and prints a JSON line: load_s, rtf, rss_mb."""
    if kind != "ort":
        from streamer.export.runtime import bindings

        bindings()._unsafe_reset_threadpool(threads)  # only valid before any method is loaded
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32) * 0.1)
    rss_before = _peak_rss_mb()
    t = time.perf_counter()
    if kind == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        load_s = time.perf_counter() - t
        from streamer.export.runtime import advance_state

        layout = json.loads(Path(path).with_suffix(".json").read_text())["state"]
        names = [i.name for i in sess.get_inputs()]
        c = sess.get_inputs()[0].shape[1]
        zero_state = [np.zeros(e["shape"], dtype=e["dtype"]) for e in layout]

        def run() -> None:
            state = zero_state
            xs = x.numpy()
            for pos in range(0, len(xs), c):
                piece = np.zeros((1, c), np.float32)
                piece[0, :len(xs[pos:pos + c])] = xs[pos:pos + c]
                feeds = {names[0]: piece, names[1]: np.array([min(c, len(xs) - pos)], np.int64)}
                feeds.update(zip(names[2:], state))
                state = advance_state(layout, state, sess.run(None, feeds)[2:])
    elif kind == "step":
        from streamer.export.runtime import PteStreamingEncoder

        enc = PteStreamingEncoder(path)
        load_s = time.perf_counter() - t
        c = enc.config.chunk_samples

        def run() -> None:
            state = enc.init_state(1)
            for pos in range(0, len(x), c):
                piece = torch.nn.functional.pad(x[pos:pos + c], (0, c - len(x[pos:pos + c])))[None]
                _, _, state = enc.step(piece, state, torch.tensor([min(c, len(x) - pos)]))
    else:
        from streamer.export.runtime import load_program

        program = load_program(path)
        method = program.load_method("forward")
        load_s = time.perf_counter() - t
        n = method.method_meta().input_tensor_meta(0).sizes()[1]

        def run() -> None:
            for pos in range(0, len(x), n):
                piece = torch.nn.functional.pad(x[pos:pos + n], (0, n - len(x[pos:pos + n])))[None]
                method([piece.contiguous()], clone_outputs=False)
    print(json.dumps({"load_s": load_s, "rtf": _best_seconds(run, repeats) / seconds, "rss_mb": _peak_rss_mb(),
                      "rss_before_load_mb": rss_before}))


def _measure(kind: str, path: Path, threads: int, args: argparse.Namespace) -> dict:
    """One timed run of ``path`` in a fresh process: a Python worker, or (``cpp``) the C++ runner on the
    same utterance as a WAV file (best of ``--repeats`` passes of its step loop, and its own VmHWM)."""
    if kind == "cpp":
        cmd = [str(args.cpp), str(path), str(args.wav), "--threads", str(threads), "--passes", str(args.repeats), "--quiet"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        found = re.search(r"RTF ([0-9.]+)\), load ([0-9.]+) s, peak RSS ([0-9.]+) MB", res.stderr)
        if res.returncode != 0 or not found:
            raise RuntimeError(f"C++ runner failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
        out = {"rtf": float(found[1]), "load_s": float(found[2]), "rss_mb": float(found[3]), "rss_before_load_mb": 0.0}
    else:
        cmd = [sys.executable, __file__, "--worker", kind, str(path), "--threads", str(threads),
               "--seconds", str(args.seconds), "--repeats", str(args.repeats)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if res.returncode != 0:
            raise RuntimeError(f"worker failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"# {path.name} ({kind}), {threads} thread(s): {out}", file=sys.stderr, flush=True)  # progress of long runs
    return out


def export_onnx_step(ck, sc, path: Path) -> Path:
    """The peer: the same streaming step (same delegate-friendly rewrite and state layout, written beside
    it as ``.json``) as ONNX, dynamic int8 weights (ONNX Runtime's ``quantize_dynamic``, per channel).
    Returns the int8 model's path."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from streamer.export.executorch import _example_inputs, step_module
    from streamer.export.rewrite import delegate_friendly
    from streamer.streaming import StreamingEncoder

    step = step_module(StreamingEncoder(delegate_friendly(ck.model), sc, trim_invalid=False), rewritten=True).eval()
    layout = step.layout()
    names = [e["name"] for e in layout]
    outputs = sorted({e["next"]["output"] for e in layout if "output" in e["next"]})
    fp32 = path.with_suffix(".fp32.onnx")
    with torch.no_grad():
        torch.onnx.export(step, _example_inputs(step), str(fp32), dynamo=False, opset_version=17,
                          input_names=["chunk", "num_samples", *names],
                          output_names=["logits", "valid", *(f"out_{i}" for i in outputs)])
    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    path.with_suffix(".json").write_text(json.dumps({"state": layout}))
    return path


def _runtime_error(err: Exception) -> str:
    """The runtime's own lines about why a program did not load (XNNPACK / method init)."""
    lines = [ln for ln in str(err).splitlines() if "XNN" in ln or "Init failed" in ln or "Error" in ln]
    return " / ".join(lines[:3]) or str(err)[-300:]


class Reference:
    """The ratio's denominator: eager fp32 offline RTF at the first thread count, measured again right
    before every timed worker of the first thread count; the minimum over the run is kept (other load
    on a shared machine only ever adds time, so both sides of the ratio are best-of measurements
    taken side by side).

    Args:
        first: The eager offline row's RTF at that thread count, the first measurement.
    """

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, threads: int, repeats: int, first: float) -> None:
        self.model, self.x, self.threads, self.repeats = model, x, threads, repeats
        self.best, self.count = first, 1

    @torch.no_grad()
    def measure(self) -> None:
        torch.set_num_threads(self.threads)
        rtf = _best_seconds(lambda: self.model(self.x[None]), self.repeats) / (len(self.x) / SAMPLE_RATE)
        self.best, self.count = min(self.best, rtf), self.count + 1


def _timed(row: "Row", kind: str, path: Path, args: argparse.Namespace, ref: Reference) -> dict:
    """Fills ``row``'s RTF per thread count: the best of ``--rounds`` fresh workers, the reference measured
    before each one at the first thread count. Load time and peak RSS come from the first thread
    count's first worker, which it returns."""
    first = {}
    for th in args.threads:
        for i in range(args.rounds):
            if th == args.threads[0]:
                ref.measure()
            m = _measure(kind, path, th, args)
            row.rtf[th] = min(row.rtf.get(th, float("inf")), m["rtf"])
            if th == args.threads[0] and i == 0:
                row.load_s, row.rss_mb, first = m["load_s"], m["rss_mb"], m
    return first


# ---------------------------------------------------------------------------------------------- models
def large_checkpoint():
    """The XLSR-53-large architecture, random weights, causal positional conv, 32-token vocabulary."""
    from streamer.checkpoint import Checkpoint
    from streamer.model import EncoderConfig, Wav2Vec2CTC, xlsr53_large_config
    from streamer.vocab import Vocabulary

    torch.manual_seed(0)
    cfg = EncoderConfig.from_dict({**xlsr53_large_config().to_dict(), "pos_conv_causal": True})
    tokens = ("<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz", "'")
    return Checkpoint(model=Wav2Vec2CTC(cfg).eval(), vocab=Vocabulary(tokens, blank_id=0, unk_id=3),
                      folder=Path("."), format="random")


def _speech(voices, texts) -> list[np.ndarray]:
    from streamer.train.corpus.tts import Voice, synthesize

    return [synthesize(Voice(*voices[i % len(voices)]), t) for i, t in enumerate(texts)]


def heldout(manifest: str | None, limit: int) -> tuple[list[np.ndarray], list[str], str]:
    """Held-out utterances: a manifest, or the held-out sentences in held-out voices, synthesized now."""
    if manifest:
        from streamer.train.data import load_waveform, read_manifest

        utts = read_manifest(manifest)[:limit]
        return [load_waveform(u.path) for u in utts], [u.text for u in utts], manifest
    fixture = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "heldout_sentences.txt"
    sentences = [s for s in fixture.read_text().splitlines() if s]
    texts = [s for s in sentences for _ in HELDOUT_VOICES][:limit]
    waves = [_speech(HELDOUT_VOICES[i % 2:i % 2 + 1], [t])[0] for i, t in enumerate(texts)]
    return waves, texts, f"{fixture.name} x {len(HELDOUT_VOICES)} held-out voices (synthesized)"


# ---------------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    model: str
    program: str
    mode: str
    chunk: str
    size_mb: float | None
    load_s: float | None
    rss_mb: float | None
    rtf: dict[int, float]
    latency_s: float | None
    segments: int | None = None


@torch.no_grad()
def _eager_rows(name: str, model: torch.nn.Module, x: torch.Tensor, threads: list[int], configs, repeats: int):
    from streamer.pipeline import stream_whole
    from streamer.streaming import StreamingEncoder

    audio = len(x) / SAMPLE_RATE

    def timed(fn) -> float:
        return _best_seconds(fn, repeats) / audio

    rows = [Row(name, "eager fp32", "offline", "-", None, None, None, {}, None)]
    stream_rows = {}
    for th in threads:
        torch.set_num_threads(th)
        rows[0].rtf[th] = timed(lambda: model(x[None]))
        for sc in configs:
            enc = StreamingEncoder(model, sc)
            key = (sc.mode, sc.chunk_frames)
            if key not in stream_rows:
                stream_rows[key] = Row(name, "eager fp32", sc.mode, f"{XLSR_GRID.seconds(sc.chunk_frames):.2f}", None, None, None,
                                       {}, sc.latency_seconds)
            stream_rows[key].rtf[th] = timed(lambda: stream_whole(enc, x))
    torch.set_num_threads(threads[0])
    print(f"# {name} eager: offline {rows[0].rtf}, "
          f"{ {k: r.rtf for k, r in stream_rows.items()} }", file=sys.stderr, flush=True)
    return rows + list(stream_rows.values())


def _accuracy(ck, programs: dict[str, Path], waves, refs, model_name: str) -> list[str]:
    """Greedy WER/CER of each step program, and the share of frames whose argmax differs from fp32."""
    from streamer.export.runtime import PteStreamingEncoder
    from streamer.metrics import corpus_rates
    from streamer.recognizer import Recognizer

    lines = ["| program | WER | CER | frames whose argmax differs from ET fp32 |", "|---|---|---|---|"]
    argmax: dict[str, list[torch.Tensor]] = {}
    for q, path in sorted(programs.items(), key=lambda kv: kv[0] != "none"):  # fp32 first: the reference
        enc = PteStreamingEncoder(path)
        c = enc.config.chunk_samples
        outs = []
        for w in waves:
            x = torch.from_numpy(w.astype(np.float32))
            state, frames = enc.init_state(1), []
            for pos in range(0, len(x), c):
                piece = torch.nn.functional.pad(x[pos:pos + c], (0, c - len(x[pos:pos + c])))[None]
                logits, valid, state = enc.step(piece, state, torch.tensor([min(c, len(x) - pos)]))
                frames.append(logits[0][valid[0]].argmax(-1))
            outs.append(torch.cat(frames))
        argmax[q] = outs
        rec = Recognizer.load(model_name, lm=None, stream_files=True, two_pass=False, step_program=path)
        wer, cer = corpus_rates(zip(refs, [rec.transcribe(w).text for w in waves]))
        ref = argmax.get("none")
        changed = "-" if ref is None or q == "none" else \
            f"{sum(int((a != b).sum()) for a, b in zip(outs, ref)) / sum(len(a) for a in ref):.2%}"
        lines.append(f"| {LABELS[q]} | {wer:.3f} | {cer:.3f} | {changed} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["large", "demo-en"], help="'large' (XLSR-53-large, random) and/or model names")
    p.add_argument("--modes", nargs="+", choices=["cached", "window"], default=["cached"])
    p.add_argument("--chunks", type=float, nargs="+", default=[0.64])
    p.add_argument("--quantize", nargs="+", choices=["none", "dynamic", "static"], default=["dynamic", "static", "none"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--offline-window", type=float, default=2.0, help="offline-window program length in s (0: none)")
    p.add_argument("--offline-quantize", nargs="+", choices=["none", "dynamic", "static"], default=["dynamic", "static"],
                   help="quantizations of the offline-window program (those also in --quantize)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of the timed utterance")
    p.add_argument("--repeats", type=int, default=2, help="timed passes over the utterance per process (best kept)")
    p.add_argument("--rounds", type=int, default=3,
                   help="fresh worker processes per program and thread count, each after a new eager reference "
                        "measurement (best kept)")
    p.add_argument("--no-ort", dest="ort", action="store_false",
                   help="skip the ONNX Runtime dynamic-int8 peer row of each streaming setup")
    p.add_argument("--cpp", type=Path, default=CPP_RUNNER if CPP_RUNNER.is_file() else None,
                   help="the C++ runner (default: examples/cpp/build/streamer_runner when built, see "
                        "examples/cpp/build.sh): a row per cached program, its RTF over the step loop and its "
                        "peak RSS")
    p.add_argument("--no-cpp", dest="cpp", action="store_const", const=None, help="skip the C++ runner rows")
    p.add_argument("--manifest", help="held-out utterances for demo-en accuracy (default: synthesize)")
    p.add_argument("--limit", type=int, default=48)
    p.add_argument("--no-rewrite-count", action="store_true", help="skip the segment count without the rewrite")
    p.add_argument("--out-dir", help="keep the programs here (default: a temporary folder)")
    p.add_argument("--reuse", action="store_true", help="measure programs already in --out-dir instead of exporting")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "PTE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.worker:
        print(machine_line(), flush=True)
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads[0], args.seconds, args.repeats)
        return

    from streamer.checkpoint import load_checkpoint
    from streamer.export.executorch import ExportConfig, export_offline_window, export_streaming
    from streamer.streaming import StreamingConfig

    torch.set_num_threads(args.threads[0])
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(int(args.seconds * SAMPLE_RATE)).astype(np.float32) * 0.1)
    wav_dir = tempfile.TemporaryDirectory()
    args.wav = Path(wav_dir.name) / "utterance.wav"  # the same utterance for the C++ runner
    import soundfile

    soundfile.write(args.wav, x.numpy(), SAMPLE_RATE, subtype="FLOAT")
    calibration = _speech(CALIBRATION_VOICES, CALIBRATION_TEXT) if "static" in args.quantize else []
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            ck = large_checkpoint() if name == "large" else load_checkpoint(name)
            label = "XLSR-53-large (random)" if name == "large" else name
            configs = [StreamingConfig.from_seconds(m, c) for m in args.modes for c in args.chunks]
            if not ck.config.pos_conv_causal:
                configs = [sc for sc in configs if sc.mode == "window"]
            eager = _eager_rows(label, ck.model, x, args.threads, configs, args.repeats)
            rows += eager
            ref = Reference(ck.model, x, args.threads[0], args.repeats, first=eager[0].rtf[args.threads[0]])
            steps: dict[str, Path] = {}
            for sc in configs:
                for q in args.quantize:
                    path = folder / f"{name}-{sc.mode}-{sc.chunk_frames}-{q}.pte"
                    t = time.perf_counter()
                    try:
                        if not (args.reuse and path.is_file() and path.with_suffix(".json").is_file()):
                            export_streaming(ck, ExportConfig(sc, q), path, calibration, overwrite=True)
                    except Exception as err:  # a variant that does not lower is a result, not a crash
                        notes.append(f"{label} {LABELS[q]} {sc.mode} {XLSR_GRID.seconds(sc.chunk_frames):.2f}: export failed: "
                                     f"{type(err).__name__}: {str(err)[:300]}")
                        continue
                    export_s = time.perf_counter() - t
                    side = json.loads(path.with_suffix(".json").read_text())
                    r = Row(label, LABELS[q], sc.mode, f"{XLSR_GRID.seconds(sc.chunk_frames):.2f}", path.stat().st_size / 1e6,
                            None, None, {}, sc.latency_seconds, side["delegate_segments"])
                    m = _timed(r, "step", path, args, ref)
                    notes.append(f"{label} {r.program} {sc.mode} {r.chunk}: export {export_s:.0f} s, RSS before "
                                 f"load {m['rss_before_load_mb']:.0f} MB (Python + torch + runtime)")
                    rows.append(r)
                    if sc == configs[0]:
                        steps[q] = path
                    if args.cpp and sc.mode == "cached":
                        r = Row(label, f"{LABELS[q]}, C++ runner", sc.mode, r.chunk, r.size_mb, None, None, {},
                                sc.latency_seconds, r.segments)
                        _timed(r, "cpp", path, args, ref)
                        rows.append(r)
                if args.ort:
                    path = folder / f"{name}-{sc.mode}-{sc.chunk_frames}-ort-int8.onnx"
                    try:
                        if not (args.reuse and path.is_file()):
                            export_onnx_step(ck, sc, path)
                    except Exception as err:
                        notes.append(f"{label} ORT int8 {sc.mode} {XLSR_GRID.seconds(sc.chunk_frames):.2f}: export failed: "
                                     f"{type(err).__name__}: {str(err)[:300]}")
                    else:
                        r = Row(label, "ORT int8 dynamic (peer)", sc.mode, f"{XLSR_GRID.seconds(sc.chunk_frames):.2f}",
                                path.stat().st_size / 1e6, None, None, {}, sc.latency_seconds)
                        _timed(r, "ort", path, args, ref)
                        rows.append(r)
                if not args.no_rewrite_count and sc == configs[0]:
                    plain = folder / f"{name}-{sc.mode}-{sc.chunk_frames}-plain.pte"
                    export_streaming(ck, ExportConfig(sc, "none", rewrite=False), plain, overwrite=True)
                    seg = json.loads(plain.with_suffix(".json").read_text())["delegate_segments"]
                    notes.append(f"{label} {sc.mode} {XLSR_GRID.seconds(sc.chunk_frames):.2f}: delegate segments without the "
                                 f"rewrite {seg}, with it {json.loads(steps['none'].with_suffix('.json').read_text())['delegate_segments'] if 'none' in steps else '?'}")
            if args.offline_window > 0:
                for q in [q for q in args.offline_quantize if q in args.quantize]:
                    path = folder / f"{name}-offline-{q}.pte"
                    try:
                        if not (args.reuse and path.is_file()):
                            export_offline_window(ck, args.offline_window, q, path, calibration, overwrite=True)
                    except Exception as err:
                        notes.append(f"{label} {LABELS[q]} offline window: export failed: {type(err).__name__}: "
                                     f"{str(err)[:300]}")
                        continue
                    r = Row(label, f"{LABELS[q]} offline window", "offline", f"{args.offline_window:.2f}",
                            path.stat().st_size / 1e6, None, None, {}, None)
                    try:
                        _timed(r, "window", path, args, ref)
                    except RuntimeError as err:  # a program the runtime refuses is a result, not a crash
                        notes.append(f"{label} {r.program}: the runtime refused it: {_runtime_error(err)}")
                        continue
                    rows.append(r)
            eager[0].rtf[args.threads[0]] = ref.best
            notes.append(f"{label}: eager fp32 offline reference measured {ref.count} times in this run, "
                         f"best RTF {ref.best:.3f} at {args.threads[0]} thread(s)")
            for r in rows:
                if r.model == label:
                    r.ratio = r.rtf[args.threads[0]] / ref.best  # type: ignore[attr-defined]
            if name != "large" and steps:
                waves, refs, source = heldout(args.manifest, args.limit)
                notes.append(f"accuracy of {label} ({configs[0].mode} {XLSR_GRID.seconds(configs[0].chunk_frames):.2f} s), "
                             f"{len(waves)} utterances from {source}:")
                notes += _accuracy(ck, steps, waves, refs, name)
            del ck

    th = args.threads
    print(f"\n{args.seconds:.0f}-s utterance, best of {args.repeats} passes x {args.rounds} worker processes; ratio = "
          f"RTF at {th[0]} thread(s) / eager fp32 "
          f"offline RTF at {th[0]} thread(s) of the same model in this run\n")
    print("| model | program | mode | chunk (s) | size (MB) | load (s) | peak RSS (MB) | "
          + " | ".join(f"RTF {t}t" for t in th) + " | ratio | latency (s) | segments |")
    print("|" + "---|" * (10 + len(th)))
    for r in rows:
        f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
        print(f"| {r.model} | {r.program} | {r.mode} | {r.chunk} | {f(r.size_mb, '.0f')} | {f(r.load_s, '.2f')} | "
              f"{f(r.rss_mb, '.0f')} | " + " | ".join(f(r.rtf.get(t), '.3f') for t in th)
              + f" | {getattr(r, 'ratio', 0):.2f}x | {f(r.latency_s, '.3f')} | {f(r.segments, 'd')} |")
    print()
    for n in notes:
        print(n)
    head = [r for r in rows if r.model.startswith("XLSR") and r.mode == "cached" and r.program.startswith("ET int8")
            and r.latency_s is not None and r.latency_s <= 1.0]
    if head:
        print()
    for label, pick in (("0.64-s step", [r for r in head if r.chunk == "0.64"]), ("step with <= 1 s latency", head)):
        if pick:
            best = min(pick, key=lambda r: r.rtf[th[0]])
            print(f"XLSR-53-large int8 cached {label} ({best.program}, "
                  f"chunk {best.chunk} s), {th[0]} thread: RTF {best.rtf[th[0]]:.3f} = {getattr(best, 'ratio'):.2f}x "
                  f"eager fp32 offline, peak RSS {best.rss_mb:.0f} MB, latency {best.latency_s:.2f} s")


if __name__ == "__main__":
    main()
