#!/usr/bin/env python3
"""Prints a training run's evaluations as a markdown table: the early proxies beside the dev set.

    python tools/eval/run_curve.py runs/hears-a runs/hears-b

Per evaluation (from the run's ``log.jsonl``): the step, the audio and CPU time trained so far, the
synthetic dev WER/CER, each teacher's gap on every held-out set (for a label store: the phone
error rate against the teacher's strings, word boundaries left out), and the WER/CER of the
character output on held-out sets that carry a transcript (real English against Whisper tiny.en's
text). Training time is the run's own wall clock on its threads (``elapsed`` of the log lines, summed
over resumed calls), which is CPU time on a CPU run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def curve(run: Path) -> list[dict]:
    """The run's evaluations with the audio hours and training minutes logged just before each."""
    rows, audio, minutes, offset, last_elapsed = [], 0.0, 0.0, 0.0, 0.0
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "eval" not in rec:
            if rec.get("elapsed", 0.0) < last_elapsed:  # a resumed call starts its clock again
                offset += last_elapsed
            last_elapsed = rec.get("elapsed", 0.0)
            audio, minutes = rec.get("audio_hours", audio), (offset + last_elapsed) / 60
            continue
        rows.append({**rec, "audio_hours": audio, "minutes": minutes})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args(argv)
    for run in args.runs:
        rows = curve(run)
        if not rows:
            print(f"{run}: no evaluation yet", file=sys.stderr)
            continue
        sets = sorted({name for r in rows for name in r["teacher_gap"] if name != "dev"})
        texts = sorted({name for r in rows for name in r.get("heldout_rates", {})})
        head = (["step", "audio h", "train min", "dev WER", "dev CER"]
                + [f"{Path(s).stem} gap {k}" for s in sets for k in range(len(rows[-1]["teacher_gap"].get(s, [])))]
                + [f"{Path(s).stem} {m}" for s in texts for m in ("WER", "CER")])
        print(f"\n{run}\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            e = r["eval"]
            cells = [str(e["step"]), f"{r['audio_hours']:.1f}", f"{r['minutes']:.0f}", _fmt(e["wer"]), _fmt(e["cer"])]
            for s in sets:
                cells += [_fmt(g) for g in r["teacher_gap"].get(s, [])]
            for s in texts:
                cells += [_fmt(v) for v in r.get("heldout_rates", {}).get(s, [float("nan")] * 2)]
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
