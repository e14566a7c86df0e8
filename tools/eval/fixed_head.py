"""What a student's imitation of a teacher is worth to a CTC head that never saw the student.

A small CTC head (`Head`: two 384-wide pre-LN transformer layers and a linear layer over the
model's characters) is trained once on a teacher's own stored targets (a target store written by
``tools/data/teacher_targets.py``: Whisper tiny.en's states or hama's phone log-posteriors) for a
manifest with transcripts. Then, with the head fixed, each manifest is scored greedily two ways:

* **teacher**: the head on the teacher's targets (from the store, or computed for files it lacks);
* **student**: the head on what a distillation run's student predicts for them (its prediction head
  on its tapped layer; log-softmax for posteriors), from the same audio.

The student row against the teacher row is the mimicry gap in the unit that matters, WER; the
teacher row is the ceiling of a perfect student. Scoring the real-speech test prompts here only
measures: nothing is trained or tuned on them.

    python tools/eval/fixed_head.py --targets data/targets/hama --train data/corpus-s4/train.tsv \\
        --run runs/distill-hama-l6 --manifest data/corpus-s4/dev.tsv data/asterisk/asterisk.tsv

    python tools/eval/fixed_head.py --targets data/targets/whisper --train data/corpus-s4/train.tsv \\
        --run runs/student-states --manifest data/corpus-s4/dev.tsv data/asterisk/asterisk.tsv

How large a teacher gap a head tolerates: ``--blur A [A ...]`` (phone posteriors only) adds rows where
the teacher's posteriors are mixed with their utterance average, ``log((1 - A) p + A mean(p))``, each
with its KL to the teacher in nats per frame, the unit of the training log's teacher gap.

The trained head is kept (``--head-out``, default ``runs/fixed-head.pt``) and reused with ``--head``.
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

from streamer.checkpoint import load_checkpoint  # noqa: E402
from streamer.decoding.greedy import greedy_text  # noqa: E402
from streamer.metrics import corpus_rates  # noqa: E402
from streamer.train.data import load_waveform, read_manifest  # noqa: E402
from streamer.train.targets import TargetStore, audio_key  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_position_probe import Head as _ProbeHead, batches, pad  # noqa: E402


class Head(_ProbeHead):
    """The probe's head, with a linear layer first when the targets are not 384 wide (hama's 191).

    Phone posteriors are read as log-probabilities, or with ``probabilities`` as probabilities. A head
    on log-probabilities reads the teacher best but also learns from the far tail (-20 and below),
    which no student reproduces: mixing 10 % of the utterance average into the teacher's posteriors
    (a KL of 0.04 nats per frame) takes its dev WER from 0.59 to 0.91. A head on probabilities reads
    the teacher less well and is not thrown by such a mix.
    """

    def __init__(self, dim: int, vocab_size: int, probabilities: bool = False) -> None:
        super().__init__(vocab_size)
        self.probabilities = probabilities
        self.inp = nn.Identity() if dim == 384 else nn.Linear(dim, 384)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return super().forward(self.inp(x.exp() if self.probabilities else x), pad)


def teacher_targets(store: TargetStore, wave: np.ndarray, teacher: list) -> torch.Tensor:
    """(T, C) the teacher's targets for one utterance: from the store, else computed by the teacher
    that wrote it."""
    got = store.get(audio_key(wave))
    if got is None:
        if not teacher:
            from streamer.train.teachers import load_teacher

            teacher.append(load_teacher(store.meta.teacher))
        got = teacher[0](wave)
    return torch.from_numpy(np.asarray(got, dtype=np.float32))


class Student:
    """A distillation run's student and its prediction head for one target.

    Args:
        run: The run folder (holds ``checkpoint.pt`` and ``last/``).
        target: Index of the target among the run's ``--distill`` targets.
        meta: What the target's store holds.
    """

    def __init__(self, run: Path, target: int, meta) -> None:
        from streamer.train.config import TrainConfig
        from streamer.train.step import DistillHeads

        self.model = load_checkpoint(run / "last").model.eval()
        saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
        t = TrainConfig.from_dict(saved["config"]).distill.targets[target]
        self.layer = t.layer
        # the run's head for this target, rebuilt as the only head of the training code's own module
        heads = DistillHeads(self.model.config.hidden_size, [t], [meta])
        prefix = f"heads.{target}."
        heads.load_state_dict({"heads.0." + k[len(prefix):]: v for k, v in (saved.get("heads") or {}).items()
                               if k.startswith(prefix)})
        self.head = heads.heads[0].eval()
        self.posteriors = meta.kind == "log_posteriors"
        self.name = f"{run.name} ({t.store}, layer {t.layer})"

    @torch.no_grad()
    def states(self, wave: np.ndarray) -> torch.Tensor:
        """(T, C) the student's prediction of the teacher's targets on its own frames."""
        from streamer.train.step import masked_forward

        x = torch.from_numpy(wave)[None]
        n = torch.tensor([len(wave)])
        t = self.model.config.num_frames(len(wave))
        _, flen, encoded, tapped = masked_forward(self.model, x, n, torch.ones(t, t, dtype=torch.bool),
                                                  taps=() if self.layer is None else (self.layer,))
        h = encoded if self.layer is None else tapped[0]
        out = self.head(h)[0, : int(flen[0])].float()
        return out.log_softmax(-1) if self.posteriors else out


def train_head(store: TargetStore, manifest: str, vocab, utterances: int, steps: int, frames: int,
               lr: float, seed: int, probabilities: bool) -> Head:
    """Trains the head on the store's states for the manifest's first ``utterances`` with text."""
    train = [u for u in read_manifest(manifest) if u.text][:utterances]
    xs, ys = [], []
    for u in train:
        got = store.get(audio_key(load_waveform(u.path)))
        if got is not None:
            xs.append(torch.from_numpy(got.astype(np.float32)))
            ys.append(torch.tensor(vocab.encode(u.text)))
    if not xs:
        sys.exit(f"error: {store.folder} holds no states for the utterances of {manifest}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = Head(store.meta.dim, len(vocab), probabilities)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    plan: list[list[int]] = []
    for step in range(steps):
        if not plan:
            plan = batches([len(x) for x in xs], frames, rng)
        idx = plan.pop()
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        x, mask = pad([xs[i] for i in idx])
        y = [ys[i] for i in idx]
        loss = F.ctc_loss(head(x, mask).log_softmax(-1).transpose(0, 1), torch.cat(y), (~mask).sum(1),
                          torch.tensor([len(t) for t in y]), blank=vocab.blank_id, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(head.parameters(), 5.0)
        opt.step()
        if (step + 1) % 100 == 0:
            print(f"head step {step + 1}/{steps}: CTC {loss.item():.3f}", file=sys.stderr, flush=True)
    print(f"head trained on {len(xs)} utterances of {manifest}", file=sys.stderr)
    return head.eval()


def blurred(log_p: torch.Tensor, amount: float) -> tuple[torch.Tensor, float]:
    """The teacher's (T, C) log-posteriors mixed with their utterance average, and the mean
    KL(teacher || blurred) in nats per frame."""
    p = log_p.exp()
    q = ((1.0 - amount) * p + amount * p.mean(0, keepdim=True)).clamp_min(1e-12).log()
    return q, float((p * (log_p - q)).sum(-1).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", required=True, help="target store (tools/data/teacher_targets.py)")
    p.add_argument("--train", help="manifest with transcripts to train the head on (its targets in --targets)")
    p.add_argument("--head", help="a head saved by an earlier run (instead of --train)")
    p.add_argument("--head-out", default="runs/fixed-head.pt", help="where the trained head is kept")
    p.add_argument("--run", nargs="*", default=[], help="distillation run folders whose students are scored")
    p.add_argument("--target", type=int, default=0, help="index of the runs' --distill target that reads --targets")
    p.add_argument("--manifest", nargs="+", required=True, help="manifests to score on")
    p.add_argument("--probabilities", action="store_true",
                   help="the head reads phone posteriors as probabilities, not log-probabilities (kept with the head)")
    p.add_argument("--blur", type=float, nargs="*", default=[],
                   help="also score the teacher's posteriors mixed with their utterance average by these amounts (0-1)")
    p.add_argument("--limit", type=int, default=0, help="utterances per manifest (0: all)")
    p.add_argument("--model", default="demo-en", help="whose vocabulary the head writes (default: %(default)s)")
    p.add_argument("--train-utterances", type=int, default=3000)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--frames-per-batch", type=int, default=6000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not (args.train or args.head):
        p.error("give --train (to train the head) or --head (a head trained before)")
    if any(not 0.0 < a <= 1.0 for a in args.blur):
        p.error(f"--blur: expected amounts in (0, 1], found {args.blur}")
    torch.set_num_threads(args.threads)
    vocab = load_checkpoint(args.model).vocab
    store = TargetStore(args.targets)
    if args.blur and store.meta.kind != "log_posteriors":
        p.error(f"--blur: expected a store of phone posteriors, {args.targets} holds {store.meta.kind}")
    start = time.process_time()
    if args.head:
        saved = torch.load(args.head, map_location="cpu")
        head = Head(store.meta.dim, len(vocab), saved["probabilities"])
        head.load_state_dict(saved["state"])
        head.eval()
    else:
        if args.probabilities and store.meta.kind != "log_posteriors":
            p.error(f"--probabilities: expected a store of phone posteriors, {args.targets} holds {store.meta.kind}")
        head = train_head(store, args.train, vocab, args.train_utterances, args.steps, args.frames_per_batch,
                          args.lr, args.seed, args.probabilities)
        Path(args.head_out).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": head.state_dict(), "probabilities": head.probabilities}, args.head_out)
        print(f"head: {(time.process_time() - start) / 60:.1f} CPU min, kept in {args.head_out}", file=sys.stderr)
    students = [Student(Path(r), args.target, store.meta) for r in args.run]
    teacher: list = []
    print("| manifest | utterances | features | greedy WER | greedy CER |")
    print("|---|---|---|---|---|")
    for manifest in args.manifest:
        items = [u for u in read_manifest(manifest) if u.text]
        if args.limit:
            items = items[: args.limit]
        pairs: dict[str, list] = {"teacher": [], **{s.name: [] for s in students},
                                  **{f"teacher blurred {a:g}": [] for a in args.blur}}
        gaps: dict[str, list[float]] = {}
        with torch.no_grad():
            for u in items:
                wave = load_waveform(u.path)
                feats = {"teacher": teacher_targets(store, wave, teacher)}
                for s in students:
                    feats[s.name] = s.states(wave)
                for a in args.blur:
                    name = f"teacher blurred {a:g}"
                    feats[name], gap = blurred(feats["teacher"], a)
                    gaps.setdefault(name, []).append(gap)
                for name, f in feats.items():
                    logits = head(f[None], torch.zeros(1, len(f), dtype=torch.bool))[0]
                    pairs[name].append((u.text, greedy_text(logits, vocab)))
        for name, pr in pairs.items():
            wer, cer = corpus_rates(pr)
            gap = f" (KL {np.mean(gaps[name]):.3f})" if name in gaps else ""
            print(f"| {manifest} | {len(items)} | {name}{gap} | {wer:.3f} | {cer:.3f} |", flush=True)


if __name__ == "__main__":
    main()
