"""Voice activity gating with webrtcvad: decides which microphone audio reaches the recognizer.

The gate works on 20-ms frames (webrtcvad takes 10/20/30-ms frames of 16-bit PCM). Speech opens it
(after ``start_frames`` voiced frames in a row) and ``preroll`` of audio before the onset is released
too, so word beginnings are not cut. It closes after ``hangover`` of non-speech, and reports an
``utterance_end`` when the silence lasts ``end_silence`` — the live loop then finalizes the stream.
State is an explicit `VadState`; the webrtcvad object is created lazily (install hint if missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, missing_dependency

#: webrtcvad frame length used here, in samples (20 ms at 16 kHz).
VAD_FRAME_SAMPLES = 320


@dataclass(frozen=True)
class VadConfig:
    """Gate settings (durations in seconds)."""

    aggressiveness: int = 2
    """webrtcvad mode 0 (least) .. 3 (most aggressive in calling audio non-speech)."""
    start_frames: int = 3
    """Voiced 20-ms frames in a row that open the gate."""
    preroll: float = 0.3
    """Audio released from before the onset."""
    hangover: float = 0.5
    """Non-speech kept flowing after speech stops."""
    end_silence: float = 1.0
    """Non-speech after which the utterance is over."""

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"vad aggressiveness: expected 0, 1, 2 or 3, found {self.aggressiveness}")
        if self.start_frames < 1:
            raise ConfigError(f"vad start_frames: expected >= 1, found {self.start_frames}")
        for name in ("preroll", "hangover", "end_silence"):
            if getattr(self, name) < 0:
                raise ConfigError(f"vad {name}: expected >= 0 s, found {getattr(self, name)}")
        if self.end_silence < self.hangover:
            raise ConfigError(f"vad: expected end_silence >= hangover, found {self.end_silence} < {self.hangover}")


@dataclass(frozen=True)
class VadState:
    """Per-stream gate state."""

    open: bool = False
    voiced_run: int = 0
    silent_run: int = 0
    in_utterance: bool = False
    remainder: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    """Samples not yet forming a whole 20-ms frame."""
    preroll_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    """Recent audio held while the gate is closed."""


@dataclass(frozen=True)
class GateOutput:
    """What one call of `VadGate.process` lets through."""

    audio: np.ndarray
    """Samples to feed to the recognizer (possibly empty)."""
    speech: np.ndarray
    """(frames,) bool, webrtcvad's decision per 20-ms frame of the input."""
    utterance_end: bool
    """True when the silence after an utterance reached ``end_silence``."""


class VadGate:
    """webrtcvad-based gate (see the module docstring)."""

    def __init__(self, config: VadConfig = VadConfig()) -> None:
        try:
            import webrtcvad
        except ImportError as err:
            raise missing_dependency("webrtcvad", "mic", "voice activity detection") from err
        self.config = config
        self._vad = webrtcvad.Vad(config.aggressiveness)

    def new_state(self) -> VadState:
        """The state of a new stream."""
        return VadState()

    def is_speech(self, frame: np.ndarray) -> bool:
        """webrtcvad's decision for one 20-ms float32 frame."""
        pcm = (np.clip(frame, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm, SAMPLE_RATE))

    def process(self, state: VadState, samples: np.ndarray) -> tuple[VadState, GateOutput]:
        """Runs 16-kHz float32 samples through the gate.

        Returns:
            The next state and what passes the gate.
        """
        c = self.config
        x = np.concatenate([state.remainder, np.asarray(samples, dtype=np.float32)])
        n = len(x) // VAD_FRAME_SAMPLES
        frames = x[: n * VAD_FRAME_SAMPLES].reshape(n, VAD_FRAME_SAMPLES)
        remainder = x[n * VAD_FRAME_SAMPLES:]
        hang = round(c.hangover * SAMPLE_RATE / VAD_FRAME_SAMPLES)
        end = round(c.end_silence * SAMPLE_RATE / VAD_FRAME_SAMPLES)
        pre = round(c.preroll * SAMPLE_RATE)
        out: list[np.ndarray] = []
        flags = np.zeros(n, dtype=bool)
        opened, voiced, silent, in_utt = state.open, state.voiced_run, state.silent_run, state.in_utterance
        held = state.preroll_audio
        utterance_end = False
        for i, f in enumerate(frames):
            speech = self.is_speech(f)
            flags[i] = speech
            voiced = voiced + 1 if speech else 0
            silent = 0 if speech else silent + 1
            if not opened and voiced >= c.start_frames:
                opened, in_utt = True, True
                out.append(held)
                held = np.zeros(0, dtype=np.float32)
            if opened:
                out.append(f)
                if silent >= hang:
                    opened = False
            else:
                held = np.concatenate([held, f])[-pre:] if pre else np.zeros(0, dtype=np.float32)
            if in_utt and not opened and silent >= end:
                in_utt = False
                utterance_end = True
        new = replace(state, open=opened, voiced_run=voiced, silent_run=silent, in_utterance=in_utt,
                      remainder=remainder, preroll_audio=held)
        audio = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        return new, GateOutput(audio, flags, utterance_end)
