"""One training step on one device: batch, augmentation, masks, forward, losses and update.

* **fixed shapes**: batches come from `streamer.train.bank.ShapeBuckets`, so `torch.compile`
  compiles a handful of graphs and CUDA's caching allocator reuses blocks.
* **augmentation on the device**: `streamer.train.augment.Augmenter` (batched torch).
* **masks on the device**: SpecAugment time/channel spans and the dynamic chunk (block-causal)
  mask are drawn as tensors (`time_span_mask`, `chunk_allowed`), so a new chunk size is new data,
  not a new graph.
* **no per-step synchronisation**: losses accumulate on the device and are read every
  ``log_every`` steps; lengths (edge silence, speed) are decided on the host, so the loss gets them
  without a read-back; a non-finite gradient skips the update inside the fused AdamW kernel.
* **distillation**: teacher targets (`streamer.train.targets`) are gathered onto the student's
  frames, speed and edge silence included, and predicted by small heads (`DistillHeads`) from the
  final encoder output or a tapped layer; rows without a transcript learn from them alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError
from streamer.model.masks import additive_bias, padding_mask
from streamer.model.model import Wav2Vec2CTC
from streamer.train.bank import ShapeBuckets, Source
from streamer.train.config import DistillTarget, TrainConfig
from streamer.train.data import length_batches
from streamer.train.augment import Augmenter, SpeedDraw
from streamer.train.masking import SpecAugmentConfig, chunk_allowed, time_span_mask
from streamer.train.targets import StoreMeta


def cpu_supports_bf16() -> bool:
    """True when oneDNN can run bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def param_groups(modules: Sequence[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices, none on biases, norms and the mask embedding."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.dim() < 2 or name.endswith("masked_spec_embed") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def masked_forward(model: Wav2Vec2CTC, waveform: Tensor, lengths: Tensor, allowed: Tensor,
                   time_mask: Tensor | None = None, channel_mask: Tensor | None = None,
                   taps: tuple[int, ...] = (), encode: bool = True, grad_scale: tuple[int, float] | None = None
                   ) -> tuple[Tensor | None, Tensor, Tensor | None, list[Tensor]]:
    """`Wav2Vec2CTC.forward` with the attention mask given as a tensor instead of a `ChunkAttention`.

    The model's own forward takes the chunking as Python integers, which `torch.compile` would
    specialize on (one graph per chunk size); here it is data. A test checks both forwards agree.

    Args:
        model: The model.
        waveform: (B, N) samples.
        lengths: (B,) valid samples.
        allowed: (T, T) bool attention mask (True = may attend) shared by the batch.
        time_mask: (B, T) bool frames replaced by the mask embedding, or None.
        channel_mask: (B, D) bool hidden channels zeroed, or None.
        taps: Transformer layer counts whose states are returned too (`Encoder.forward_taps`); 0 = the
            projected conv features, before masking.
        encode: Run the transformer and the CTC head (False: only the front-end, for targets at tap 0;
            logits and encoder output are then None).
        grad_scale: (k, s): the gradient from above layer k into layers 1..k scaled by s
            (`Encoder.forward_taps`), or None.

    Returns:
        Logits (B, T, V), (B,) valid frames, the (B, T, D) encoder output and the tapped states.
    """
    hidden = model.feature_projection(model.feature_extractor(waveform))
    features = hidden
    num_frames = hidden.shape[1]
    if time_mask is not None:
        hidden = torch.where(time_mask[..., None], model.masked_spec_embed.to(hidden.dtype), hidden)
    if channel_mask is not None:
        hidden = hidden.masked_fill(channel_mask[:, None, :], 0.0)
    frame_lengths = model.frame_lengths(lengths)
    valid = padding_mask(frame_lengths, num_frames)
    if not encode:
        return None, frame_lengths, None, [features for _ in taps]
    hidden = hidden * valid[..., None].to(hidden.dtype)
    bias = additive_bias(valid[:, None, None, :] & allowed[None, None], hidden.dtype)
    deep = tuple(k for k in taps if k > 0)
    encoded, tapped = model.encoder.forward_taps(hidden, bias, deep, grad_scale)
    by_layer = {0: features, **dict(zip(deep, tapped))}
    return model.ctc_head(model.final_dropout(encoded)), frame_lengths, encoded, [by_layer[k] for k in taps]


# ---------------------------------------------------------------------------------------------
# Losses


def ctc_loss(logits: Tensor, frame_lengths: Tensor, labels: Tensor, label_lengths: Tensor, blank: int,
             has_text: Tensor | None = None) -> Tensor:
    """Mean per-utterance CTC loss, each divided by its label count (float32 log-softmax).

    Args:
        logits: (B, T, V).
        frame_lengths: (B,) valid frames.
        labels: (B, L) label ids.
        label_lengths: (B,) labels per row.
        blank: Blank id.
        has_text: (B,) float, 1 for rows with a transcript (None = all): the mean is over them.
    """
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)
    if has_text is None:
        return F.ctc_loss(log_probs, labels, frame_lengths, label_lengths, blank=blank, reduction="mean",
                          zero_infinity=True)
    per_row = F.ctc_loss(log_probs, labels, frame_lengths, label_lengths, blank=blank, reduction="none",
                         zero_infinity=True)
    per_row = per_row / label_lengths.to(per_row.device).clamp(min=1)
    return (per_row * has_text).sum() / has_text.sum().clamp(min=1.0)


