"""Voice activity with webrtcvad: per-frame speech flags, and a gate that skips long silences.

webrtcvad decides speech / non-speech per 20-ms frame of 16-bit PCM; `VAD_FRAME_SAMPLES` equals the
encoder's hop, so VAD frame ``j`` (session samples ``[320 j, 320 (j + 1))``) is the start of encoder
frame ``j``. The live loop (`streamer.frontend.live`) uses the VAD twice:

* **speech flags** (`GateOutput.speech`, every frame of the input) go to the stream's one endpointer
  (`Stream.accept_speech_flags`, `streamer.endpoint`), which decides where utterances end;
* **the gate** is an input filter: speech opens it (after ``start_frames`` voiced frames in a row)
  and ``preroll`` of audio before the onset is released too, so word beginnings are not cut. From
  then on every sample passes (pauses included) until the non-speech run reaches ``end_silence``:
  the gate closes and holds audio back until speech returns. Each opening reports the session sample
  where its audio starts, so the stream can jump its clock over what was held back
  (`Recognizer.skip_to`). The gate's ``utterance_end`` is information only: it never ends an
  utterance (the skipped audio is silence to the endpointer, which then ends it by its own rules).

State is an explicit `VadState`; the webrtcvad object is created lazily (install hint if missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, missing_dependency
from streamer.grid import XLSR_GRID

#: webrtcvad frame length used here, in samples: one encoder hop (20 ms at 16 kHz, a length webrtcvad
#: accepts), so VAD frames and encoder frames share the grid.
VAD_FRAME_SAMPLES = XLSR_GRID.hop_samples


@dataclass(frozen=True)
class VadConfig:
    """Gate settings (durations in seconds)."""

    aggressiveness: int = 2
    """webrtcvad mode 0 (least) .. 3 (most aggressive in calling audio non-speech)."""
    start_frames: int = 3
    """Voiced 20-ms frames in a row that open the gate."""
    preroll: float = 0.3
    """Audio released from before the onset."""
    end_silence: float = 1.0
    """Non-speech after which the gate closes (audio still flows to the recognizer until then)."""

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"vad aggressiveness: expected 0, 1, 2 or 3, found {self.aggressiveness}")
        if self.start_frames < 1:
            raise ConfigError(f"vad start_frames: expected >= 1, found {self.start_frames}")
        if self.preroll < 0:
            raise ConfigError(f"vad preroll: expected >= 0 s, found {self.preroll}")
        if self.end_silence < VAD_FRAME_SAMPLES / SAMPLE_RATE:
            raise ConfigError(f"vad end_silence: expected >= {VAD_FRAME_SAMPLES / SAMPLE_RATE} s (one frame), "
                              f"found {self.end_silence}")


@dataclass(frozen=True)
class VadState:
    """Per-stream gate state."""

    open: bool = False
    voiced_run: int = 0
    silent_run: int = 0
    position: int = 0
    """Session samples already cut into frames (the session index of ``remainder[0]``)."""
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
    """True when the gate closed (the silence after speech reached ``end_silence``); ``audio`` ends
    there, and input after it waits in the state (call `VadGate.process` again with no samples)."""
    start: int | None = None
    """Session sample index of ``audio[0]`` when an utterance opened in this call, else None."""


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

        Stops at an utterance end, so one output never spans two utterances: the rest of the input
        stays in the returned state (``pending`` is then True) for the next call.

        Returns:
            The next state and what passes the gate.
        """
        c = self.config
        x = np.concatenate([state.remainder, np.asarray(samples, dtype=np.float32)])
        end = max(1, round(c.end_silence * SAMPLE_RATE / VAD_FRAME_SAMPLES))
        pre = round(c.preroll * SAMPLE_RATE)
        out: list[np.ndarray] = []
        flags: list[bool] = []
        opened, voiced, silent = state.open, state.voiced_run, state.silent_run
        held = state.preroll_audio
        start: int | None = None
        utterance_end = False
        used = 0
        while used + VAD_FRAME_SAMPLES <= len(x) and not utterance_end:
            f = x[used: used + VAD_FRAME_SAMPLES]
            speech = self.is_speech(f)
            flags.append(speech)
            voiced = voiced + 1 if speech else 0
            silent = 0 if speech else silent + 1
            if not opened and voiced >= c.start_frames:
                opened = True
                start = state.position + used - len(held)
                out.append(held)
                held = np.zeros(0, dtype=np.float32)
            if opened:
                out.append(f)
                if silent >= end:
                    opened, utterance_end = False, True
            else:
                held = np.concatenate([held, f])[-pre:] if pre else np.zeros(0, dtype=np.float32)
            used += VAD_FRAME_SAMPLES
        new = replace(state, open=opened, voiced_run=voiced, silent_run=silent, position=state.position + used,
                      remainder=x[used:], preroll_audio=held)
        audio = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        return new, GateOutput(audio, np.asarray(flags, dtype=bool), utterance_end, start)

    @staticmethod
    def pending(state: VadState) -> bool:
        """Whether the state holds at least one whole frame not yet gated (after an utterance end)."""
        return len(state.remainder) >= VAD_FRAME_SAMPLES
