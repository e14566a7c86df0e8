"""Training-time masks: SpecAugment-style time/channel masks and dynamic chunk sampling (WeNet U2)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from streamer.errors import ConfigError
from streamer.model.masks import ChunkAttention


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


def span_mask(shape: tuple[int, int], prob: float, length: int, lengths: Tensor | None,
              generator: torch.Generator) -> Tensor:
    """Random spans over the last axis: about ``prob * n`` span starts of ``length`` each per row.

    Args:
        shape: (B, N).
        prob: Probability that an index starts a span.
        length: Span length.
        lengths: (B,) valid extent per row (spans stay inside), or None for N.
        generator: Random source.

    Returns:
        Bool (B, N), True inside a span.
    """
    b, n = shape
    mask = torch.zeros(b, n, dtype=torch.bool)
    if prob <= 0 or n <= length:
        return mask
    for i in range(b):
        valid = int(lengths[i]) if lengths is not None else n
        if valid <= length:
            continue
        count = int(prob * valid / length + torch.rand(1, generator=generator).item())
        if count == 0:
            continue
        starts = torch.randint(0, valid - length, (count,), generator=generator)
        for s in starts.tolist():
            mask[i, s:s + length] = True
    return mask


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

    def sample(self, rng: random.Random) -> ChunkAttention | None:
        """Draws the attention of one batch (None = full attention)."""
        if rng.random() < self.full_prob:
            return None
        frames = rng.randint(self.chunk_min, self.chunk_max)
        return ChunkAttention(frames, rng.choice(self.left_choices), rng.randrange(frames))
