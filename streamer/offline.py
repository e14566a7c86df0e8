"""Offline inference over long audio: overlapping windows with strided edges.

Window ``k`` starts at frame ``a_k = k * (W - 2c)`` (W window frames, c context frames) and covers
samples ``[320 a_k, 320 (a_k + W) + 80)``. It keeps its frames ``[c, W - c)`` — the first window from
frame 0, the last one up to the end — so the kept ranges tile ``[0, T)`` exactly: no frame is dropped
or duplicated, and the frame count equals the whole-file forward's. Frame-local features make a
window's frames identical to the whole file's; attention sees ``c`` frames (2 s by default) beyond
each kept edge. Audio arrives in blocks and is dropped once no later window needs it, so memory is
bounded by the window, not the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from streamer.constants import OFFLINE_CONTEXT_SECONDS, OFFLINE_WINDOW_SECONDS
from streamer.errors import ConfigError
from streamer.grid import XLSR_GRID, FrameGrid
from streamer.model.masks import ChunkAttention
from streamer.model.model import Wav2Vec2CTC
from streamer.preprocess import normalize_utterance


@dataclass(frozen=True)
class WindowConfig:
    """Window and context sizes of offline inference, in 20-ms frames."""

    window_frames: int = XLSR_GRID.frames_in(OFFLINE_WINDOW_SECONDS)
    """Frames per window (1000 = 20 s)."""
    context_frames: int = XLSR_GRID.frames_in(OFFLINE_CONTEXT_SECONDS)
    """Frames discarded at each inner window edge (100 = 2 s)."""

    def __post_init__(self) -> None:
        if self.context_frames < 0:
            raise ConfigError(f"window context: expected >= 0 frames, found {self.context_frames}")
        if self.window_frames - 2 * self.context_frames < 1:
            raise ConfigError(
                f"window: expected window_frames > 2 * context_frames, found {self.window_frames} and {self.context_frames}")

    @classmethod
    def from_seconds(cls, window: float, context: float) -> "WindowConfig":
        """Builds a config from seconds (rounded to frames)."""
        return cls(XLSR_GRID.frames_in(window), XLSR_GRID.frames_in(context))

    @property
    def stride_frames(self) -> int:
        """Frames between window starts."""
        return self.window_frames - 2 * self.context_frames

    @property
    def window_samples(self) -> int:
        """Samples a full window spans (on the XLSR grid)."""
        return XLSR_GRID.span_samples(self.window_frames)


@torch.no_grad()
def iter_window_logits(model: Wav2Vec2CTC, blocks: Iterable[np.ndarray], config: WindowConfig = WindowConfig(),
                       chunk: ChunkAttention | None = None, normalize: bool = False) -> Iterator[tuple[int, Tensor]]:
    """Computes a long signal's logits window by window.

    Args:
        model: The model (eval mode).
        blocks: Consecutive 16-kHz float32 sample blocks of one signal (any sizes).
        config: Window sizes.
        chunk: Block-causal attention to apply (its grid stays anchored at the signal's frame 0), or
            None for full attention within each window.
        normalize: Normalize each window to zero mean and unit variance (checkpoints that expect
            normalized utterances; see `streamer.preprocess`).

    Yields:
        ``(first_frame, logits)``: consecutive, non-overlapping (t, V) logit ranges whose frames
        together are ``0 .. T-1``.
    """
    w, c, stride = config.window_frames, config.context_frames, config.stride_frames
    grid = FrameGrid.of(model.config)
    span = grid.span_samples(w)
    device = model.ctc_head.weight.device
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # global sample index of buf[0] (a multiple of the hop)
    k = 0
    pending = iter(blocks)
    ended = False
    while True:
        a = k * stride
        need_end = grid.samples(a) + span
        while not ended and buf_start + len(buf) < need_end:
            block = next(pending, None)
            if block is None:
                ended = True
            elif len(block):
                buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        lo = grid.samples(a) - buf_start
        window = buf[lo:lo + span]
        total_frames = model.config.num_frames(buf_start + len(buf)) if ended else None
        last = ended and buf_start + len(buf) <= need_end
        frames = model.config.num_frames(len(window))
        if frames > 0:
            ch = None if chunk is None else ChunkAttention(chunk.chunk_frames, chunk.left_chunks,
                                                           (chunk.offset + a) % chunk.chunk_frames)
            if normalize:
                window = normalize_utterance(window)
            x = torch.from_numpy(np.ascontiguousarray(window))[None].to(device)
            logits, _ = model(x, chunk=ch)
            keep_lo = 0 if k == 0 else c
            keep_hi = frames if last else w - c
            if total_frames is not None:
                keep_hi = min(keep_hi, total_frames - a)
            if keep_hi > keep_lo:
                yield a + keep_lo, logits[0, keep_lo:keep_hi].float().cpu()
        if last or frames == 0:
            return
        k += 1
        drop = grid.samples(k * stride) - buf_start
        buf = buf[drop:]
        buf_start += drop
