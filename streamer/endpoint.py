"""Endpointing: deciding where an utterance ends, as pure logic over per-frame flags.

The detector sees one boolean per encoder frame (20 ms on the XLSR grid, `streamer.grid`): whether the frame's best
CTC token is the blank, and optionally whether a voice-activity detector heard speech in it. From
these it decides that the utterance has ended; the recognizer then finalizes the decoder state and
starts a new utterance with the frames that follow.

Definitions (per frame):

* **silent** frame — without a VAD: the best token is the blank (the CTC "trailing blank" rule).
  With a VAD, ``EndpointConfig.vad_rule`` decides: ``"both"`` (default): blank *and* VAD non-speech;
  ``"either"``: blank *or* VAD non-speech.
* **speech** frame — a frame that is not silent. The utterance "has speech" from its first speech
  frame on.
* **trailing silence** at a frame — the number of consecutive silent frames ending at that frame
  (counted across chunks; 0 at a speech frame).

Rules, evaluated at every frame ``i`` (0-based, counted from the utterance's first frame); the
endpoint is the first frame at which one holds:

1. ``silence_after_speech``: the utterance has speech and trailing silence >= after_frames.
2. ``silence_before_speech``: no speech yet and trailing silence >= before_frames (the utterance
   was silence only: the caller usually discards it).
3. ``max_utterance``: ``i + 1 >= max_frames`` (the utterance reached its maximum length).

When several hold at the same frame, the reason reported is the first in this list. Seconds are
converted to frames with `FrameGrid.frames_in` (``round(seconds / 0.02)``: 1.2 s -> 60 frames).

Example::

    detector = EndpointDetector(EndpointConfig.preset("default"))
    state = detector.new_state()
    state, end = detector.update(state, logits.argmax(-1) == blank_id)
    if end is not None:     # frames [0, end] of this utterance are its audio
        ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from streamer.errors import ConfigError
from streamer.grid import XLSR_GRID

#: The reason names reported in `EndpointState.reason`.
REASONS = ("silence_after_speech", "silence_before_speech", "max_utterance")


@dataclass(frozen=True)
class EndpointConfig:
    """Endpoint thresholds, in seconds (converted to 0.02 s frames).

    Attributes:
        silence_before_speech: Trailing silence that ends an utterance with no speech yet.
        silence_after_speech: Trailing silence that ends an utterance after speech.
        max_utterance: Longest utterance; it is cut at this length.
        vad_rule: With a VAD, which frames are silent: ``"both"`` (blank and VAD non-speech) or
            ``"either"`` (blank or VAD non-speech).
    """

    silence_before_speech: float = 2.4
    silence_after_speech: float = 1.2
    max_utterance: float = 20.0
    vad_rule: str = "both"

    def __post_init__(self) -> None:
        for name in ("silence_before_speech", "silence_after_speech", "max_utterance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or XLSR_GRID.frames_in(value) < 1:
                raise ConfigError(f"endpoint.{name}: expected seconds >= {XLSR_GRID.frame_seconds / 2} "
                                  f"(at least one {XLSR_GRID.frame_seconds} s frame), found {value!r}")
            object.__setattr__(self, name, float(value))
        if self.vad_rule not in ("both", "either"):
            raise ConfigError(f"endpoint.vad_rule: expected 'both' or 'either', found {self.vad_rule!r}")

    @property
    def before_frames(self) -> int:
        """``silence_before_speech`` in frames."""
        return XLSR_GRID.frames_in(self.silence_before_speech)

    @property
    def after_frames(self) -> int:
        """``silence_after_speech`` in frames."""
        return XLSR_GRID.frames_in(self.silence_after_speech)

    @property
    def max_frames(self) -> int:
        """``max_utterance`` in frames."""
        return XLSR_GRID.frames_in(self.max_utterance)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "EndpointConfig":
        """One of `PRESETS` (``fast``, ``default``, ``slow``), with optional field overrides."""
        if name not in PRESETS:
            raise ConfigError(f"endpoint preset: expected one of {sorted(PRESETS)}, found {name!r}")
        return replace(PRESETS[name], **overrides)


#: Named settings, each threshold increasing from fast to slow: ``fast`` ends utterances sooner
#: (dictation commands), ``slow`` waits longer (people who pause to think).
PRESETS: dict[str, EndpointConfig] = {
    "fast": EndpointConfig(silence_before_speech=1.2, silence_after_speech=0.6, max_utterance=15.0),
    "default": EndpointConfig(),
    "slow": EndpointConfig(silence_before_speech=4.8, silence_after_speech=2.0, max_utterance=30.0),
}


@dataclass(frozen=True)
class EndpointState:
    """Endpointing state of one utterance.

    Attributes:
        frames: Frames of the utterance seen so far (through the endpoint frame once one fired).
        trailing_silence: Consecutive silent frames at the end of what was seen.
        speech_seen: Whether any frame so far was a speech frame.
        endpoint: Index of the utterance's last frame once an endpoint fired, else None.
        reason: Which rule fired (one of `REASONS`), else None.
    """

    frames: int = 0
    trailing_silence: int = 0
    speech_seen: bool = False
    endpoint: int | None = None
    reason: str | None = None


class EndpointDetector:
    """Applies the rules of this module's docstring; holds only its configuration.

    Args:
        config: Thresholds (default: `EndpointConfig()`, the ``default`` preset).
    """

    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.config = config if config is not None else EndpointConfig()

    def new_state(self) -> EndpointState:
        """State for a new utterance."""
        return EndpointState()

    def update(self, state: EndpointState, frame_is_blank: Any,
               vad_speech: Any | None = None) -> tuple[EndpointState, int | None]:
        """Consumes the next frames' flags.

        Args:
            state: The utterance's state (not modified; a new one is returned).
            frame_is_blank: (T,) bool, True where the frame's best token is the blank.
            vad_speech: (T,) bool, True where a VAD heard speech, or None without a VAD.

        Returns:
            The new state and the endpoint: the index (from the utterance's first frame) of the
            utterance's last frame, or None. After an endpoint the new state stops at that frame;
            this chunk's frames after it, ``frame_is_blank[endpoint - state.frames + 1:]``, belong
            to the next utterance (start it with `new_state`).

        Raises:
            ValueError: Shapes differ or are not 1-D, or ``state`` already has an endpoint.
        """
        if state.endpoint is not None:
            raise ValueError(f"EndpointDetector.update: expected a state without an endpoint, found one ended "
                             f"at frame {state.endpoint} ({state.reason}); start the next utterance with new_state()")
        blank = np.asarray(frame_is_blank)
        if blank.ndim != 1 or blank.dtype != np.bool_:
            raise ValueError(f"EndpointDetector.update: expected frame_is_blank as a 1-D bool array, found "
                             f"shape {blank.shape} dtype {blank.dtype}")
        if vad_speech is None:
            silent = blank
        else:
            vad = np.asarray(vad_speech)
            if vad.shape != blank.shape or vad.dtype != np.bool_:
                raise ValueError(f"EndpointDetector.update: expected vad_speech as bool of shape {blank.shape}, "
                                 f"found shape {vad.shape} dtype {vad.dtype}")
            silent = blank & ~vad if self.config.vad_rule == "both" else blank | ~vad
        n = silent.shape[0]
        if n == 0:
            return state, None
        cfg = self.config
        idx = np.arange(n)
        speech = ~silent
        last_speech = np.maximum.accumulate(np.where(speech, idx, -1))
        trailing = np.where(last_speech >= 0, idx - last_speech, state.trailing_silence + idx + 1)
        seen = state.speech_seen | (last_speech >= 0)
        after = seen & (trailing >= cfg.after_frames)
        before = ~seen & (trailing >= cfg.before_frames)
        too_long = state.frames + idx + 1 >= cfg.max_frames
        fired = np.flatnonzero(after | before | too_long)
        if fired.size == 0:
            return EndpointState(frames=state.frames + n, trailing_silence=int(trailing[-1]),
                                 speech_seen=bool(seen[-1])), None
        i = int(fired[0])
        reason = REASONS[0] if after[i] else REASONS[1] if before[i] else REASONS[2]
        end = state.frames + i
        return EndpointState(frames=end + 1, trailing_silence=int(trailing[i]), speech_seen=bool(seen[i]),
                             endpoint=end, reason=reason), end


def blank_frames(log_probs: Any, blank_id: int) -> np.ndarray:
    """Per-frame flag: the best token is the blank.

    Args:
        log_probs: (T, V) logits, log-probs or probabilities (only the argmax is used).
        blank_id: Index of the blank.

    Returns:
        (T,) bool.
    """
    if hasattr(log_probs, "detach"):
        log_probs = log_probs.detach().cpu().numpy()
    x = np.asarray(log_probs)
    if x.ndim != 2:
        raise ValueError(f"blank_frames: expected (T, V) scores, found shape {x.shape}")
    return x.argmax(axis=1) == blank_id