def kl_to_teacher(student_logits: Tensor, teacher_log_probs: Tensor, mask: Tensor) -> Tensor:
    """Frame-level KL(teacher ‖ student) over the masked frames, in nats per frame.

    Args:
        student_logits: (B, T, C).
        teacher_log_probs: (B, T, C) teacher log-probabilities.
        mask: (B, T) float, 1 on frames that have a target.
    """
    ls = student_logits.float().log_softmax(-1)
    kl = (teacher_log_probs.exp() * (teacher_log_probs - ls)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1.0)


def l1_cosine_to_teacher(predicted: Tensor, states: Tensor, mask: Tensor) -> Tensor:
    """Mean L1 distance plus cosine distance (1 - cos) to teacher states over the masked frames.

    Args:
        predicted: (B, T, C) the student head's prediction.
        states: (B, T, C) teacher states.
        mask: (B, T) float, 1 on frames that have a target.
    """
    p = predicted.float()
    per_frame = (p - states).abs().mean(-1) + 1.0 - F.cosine_similarity(p, states, dim=-1, eps=1e-6)
    return (per_frame * mask).sum() / mask.sum().clamp(min=1.0)


class DistillHeads(nn.Module):
    """Small heads that predict each teacher's targets from student states (training only).

    Args:
        hidden_size: Width D of the student's states.
        targets: The distillation targets.
        metas: What each target's store holds (its width and kind).
    """

    def __init__(self, hidden_size: int, targets: Sequence[DistillTarget], metas: Sequence[StoreMeta]) -> None:
        super().__init__()
        self.targets, self.metas = list(targets), list(metas)
        heads: list[nn.Module] = []
        for t, m in zip(targets, metas):
            if t.share_head is not None:
                if metas[t.share_head].dim != m.dim:
                    raise ConfigError(f"distill target {t.store}: shares the head of {targets[t.share_head].store}, "
                                      f"expected {m.dim} classes there, found {metas[t.share_head].dim}")
                heads.append(nn.Identity())  # placeholder: `head` returns the shared head
                continue
            if t.direct:
                if m.dim != hidden_size:
                    raise ConfigError(f"distill target {t.store}: a direct target needs the student's width "
                                      f"{hidden_size}, found targets {m.dim} wide")
                head: nn.Module = nn.Identity()
            elif t.head_hidden:
                head = nn.Sequential(nn.Linear(hidden_size, t.head_hidden), nn.GELU(), nn.Linear(t.head_hidden, m.dim))
            else:
                head = nn.Linear(hidden_size, m.dim)
            heads.append(nn.Sequential(nn.LayerNorm(hidden_size), head) if t.head_norm else head)
        self.heads = nn.ModuleList(heads)

    @property
    def taps(self) -> tuple[int, ...]:
        """The student layers the heads read (besides the final output)."""
        return tuple(sorted({t.layer for t in self.targets if t.layer is not None}))

    def head(self, k: int) -> nn.Module:
        """The head of target ``k`` (its own, or the one it shares)."""
        shared = self.targets[k].share_head
        return self.heads[k if shared is None else shared]

    def predictions(self, encoded: Tensor, tapped: Sequence[Tensor]) -> list[Tensor]:
        """Each target's (B, T, C) prediction, computed once per head.

        Args:
            encoded: (B, T, D) final encoder output.
            tapped: States at `taps`, in that order.
        """
        by_layer = dict(zip(self.taps, tapped))
        out: list[Tensor] = []
        for k, t in enumerate(self.targets):
            if t.share_head is not None:
                out.append(out[t.share_head])
            else:
                out.append(self.heads[k](encoded if t.layer is None else by_layer[t.layer]))
        return out

    def losses(self, encoded: Tensor, tapped: Sequence[Tensor], aligned: Sequence[tuple[Tensor, Tensor]],
               frame_lengths: Tensor) -> list[Tensor]:
        """One loss per target.

        Args:
            encoded: (B, T, D) final encoder output.
            tapped: States at `taps`, in that order.
            aligned: Per target, the (B, T, C) targets on the student's frames and the (B, T) float
                mask of frames that have one; for a label store, the (B, L) label ids and (B,) counts.
            frame_lengths: (B,) valid student frames (on the device).
        """
        return [target_loss(pred, m, values, mask, frame_lengths)
                for pred, m, (values, mask) in zip(self.predictions(encoded, tapped), self.metas, aligned)]


