"""The frame pipeline: one stream's audio side, from samples to encoder frames.

A `FramePipeline` owns everything between the samples a stream receives and the logits of its
encoder frames: the sample buffer, resampling to 16 kHz, the running input normalization, the
streaming encoder's state, and the rules that cut the audio into steps and drain the look-ahead at
the end. It is the only loop in streamer that does so; the recognizer's streams, file streaming
(`Recognizer.transcribe` with ``stream_files``) and `stream_whole` all go through it::

    pipe = FramePipeline(encoder)
    for block in blocks:                       # float32 samples, any lengths
        for first, logits in pipe.push(block): # (first frame index, (t, V) logits) per step
            ...
    for first, logits in pipe.drain():         # input finished: the last partial chunk, the look-ahead
        ...

The frames come out consecutive from frame 0, with the offline frame count (see
`streamer.streaming`). `FramePipeline.step_many` runs one step of several pipelines that share an
encoder as a single batched forward (B > 1) when the encoder batches (`StepEncoder.batch_states`);
each pipeline's frames are those it would compute alone.

The encoder is any `StepEncoder`: the eager `streamer.streaming.StreamingEncoder`, or an exported
program run by `streamer.export.runtime.PteStreamingEncoder`.

Input gating (`skip_to`) jumps the stream's clock forward over audio that is not decoded: the frames
before the jump are drained, the encoder state restarts, and the frame numbering continues on the
session's grid, so frame indices (and the times derived from them) stay those of the input.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch import Tensor

from streamer.audio import StreamResampler, resampler_for
from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError
from streamer.grid import XLSR_GRID, FrameGrid
from streamer.preprocess import NormState, normalize_running
from streamer.streaming import StreamingConfig



class StepEncoder(Protocol):
    """A streaming step, ``(chunk, state) -> (logits, valid, state)``, that a pipeline drives."""

    config: StreamingConfig

    def init_state(self, batch: int = 1) -> Any:
        """The state of ``batch`` new streams."""
        ...

    def step(self, chunk: Tensor, state: Any, num_samples: Tensor | None = None) -> tuple[Tensor, Tensor, Any]:
        """(B, chunk samples) → (B, T, V) logits, (B, T) bool valid frames, and the next state."""
        ...

    def batch_states(self, states: list[Any]) -> Any | None:
        """One state for several streams' states, or None when the encoder runs one stream per call."""
        ...

    def unstack_state(self, state: Any) -> list[Any]:
        """The per-stream states of a state `batch_states` made."""
        ...


#: What a step yields: the global index of its first valid frame and the (t, V) logits of its frames.
Frames = tuple[int, Tensor]


class SampleBuffer:
    """A float32 sample queue with amortized O(1) appends and drops, addressed by absolute index.

    Unlike ``np.concatenate`` on every block, appending copies only the new samples (the storage
    doubles when full and is compacted when the dropped head dominates), so feeding a stream costs
    time and memory proportional to what it holds, not to what it received.

    Attributes:
        start: Absolute index (samples since the stream began) of the first held sample.
    """

    def __init__(self, start: int = 0) -> None:
        self._data = np.zeros(1024, dtype=np.float32)
        self._lo = 0
        self._hi = 0
        self.start = start

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def end(self) -> int:
        """Absolute index one past the last held sample."""
        return self.start + len(self)

    def append(self, x: np.ndarray) -> None:
        """Adds samples at the end."""
        n = len(x)
        if n == 0:
            return
        if self._hi + n > len(self._data):
            held = len(self)
            if held + n > len(self._data) // 2:
                grown = np.zeros(max(2 * len(self._data), 2 * (held + n)), dtype=np.float32)
            else:
                grown = self._data
            grown[:held] = self._data[self._lo:self._hi]
            self._data, self._lo, self._hi = grown, 0, held
        self._data[self._hi:self._hi + n] = x
        self._hi += n

    def drop_until(self, index: int) -> None:
        """Forgets the samples before absolute index ``index`` (all of them if it is past the end)."""
        k = min(max(0, index - self.start), len(self))
        self._lo += k
        self.start += k
        if self._lo == self._hi:
            self._lo = self._hi = 0

    def take(self, n: int) -> np.ndarray:
        """Removes and returns (a copy of) the first ``n`` samples (fewer if fewer are held)."""
        n = min(n, len(self))
        out = self._data[self._lo:self._lo + n].copy()
        self.drop_until(self.start + n)
        return out

    def view(self, lo: int, hi: int) -> np.ndarray:
        """The held samples with absolute indices in ``[lo, hi)`` (clipped to what is held; no copy)."""
        a = min(max(0, lo - self.start), len(self))
        b = min(max(a, hi - self.start), len(self))
        return self._data[self._lo + a:self._lo + b]

    def restart(self, start: int) -> None:
        """Drops everything and continues at absolute index ``start``."""
        self._lo = self._hi = 0
        self.start = start


