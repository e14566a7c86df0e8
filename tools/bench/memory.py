#!/usr/bin/env python3
"""Memory vs audio length: offline windows and long-running streams both keep it bounded.

Offline rows: writes synthetic FLAC files of increasing length (speech-like noise bursts),
transcribes each in a fresh subprocess, and prints the peak resident memory (RSS) of each run side by
side, with the growth from the shortest to the longest file. For contrast it also measures one
whole-file forward (no windows) on the shortest file only, the way an unbounded implementation
would work.

Stream rows (``--stream-minutes``): one `Stream` fed the same kind of signal in 100-ms blocks for
that many simulated minutes, in a fresh subprocess per combination of streaming mode (window,
cached) and two-pass setting; the current RSS and the compute time are sampled after every audio
minute. Bounded means: RSS flat after the first minute, and the same compute per audio minute at the
end as at the start (CPU seconds of the process, which a busy machine disturbs less than wall time).

    python tools/bench/memory.py                        # 1, 5 and 30 minutes, random-weight demo-small model
    python tools/bench/memory.py --minutes 1 10 --model demo-en
    nice -n 10 python tools/bench/memory.py --model demo-en --threads 1 --minutes --stream-minutes 60
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(int(sys.argv[4]))
from streamer.recognizer import Recognizer
mode, model, path = sys.argv[1], sys.argv[2], sys.argv[3]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rec = Recognizer.load(model, lm=None)
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "windowed":
    t = rec.transcribe(path)
    duration = t.duration
else:
    from streamer.audio import load_audio
    x = load_audio(path)
    with torch.no_grad():
        rec.model(torch.from_numpy(x)[None])
    duration = len(x) / 16000
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"duration": duration, "loaded_mb": loaded / 1024, "peak_mb": peak / 1024}))
"""


STREAM_CHILD = r"""
import json, os, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[5]))
from streamer.recognizer import Recognizer
from streamer.streaming import StreamingConfig
sys.path.insert(0, sys.argv[6])
from bench_memory import signal_block
model, mode, two_pass, minutes = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
page = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
rec = Recognizer.load(model, lm=None, streaming=StreamingConfig.from_seconds(mode, 0.64), two_pass=two_pass)
stream = rec.create_stream()
rng = np.random.default_rng(0)
block, per_minute = 1600, 60 * 16000
for m in range(minutes):
    t, c = time.perf_counter(), time.process_time()
    finals = 0
    for i in range(0, per_minute, block):
        finals += sum(type(e).__name__ == "Final" for e in rec.feed(stream, signal_block(rng, m * per_minute + i, block)))
    print(json.dumps({"minute": m + 1, "rss_mb": rss_mb(), "seconds": time.process_time() - c,
                      "wall": time.perf_counter() - t, "finals": finals}), flush=True)
rec.input_finished(stream)
"""


def signal_block(rng: np.random.Generator, start: int, n: int) -> np.ndarray:
    """Samples ``start .. start + n`` of the benchmark signal: noise bursts at 0.7 Hz (on/off), 16 kHz."""
    x = rng.standard_normal(n).astype(np.float32) * 0.05
    env = (np.sin((start + np.arange(n)) / 16000 * 2 * np.pi * 0.7) > 0).astype(np.float32)
    return x * env


COMBOS = ("window-off", "window-on", "cached-off", "cached-on")


