#!/usr/bin/env python3
"""Memory of offline transcription vs file length: windowed inference keeps it bounded.

Writes synthetic FLAC files of increasing length (speech-like noise bursts), transcribes each in a
fresh subprocess, and prints the peak resident memory (RSS) of each run side by side, with the
growth from the shortest to the longest file. For contrast it also measures one whole-file forward
(no windows) on the shortest file only, the way an unbounded implementation would work.

    python tools/bench_memory.py                        # 1, 5 and 30 minutes, random-weight demo-small model
    python tools/bench_memory.py --minutes 1 10 --model demo-en
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


def write_signal(path: Path, minutes: float, seed: int = 0) -> None:
    """Speech-like bursts of filtered noise with pauses, written block by block (bounded memory here too)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * 16000)
    with sf.SoundFile(str(path), "w", samplerate=16000, channels=1, format="FLAC") as f:
        written = 0
        while written < total:
            n = min(16000 * 10, total - written)
            x = rng.standard_normal(n).astype(np.float32) * 0.05
            env = (np.sin(np.arange(n) / 16000 * 2 * np.pi * 0.7) > 0).astype(np.float32)
            f.write(x * env)
            written += n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 30])
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