def target_loss(pred: Tensor, meta: StoreMeta, values: Tensor, mask: Tensor, frame_lengths: Tensor) -> Tensor:
    """One target's loss: CTC to label strings (per label, over the rows that have some), frame KL
    to log-posteriors, or L1 + cosine distance to states.

    Args:
        pred: (B, T, C) the head's prediction.
        meta: What the target's store holds.
        values: (B, T, C) frame targets, or (B, L) label ids.
        mask: (B, T) float frames that have a target, or (B,) label counts.
        frame_lengths: (B,) valid student frames.
    """
    if meta.kind == "labels":
        return ctc_loss(pred, frame_lengths, values, mask, meta.dim - 1, has_text=(mask > 0).float())
    if meta.kind == "log_posteriors":
        return kl_to_teacher(pred, values, mask)
    return l1_cosine_to_teacher(pred, values, mask)


def on_student_frames(source: Any, rows: np.ndarray, k: int, meta: StoreMeta, centre: Tensor, scale: Tensor,
                      lead: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher ``k``'s targets of ``rows`` as the losses take them: label strings as stored (they are
    invariant to speed and silence), frame targets through `align_targets`."""
    if meta.kind == "labels":
        return source.targets(rows, k)
    return align_targets(*source.targets(rows, k), centre, scale, lead, meta.hop, frame_lengths)


@torch.no_grad()
def teacher_gap(model: Wav2Vec2CTC, heads: DistillHeads, bank: Any, batch_seconds: float = 60.0,
                ignore: Sequence[Sequence[int]] = ()) -> list[float]:
    """How closely the student follows each teacher on a bank's utterances that have its targets
    (full attention, no augmentation): the KL or L1 + cosine distance of frame targets, and for a
    label store the token error rate of the head's greedy string against the teacher's
    (`streamer.train.labels.token_error_rate`).

    Args:
        model: The student (switched to eval mode for the call).
        heads: The run's prediction heads.
        bank: A `streamer.train.bank.AudioBank` with teacher targets.
        batch_seconds: Padded audio per batch.
        ignore: Per target, label ids left out of the token error rate (word boundaries, say).

    Returns:
        One number per target (NaN where no utterance has one).
    """
    from streamer.train.labels import collapse_ctc, token_error_rate

    was_training = model.training
    model.eval()
    heads.eval()
    lengths = bank.lengths.tolist()
    sums = [0.0] * len(heads.targets)
    frames = [0.0] * len(heads.targets)
    pairs: list[list[tuple[list[int], list[int]]]] = [[] for _ in heads.targets]
    cfg = model.config
    for idx in length_batches([n / SAMPLE_RATE for n in lengths], batch_seconds, rng=None):
        rows = np.asarray(idx)
        width = max(lengths[i] for i in idx)
        wave = bank.take(torch.as_tensor(rows, device=bank.samples.device), width)
        n = torch.as_tensor([lengths[i] for i in idx], device=wave.device)
        t = cfg.num_frames(width)
        _, flen, encoded, tapped = masked_forward(model, wave, n, torch.ones(t, t, dtype=torch.bool, device=wave.device),
                                                  taps=heads.taps)
        centre = frame_centres(cfg, t, wave.device)
        ones, zeros = torch.ones(len(idx), device=wave.device), torch.zeros(len(idx), dtype=torch.long, device=wave.device)
        preds = heads.predictions(encoded, tapped)
        for k, meta in enumerate(heads.metas):
            values, mask = on_student_frames(bank, rows, k, meta, centre, ones, zeros, flen)
            if meta.kind == "labels":
                best = preds[k].argmax(-1).cpu()
                for r in range(len(idx)):
                    if int(mask[r]):
                        hyp = collapse_ctc(best[r, : int(flen[r])].tolist(), meta.dim - 1)
                        pairs[k].append((values[r, : int(mask[r])].tolist(), hyp))
                continue
            count = float(mask.sum())
            sums[k] += float(target_loss(preds[k], meta, values, mask, flen)) * count
            frames[k] += count
    model.train(was_training)
    heads.train(was_training)
    return [(token_error_rate(pairs[k], ignore[k] if k < len(ignore) else ()) if pairs[k] else float("nan"))
            if m.kind == "labels" else (s / f if f else float("nan"))
            for k, (m, s, f) in enumerate(zip(heads.metas, sums, frames))]


# ---------------------------------------------------------------------------------------------
# The step


@dataclass(frozen=True)
class StepBatch:
    """One batch on the device, ready for the model (augmented, with its masks and targets)."""

    waveform: Tensor
    """(B, N) float32 samples."""
    lengths: Tensor
    """(B,) valid samples (device)."""
    labels: Tensor
    """(B, L) label ids (device)."""
    frame_lengths: Tensor
    """(B,) valid frames, on the host (known there: the loss reads them without a device sync)."""
    label_lengths: Tensor
    """(B,) labels per row, on the host (0 = no transcript)."""
    allowed: Tensor
    """(T, T) bool attention mask."""
    time_mask: Tensor
    """(B, T) bool SpecAugment frames."""
    channel_mask: Tensor | None
    """(B, D) bool SpecAugment channels, or None."""
    audio_samples: int
    """Valid samples in the batch."""
    has_text: Tensor
    """(B,) float, 1 on rows with a transcript (device)."""
    teacher: tuple[tuple[Tensor, Tensor], ...] = ()
    """Per distillation target: (B, T, C) targets on the student's frames and the (B, T) mask; for a
    label store, (B, L) label ids and (B,) counts."""


def frame_centres(config: Any, frames: int, device: torch.device) -> Tensor:
    """(T,) the sample at the centre of each of a model's first ``frames`` frames (hop t + field / 2)."""
    return torch.arange(frames, device=device) * config.hop_samples + config.receptive_field_samples // 2


