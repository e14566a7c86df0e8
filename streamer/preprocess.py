"""Waveform preprocessing that a checkpoint expects (saved with the weights).

Released wav2vec2/XLSR fine-tunes are trained on utterances normalized to zero mean and unit
variance (Hugging Face ``Wav2Vec2FeatureExtractor(do_normalize=True)``). Offline, streamer normalizes
each utterance (or each offline window of a long file) the same way. A stream cannot see its future,
so it normalizes every chunk with the running mean and variance of all audio received so far (an
explicit `NormState`), which converges to the utterance statistics within a second or two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from streamer.errors import ConfigError

#: Variance floor of the normalization (the value Hugging Face uses).
NORM_EPS = 1e-7


@dataclass(frozen=True)
class PreprocessConfig:
    """What is done to 16-kHz mono samples before the encoder."""

    normalize: bool = False
    """Zero-mean, unit-variance normalization per utterance."""

    def __post_init__(self) -> None:
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"preprocess.normalize: expected true or false, found {type(self.normalize).__name__} "
                              f"{self.normalize!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"normalize": self.normalize}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessConfig":
        """Inverse of `to_dict` (unknown keys are an error)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"preprocess: expected an object, found {type(data).__name__}")
        unknown = sorted(str(k) for k in set(data) - {"normalize"})
        if unknown:
            raise ConfigError(f"preprocess config: unknown fields {unknown}; expected 'normalize'")
        return cls(normalize=data.get("normalize", False))

    @classmethod
    def from_hf(cls, preprocessor: Mapping[str, Any]) -> "PreprocessConfig":
        """From a Hugging Face ``preprocessor_config.json`` (absent fields take its defaults)."""
        rate = preprocessor.get("sampling_rate", 16000)
        if rate != 16000:
            raise ConfigError(f"preprocessor_config.json sampling_rate: expected 16000, found {rate}")
        value = preprocessor.get("do_normalize", True)
        if not isinstance(value, bool):
            raise ConfigError(f"preprocessor_config.json do_normalize: expected true or false, found {value!r}")
        return cls(normalize=value)


def normalize_utterance(x: np.ndarray) -> np.ndarray:
    """(N,) samples → zero mean, unit variance (float32)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return x
    return ((x - x.mean()) / np.sqrt(x.var() + NORM_EPS)).astype(np.float32)


@dataclass(frozen=True)
class NormState:
    """Running statistics of a stream's samples (Welford/Chan)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    """Sum of squared deviations from the mean."""


def normalize_running(state: NormState, x: np.ndarray) -> tuple[NormState, np.ndarray]:
    """Updates the statistics with ``x`` and normalizes ``x`` with them.

    Returns:
        The new state and the normalized samples (float32).
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        return state, x.astype(np.float32)
    mean_x = float(x.mean())
    m2_x = float(((x - mean_x) ** 2).sum())
    total = state.count + n
    delta = mean_x - state.mean
    mean = state.mean + delta * n / total
    m2 = state.m2 + m2_x + delta * delta * state.count * n / total
    new = NormState(total, mean, m2)
    return new, ((x - mean) / np.sqrt(m2 / total + NORM_EPS)).astype(np.float32)
