"""The frame grid: samples <-> encoder frames <-> seconds, in one place.

The XLSR conv stack turns 16-kHz samples into frames: frame ``g`` covers samples
``[hop g, hop g + field)`` (hop 320, receptive field 400 samples for XLSR), so frames are
``hop / rate`` = 20 ms apart and each one needs ``field - hop`` = 80 samples of look-ahead beyond its
hop. Every conversion between the three units goes through a `FrameGrid`; build it from a model's
`EncoderConfig` with `FrameGrid.of`, or use `XLSR_GRID` where only the layout matters (streaming
configurations, which the streaming encoder checks against the model).

    grid = FrameGrid.of(model.config)
    grid.num_frames(16000)        # 49 frames in one second of audio
    grid.seconds(50)              # 1.0
    grid.frames_in(0.64)          # 32
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from streamer.constants import HOP_SAMPLES, RECEPTIVE_FIELD_SAMPLES, SAMPLE_RATE
from streamer.errors import ConfigError


@dataclass(frozen=True)
class FrameGrid:
    """Frame geometry of an encoder.

    Attributes:
        hop_samples: Samples between two frames.
        field_samples: Samples one frame sees (its receptive field, >= hop_samples).
        sample_rate: Input rate in Hz.
    """

    hop_samples: int = HOP_SAMPLES
    field_samples: int = RECEPTIVE_FIELD_SAMPLES
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        for name in ("hop_samples", "field_samples", "sample_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"frame grid {name}: expected a positive integer, found {v!r}")
        if self.field_samples < self.hop_samples:
            raise ConfigError(f"frame grid: expected field_samples >= hop_samples={self.hop_samples}, "
                              f"found {self.field_samples}")

    @classmethod
    def of(cls, encoder_config: Any) -> "FrameGrid":
        """The grid of a model (an `EncoderConfig`: its conv strides and kernels)."""
        return cls(encoder_config.hop_samples, encoder_config.receptive_field_samples)

    @property
    def frame_seconds(self) -> float:
        """Seconds between two frames (0.02 for XLSR)."""
        return self.hop_samples / self.sample_rate

    @property
    def lookahead_samples(self) -> int:
        """Samples a frame needs beyond its hop (80 for XLSR): frame g is complete at ``hop g + field``."""
        return self.field_samples - self.hop_samples

    def seconds(self, frames: int | float) -> float:
        """Stream time of frame index ``frames`` (or the duration of that many frames), in seconds."""
        return frames * self.hop_samples / self.sample_rate

    def frames_in(self, seconds: float) -> int:
        """Whole frames closest to a duration (``round(seconds / frame_seconds)``)."""
        if not math.isfinite(seconds):
            raise ConfigError(f"frame grid: expected a finite duration in seconds, found {seconds!r}")
        return round(seconds * self.sample_rate / self.hop_samples)

    def samples(self, frames: int) -> int:
        """Samples spanned by ``frames`` hops (the first sample of frame ``frames``)."""
        return frames * self.hop_samples

    def frame_end(self, frame: int) -> int:
        """One past the last sample that frame ``frame`` sees."""
        return frame * self.hop_samples + self.field_samples

    def span_samples(self, frames: int) -> int:
        """Samples a run of ``frames`` consecutive frames sees (0 for none)."""
        return 0 if frames <= 0 else self.frame_end(frames - 1)

    def num_frames(self, samples: int) -> int:
        """Complete frames in ``samples`` samples from frame 0 (0 if shorter than one field).

        Equals `EncoderConfig.num_frames` for the XLSR stack (the conv arithmetic reduces to this).
        """
        return 0 if samples < self.field_samples else (samples - self.field_samples) // self.hop_samples + 1

    def sample_seconds(self, samples: int) -> float:
        """Duration of ``samples`` samples, in seconds."""
        return samples / self.sample_rate


#: The XLSR / wav2vec2 conv layout (hop 320, field 400 samples at 16 kHz), which streaming requires.
XLSR_GRID = FrameGrid()
