"""Attention masks: padding masks and block-causal (chunked) masks.

Masks are boolean, ``True`` = may attend. `additive_bias` turns them into the float bias the
attention adds to its scores. A fully masked row (a padded query) gets a finite bias, so it yields
a harmless average instead of NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamer.errors import ConfigError


@dataclass(frozen=True)
class ChunkAttention:
    """Block-causal attention: each frame sees its chunk and ``left_chunks`` chunks before it.

    Frame ``t`` belongs to chunk ``(t + offset) // chunk_frames``. The streaming cached mode groups
    frames with ``offset = 1`` (see `streamer.streaming`), so equivalence tests build the offline
    mask with the same offset.
    """

    chunk_frames: int
    """Frames per chunk (50 frames = 1 s)."""
    left_chunks: int = -1
    """Chunks of left context each frame sees; -1 = all previous chunks."""
    offset: int = 0
    """Shift of the chunk grid in frames (0 <= offset < chunk_frames)."""

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ConfigError(f"chunk_frames: expected >= 1, found {self.chunk_frames}")
        if self.left_chunks < -1:
            raise ConfigError(f"left_chunks: expected -1 (unlimited) or >= 0, found {self.left_chunks}")
        if not 0 <= self.offset < self.chunk_frames:
            raise ConfigError(f"offset: expected 0 <= offset < chunk_frames={self.chunk_frames}, found {self.offset}")


def chunk_mask(num_frames: int, chunk: ChunkAttention, device: torch.device | None = None) -> Tensor:
    """Builds the block-causal mask of `chunk` for a sequence.

    Args:
        num_frames: Sequence length T.
        chunk: The chunking.
        device: Device of the result.

    Returns:
        Bool tensor (T, T); entry (q, k) is True when query frame q may attend to key frame k.
    """
    idx = torch.arange(num_frames, device=device)
    block = torch.div(idx + chunk.offset, chunk.chunk_frames, rounding_mode="floor")
    q, k = block[:, None], block[None, :]
    allowed = k <= q
    if chunk.left_chunks >= 0:
        allowed = allowed & (k >= q - chunk.left_chunks)
    return allowed


def padding_mask(frame_lengths: Tensor, num_frames: int) -> Tensor:
    """Marks the valid frames of a padded batch.

    Args:
        frame_lengths: (B,) int, valid frames of each sequence.
        num_frames: Padded length T.

    Returns:
        Bool tensor (B, T), True on valid frames.
    """
    return torch.arange(num_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


def additive_bias(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Turns a boolean mask into an additive attention bias (0 where allowed, a large negative elsewhere)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)
