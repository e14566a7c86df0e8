"""What Whisper tiny.en's frozen layers are worth to a CTC head with and without absolute positions.

A student that streams has no absolute position, so layers transplanted from Whisper see a constant
in its place (`streamer.convert.whisper.WhisperStem`). This probe trains the same small CTC head
(two 384-wide pre-LN transformer layers and a linear layer over the model's characters) on Whisper's
frozen final states computed two ways from the same synthetic training audio, with Whisper's own
stem (no student involved):

* ``positions``: Whisper as it is;
* ``stand-in``: the constant in place of the positions.

and scores each head greedily on a held-out manifest. The gap is what the transplanted layers lose to
the missing positions before any adaptation; the ``positions`` row is the ceiling of a perfect
front-end under unchanged layers.

    python tools/eval/whisper_position_probe.py --train data/corpus-s4/train.tsv \\
        --dev data/corpus-s4/dev.tsv --train-utterances 1500 --steps 600

Needs the distill extra (``pip install 'streamer[distill]'``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamer.convert.whisper import WhisperEncoder  # noqa: E402
from streamer.decoding.greedy import greedy_text  # noqa: E402
from streamer.metrics import corpus_rates  # noqa: E402
from streamer.train.data import load_waveform, read_manifest  # noqa: E402
from streamer.train.teachers import TEACHER_HOP, load_whisper_encoder  # noqa: E402
from streamer.checkpoint import load_checkpoint  # noqa: E402


class Head(nn.Module):
    """Two pre-LN transformer layers and a linear CTC layer over frozen 384-d states."""

    def __init__(self, vocab_size: int, width: int = 384, heads: int = 6) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.1, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(width, vocab_size)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(x, src_key_padding_mask=pad))


def features(whisper: WhisperEncoder, paths: list[str], positions: bool) -> list[torch.Tensor]:
    """(T, 384) frozen final states of each file (one utterance per window from position 0)."""
    out = []
    with torch.no_grad():
        for p in paths:
            x = load_waveform(p)
            n = -(-len(x) // TEACHER_HOP)
            padded = np.concatenate([x, np.zeros(2 * TEACHER_HOP, np.float32)])
            out.append(whisper(torch.from_numpy(padded)[None], positions=positions)[0, :n].clone())
    return out


def batches(lengths: list[int], frames_per_batch: int, rng: np.random.Generator) -> list[list[int]]:
    """Index batches of similar length, each at most ``frames_per_batch`` padded frames."""
    order = np.argsort(lengths)
    out, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > frames_per_batch:
            out.append(cur)
            cur = []
        cur.append(int(i))
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def pad(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T, D) batch and its (B, T) padding mask (True = padding)."""
    t = max(len(x) for x in items)
    x = torch.zeros(len(items), t, items[0].shape[1])
    mask = torch.ones(len(items), t, dtype=torch.bool)
    for i, f in enumerate(items):
        x[i, : len(f)] = f
        mask[i, : len(f)] = False
    return x, mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--model", default="demo-en", help="whose vocabulary the head writes (default: %(default)s)")
    p.add_argument("--train-utterances", type=int, default=1500)
    p.add_argument("--dev-utterances", type=int, default=187)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--frames-per-batch", type=int, default=6000, help="padded frames per batch (50 per second)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    vocab = load_checkpoint(args.model).vocab
    train = [u for u in read_manifest(args.train) if u.text][: args.train_utterances]
    dev = [u for u in read_manifest(args.dev) if u.text][: args.dev_utterances]
    tensors, filters = load_whisper_encoder()
    whisper = WhisperEncoder(tensors, filters, num_heads=6).eval()
    labels = [torch.tensor(vocab.encode(u.text)) for u in train]
    print("| Whisper's layers see | train utterances | steps | CPU min | dev greedy WER | dev greedy CER |")
    print("|---|---|---|---|---|---|")
    for positions in (True, False):
        start = time.process_time()
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        x_train = features(whisper, [u.path for u in train], positions)
        x_dev = features(whisper, [u.path for u in dev], positions)
        head = Head(len(vocab))
        opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.01)
        plan: list[list[int]] = []
        for step in range(args.steps):
            if not plan:
                plan = batches([len(x) for x in x_train], args.frames_per_batch, rng)
            idx = plan.pop()
            lr = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            x, mask = pad([x_train[i] for i in idx])
            logits = head(x, mask)
            y = [labels[i] for i in idx]
            loss = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), torch.cat(y), (~mask).sum(1),
                              torch.tensor([len(t) for t in y]), blank=vocab.blank_id, zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
        head.eval()
        pairs = []
        with torch.no_grad():
            for u, f in zip(dev, x_dev):
                logits = head(f[None], torch.zeros(1, len(f), dtype=torch.bool))[0]
                pairs.append((u.text, greedy_text(logits, vocab)))
        wer, cer = corpus_rates(pairs)
        minutes = (time.process_time() - start) / 60
        label = "its absolute positions" if positions else "the stand-in constant"
        print(f"| {label} | {len(train)} | {args.steps} | {minutes:.1f} | {wer:.3f} | {cer:.3f} |", flush=True)


if __name__ == "__main__":
    main()