class FramePipeline:
    """One stream's audio side (see the module docstring).

    Args:
        encoder: A `StreamingEncoder` (or the ExecuTorch runtime's equivalent), shared between
            pipelines; the pipeline holds its own state for it.
        normalize: Normalize the input with running statistics (checkpoints that expect
            zero-mean, unit-variance input; see `streamer.preprocess`).
        grid: The frame grid of the encoder.
    """

    def __init__(self, encoder: StepEncoder, normalize: bool = False, grid: FrameGrid = XLSR_GRID) -> None:
        self.encoder = encoder
        self.config = encoder.config
        self.grid = grid
        self._normalize = normalize
        self._norm = NormState()
        self._pending = SampleBuffer()
        self._state = encoder.init_state(1)
        self._steps = 0              # steps of the current segment (since the start or the last skip)
        self._base_frame = 0         # global index of the current segment's frame 0
        self._resampler: StreamResampler | None = None
        self._finished = False       # no more input
        self._flushes_left = 0       # drain steps still to run after the last chunk
        self._drained = False        # finished and every frame emitted
        self._discard = 0            # input samples still to drop after a skip (to reach the grid)
        self.samples_received = 0
        """Samples (at 16 kHz) of the stream's clock so far: received plus skipped."""

    # ------------------------------------------------------------------ input
    def append(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Queues mono float32 samples (resampled to 16 kHz); runs no step.

        Returns:
            The samples as queued (16 kHz; they start at absolute index ``end - len``, see `queued_end`),
            for callers that keep the audio.

        Raises:
            AudioError: A bad sample rate (see `streamer.audio.check_sample_rate`).
            ConfigError: After `input_finished`, or a rate different from earlier calls.
        """
        if self._finished:
            raise ConfigError("stream: accept_waveform after input_finished; create a new stream")
        self._resampler = resampler_for(self._resampler, sample_rate, "stream")
        x = self._resampler(np.asarray(samples, dtype=np.float32))
        self.samples_received += len(x)
        if self._discard:  # samples between a skip target and the next whole hop
            d = min(self._discard, len(x))
            x, self._discard = x[d:], self._discard - d
        self._pending.append(x)
        return x

    def input_finished(self) -> np.ndarray:
        """Marks the end of the input (idempotent); returns the resampler's last samples, if any."""
        tail = np.zeros(0, dtype=np.float32)
        if self._finished:
            return tail
        if self._resampler is not None:
            tail = self._resampler(tail, last=True)
            self._pending.append(tail)
            self.samples_received += len(tail)
        self._finished = True
        self._flushes_left = self.config.flush_steps
        self._drained = not len(self._pending) and self._flushes_left <= 0
        return tail

    def skip_to(self, sample: int) -> Iterator[Frames]:
        """Jumps the clock to absolute 16-kHz sample ``sample`` without decoding the audio in between.

        Drains the current segment (its last frames are yielded), restarts the encoder state and
        continues on the grid: the next frames are numbered from the first whole hop at or after
        ``sample``; the samples before that hop are dropped.

        Raises:
            ConfigError: ``sample`` lies before the samples already received.
        """
        if sample < self.samples_received:
            raise ConfigError(f"stream: expected to skip forward from sample {self.samples_received}, found {sample}")
        if self._finished:
            raise ConfigError("stream: skip after input_finished; create a new stream")
        if sample == self.samples_received:
            return
        if self._steps == 0 and not len(self._pending):  # nothing since the last restart: no segment to drain
            self._jump(sample)
            return
        self._finished, self._flushes_left = True, self.config.flush_steps
        self._drained = not len(self._pending) and self._flushes_left <= 0
        while self.ready:
            out = self.step_many([self])[0]
            if out is not None:
                yield out
        self._jump(sample)

    def _jump(self, sample: int) -> None:
        """Restarts the encoder state and the sample buffer at ``sample`` (on the next whole hop)."""
        hop = self.grid.hop_samples
        self._base_frame = -(-sample // hop)
        self._pending.restart(self._base_frame * hop)
        self._discard = self._base_frame * hop - sample
        self._state = self.encoder.init_state(1)
        self._steps, self._finished, self._drained = 0, False, False
        self.samples_received = sample

    @property
    def queued_end(self) -> int:
        """Absolute 16-kHz index one past the last sample queued (the grid position of the input)."""
        return self._pending.end

    # ------------------------------------------------------------------ steps
    @property
    def ready(self) -> bool:
        """True when a full chunk is queued, or the input ended and frames remain to be drained."""
        if len(self._pending) >= self.config.chunk_samples:
            return True
        return self._finished and not self._drained

    @property
    def drained(self) -> bool:
        """True once the input ended and every frame has been emitted."""
        return self._drained

    def _next_input(self) -> tuple[np.ndarray, int]:
        """The next step's chunk (normalized, zero-padded to the chunk size) and its real samples."""
        c = self.config.chunk_samples
        if len(self._pending) >= c:
            piece = self._pending.take(c)
        elif len(self._pending):
            piece = self._pending.take(c)
        else:
            piece = np.zeros(0, dtype=np.float32)
            self._flushes_left -= 1
        if self._finished and not len(self._pending) and self._flushes_left <= 0:
            self._drained = True
        real = len(piece)
        if self._normalize and real:
            self._norm, piece = normalize_running(self._norm, piece)
        if real < c:
            piece = np.pad(piece, (0, c - real))
        return piece, real

    def _frames(self, logits: Tensor, valid: Tensor) -> Frames | None:
        """The valid frames of this pipeline's step (consecutive), with their first global index."""
        first = self._base_frame + self.config.first_frame(self._steps)
        self._steps += 1
        if not bool(valid.any()):
            return None
        idx = valid.nonzero()[:, 0]
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        return first + lo, logits[lo:hi].float()

    @staticmethod
    @torch.no_grad()
    def step_many(pipelines: list["FramePipeline"]) -> list[Frames | None]:
        """Runs one step of each (ready) pipeline; pipelines sharing a batchable encoder run as one forward.

        Returns:
            Per pipeline, its step's frames, or None when the step emitted none (stream start, drain).
        """
        inputs = [p._next_input() for p in pipelines]
        enc = pipelines[0].encoder
        shared = len(pipelines) > 1 and all(p.encoder is enc for p in pipelines)
        batched = enc.batch_states([p._state for p in pipelines]) if shared else None
        if batched is not None:
            x = torch.from_numpy(np.stack([piece for piece, _ in inputs]))
            real = torch.tensor([r for _, r in inputs], dtype=torch.long)
            logits, valid, state = enc.step(x, batched, real)
            out = []
            for i, (p, s) in enumerate(zip(pipelines, enc.unstack_state(state))):
                p._state = s
                out.append(p._frames(logits[i], valid[i]))
            return out
        out = []
        for p, (piece, r) in zip(pipelines, inputs):
            logits, valid, p._state = p.encoder.step(torch.from_numpy(piece)[None], p._state, torch.tensor([r]))
            out.append(p._frames(logits[0], valid[0]))
        return out

    # ------------------------------------------------------------------ one-stream loop
    def push(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Iterator[Frames]:
        """Queues samples and runs every full chunk; yields each step's frames."""
        self.append(samples, sample_rate)
        while len(self._pending) >= self.config.chunk_samples:
            out = self.step_many([self])[0]
            if out is not None:
                yield out

    def drain(self) -> Iterator[Frames]:
        """Ends the input (`input_finished`) and runs the last partial chunk and the look-ahead."""
        self.input_finished()
        while self.ready:
            out = self.step_many([self])[0]
            if out is not None:
                yield out


@torch.no_grad()
def stream_whole(encoder: StepEncoder, samples: Tensor) -> Tensor:
    """Streams one whole utterance through a `FramePipeline` (tests, benchmarks).

    Args:
        encoder: The streaming encoder.
        samples: (N,) float samples at 16 kHz.

    Returns:
        (T, V) logits of the valid frames, T = the offline frame count.
    """
    pipe = FramePipeline(encoder)
    x = samples.detach().cpu().numpy().astype("float32", copy=False)
    out = [logits for _, logits in pipe.push(x)] + [logits for _, logits in pipe.drain()]
    vocab_size = out[0].shape[-1] if out else 0
    return torch.cat(out) if out else torch.zeros(0, vocab_size)
