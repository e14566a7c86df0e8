"""A program's self-check: logits of a fixed test signal, so a runner can tell kernels that compute
wrong results from ones that merely round differently.

int8 kernels differ per CPU (the last bits of a dot product, another tiling), which moves a logit by
a few thousandths; a broken kernel path (seen under an emulator whose CPU reported SME) moves them
by whole units and prints confident garbage with exit status 0. The exporter stores the eager
model's logits of `test_signal` in the sidecar (``self_check``); a runner streams the same signal
through the program from a zero state and refuses to decode when the cosine between the two falls
below `MIN_COSINE`.

The signal is defined by a formula a C++ runner reproduces exactly (`examples/cpp/streamer_runner.cpp`):
a buzz of 29 harmonics whose fundamental glides between 50 and 170 Hz at 0.7 Hz, under a 2.5-Hz
envelope, 0.1 full scale::

    f0[n]  = 110 + 60 sin(2π 0.7 n / 16000)
    φ[n]   = 2π Σ_{m<=n} f0[m] / 16000
    x[n]   = 0.1 (0.5 + 0.5 sin(2π 2.5 n / 16000)) Σ_{k=1..29} sin(k φ[n]) / k
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from streamer.constants import SAMPLE_RATE
from streamer.errors import CheckpointError, ConfigError

#: Name of the signal formula (the sidecar names it, so a runner knows which it must make).
SIGNAL = "buzz-v1"
#: Chunks of the signal streamed through the step.
CHUNKS = 8
#: Least cosine between a runner's logits and the exporter's: measured 0.9999 for int8 on x86-64
#: against the eager float32 model; 0.1-0.3 for the broken kernels.
MIN_COSINE = 0.98
#: Decimals of the stored logits.
DECIMALS = 3


def test_signal(num_samples: int) -> np.ndarray:
    """(N,) float32 samples of the self-check signal (the module docstring's formula)."""
    n = np.arange(num_samples, dtype=np.float64)
    f0 = 110.0 + 60.0 * np.sin(2 * np.pi * 0.7 * n / SAMPLE_RATE)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    buzz = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * n / SAMPLE_RATE)
    return (0.1 * envelope * buzz).astype(np.float32)


def stream_logits(step: Callable[[Tensor, Any], tuple[Tensor, Tensor | None, Any]], state: Any,
                  chunk_samples: int) -> np.ndarray:
    """The (T, V) logits of the valid frames of `CHUNKS` chunks of the signal, streamed from ``state``.

    Args:
        step: ``(chunk (1, C), state) -> (logits (1, t, V), valid (1, t) or None, state)``.
        state: The zero state.
        chunk_samples: Samples per chunk C.
    """
    x = torch.from_numpy(test_signal(CHUNKS * chunk_samples))
    rows = []
    with torch.no_grad():
        for i in range(CHUNKS):
            logits, valid, state = step(x[i * chunk_samples:(i + 1) * chunk_samples][None], state)
            rows.append(logits[0] if valid is None else logits[0][valid[0]])
    return torch.cat(rows).float().numpy()


def reference(logits: np.ndarray) -> dict[str, Any]:
    """The sidecar's ``self_check`` object for reference logits (T, V)."""
    return {"signal": SIGNAL, "chunks": CHUNKS, "min_cosine": MIN_COSINE,
            "logits": np.round(logits.astype(np.float64), DECIMALS).tolist()}


def validate(value: Any) -> dict[str, Any]:
    """A sidecar's ``self_check`` object, checked (signal, chunk count, a rectangular logits table).

    Raises:
        ConfigError: Naming what is wrong.
    """
    if not isinstance(value, Mapping) or set(value) != {"signal", "chunks", "min_cosine", "logits"}:
        raise ConfigError("self_check: expected an object with signal, chunks, min_cosine and logits")
    if value["signal"] != SIGNAL or value["chunks"] != CHUNKS:
        raise ConfigError(f"self_check: expected the {SIGNAL} signal over {CHUNKS} chunks, found "
                          f"{value['signal']!r} over {value['chunks']!r}")
    rows = value["logits"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and len(r) == len(rows[0]) for r in rows):
        raise ConfigError("self_check.logits: expected a non-empty table of equal rows")
    if not isinstance(value["min_cosine"], (int, float)) or not 0 < value["min_cosine"] <= 1:
        raise ConfigError(f"self_check.min_cosine: expected a number in (0, 1], found {value['min_cosine']!r}")
    return dict(value)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine between two logit tables, flattened (0 when their shapes differ)."""
    if a.shape != b.shape:
        return 0.0
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def run_check(check: Mapping[str, Any], logits: np.ndarray, what: str) -> float:
    """Compares a program's logits of the signal with the stored ones.

    Returns:
        The cosine.

    Raises:
        CheckpointError: Below the stored bound: the kernels on this CPU compute wrong results.
    """
    ref = np.asarray(check["logits"], dtype=np.float64)
    cos = cosine(logits, ref)
    if cos < float(check["min_cosine"]):
        raise CheckpointError(f"{what}: the self-check failed on this CPU (cosine {cos:.3f} to the exporter's logits, "
                              f"expected >= {check['min_cosine']}): its kernels compute wrong results here, and the "
                              "text would be garbage")
    return cos
