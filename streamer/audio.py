"""Audio input: files and arrays to 16-kHz mono float32, whole or in bounded blocks.

Files are read with soundfile (wav, flac, ogg/vorbis, opus, mp3, aiff, ...). Formats libsndfile does
not read (m4a, aac, mp4, wma, webm, ...) are decoded by ffmpeg when it is installed. Any sample rate is
resampled with soxr; any channel count is averaged to mono; integer samples are scaled to [-1, 1].

Every failure raises `AudioError` with one line naming the input and what is wrong with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import AudioError

#: Extensions routed straight to ffmpeg (libsndfile cannot read them).
FFMPEG_ONLY = (".m4a", ".aac", ".mp4", ".m4b", ".wma", ".webm", ".mkv", ".amr", ".3gp")
#: Default block length of `iter_audio`, in seconds.
BLOCK_SECONDS = 10.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, before conversion."""

    path: Path
    sample_rate: int
    """Native rate in Hz."""
    channels: int
    duration: float
    """Seconds (from the header; ffmpeg-decoded files report -1 when unknown)."""
    decoder: str
    """``soundfile`` or ``ffmpeg``."""


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def _check_finite(block: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        raise AudioError(f"{name}: {int(bad.sum())} samples are NaN or infinite")


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """Converts (N,) or (N, C) samples of any dtype to (N,) float32 (integers scaled to [-1, 1])."""
    x = np.asarray(samples)
    if x.dtype.kind == "i":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif x.dtype.kind == "u":
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float32) - (info.max + 1) / 2) / ((info.max + 1) / 2)
    elif x.dtype.kind == "f":
        x = x.astype(np.float32, copy=False)
    else:
        raise AudioError(f"array: expected integer or floating-point samples, found dtype {x.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    elif x.ndim != 1:
        raise AudioError(f"array: expected shape (samples,) or (samples, channels), found {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resamples (N,) float32 from ``rate`` to ``target`` Hz (no-op when equal)."""
    if rate == target:
        return samples
    if rate <= 0:
        raise AudioError(f"sample rate: expected > 0 Hz, found {rate}")
    import soxr
    return soxr.resample(samples, rate, target).astype(np.float32, copy=False)


def prepare_array(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, name: str = "array") -> np.ndarray:
    """Validates and converts an in-memory signal to 16-kHz mono float32.

    Args:
        samples: (N,) or (N, C) samples; a (C, N) array with C <= 8 < N is also accepted.
        sample_rate: Its rate in Hz.
        name: How errors refer to it.

    Raises:
        AudioError: No samples, non-finite samples, or an unsupported dtype/shape.
    """
    x = np.asarray(samples)
    if hasattr(samples, "detach"):  # a torch tensor
        x = samples.detach().cpu().numpy()
    if x.ndim == 2 and x.shape[0] <= 8 < x.shape[1]:
        x = x.T
    if x.size == 0:
        raise AudioError(f"{name}: holds no samples")
    x = to_mono_float(x)
    _check_finite(x, name)
    return resample(x, int(sample_rate))


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Reads a file's header (and checks it can be decoded).

    Raises:
        AudioError: Missing, a directory, empty, or not a decodable audio file.
    """
    p = Path(path)
    _check_path(p)
    if p.suffix.lower() not in FFMPEG_ONLY:
        import soundfile as sf
        try:
            info = sf.info(str(p))
            if info.frames == 0:
                raise AudioError(f"{p}: holds no audio samples")
            return AudioInfo(p, int(info.samplerate), int(info.channels), float(info.duration), "soundfile")
        except AudioError:
            raise
        except Exception as err:  # libsndfile raises its own error types for unreadable files
            sf_error = str(err).splitlines()[0] if str(err) else type(err).__name__
    else:
        sf_error = f"{p.suffix} is not readable by libsndfile"
    ff = _ffmpeg()
    if ff is None:
        hint = " (install ffmpeg to read it: apt-get install ffmpeg)" if p.suffix.lower() in FFMPEG_ONLY else ""
        raise AudioError(f"{p}: not a readable audio file ({sf_error}){hint}")
    probe_cmd = [ff, "-nostdin", "-v", "error", "-i", str(p), "-t", "0.1", "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    res = subprocess.run(probe_cmd, capture_output=True)
    if res.returncode != 0 or len(res.stdout) == 0:
        msg = res.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{p}: not a readable audio file ({sf_error}; ffmpeg: {msg[-1] if msg else 'no audio decoded'})")
    return AudioInfo(p, SAMPLE_RATE, 1, -1.0, "ffmpeg")


def iter_audio(path: str | os.PathLike[str], block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yields a file as consecutive 16-kHz mono float32 blocks, holding one block in memory.

    Args:
        path: Audio file.
        block_seconds: Approximate block length (the last block is shorter).

    Raises:
        AudioError: The file cannot be decoded, holds no samples, or holds NaN/inf samples.
    """
    info = probe(path)
    name = str(info.path)
    total = 0
    if info.decoder == "soundfile":
        import soundfile as sf
        import soxr
        stream = None if info.sample_rate == SAMPLE_RATE else soxr.ResampleStream(
            info.sample_rate, SAMPLE_RATE, 1, dtype="float32")
        block = max(1, int(block_seconds * info.sample_rate))
        try:
            with sf.SoundFile(name) as f:
                while True:
                    raw = f.read(block, dtype="float32", always_2d=True)
                    last = len(raw) < block
                    x = to_mono_float(raw)
                    _check_finite(x, name)
                    if stream is not None:
                        x = stream.resample_chunk(x, last=last)
                    if len(x):
                        total += len(x)
                        yield x
                    if last:
                        break
        except AudioError:
            raise
        except Exception as err:
            raise AudioError(f"{name}: decoding failed after {total / SAMPLE_RATE:.2f} s ({err})") from None
    else:
        cmd = [_ffmpeg() or "ffmpeg", "-nostdin", "-v", "error", "-i", name, "-f", "f32le", "-ac", "1",
               "-ar", str(SAMPLE_RATE), "-"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        nbytes = int(block_seconds * SAMPLE_RATE) * 4
        out = proc.stdout
        if out is None:
            raise AudioError(f"{name}: ffmpeg gave no output stream")
        try:
            while True:
                data = out.read(nbytes)
                if not data:
                    break
                x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float32)
                _check_finite(x, name)
                total += len(x)
                yield x
        finally:
            out.close()
            proc.wait()
    if total == 0:
        raise AudioError(f"{name}: holds no audio samples")


def load_audio(source: str | os.PathLike[str] | np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Loads a whole file or converts an array to 16-kHz mono float32.

    Args:
        source: Path of an audio file, or an array of samples (see `prepare_array`).
        sample_rate: Rate of an array source in Hz (ignored for files).

    Returns:
        (N,) float32 samples at 16 kHz.
    """
    if isinstance(source, (str, os.PathLike)):
        blocks = list(iter_audio(source))
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return prepare_array(source, sample_rate)
