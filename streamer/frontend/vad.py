"""Voice activity with webrtcvad: a speech / non-speech decision per 20-ms frame.

webrtcvad decides per frame of 16-bit PCM; `VAD_FRAME_SAMPLES` equals the encoder's hop, so VAD
frame ``j`` (session samples ``[320 j, 320 (j + 1))``) is the start of encoder frame ``j``. The live
front-end (`streamer.frontend.frontend.VadFrontEnd`) gives the flags to the stream's endpointer and
uses them to decide when to skip audio between utterances.

The webrtcvad object is created on first use, with an install hint if the package is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, missing_dependency
from streamer.grid import XLSR_GRID

#: webrtcvad frame length used here, in samples: one encoder hop (20 ms at 16 kHz, a length webrtcvad
#: accepts), so VAD frames and encoder frames share the grid.
VAD_FRAME_SAMPLES = XLSR_GRID.hop_samples


@dataclass(frozen=True)
class VadConfig:
    """Voice activity settings (durations in seconds)."""

    aggressiveness: int = 2
    """webrtcvad mode 0 (least) .. 3 (most aggressive in calling audio non-speech)."""
    start_frames: int = 3
    """Voiced 20-ms frames in a row that end a skipped silence."""
    preroll: float = 0.3
    """Audio released from before a speech onset that ends a skipped silence."""

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"vad aggressiveness: expected 0, 1, 2 or 3, found {self.aggressiveness}")
        if self.start_frames < 1:
            raise ConfigError(f"vad start_frames: expected >= 1, found {self.start_frames}")
        if not 0 <= self.preroll <= 10:
            raise ConfigError(f"vad preroll: expected 0 to 10 s, found {self.preroll}")


class Vad:
    """webrtcvad's decision per 20-ms frame.

    Args:
        config: Its settings (the aggressiveness is used here).

    Raises:
        MissingDependencyError: webrtcvad is not installed (with the install hint).
    """

    def __init__(self, config: VadConfig = VadConfig()) -> None:
        try:
            import webrtcvad
        except ImportError as err:
            raise missing_dependency("webrtcvad", "mic", "voice activity detection") from err
        self.config = config
        self._vad = webrtcvad.Vad(config.aggressiveness)

    def is_speech(self, frame: np.ndarray) -> bool:
        """webrtcvad's decision for one 20-ms float32 frame at 16 kHz."""
        pcm = (np.clip(frame, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm, SAMPLE_RATE))

    def flags(self, samples: np.ndarray) -> np.ndarray:
        """(frames,) bool decisions for the whole 20-ms frames of ``samples`` (a partial tail is ignored)."""
        n = len(samples) // VAD_FRAME_SAMPLES
        frames = np.asarray(samples[: n * VAD_FRAME_SAMPLES], dtype=np.float32).reshape(n, VAD_FRAME_SAMPLES)
        return np.array([self.is_speech(f) for f in frames], dtype=bool)
