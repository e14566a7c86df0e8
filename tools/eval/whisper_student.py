"""How closely a Whisper-initialized student reproduces Whisper tiny.en, on real and synthetic audio.

For each manifest, mean per-frame cosine similarities:

* **positions**: Whisper's own final states with the stand-in constant in place of its absolute
  positions, against the real thing (what a position-free student gives up before any training);
* **front-end**: the student's projected conv features against Whisper's conv stem (both without
  the stand-in constant), the target of ``--distill STORE:1:0:direct``;
* **after the layers**: Whisper's layers (and final LayerNorm) on the student's features against the
  same layers on Whisper's own stem, both with the stand-in constant: what the front-end's error
  becomes by the top of the transplanted stack;
* **with positions**: Whisper's layers on the student's features plus Whisper's absolute positions
  (the stand-in constant taken out) against Whisper's own final states: what the front-end's error
  costs a stack that keeps its positions (an utterance, or a window, counted from its first frame).

    python tools/eval/whisper_student.py --model runs/student-frontend/last \\
        --manifest data/real/real-heldout.tsv data/corpus-s4/dev.tsv --limit 40

Needs the distill extra (``pip install 'streamer[distill]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamer.checkpoint import load_checkpoint  # noqa: E402
from streamer.convert.whisper import WhisperEncoder  # noqa: E402
from streamer.train.data import load_waveform, read_manifest  # noqa: E402
from streamer.train.teachers import TEACHER_HOP, at_stem_level, load_whisper_encoder  # noqa: E402


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=-1).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a student-384 checkpoint folder")
    p.add_argument("--manifest", nargs="+", required=True, help="manifests to measure on")
    p.add_argument("--limit", type=int, default=40, help="utterances per manifest (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    student = load_checkpoint(args.model).model.eval()
    tensors, filters = load_whisper_encoder()
    whisper = WhisperEncoder(tensors, filters, num_heads=6).eval()
    stand_in = whisper.stem.stand_in
    # The student's frame t sees samples [320 t, 320 t + field): pad so it is centred on Whisper's frame t.
    field = student.config.receptive_field_samples
    left = -(-field // 2 // TEACHER_HOP) * TEACHER_HOP
    print("| manifest | utterances | positions | front-end | after the layers | with positions |")
    print("|---|---|---|---|---|---|")
    for manifest in args.manifest:
        rows = {"positions": [], "front": [], "layers": [], "positioned": []}
        used = 0
        for u in read_manifest(manifest):
            if used == args.limit:
                break
            x = load_waveform(u.path)
            n = len(x) // TEACHER_HOP
            if n < 10:
                continue
            used += 1
            x = at_stem_level(x)
            xt = torch.from_numpy(x.astype(np.float32))[None]
            with torch.no_grad():
                padded = torch.cat([xt, torch.zeros(1, 2 * TEACHER_HOP)], 1)
                stem = whisper.stem.conv(whisper.stem.log_mel(padded))[:, :n]
                true = whisper.layers(stem + whisper.stem.positions[:n])
                rows["positions"].append(_cos(whisper.layers(stem + stand_in), true))
                wave = F.pad(xt, (left, field))
                feat = student.feature_projection(student.feature_extractor(wave))[:, :n]
                rows["front"].append(_cos(feat - stand_in, stem))
                rows["layers"].append(_cos(whisper.layers(feat), whisper.layers(stem + stand_in)))
                rows["positioned"].append(_cos(whisper.layers(feat - stand_in + whisper.stem.positions[:n]), true))
        means = {k: np.mean(v) if v else float("nan") for k, v in rows.items()}
        print(f"| {manifest} | {used} | {means['positions']:.3f} | {means['front']:.3f} | {means['layers']:.3f} | {means['positioned']:.3f} |")


if __name__ == "__main__":
    main()