def align_targets(values: Tensor, frames: Tensor, centre: Tensor, scale: Tensor, lead: Tensor, hop: int,
                  frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher frames → student frames (nearest), through speed change and edge silence.

    Student frame t is centred on sample ``centre[t]`` of the augmented row; a row played at speed
    p/q maps it to sample ``centre * scale`` of the row before the change (scale = p / q), which is
    sample ``centre * scale - lead`` of the utterance, the centre of teacher frame ``round(./hop)``.

    Args:
        values: (B, F, C) teacher targets of each row, zero-padded.
        frames: (B,) teacher frames of each row (0 = none).
        centre: (T,) sample at the centre of each student frame.
        scale: (B,) speed factor p/q of each row (1 = unchanged).
        lead: (B,) samples of silence before each utterance, before the speed change.
        hop: Samples between teacher frames.
        frame_lengths: (B,) valid student frames.

    Returns:
        (B, T, C) targets and the (B, T) float mask of student frames that have one.
    """
    pos = centre[None, :].float() * scale[:, None] - lead[:, None].float()
    idx = torch.round(pos / hop).long()
    t = torch.arange(len(centre), device=values.device)[None, :]
    mask = (idx >= 0) & (idx < frames[:, None]) & (t < frame_lengths[:, None])
    idx = idx.clamp(0, values.shape[1] - 1)
    gathered = torch.gather(values, 1, idx[..., None].expand(-1, -1, values.shape[2]))
    return gathered, mask.float()


class TrainStep:
    """Data, augmentation, masks, forward, losses and update of one step, all on one device.

    Args:
        model: The model (on ``device``).
        source: The training set (`streamer.train.bank.Source`, on ``device``).
        cfg: The run's `TrainConfig`.
        device: The training device.
        blank: The vocabulary's blank id.
        metas: What each distillation target's store holds (one per ``cfg.distill.targets``).
        seed: Seed of the device generators.
    """

    def __init__(self, model: Wav2Vec2CTC, source: Source, cfg: TrainConfig, device: torch.device, blank: int,
                 metas: Sequence[StoreMeta] = (), seed: int = 0) -> None:
        self.model, self.cfg, self.device, self.blank = model, cfg, device, blank
        self.pad_samples = int(cfg.pad_seconds * SAMPLE_RATE)
        hop = model.config.hop_samples
        # Edge silence comes in whole hops, so teacher frames keep their place on the student's grid.
        self.lead_quantum = hop if cfg.distill is not None else 1
        self.use(source)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.host = np.random.default_rng(seed)
        self._left_choices = None if cfg.dynamic_chunk is None else torch.tensor(cfg.dynamic_chunk.left_choices, device=device)
        self.augmenter = Augmenter(cfg.augment, device, seed + 1) if cfg.augment is not None else None
        self.use_amp = cfg.amp and (device.type == "cuda" or cpu_supports_bf16())
        self.heads = (DistillHeads(model.config.hidden_size, cfg.distill.targets, metas).to(device)
                      if cfg.distill is not None else None)
        self.metas = list(metas)
        d = cfg.distill
        self.grad_scale = (None if d is None or d.ctc_grad_layer is None
                           else (d.ctc_grad_layer, d.ctc_grad_scale))
        # Only the front-end learns when nothing reads past it (CTC off, every target at tap 0).
        self.encode = not (cfg.distill is not None and cfg.distill.ctc_weight == 0
                           and all(t.layer == 0 for t in cfg.distill.targets))
        modules: list[nn.Module] = [model] + ([self.heads] if self.heads is not None else [])
        self.optimizer = torch.optim.AdamW(param_groups(modules, cfg.weight_decay), lr=cfg.peak_lr, betas=(0.9, 0.98),
                                           eps=1e-8, fused=True)
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        self.loss_names = ["ctc"] + [f"distill{i}" for i in range(len(self.metas))]
        self.loss_sum = torch.zeros(len(self.loss_names) + 1, device=device)
        self.audio_samples = 0
        self.grad_norm = torch.zeros((), device=device)
        self.micro = 0
        forward: Callable[..., tuple[Tensor, Tensor, Tensor, list[Tensor]]] = masked_forward
        if cfg.compile:
            forward = torch.compile(masked_forward, dynamic=False)
        self.forward = forward

    def use(self, source: Source) -> None:
        """Trains on ``source`` from the next batch on (a training set that grew); buckets are refit."""
        self.source = source
        # Buckets leave room for one side's largest silence; the two sides share the row's room.
        self.buckets = ShapeBuckets.fit(source.lengths.tolist(), self.cfg.max_batch_seconds, self.cfg.buckets,
                                        self.pad_samples)
        self.lengths_np = source.lengths.cpu().numpy()
        self.label_lengths_np = source.label_lengths.cpu().numpy()

    def _to_device(self, values: np.ndarray) -> Tensor:
        """Host int64 values → the device without waiting (pinned memory on CUDA)."""
        t = torch.from_numpy(values)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def batch(self, bucket: int, rows: np.ndarray, regularize: bool) -> StepBatch:
        """Gathers, augments and masks one batch (everything before the forward pass).

        Lengths are decided on the host (random edge silence, speed) and sent with the row
        indices in one copy; everything else is drawn on the device.

        Args:
            bucket: Bucket of the batch.
            rows: (R,) int64 utterance indices (R = the bucket's rows).
            regularize: Apply augmentation, SpecAugment and chunk masks (False in clean steps).
        """
        with record_function("data"):
            return self._batch(bucket, rows, regularize)

    def _batch(self, bucket: int, rows: np.ndarray, regularize: bool) -> StepBatch:
        cfg, model = self.cfg, self.model
        width = self.buckets.widths[bucket]
        b = len(rows)
        length = self.lengths_np[rows]
        room = width - length  # >= pad_samples by the bucket's choice
        q = self.lead_quantum
        lead = np.minimum(self.host.integers(0, self.pad_samples // q + 1, b) * q, room // q * q)
        trail = np.minimum(self.host.integers(0, self.pad_samples + 1, b), room - lead)
        before = length + lead + trail
        speed: SpeedDraw | None = None
        if regularize and self.augmenter is not None:
            speed = self.augmenter.draw_speed(before, width)
        after = before if speed is None else speed.lengths
        srows = np.zeros(0, np.int64) if speed is None else speed.rows
        blob = self._to_device(np.concatenate([rows, lead, before, after, srows]).astype(np.int64))
        rows_d, lead_d, before_d, after_d, srows_d = torch.split(blob, [b, b, b, b, len(srows)])
        wave = self.source.take(rows_d, width, lead_d)
        if speed is not None:
            wave, _ = self.augmenter(wave, before_d, speed, srows_d, after_d)
        frames = model.config.num_frames(width)
        flen = model.frame_lengths(after_d)
        sa: SpecAugmentConfig = cfg.specaugment
        if regularize:
            time_mask = time_span_mask(flen, frames, sa.time_prob, sa.time_length, self.gen)
            allowed = chunk_allowed(frames, cfg.dynamic_chunk, self.gen, self.device, self._left_choices)
        else:
            time_mask = torch.zeros(b, frames, dtype=torch.bool, device=self.device)
            allowed = chunk_allowed(frames, None, self.gen, self.device)
        channel_mask = None
        if regularize and sa.channel_prob > 0:
            hidden = model.config.hidden_size
            channel_mask = time_span_mask(torch.full((b,), hidden, device=self.device), hidden,
                                          sa.channel_prob, sa.channel_length, self.gen)
        teacher: tuple[tuple[Tensor, Tensor], ...] = ()
        if self.metas:
            scale = np.ones(b)
            if speed is not None and len(speed.rows):
                scale[speed.rows] = speed.p / speed.q
            scale_d = torch.from_numpy(scale).to(self.device)
            centre = frame_centres(model.config, frames, self.device)
            teacher = tuple(on_student_frames(self.source, rows, k, meta, centre, scale_d, lead_d, flen)
                            for k, meta in enumerate(self.metas))
        label_lengths = torch.from_numpy(self.label_lengths_np[rows])
        host_frames = torch.tensor([model.config.num_frames(n) for n in after.tolist()], dtype=torch.long)
        has_text = self._to_device((self.label_lengths_np[rows] > 0).astype(np.float32))
        return StepBatch(wave, after_d, self.source.labels[rows_d], host_frames, label_lengths, allowed, time_mask,
                         channel_mask, int(after.sum()), has_text, teacher)

    def model_step(self, b: StepBatch, lr: float, distill_scale: float = 1.0) -> None:
        """Forward, backward and (every ``grad_accum`` calls) the optimizer update; no host sync."""
        cfg = self.cfg
        with record_function("forward"):
            taps = self.heads.taps if self.heads is not None else ()
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
                logits, _, encoded, tapped = self.forward(self.model, b.waveform, b.lengths, b.allowed, b.time_mask,
                                                          b.channel_mask, taps, self.encode, self.grad_scale)
                if logits is None:
                    parts = [torch.zeros((), device=self.device)]
                else:
                    parts = [ctc_loss(logits, b.frame_lengths, b.labels, b.label_lengths, self.blank,
                                      None if self.heads is None else b.has_text)]
                if self.heads is not None:
                    parts += self.heads.losses(encoded, tapped, b.teacher, b.frame_lengths)
            if self.heads is None:
                loss = parts[0]
            else:
                d = cfg.distill
                loss = d.ctc_weight * parts[0] + sum(t.weight * (distill_scale if t.decays else 1.0) * p
                                                     for t, p in zip(d.targets, parts[1:]))
        with record_function("backward"):
            (loss / cfg.grad_accum).backward()
        self.loss_sum += torch.stack([loss.detach().float()] + [p.detach().float() for p in parts])
        self.audio_samples += b.audio_samples
        self.micro += 1
        if self.micro % cfg.grad_accum:
            return
        with record_function("optimizer"):
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            self.grad_norm = nn.utils.clip_grad_norm_(self.params, cfg.clip_grad, foreach=True)
            # A non-finite norm skips the update inside the fused kernel (no host round trip).
            self.optimizer.found_inf = (~torch.isfinite(self.grad_norm)).float()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def read_and_reset(self) -> tuple[dict[str, float], float]:
        """Mean losses of the micro-batches since the last call (one device sync; ``loss`` is the
        weighted total) and their audio seconds."""
        n = max(1, self.micro)
        values = (self.loss_sum / n).tolist()
        seconds = self.audio_samples / SAMPLE_RATE
        self.loss_sum.zero_()
        self.audio_samples = 0
        self.micro = 0
        return dict(zip(["loss"] + self.loss_names, values)), seconds
