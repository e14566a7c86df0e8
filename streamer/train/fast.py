"""A training step with no host-side waste, for CPU and GPU: `train_fast`.

The classic loop (`streamer.train.trainer.train`) reads and decodes files, pads them and runs the
numpy `Augmenter` per utterance on the host, draws masks with Python loops and reads the loss back
every step. On a GPU that host side was the limit (4.5–5.9 steps/s, GPU 17–49 % busy). Here:

* **audio decoded once**: every training utterance lives in one int16 tensor on the training device
  (`AudioBank`; 1 h = 115 MB), with its labels padded in another; a batch is a gather.
* **fixed shapes**: utterances fall into a few length buckets (`ShapeBuckets`, quantiles of the
  corpus), each with a fixed (rows, samples) shape under ``max_batch_seconds``, so `torch.compile`
  (``FastConfig.compile``) compiles a handful of graphs and CUDA's caching allocator reuses blocks.
* **augmentation on the device**: `streamer.train.device_augment.DeviceAugmenter` (batched torch).
* **masks on the device**: SpecAugment time/channel spans and the dynamic chunk (block-causal)
  mask are drawn as tensors (`time_span_mask`, `chunk_allowed`), so a new chunk size is new data,
  not a new graph.
* **no per-step synchronisation**: the loss accumulates on the device and is read every
  ``log_every`` steps; lengths (edge silence, speed) are decided on the host, so the loss gets them
  without a read-back; a non-finite gradient skips the update inside the fused AdamW kernel
  (``found_inf``) instead of an ``if`` on a device value. One wait remains on CUDA, inside PyTorch:
  ``F.ctc_loss`` copies its target offsets to the device with a blocking copy, so the host waits
  there for the queued forward pass (cuDNN's CTC, which would not, needs equal input lengths).

Where the time goes (``tools/bench_train.py --profile``; CPU, demo-small, 100-s batches, 1 thread,
bf16 autocast, measured 2026-12-01 on 2 shared cores): the whole step took 4.72 CPU-s, of which the
data part (gather, augmentation, masks) 4 % and forward + backward + update on a ready batch 4.32
(a second run: 4.49 CPU-s, data part 4.5 %; 1 − model/whole was 8.4 % and 11.4 %, within the
±10 % noise of the model step on shared cores; the classic data pipeline is 5–11x slower per audio
second).
Inside the model step: forward ~44 %, backward ~51 %, optimizer < 1 %. By operator: GELU backward
in float32 (autocast keeps the conv front-end's LayerNorm + GELU in float32 on its large
3200-frame/s tensors) ~18 %, dropout masks (``bernoulli_``, mostly attention dropout on B×H×T×T)
~18 %, autocast dtype copies ~16 %, matrix products (bmm/mm/addmm) ~15 %, conv forward/backward
~9 %. On a CPU the model's elementwise work, not the data, is the limit.

Single process (no DDP): a GPU window is one device; CPU training has two cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.profiler import record_function

from streamer.constants import SAMPLE_RATE
from streamer.decoding.greedy import greedy_text
from streamer.errors import ConfigError
from streamer.metrics import corpus_rates
from streamer.model.masks import ChunkAttention, additive_bias, padding_mask
from streamer.model.model import Wav2Vec2CTC, count_parameters
from streamer.train.data import Utterance, length_batches
from streamer.train.device_augment import DeviceAugmentConfig, DeviceAugmenter
from streamer.train.masking import DynamicChunkConfig, SpecAugmentConfig
from streamer.train.trainer import (
    EvalResult,
    TrainConfig,
    TrainSummary,
    _filter,
    _param_groups,
    _save_atomic,
    build_model,
    cpu_supports_bf16,
    ctc_loss,
    load_training_checkpoint,
    lr_at,
)
from streamer.vocab import Vocabulary, english_characters

#: Full scale of the int16 bank: sample value = int16 / INT16_SCALE.
INT16_SCALE = 32768.0
#: Bucket widths are rounded up to a multiple of this many samples (0.1 s).
BUCKET_QUANTUM_SAMPLES = 1600


@dataclass(frozen=True)
class FastConfig:
    """Options of the fast step that `TrainConfig` does not already hold."""

    buckets: int = 8
    """Number of fixed batch shapes (length buckets; fewer = fewer compiles, more padding)."""
    compile: bool = False
    """Compile forward + loss with `torch.compile` (one graph per bucket)."""
    compile_mode: str | None = None
    """`torch.compile` mode (None = default; ``reduce-overhead`` adds CUDA graphs)."""
    augment: DeviceAugmentConfig = field(default_factory=DeviceAugmentConfig)
    """On-device augmentation (used when `TrainConfig.augment`)."""

    def __post_init__(self) -> None:
        if self.buckets < 1:
            raise ConfigError(f"buckets: expected >= 1, found {self.buckets}")
        if self.compile_mode not in (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
            raise ConfigError(f"compile_mode: expected a torch.compile mode or None, found {self.compile_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FastConfig":
        """Inverse of `to_dict`."""
        d = dict(data)
        aug = dict(d.get("augment", {}))
        for k, v in aug.items():
            if isinstance(v, list):
                aug[k] = tuple(v)
        d["augment"] = DeviceAugmentConfig(**aug)
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Data: the bank and its buckets


def to_int16(wave: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] → int16 (clipped, rounded)."""
    return np.clip(np.round(np.asarray(wave, dtype=np.float32) * INT16_SCALE), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class AudioBank:
    """A training set held in memory: int16 samples of every utterance, and padded labels."""

    samples: Tensor
    """(S,) int16, the utterances (and whatever lies between them) back to back."""
    starts: Tensor
    """(U,) int64 first sample of each utterance in `samples`."""
    lengths: Tensor
    """(U,) int64 samples of each utterance."""
    labels: Tensor
    """(U, L) int64 label ids, zero-padded."""
    label_lengths: Tensor
    """(U,) int64 labels per utterance."""
    texts: tuple[str, ...]
    """Normalized transcripts."""

    @classmethod
    def build(cls, samples: np.ndarray, starts: Sequence[int], lengths: Sequence[int], texts: Sequence[str],
              vocab: Vocabulary) -> "AudioBank":
        """Makes a bank from an int16 stream and utterance spans in it.

        Raises:
            ConfigError: A span falls outside ``samples`` or the counts differ.
        """
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ConfigError(f"bank samples: expected 1-D int16, found {samples.ndim}-D {samples.dtype}")
        if not len(starts) == len(lengths) == len(texts):
            raise ConfigError(f"bank: expected as many starts, lengths and texts, found {len(starts)}, {len(lengths)}, {len(texts)}")
        st = torch.tensor(list(starts), dtype=torch.long)
        ln = torch.tensor(list(lengths), dtype=torch.long)
        if len(st) and (int(st.min()) < 0 or int((st + ln).max()) > len(samples)):
            raise ConfigError(f"bank: expected utterance spans inside {len(samples)} samples, found one outside")
        ids = [vocab.encode(t) for t in texts]
        labels = torch.zeros(len(ids), max([1] + [len(x) for x in ids]), dtype=torch.long)
        for i, x in enumerate(ids):
            labels[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        return cls(torch.from_numpy(np.ascontiguousarray(samples)), st, ln, labels,
                   torch.tensor([len(x) for x in ids], dtype=torch.long), tuple(texts))

    @classmethod
    def from_waves(cls, waves: Sequence[np.ndarray], texts: Sequence[str], vocab: Vocabulary) -> "AudioBank":
        """Makes a bank from float waveforms (16 kHz), concatenated without gaps."""
        lengths = [len(w) for w in waves]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if waves else np.zeros(0, np.int64)
        samples = np.concatenate([to_int16(w) for w in waves]) if waves else np.zeros(0, np.int16)
        return cls.build(samples, starts.tolist(), lengths, texts, vocab)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def seconds(self) -> float:
        """Audio in the utterances, in seconds."""
        return float(self.lengths.sum()) / SAMPLE_RATE

    def to(self, device: torch.device) -> "AudioBank":
        """The bank on ``device``."""
        return dataclasses.replace(self, samples=self.samples.to(device), starts=self.starts.to(device),
                                   lengths=self.lengths.to(device), labels=self.labels.to(device),
                                   label_lengths=self.label_lengths.to(device))

    def take(self, idx: Tensor, width: int, lead: Tensor | None = None) -> Tensor:
        """Gathers utterances into a zero-padded float batch, on the bank's device.

        Args:
            idx: (B,) utterance indices (on the bank's device).
            width: Samples per row N; every ``lead + length`` must fit.
            lead: (B,) samples of silence before each utterance (None = none).

        Returns:
            (B, N) float32 samples in [-1, 1].
        """
        length = self.lengths[idx]
        pos = torch.arange(width, device=self.samples.device)[None, :]
        if lead is not None:
            pos = pos - lead[:, None]
        inside = (pos >= 0) & (pos < length[:, None])
        flat = (self.starts[idx][:, None] + pos.clamp(min=0)).clamp(max=len(self.samples) - 1)
        return self.samples[flat].float() * (1.0 / INT16_SCALE) * inside


@dataclass(frozen=True)
class ShapeBuckets:
    """A few fixed batch shapes: widths (samples) and rows per batch, and each utterance's bucket."""

    widths: tuple[int, ...]
    """Samples per row of each bucket, ascending."""
    rows: tuple[int, ...]
    """Rows per batch of each bucket (``rows * width <= max_batch_seconds``, at least 1)."""
    members: tuple[np.ndarray, ...]
    """Utterance indices in each bucket."""

    @classmethod
    def fit(cls, lengths: Sequence[int], max_batch_seconds: float, count: int, pad_samples: int = 0) -> "ShapeBuckets":
        """Buckets at length quantiles, so each holds about as many utterances.

        Args:
            lengths: Samples per utterance.
            max_batch_seconds: Padded audio per batch.
            count: Number of buckets (fewer when quantiles coincide).
            pad_samples: Room for edge silence the width must hold beyond each utterance.
        """
        need = np.asarray(lengths, dtype=np.int64) + pad_samples
        if len(need) == 0:
            raise ConfigError("buckets: expected at least one utterance, found none")
        edges = np.quantile(need, [(i + 1) / count for i in range(count)], method="higher")
        widths = sorted({int(math.ceil(e / BUCKET_QUANTUM_SAMPLES) * BUCKET_QUANTUM_SAMPLES) for e in edges})
        which = np.searchsorted(np.asarray(widths), need, side="left")
        members = tuple(np.flatnonzero(which == b) for b in range(len(widths)))
        keep = [b for b in range(len(widths)) if len(members[b])]
        widths = [widths[b] for b in keep]
        budget = max_batch_seconds * SAMPLE_RATE
        rows = tuple(max(1, int(budget // w)) for w in widths)
        return cls(tuple(widths), rows, tuple(members[b] for b in keep))

    def epoch(self, seed: int) -> list[tuple[int, np.ndarray]]:
        """One epoch's batches in random order: (bucket, row indices). A bucket's last batch is
        filled up with random members of the bucket, so every batch has its bucket's shape."""
        rng = np.random.default_rng(seed)
        batches: list[tuple[int, np.ndarray]] = []
        for b, (members, rows) in enumerate(zip(self.members, self.rows)):
            order = rng.permutation(members)
            short = (-len(order)) % rows
            if short:
                order = np.concatenate([order, rng.choice(members, short)])
            batches.extend((b, part) for part in order.reshape(-1, rows))
        rng.shuffle(batches)
        return batches

    def padding_share(self, lengths: Sequence[int]) -> float:
        """Share of the padded batch area that is padding, over one epoch (fill-up rows aside)."""
        total = sum(len(m) * w for m, w in zip(self.members, self.widths))
        used = sum(int(np.asarray(lengths)[m].sum()) for m in self.members)
        return 1.0 - used / max(1, total)


# ---------------------------------------------------------------------------------------------
# Masks on the device


def time_span_mask(valid: Tensor, width: int, prob: float, span: int, gen: torch.Generator) -> Tensor:
    """SpecAugment spans drawn on the device: about ``prob * valid / span`` spans per row.

    The tensor counterpart of `streamer.train.masking.span_mask` (same distribution: a count of
    ``floor(prob * valid / span + U)`` spans, starts uniform in ``[0, valid - span)``).

    Args:
        valid: (B,) valid extent of each row (frames or channels).
        width: Row width T.
        prob: Probability that an index starts a span.
        span: Span length.
        gen: Generator on the device.

    Returns:
        (B, T) bool, True inside a span.
    """
    dev = valid.device
    b = valid.shape[0]
    if prob <= 0 or width <= span:
        return torch.zeros(b, width, dtype=torch.bool, device=dev)
    most = int(prob * width / span) + 1
    room = (valid - span).clamp(min=0)
    count = torch.floor(prob * valid / span + torch.rand(b, generator=gen, device=dev))
    count = torch.where(valid > span, count, 0.0)
    starts = torch.floor(torch.rand(b, most, generator=gen, device=dev) * room[:, None]).long()
    active = torch.arange(most, device=dev)[None, :] < count[:, None]
    t = torch.arange(width, device=dev)[None, None, :]
    inside = (t >= starts[..., None]) & (t < starts[..., None] + span) & active[..., None]
    return inside.any(1)


def chunk_allowed(frames: int, cfg: DynamicChunkConfig | None, gen: torch.Generator, device: torch.device,
                  left_choices: Tensor | None = None) -> Tensor:
    """The dynamic chunk mask of one batch, drawn on the device (see `DynamicChunkConfig.sample`).

    Returns:
        (T, T) bool, True where query frame q may attend to key frame k: full attention with
        probability ``full_prob``, else block-causal with a random chunk size, left context and grid
        offset. With ``cfg`` None, all True. ``left_choices``: ``cfg.left_choices`` already on the
        device (a training loop makes it once; else it is copied here).
    """
    if cfg is None:
        return torch.ones(frames, frames, dtype=torch.bool, device=device)
    u = torch.rand(4, generator=gen, device=device)
    size = (cfg.chunk_min + torch.floor(u[0] * (cfg.chunk_max - cfg.chunk_min + 1))).long()
    if left_choices is None:
        left_choices = torch.tensor(cfg.left_choices, device=device)
    left = left_choices[torch.floor(u[1] * len(cfg.left_choices)).long()]
    offset = torch.floor(u[2] * size).long()
    idx = torch.arange(frames, device=device)
    block = torch.div(idx + offset, size, rounding_mode="floor")
    q, k = block[:, None], block[None, :]
    allowed = (k <= q) & ((left < 0) | (k >= q - left))
    return allowed | (u[3] < cfg.full_prob)


def masked_forward(model: Wav2Vec2CTC, waveform: Tensor, lengths: Tensor, allowed: Tensor,
                   time_mask: Tensor | None = None, channel_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
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

    Returns:
        Logits (B, T, V) and (B,) valid frames.
    """
    hidden = model.feature_projection(model.feature_extractor(waveform))
    num_frames = hidden.shape[1]
    if time_mask is not None:
        hidden = torch.where(time_mask[..., None], model.masked_spec_embed.to(hidden.dtype), hidden)
    if channel_mask is not None:
        hidden = hidden.masked_fill(channel_mask[:, None, :], 0.0)
    frame_lengths = model.frame_lengths(lengths)
    valid = padding_mask(frame_lengths, num_frames)
    hidden = hidden * valid[..., None].to(hidden.dtype)
    bias = additive_bias(valid[:, None, None, :] & allowed[None, None], hidden.dtype)
    encoded = model.encoder(hidden, bias)
    return model.ctc_head(model.final_dropout(encoded)), frame_lengths


# ---------------------------------------------------------------------------------------------
# The step


@dataclass(frozen=True)
class StepBatch:
    """One batch on the device, ready for the model (augmented, with its masks)."""

    waveform: Tensor
    """(B, N) float32 samples."""
    lengths: Tensor
    """(B,) valid samples (device)."""
    labels: Tensor
    """(B, L) label ids (device)."""
    frame_lengths: Tensor
    """(B,) valid frames, on the host (known there: the loss reads them without a device sync)."""
    label_lengths: Tensor
    """(B,) labels per row, on the host."""
    allowed: Tensor
    """(T, T) bool attention mask."""
    time_mask: Tensor
    """(B, T) bool SpecAugment frames."""
    channel_mask: Tensor | None
    """(B, D) bool SpecAugment channels, or None."""
    audio_samples: int
    """Valid samples in the batch."""


class FastStep:
    """Data, augmentation, masks, forward, backward and update of one step, all on one device.

    Args:
        model: The model (on ``device``).
        bank: The training set (on ``device``).
        cfg: The run's `TrainConfig` (masks, padding, batch size, clipping, amp).
        fast: Bucket and compile options.
        device: The training device.
        seed: Seed of the device generators.
    """

    def __init__(self, model: Wav2Vec2CTC, bank: AudioBank, cfg: TrainConfig, fast: FastConfig, device: torch.device,
                 seed: int = 0) -> None:
        self.model, self.bank, self.cfg, self.fast, self.device = model, bank, cfg, fast, device
        self.pad_samples = int(cfg.pad_seconds * SAMPLE_RATE)
        # Buckets leave room for one side's largest silence; the two sides share the row's room.
        self.buckets = ShapeBuckets.fit(bank.lengths.tolist(), cfg.max_batch_seconds, fast.buckets, self.pad_samples)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.host = np.random.default_rng(seed)
        self.lengths_np = bank.lengths.cpu().numpy()
        self._left_choices = None if cfg.dynamic_chunk is None else torch.tensor(cfg.dynamic_chunk.left_choices, device=device)
        self.label_lengths_np = bank.label_lengths.cpu().numpy()
        self.augmenter = DeviceAugmenter(fast.augment, device, seed + 1) if cfg.augment else None
        self.use_amp = cfg.amp and (device.type == "cuda" or cpu_supports_bf16())
        self.blank = english_characters().blank_id
        self._ctc_loss = ctc_loss
        self.optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.peak_lr, betas=(0.9, 0.98),
                                           eps=1e-8, fused=True)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.loss_sum = torch.zeros((), device=device)
        self.audio_samples = 0
        self.grad_norm = torch.zeros((), device=device)
        self.micro = 0
        forward: Callable[..., tuple[Tensor, Tensor]] = masked_forward
        if fast.compile:
            forward = torch.compile(masked_forward, dynamic=False, mode=fast.compile_mode)
        self.forward = forward

    def _to_device(self, values: np.ndarray) -> Tensor:
        """Host int64 values → the device without waiting (pinned memory on CUDA)."""
        t = torch.from_numpy(values)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def batch(self, bucket: int, rows: np.ndarray, regularize: bool) -> StepBatch:
        """Gathers, augments and masks one batch (everything before the forward pass).

        See `_batch` (this wrapper labels the work ``data`` for `torch.profiler`).
        """
        with record_function("data"):
            return self._batch(bucket, rows, regularize)

    def _batch(self, bucket: int, rows: np.ndarray, regularize: bool) -> StepBatch:
        """Gathers, augments and masks one batch.

        Lengths are decided on the host (random edge silence, speed) and sent with the row
        indices in one copy; everything else is drawn on the device.

        Args:
            bucket: Bucket of the batch.
            rows: (R,) int64 utterance indices (R = the bucket's rows).
            regularize: Apply augmentation, SpecAugment and chunk masks (False in clean steps).
        """
        cfg, model = self.cfg, self.model
        width = self.buckets.widths[bucket]
        b = len(rows)
        length = self.lengths_np[rows]
        room = width - length  # >= pad_samples by the bucket's choice
        lead = np.minimum(self.host.integers(0, self.pad_samples + 1, b), room)
        trail = np.minimum(self.host.integers(0, self.pad_samples + 1, b), room - lead)
        before = length + lead + trail
        speed = None
        if regularize and self.augmenter is not None:
            speed = self.augmenter.draw_speed(before, width)
        after = before if speed is None else speed.lengths
        srows = np.zeros(0, np.int64) if speed is None else speed.rows
        blob = self._to_device(np.concatenate([rows, lead, before, after, srows]).astype(np.int64))
        rows_d, lead_d, before_d, after_d, srows_d = torch.split(blob, [b, b, b, b, len(srows)])
        wave = self.bank.take(rows_d, width, lead_d)
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
        host_frames = torch.tensor([model.config.num_frames(n) for n in after.tolist()], dtype=torch.long)
        return StepBatch(wave, after_d, self.bank.labels[rows_d], host_frames,
                         torch.from_numpy(self.label_lengths_np[rows]), allowed, time_mask, channel_mask,
                         int(after.sum()))

    def model_step(self, b: StepBatch, lr: float) -> None:
        """Forward, backward and (every ``grad_accum`` calls) the optimizer update; no host sync."""
        with record_function("forward"):
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
                logits, _ = self.forward(self.model, b.waveform, b.lengths, b.allowed, b.time_mask, b.channel_mask)
            loss = self._ctc_loss(logits, b.frame_lengths, b.labels, b.label_lengths, self.blank)
        with record_function("backward"):
            (loss / self.cfg.grad_accum).backward()
        self.loss_sum += loss.detach()
        self.audio_samples += b.audio_samples
        self.micro += 1
        if self.micro % self.cfg.grad_accum:
            return
        with record_function("optimizer"):
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            self.grad_norm = nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad, foreach=True)
            # A non-finite norm skips the update inside the fused kernel (no host round trip).
            self.optimizer.found_inf = (~torch.isfinite(self.grad_norm)).float()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def read_and_reset(self) -> tuple[float, float]:
        """Mean loss of the micro-batches since the last call (one device sync) and their audio seconds."""
        n = max(1, self.micro)
        loss, seconds = float(self.loss_sum) / n, self.audio_samples / SAMPLE_RATE
        self.loss_sum.zero_()
        self.audio_samples = 0
        self.micro = 0
        return loss, seconds


# ---------------------------------------------------------------------------------------------
# Loading and evaluating


def load_bank(source: str | Path, vocab: Vocabulary, cfg: TrainConfig | None = None) -> tuple[AudioBank, int]:
    """Reads a manifest (TSV) or a packed corpus folder (`streamer.train.pack`) into a bank.

    Args:
        source: Manifest or pack folder.
        vocab: Label vocabulary.
        cfg: A `TrainConfig` whose length/label filter applies (None = keep all).

    Returns:
        The bank (CPU) and the number of utterances the filter skipped.
    """
    path = Path(source)
    if path.is_dir():
        from streamer.train.pack import read_pack

        samples, entries = read_pack(path)
        utts = [Utterance(path / e.shard, e.text, e.length / SAMPLE_RATE) for e in entries]
        keep = set(map(id, _filter(utts, cfg, vocab))) if cfg is not None else set(map(id, utts))
        chosen = [(e, u) for e, u in zip(entries, utts) if id(u) in keep]
        return (AudioBank.build(samples, [e.global_start for e, _ in chosen], [e.length for e, _ in chosen],
                                [u.text for _, u in chosen], vocab), len(entries) - len(chosen))
    from streamer.train.data import load_waveform, read_manifest

    utts = read_manifest(path)
    kept = _filter(utts, cfg, vocab) if cfg is not None else utts
    waves = [load_waveform(u.path) for u in kept]
    return AudioBank.from_waves(waves, [u.text for u in kept], vocab), len(utts) - len(kept)


@torch.no_grad()
def evaluate_bank(model: Wav2Vec2CTC, bank: AudioBank, vocab: Vocabulary, chunk: ChunkAttention | None = None,
                  batch_seconds: float = 120.0) -> tuple[float, float]:
    """Greedy (WER, CER) of a model on a bank (no augmentation; batches padded to their longest)."""
    was_training = model.training
    model.eval()
    pairs = []
    lengths = bank.lengths.tolist()
    for idx in length_batches([n / SAMPLE_RATE for n in lengths], batch_seconds, rng=None):
        rows = torch.tensor(idx, device=bank.samples.device)
        wave = bank.take(rows, max(lengths[i] for i in idx))
        logits, flen = model(wave, bank.lengths[rows], chunk=chunk)
        for row, n, i in zip(logits.float().cpu(), flen.cpu(), idx):
            pairs.append((bank.texts[i], greedy_text(row[: int(n)], vocab)))
    model.train(was_training)
    return corpus_rates(pairs)


# ---------------------------------------------------------------------------------------------
# The loop


def train_fast(cfg: TrainConfig, fast: FastConfig = FastConfig(), show_progress: bool = True,
               log: Callable[[str], None] = print) -> TrainSummary:
    """Runs (or resumes) a training run with `FastStep`; the same run folder, checkpoint, LR schedule
    (`streamer.train.trainer.lr_at`, time budget included) and summary as `streamer.train.trainer.train`.

    ``cfg.train_manifests`` and ``cfg.dev_manifest`` may be manifests or packed corpus folders.

    Args:
        cfg: The run's configuration.
        fast: Bucket, augmentation and compile options.
        show_progress: Print a line every ``cfg.log_every`` steps.
        log: Where lines go.

    Returns:
        A `streamer.train.trainer.TrainSummary`.
    """
    from streamer.checkpoint import save_checkpoint

    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    vocab = english_characters()
    model = build_model(cfg, vocab)
    if cfg.freeze_feature_encoder:
        for p in model.feature_extractor.parameters():
            p.requires_grad = False
    model.to(device)
    parts = [load_bank(src, vocab, cfg) for src in cfg.train_manifests]
    bank = _concat_banks([p[0] for p in parts], vocab) if len(parts) > 1 else parts[0][0]
    skipped = sum(p[1] for p in parts)
    if len(bank) == 0:
        raise ConfigError(f"training set: no usable utterance ({skipped} skipped: too long, empty text, or too many labels)")
    dev = None
    if cfg.dev_manifest:
        dev = load_bank(cfg.dev_manifest, vocab)[0]
        keep = min(len(dev), cfg.eval_max_utterances)
        dev = AudioBank.build(dev.samples.numpy(), dev.starts[:keep].tolist(), dev.lengths[:keep].tolist(),
                              dev.texts[:keep], vocab).to(device)
    bank = bank.to(device)

    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "audio_seconds": 0.0, "train_seconds": 0.0,
                             "best": None, "history": []}
    ckpt_path = out / "checkpoint.pt"
    saved = load_training_checkpoint(ckpt_path) if ckpt_path.is_file() else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        state.update(saved["state"])
    step = FastStep(model, bank, cfg, fast, device, seed=cfg.seed * 7919 + state["step"])
    if saved is not None and saved.get("optimizer"):
        step.optimizer.load_state_dict(saved["optimizer"])
    if saved is not None:
        log(f"resumed from {ckpt_path} at step {state['step']} (epoch {state['epoch']}, batch {state['position']})"
            + ("" if saved.get("optimizer") else "; fresh optimizer state"))
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "fast": fast.to_dict()}, indent=2) + "\n")
    lengths = bank.lengths.tolist()
    log(f"model: {count_parameters(model) / 1e6:.2f}M parameters; training set: {len(bank)} utterances, "
        f"{bank.seconds / 3600:.2f} h ({skipped} skipped), in memory {bank.samples.numel() * 2 / 2**20:.0f} MiB; "
        f"dev: {0 if dev is None else len(dev)}; device {device}; bf16 autocast {'on' if step.use_amp else 'off'}; "
        f"buckets {[round(w / SAMPLE_RATE, 1) for w in step.buckets.widths]} s x rows {list(step.buckets.rows)}, "
        f"padding {step.buckets.padding_share(lengths):.0%}; compile {'on' if fast.compile else 'off'}")

    stop = {"now": False}

    def _request_stop(signum: int, frame: Any) -> None:  # noqa: ARG001
        stop["now"] = True

    old_handler = signal.signal(signal.SIGTERM, _request_stop)

    def checkpoint() -> None:
        _save_atomic({"model": model.state_dict(), "optimizer": step.optimizer.state_dict(), "state": state,
                      "config": cfg.to_dict(), "fast": fast.to_dict(), "encoder": model.config.to_dict()}, ckpt_path)
        save_checkpoint(out / "last", model, vocab, {"training": cfg.to_dict(), "step": state["step"]})

    def run_eval() -> EvalResult | None:
        if dev is None:
            return None
        wer, cer = evaluate_bank(model, dev, vocab)
        wer_c = evaluate_bank(model, dev, vocab, chunk=ChunkAttention(32, 4, 1))[0] if cfg.dynamic_chunk is not None else None
        res = EvalResult(state["step"], wer, cer, wer_c, len(dev))
        state["history"].append(dataclasses.asdict(res))
        if state["best"] is None or wer < state["best"]["wer"]:
            state["best"] = dataclasses.asdict(res)
            save_checkpoint(out / "best", model, vocab, {"training": cfg.to_dict(), "step": state["step"],
                                                         "dev": dataclasses.asdict(res)})
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps({"eval": dataclasses.asdict(res), "time": time.time()}) + "\n")
        log(f"step {res.step}: dev WER {res.wer:.3f} CER {res.cer:.3f}"
            + (f" chunked WER {res.wer_chunked:.3f}" if res.wer_chunked is not None else ""))
        return res

    budget_s = None if cfg.time_budget_minutes is None else cfg.time_budget_minutes * 60.0
    start_time = time.time()
    budget_start = start_time - state["train_seconds"]
    if budget_s is not None and state["train_seconds"] >= budget_s:
        stop["now"] = True
    last_save, last_line, last_eval = time.time(), time.time(), None
    model.train()
    try:
        while state["step"] < cfg.max_steps and not stop["now"]:
            plan = step.buckets.epoch(cfg.seed * 100003 + state["epoch"])
            first = state["epoch"] == 0 and cfg.sorted_first_epoch
            if first:  # curriculum: shortest buckets first
                plan.sort(key=lambda item: item[0])
            while state["position"] < len(plan):
                bucket, rows = plan[state["position"]]
                state["position"] += 1
                regularize = state["step"] >= cfg.clean_steps
                state["train_seconds"] = time.time() - budget_start
                batch = step.batch(bucket, rows, regularize)
                step.model_step(batch, lr_at(state["step"], cfg, state["train_seconds"]))
                if step.micro % cfg.grad_accum == 0:
                    state["step"] += 1
                else:
                    continue
                if state["step"] % cfg.log_every == 0:
                    loss, seconds = step.read_and_reset()
                    state["audio_seconds"] += seconds
                    record = {"step": state["step"], "loss": loss, "lr": lr_at(state["step"], cfg, state["train_seconds"]),
                              "grad_norm": float(step.grad_norm), "epoch": state["epoch"],
                              "audio_hours": state["audio_seconds"] / 3600, "elapsed": time.time() - start_time}
                    with open(out / "log.jsonl", "a") as f:
                        f.write(json.dumps(record) + "\n")
                    if show_progress:
                        log(f"step {state['step']}: loss {loss:.3f} lr {record['lr']:.2e} epoch {state['epoch']} "
                            f"audio {record['audio_hours']:.2f} h, {cfg.log_every / max(1e-9, time.time() - last_line):.2f} steps/s")
                    last_line = time.time()
                if state["step"] % cfg.eval_every == 0:
                    last_eval = run_eval() or last_eval
                if time.time() - last_save > cfg.save_every_minutes * 60:
                    checkpoint()
                    last_save = time.time()
                if budget_s is not None and state["train_seconds"] >= budget_s:
                    stop["now"] = True
                if state["step"] >= cfg.max_steps or stop["now"]:
                    break
            else:
                state["epoch"] += 1
                state["position"] = 0
    except KeyboardInterrupt:
        stop["now"] = True
    finally:
        loss, seconds = step.read_and_reset()
        state["audio_seconds"] += seconds
        checkpoint()
        signal.signal(signal.SIGTERM, old_handler)
    spent = budget_s is not None and state["train_seconds"] >= budget_s
    if (state["step"] >= cfg.max_steps or spent) and (last_eval is None or last_eval.step != state["step"]):
        last_eval = run_eval() or last_eval
        checkpoint()
    best = EvalResult(**state["best"]) if state["best"] else None
    return TrainSummary(state["step"], best, last_eval, time.time() - start_time, state["audio_seconds"] / 3600, str(out))


def _concat_banks(banks: Sequence[AudioBank], vocab: Vocabulary) -> AudioBank:
    offsets = np.cumsum([0] + [len(b.samples) for b in banks[:-1]])
    samples = np.concatenate([b.samples.numpy() for b in banks])
    starts = [int(s) + int(o) for b, o in zip(banks, offsets) for s in b.starts.tolist()]
    lengths = [n for b in banks for n in b.lengths.tolist()]
    return AudioBank.build(samples, starts, lengths, [t for b in banks for t in b.texts], vocab)
