"""Training-time masks drawn on the training device: SpecAugment-style time/channel spans and
dynamic chunk (block-causal) attention (WeNet U2), so one model serves offline and streaming use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamer.errors import ConfigError


@dataclass(frozen=True)
class SpecAugmentConfig:
    """Masks applied to the projected features, as in the XLSR fine-tuning recipe."""

    time_prob: float = 0.05
    """Share of frames that start a time mask."""
    time_length: int = 10
    """Frames per time mask."""
    channel_prob: float = 0.0
    """Share of hidden channels that start a channel mask."""
    channel_length: int = 16
    """Channels per channel mask."""

    def __post_init__(self) -> None:
        for name in ("time_prob", "channel_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"specaugment.{name}: expected a probability in [0, 1), found {getattr(self, name)}")
        for name in ("time_length", "channel_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"specaugment.{name}: expected >= 1, found {getattr(self, name)}")


@dataclass(frozen=True)
class DynamicChunkConfig:
    """Random block-causal attention per batch, so one model serves offline and streaming use.

    Each batch uses full attention with probability ``full_prob``; otherwise a chunk of
    ``chunk_min..chunk_max`` frames and a left context drawn from ``left_choices`` chunks (-1 =
    unlimited), with a random grid offset.
    """

    full_prob: float = 0.4
    chunk_min: int = 8
    chunk_max: int = 64
    left_choices: tuple[int, ...] = (-1, 2, 4, 8)

    def __post_init__(self) -> None:
        if not 0.0 <= self.full_prob <= 1.0:
            raise ConfigError(f"dynamic_chunk.full_prob: expected [0, 1], found {self.full_prob}")
        if not 1 <= self.chunk_min <= self.chunk_max:
            raise ConfigError(f"dynamic_chunk: expected 1 <= chunk_min <= chunk_max, found {self.chunk_min}, {self.chunk_max}")
        if not self.left_choices or any(c < -1 for c in self.left_choices):
            raise ConfigError(f"dynamic_chunk.left_choices: expected values >= -1, found {self.left_choices}")


def time_span_mask(valid: Tensor, width: int, prob: float, span: int, gen: torch.Generator) -> Tensor:
    """SpecAugment spans drawn on the device: about ``prob * valid / span`` spans per row.

    A count of ``floor(prob * valid / span + U)`` spans per row, starts uniform in
    ``[0, valid - span)``.

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
    """The dynamic chunk mask of one batch, drawn on the device.

    Returns:
        (T, T) bool, True where query frame q may attend to key frame k: full attention with
        probability ``full_prob``, else block-causal with a chunk of ``chunk_min..chunk_max``
        frames, a left context from ``left_choices`` chunks (-1 = unlimited) and a random grid
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
