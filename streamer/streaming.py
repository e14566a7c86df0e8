"""Streaming encoder: a pure step ``(samples_chunk, state) -> (logits, valid, state)``.

Frame bookkeeping (both modes). Offline, frame ``g`` covers samples ``[320 g, 320 g + 400)`` and an
utterance of N samples has ``T = (N - 400) // 320 + 1`` frames. A step receives ``C = 320 n`` new
samples and keeps the previous 320 samples as state, so the conv stack computes exactly ``n`` frames
per step, aligned with the offline grid: at step ``k`` (from 0) they are ``g = k n - 1 ... k n + n - 2``
(one frame lags because frame ``k n + n - 1`` needs 80 samples of the next chunk). A frame is *valid*
when ``g >= 0`` and all its samples have arrived (``320 g + 400 <= samples received``); invalid frames
(the one before the stream starts, the padding of the flush) are masked as attention keys and never
reported. The frame sequence a stream emits therefore has the same length and timing as offline.

Modes:

* ``window`` — any checkpoint. Projected features (frame-local, so caching them is exact) are kept for
  ``left + n + right`` frames; each step runs the transformer over that window and emits the ``n``
  frames that now have ``right`` frames of look-ahead (frames ``k n - 1 - right + j``). Emission lags
  by ``right`` frames; `flush_steps` says how many empty steps drain the look-ahead at the end.
* ``cached`` — models trained with block-causal attention and a causal positional conv. Each layer
  keeps a key/value cache of ``left_chunks`` chunks; the positional conv keeps its last K-1 inputs.
  The result equals the offline forward with ``ChunkAttention(n, left_chunks, offset=1)`` (the step's
  frame grid starts one frame early), and the cost per step does not depend on the stream's length.

Shapes are fixed per configuration (B streams, C samples, n frames), so the step exports as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from streamer.constants import MAX_CHUNK_SECONDS, MAX_LEFT_SECONDS, MAX_RIGHT_SECONDS
from streamer.errors import ConfigError
from streamer.grid import XLSR_GRID, FrameGrid
from streamer.model.masks import ChunkAttention, additive_bias
from streamer.model.model import Wav2Vec2CTC

MODES = ("window", "cached")


@dataclass(frozen=True)
class StreamingConfig:
    """How a stream is cut and how much context each step sees (all sizes in 20-ms frames)."""

    mode: str = "window"
    """``window`` (any checkpoint) or ``cached`` (block-causal models)."""
    chunk_frames: int = 32
    """Frames per step (32 = 0.64 s of new audio per step)."""
    left_frames: int = 64
    """Left context: window mode, frames of re-encoded history; cached mode, frames of key/value
    cache (a multiple of ``chunk_frames``)."""
    right_frames: int = 16
    """Look-ahead frames (window mode only; cached mode has none)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"streaming mode: expected one of {MODES}, found {self.mode!r}")
        g = XLSR_GRID
        for name, low, high_s in (("chunk_frames", 1, MAX_CHUNK_SECONDS), ("left_frames", 0, MAX_LEFT_SECONDS),
                                  ("right_frames", 0, MAX_RIGHT_SECONDS)):
            value, high = getattr(self, name), g.frames_in(high_s)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"streaming {name.replace('_frames', '')}: expected {low} to {high} frames of "
                                  f"{g.frame_seconds} s ({g.seconds(low):g} to {high_s:g} s), found {value!r} frames")
        if self.mode == "cached":
            if self.right_frames != 0:
                raise ConfigError(f"cached mode has no look-ahead: expected right_frames=0, found {self.right_frames}")
            if self.left_frames % self.chunk_frames:
                raise ConfigError(
                    f"cached mode: expected left_frames to be a multiple of chunk_frames={self.chunk_frames}, "
                    f"found {self.left_frames}")

    @classmethod
    def from_seconds(cls, mode: str, chunk: float, left: float | None = None, right: float | None = None) -> "StreamingConfig":
        """Builds a config from durations in seconds, rounded to whole 20-ms frames.

        Defaults: window mode left = 2 chunks (at least 1 s), right = half a chunk (at least 0.24 s);
        cached mode left = 4 chunks, right = 0.
        """
        g = XLSR_GRID
        chunk = _seconds("chunk", chunk, g.frame_seconds / 2, MAX_CHUNK_SECONDS)
        if left is not None:
            left = _seconds("left", left, 0.0, MAX_LEFT_SECONDS)
        if right is not None:
            right = _seconds("right", right, 0.0, MAX_RIGHT_SECONDS)
        n = max(1, g.frames_in(chunk))
        if mode == "cached":
            left_chunks = 4 if left is None else max(0, round(left / g.seconds(n)))
            return cls(mode, n, left_chunks * n, 0 if right is None else g.frames_in(right))
        lf = max(n * 2, g.frames_in(1.0)) if left is None else g.frames_in(left)
        rf = max(n // 2, g.frames_in(0.24)) if right is None else g.frames_in(right)
        return cls(mode, n, lf, rf)

    @property
    def chunk_samples(self) -> int:
        """New samples per step."""
        return XLSR_GRID.samples(self.chunk_frames)

    @property
    def left_chunks(self) -> int:
        """Cached mode: chunks of key/value cache."""
        return self.left_frames // self.chunk_frames

    @property
    def latency_seconds(self) -> float:
        """Algorithmic latency: a chunk, the look-ahead and the one lagging frame, in seconds."""
        g = XLSR_GRID
        return g.seconds(self.chunk_frames + self.right_frames + 1) + g.sample_seconds(g.lookahead_samples)

    @property
    def flush_steps(self) -> int:
        """Steps with no new audio needed after the last chunk to emit every remaining frame."""
        return -(-self.right_frames // self.chunk_frames) if self.mode == "window" else 0

    def first_frame(self, steps_before: int) -> int:
        """Global index of the first frame a step emits, given the steps taken before it."""
        lag = self.right_frames if self.mode == "window" else 0
        return steps_before * self.chunk_frames - 1 - lag

    def chunk_attention(self) -> ChunkAttention:
        """The offline attention that cached mode reproduces."""
        return ChunkAttention(self.chunk_frames, self.left_chunks, offset=1 % self.chunk_frames)


def _seconds(name: str, value: float, low: float, high: float) -> float:
    """A duration option checked to be a finite number of seconds in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        shown = XLSR_GRID.frame_seconds if low else 0.0
        raise ConfigError(f"streaming {name}: expected {shown:g} to {high:g} seconds (rounded to "
                          f"{XLSR_GRID.frame_seconds:g}-s frames), found {value!r}")
    return float(value)


@dataclass(frozen=True)
class WindowState:
    """State of a window-mode stream (B streams)."""

    samples: Tensor
    """(B, 320) the last 320 samples received."""
    samples_seen: Tensor
    """(B,) int64 real samples received."""
    steps: Tensor
    """(B,) int64 steps taken."""
    features: Tensor
    """(B, left + n + right, D) projected features of the window's frames (oldest first)."""
    valid: Tensor
    """(B, left + n + right) bool, which window frames are real."""


@dataclass(frozen=True)
class CachedState:
    """State of a cached-mode stream (B streams)."""

    samples: Tensor
    """(B, 320) the last 320 samples received."""
    samples_seen: Tensor
    """(B,) int64 real samples received."""
    steps: Tensor
    """(B,) int64 steps taken."""
    pos_history: Tensor
    """(B, K-1, D) last inputs of the causal positional conv (zero = before the stream)."""
    keys: Tensor
    """(layers, B, H, left, D/H) key cache."""
    values: Tensor
    """(layers, B, H, left, D/H) value cache."""
    cache_valid: Tensor
    """(B, left) bool, which cache slots hold real frames."""


State = WindowState | CachedState


def state_tensors(state: State) -> tuple[Tensor, ...]:
    """The state's tensors in field order (for export and for batching streams)."""
    return tuple(getattr(state, f.name) for f in fields(state))


def _batch_dim(name: str) -> int:
    """The batch dimension of a state field (the key/value caches lead with the layer dimension)."""
    return 1 if name in ("keys", "values") else 0


def stack_states(states: list[State]) -> State:
    """Joins single-stream states of one mode into one batched state (B = sum of their batches)."""
    cls = type(states[0])
    return cls(**{f.name: torch.cat([getattr(s, f.name) for s in states], dim=_batch_dim(f.name))
                  for f in fields(cls)})


def unstack_state(state: State) -> list[State]:
    """Splits a batched state into single-stream states (the inverse of `stack_states`)."""
    cls = type(state)
    parts = {f.name: getattr(state, f.name).split(1, dim=_batch_dim(f.name)) for f in fields(cls)}
    return [cls(**{name: parts[name][i] for name in parts}) for i in range(state.steps.shape[0])]


class StreamingEncoder(nn.Module):
    """Runs a `Wav2Vec2CTC` chunk by chunk (shares its weights).

    Args:
        model: The model (eval mode).
        config: The streaming setup.
        trim_invalid: Window mode: skip the window's leading/trailing frames that no stream in the
            batch has yet (stream start, flush). Exact (masked keys and zero features change nothing)
            and cheaper in eager mode; export sets False to keep one fixed graph.

    Raises:
        ConfigError: Cached mode on a model without a causal positional conv or with a GroupNorm
            front-end (its normalization spans the whole utterance).
    """

    def __init__(self, model: Wav2Vec2CTC, config: StreamingConfig, trim_invalid: bool = True) -> None:
        super().__init__()
        mc = model.config
        if FrameGrid.of(mc) != XLSR_GRID:
            raise ConfigError(
                f"streaming: expected the XLSR conv layout (hop {XLSR_GRID.hop_samples}, receptive field "
                f"{XLSR_GRID.field_samples} samples), found hop {mc.hop_samples}, field {mc.receptive_field_samples}")
        if config.mode == "cached":
            if not mc.pos_conv_causal:
                raise ConfigError("cached streaming: expected a model with a causal positional conv "
                                  "(pos_conv_causal=true, trained with block-causal masks); found a centred one. "
                                  "Use --streaming window for this model.")
            if mc.feat_extract_norm != "layer":
                raise ConfigError(f"cached streaming: expected feat_extract_norm='layer', found {mc.feat_extract_norm!r}")
            if config.left_chunks < 1:
                raise ConfigError("cached streaming: expected at least one chunk of left context")
        self.model = model
        self.config = config
        self.trim_invalid = trim_invalid

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int = 1) -> State:
        """The state before any audio, for ``batch`` streams."""
        mc, sc = self.model.config, self.config
        dev = self.model.ctc_head.weight.device
        common = dict(samples=torch.zeros(batch, XLSR_GRID.hop_samples, device=dev),
                      samples_seen=torch.zeros(batch, dtype=torch.long, device=dev),
                      steps=torch.zeros(batch, dtype=torch.long, device=dev))
        if sc.mode == "window":
            w = sc.left_frames + sc.chunk_frames + sc.right_frames
            return WindowState(**common, features=torch.zeros(batch, w, mc.hidden_size, device=dev),
                               valid=torch.zeros(batch, w, dtype=torch.bool, device=dev))
        k = self.model.encoder.pos_conv.context_frames
        cache = (mc.num_layers, batch, mc.num_heads, sc.left_frames, mc.head_dim)
        return CachedState(**common, pos_history=torch.zeros(batch, k, mc.hidden_size, device=dev),
                           keys=torch.zeros(cache, device=dev), values=torch.zeros(cache, device=dev),
                           cache_valid=torch.zeros(batch, sc.left_frames, dtype=torch.bool, device=dev))

    # ------------------------------------------------------------------ step
    def _new_frames(self, chunk: Tensor, samples: Tensor, samples_seen: Tensor, steps: Tensor,
                    num_samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Conv + projection of the step's n frames and their validity.

        The frame arithmetic uses integer tensors only (no Python scalars): quantization passes turn
        scalar literals into float constants, and float counters lose exactness past 2^24 samples.

        Args:
            chunk: (B, C) new samples.
            samples: (B, 320) the previous step's last samples.
            samples_seen: (B,) int64 real samples before this chunk.
            steps: (B,) int64 steps taken before this one.
            num_samples: (B,) int64 real samples in ``chunk``.

        Returns:
            Features (B, n, D) (zero where invalid), validity (B, n) bool, and the samples seen after it.
        """
        n = self.config.chunk_frames
        audio = torch.cat([samples, chunk], dim=1)
        feats = self.model.feature_projection(self.model.feature_extractor(audio))  # (B, n, D)
        seen = samples_seen + num_samples
        steps = steps[:, None]
        g = steps * torch.full_like(steps, n) - torch.ones_like(steps) + torch.arange(n, device=chunk.device)[None, :]
        end = g * torch.full_like(g, XLSR_GRID.hop_samples) + torch.full_like(g, XLSR_GRID.field_samples)
        valid = (g >= torch.zeros_like(g)) & (end <= seen[:, None])
        feats = feats * valid[..., None].to(feats.dtype)
        return feats, valid, seen

    def step(self, chunk: Tensor, state: State, num_samples: Tensor | None = None) -> tuple[Tensor, Tensor, State]:
        """Consumes one chunk.

        Args:
            chunk: (B, 320 n) float samples at 16 kHz; after the end of a stream, zero padding.
            state: The stream's state.
            num_samples: (B,) int64 real samples in ``chunk`` (default: all). Use fewer for the last
                partial chunk and 0 for `flush_steps` drain steps.

        Returns:
            Logits (B, n, V), a (B, n) bool mask of the frames that are real, and the next state.
            Window mode's frames are ``k n - 1 - right + j``, cached mode's ``k n - 1 + j`` (k = steps
            taken before this one).
        """
        b, c = chunk.shape
        if c != self.config.chunk_samples:
            raise ConfigError(f"step: expected chunks of {self.config.chunk_samples} samples, found {c}")
        if num_samples is None:
            num_samples = torch.full((b,), c, dtype=torch.long, device=chunk.device)
        if isinstance(state, WindowState):
            return self._window_step(chunk, state, num_samples)
        return self._cached_step(chunk, state, num_samples)

    def _window_step(self, chunk: Tensor, state: WindowState, num_samples: Tensor) -> tuple[Tensor, Tensor, WindowState]:
        sc = self.config
        n, left = sc.chunk_frames, sc.left_frames
        feats, valid, seen = self._new_frames(chunk, state.samples, state.samples_seen, state.steps, num_samples)
        window = torch.cat([state.features[:, n:], feats], dim=1)
        wvalid = torch.cat([state.valid[:, n:], valid], dim=1)
        lo, hi = 0, window.shape[1]
        if self.trim_invalid:
            any_valid = wvalid.any(dim=0).nonzero()
            if len(any_valid):
                lo = min(int(any_valid[0]), left)
                hi = max(int(any_valid[-1]) + 1, left + n)
        bias = additive_bias(wvalid[:, None, None, lo:hi], window.dtype)
        encoded = self.model.encoder(window[:, lo:hi], bias)
        logits = self.model.ctc_head(encoded[:, left - lo:left - lo + n])
        new = WindowState(samples=chunk[:, -XLSR_GRID.hop_samples:], samples_seen=seen, steps=state.steps + torch.ones_like(state.steps),
                          features=window, valid=wvalid)
        return logits, wvalid[:, left:left + n], new

    def _cached_step(self, chunk: Tensor, state: CachedState, num_samples: Tensor) -> tuple[Tensor, Tensor, CachedState]:
        x, bias, valid, small = self.cached_begin(chunk, state.samples, state.samples_seen, state.steps,
                                                  state.pos_history, state.cache_valid, num_samples)
        left = self.config.left_frames
        new_keys, new_values = [], []
        for i, layer in enumerate(self.model.encoder.layers):
            x, k, v = layer(x, bias, state.keys[i], state.values[i])
            new_keys.append(torch.cat([state.keys[i], k], dim=2)[:, :, -left:])
            new_values.append(torch.cat([state.values[i], v], dim=2)[:, :, -left:])
        samples, seen, steps, pos_history, cache_valid = small
        new = CachedState(samples=samples, samples_seen=seen, steps=steps, pos_history=pos_history,
                          keys=torch.stack(new_keys), values=torch.stack(new_values), cache_valid=cache_valid)
        return self.cached_end(x), valid, new

    def cached_begin(self, chunk: Tensor, samples: Tensor, samples_seen: Tensor, steps: Tensor, pos_history: Tensor,
                     cache_valid: Tensor, num_samples: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
        """A cached step up to the first layer (shared with the exported step, whose cache layout differs).

        Args:
            chunk, samples, samples_seen, steps, num_samples: See `_new_frames`.
            pos_history: (B, K-1, D) the positional conv's last inputs.
            cache_valid: (B, left) bool, which cache slots hold real frames.

        Returns:
            The layers' input (B, n, D); the additive attention bias (B, 1, 1, left + n) over the cache
            followed by the new frames; the new frames' validity (B, n); and the next state's
            ``(samples, samples_seen, steps, pos_history, cache_valid)``.
        """
        enc = self.model.encoder
        feats, valid, seen = self._new_frames(chunk, samples, samples_seen, steps, num_samples)
        pos, pos_history = enc.pos_conv.step(feats, pos_history)
        x = enc.embed(feats, pos)
        allowed = torch.cat([cache_valid, valid], dim=1)
        bias = additive_bias(allowed[:, None, None, :], x.dtype)
        small = (chunk[:, -XLSR_GRID.hop_samples:], seen, steps + torch.ones_like(steps), pos_history,
                 allowed[:, -self.config.left_frames:])
        return x, bias, valid, small

    def cached_end(self, x: Tensor) -> Tensor:
        """The last layer's output (B, n, D) → logits (B, n, V)."""
        return self.model.ctc_head(self.model.encoder.finish(x))

    def first_frame(self, steps_before: int) -> int:
        """Global index of the first frame a step emits (see `StreamingConfig.first_frame`)."""
        return self.config.first_frame(steps_before)

    def batch_states(self, states: list[State]) -> State:
        """One batched state of several streams' states (`stack_states`): this encoder runs them
        as one forward."""
        return stack_states(states)

    def unstack_state(self, state: State) -> list[State]:
        """The per-stream states of a batched state (`unstack_state`)."""
        return unstack_state(state)