def stream_rows(model: str, minutes: int, threads: int, combos: list[str]) -> None:
    """Runs and prints the stream rows (see the module docstring) for ``<mode>-<two-pass on|off>`` combos."""
    here = str(Path(__file__).resolve().parent)
    results = []
    for combo in combos:
        mode, two = combo.split("-")
        two_pass = two == "on"
        name = f"stream {mode}, two-pass {'on' if two_pass else 'off'}"
        proc = subprocess.Popen([sys.executable, "-c", STREAM_CHILD, model, mode, str(int(two_pass)), str(minutes),
                                 str(threads), here], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples = []
        for line in proc.stdout:
            d = json.loads(line)
            samples.append(d)
            print(f"{name}: minute {d['minute']:3d}  RSS {d['rss_mb']:7.1f} MB  {d['seconds']:6.2f} CPU-s "
                  f"({d['wall']:6.2f} s wall)  {d['finals']} finals", flush=True)
        if proc.wait() != 0:
            sys.exit(f"{name} failed:\n{proc.stderr.read()[-2000:]}")
        results.append((name, samples))
    print_stream_table(results)


def print_stream_table(results: list[tuple[str, list[dict]]]) -> None:
    """The stream rows' summary: RSS growth after the first minute and over the second half, compute trend."""
    print("\n| stream | minutes | RSS after min 1 (MB) | RSS at end (MB) | growth after min 1 (MB) | "
          "growth over 2nd half (MB) | CPU s per audio min: minutes 2-6 | last 5 | last/first | "
          "fastest of minutes 2-11 | fastest of last 10 | last/first (fastest) |"
          "\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results:
        first = sorted(x["seconds"] for x in s[1:6] or s[:1])  # minute 1 holds start-up costs
        last = sorted(x["seconds"] for x in s[-5:])
        f_med, l_med = first[len(first) // 2], last[len(last) // 2]
        # Other load on a shared machine only ever adds CPU time (caches, SMT siblings): the fastest
        # minutes of each stretch are the steadier measure of the stream's own cost.
        f_min, l_min = min(x["seconds"] for x in s[1:11] or s[:1]), min(x["seconds"] for x in s[-10:])
        rss = [x["rss_mb"] for x in s]
        half = rss[len(rss) // 2]
        print(f"| {name} | {len(s)} | {rss[0]:.1f} | {rss[-1]:.1f} | {rss[-1] - rss[0]:+.1f} | {rss[-1] - half:+.1f} | "
              f"{f_med:.2f} | {l_med:.2f} | {l_med / f_med:.2f} | {f_min:.2f} | {l_min:.2f} | {l_min / f_min:.2f} |")


def write_signal(path: Path, minutes: float, seed: int = 0) -> None:
    """Speech-like bursts of filtered noise with pauses, written block by block (bounded memory here too)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * 16000)
    with sf.SoundFile(str(path), "w", samplerate=16000, channels=1, format="FLAC") as f:
        written = 0
        while written < total:
            n = min(16000 * 10, total - written)
            f.write(signal_block(rng, written, n))
            written += n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="*", default=[1, 5, 30],
                   help="offline file lengths (none: skip the offline rows)")
    p.add_argument("--stream-minutes", type=int, default=0, help="simulated minutes through one stream (0: skip)")
    p.add_argument("--combos", nargs="+", choices=COMBOS, default=list(COMBOS), help="stream rows to run")
    p.add_argument("--model", help="model to use (default: a random-weight demo-small model)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        model = args.model
        if model is None:
            import torch

            from streamer.checkpoint import save_checkpoint
            from streamer.model import Wav2Vec2CTC
            from streamer.model.config import demo_small_config
            from streamer.vocab import english_characters
            torch.manual_seed(0)
            m = Wav2Vec2CTC(demo_small_config())
            m.reset_parameters()
            model = str(save_checkpoint(tmpdir / "model", m.eval(), english_characters()))
        if args.stream_minutes:
            stream_rows(model, args.stream_minutes, args.threads, args.combos)
        if not args.minutes:
            return
        rows = []
        for minutes in sorted(args.minutes):
            path = tmpdir / f"{minutes:g}min.flac"
            write_signal(path, minutes)
            modes = ["windowed"] + (["whole-file forward"] if minutes == min(args.minutes) else [])
            for mode in modes:
                res = subprocess.run([sys.executable, "-c", CHILD, mode.split()[0], model, str(path), str(args.threads)],
                                     capture_output=True, text=True)
                if res.returncode != 0:
                    sys.exit(f"{mode} on {minutes} min failed:\n{res.stderr[-2000:]}")
                data = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append((mode, minutes, data))
                print(f"{mode:20s} {minutes:6.1f} min: peak RSS {data['peak_mb']:.0f} MB "
                      f"(after loading the model {data['loaded_mb']:.0f} MB)", flush=True)
    print("\n| mode | audio (min) | peak RSS (MB) | above model load (MB) |\n|---|---|---|---|")
    for mode, minutes, d in rows:
        print(f"| {mode} | {minutes:g} | {d['peak_mb']:.0f} | {d['peak_mb'] - d['loaded_mb']:.0f} |")
    win = [(m, d) for mode, m, d in rows if mode == "windowed"]
    (m0, d0), (m1, d1) = win[0], win[-1]
    print(f"\nwindowed: {m1 / m0:.0f}x longer audio -> peak RSS x{d1['peak_mb'] / d0['peak_mb']:.2f} "
          f"({d1['peak_mb'] - d0['peak_mb']:+.0f} MB)")


if __name__ == "__main__":
    main()
