"""Audio input: files and arrays to 16-kHz mono float32, whole or in bounded blocks.

Files are read with soundfile (wav, flac, ogg/vorbis, opus, mp3, aiff, ...). Formats libsndfile does
not read (m4a, aac, mp4, wma, webm, ...) are decoded by ffmpeg when it is installed. Any sample rate is
resampled with soxr; any channel count is averaged to mono; integer samples are scaled to [-1, 1].

Every failure raises `AudioError` with one line naming the input and what is wrong with it. Besides
unreadable inputs, four kinds of damage are refused rather than transcribed in part:

* a **truncated** file: a WAV whose data chunk declares more bytes than the file holds, an Ogg file
  (Vorbis, Opus) whose last page is partial or that has no end-of-stream page, or a file whose header
  declares more frames than can be decoded (mp3 Xing/Info, FLAC, ...), by more than
  `TRUNCATION_TOLERANCE_SECONDS`;
* a header that **lies**: a sample rate outside `MIN_SAMPLE_RATE`..`MAX_SAMPLE_RATE` (4 to 384 kHz),
  or more decoded audio than the file's size can hold (`MIN_BYTES_PER_SECOND`);
* a file **ffmpeg** decodes with errors (corrupt or cut-off m4a/aac/...), exits non-zero on, or
  stalls on for `FFMPEG_STALL_SECONDS` (it is then killed);
* samples that are NaN, infinite, or beyond ±`MAX_ABS_SAMPLE` (corrupt float data: the encoder's
  float32 arithmetic would overflow on them).

The error is raised when the damage is found: for a header that promises more than the file holds,
before decoding; for damage found while decoding, after the blocks before it were yielded.
"""

from __future__ import annotations

import collections
import os
import re
import selectors
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from streamer.constants import INT16_FULL_SCALE, SAMPLE_RATE
from streamer.errors import AudioError, ConfigError

#: Extensions routed straight to ffmpeg (libsndfile cannot read them).
FFMPEG_ONLY = (".m4a", ".aac", ".mp4", ".m4b", ".wma", ".webm", ".mkv", ".amr", ".3gp")
#: Most channels of an in-memory array: a 2-D array is (samples, channels) or (channels, samples), told
#: apart by which side is at most this and which is longer.
MAX_CHANNELS = 8
#: Default block length of `iter_audio`, in seconds.
BLOCK_SECONDS = 10.0
#: Largest accepted sample magnitude (float samples are nominally in [-1, 1]). 2^31 admits float files
#: written at 32-bit integer scale; larger values are corrupt data and would overflow the encoder's
#: float32 arithmetic (the bundled model turns 1e30 into NaN logits).
MAX_ABS_SAMPLE = float(2**31)
#: Lowest and highest sample rates accepted, in Hz, for files and arrays alike: telephone speech is 8 kHz,
#: studio audio at most 384 kHz. Bounding the rate bounds the resampling work per byte of input (at most
#: 4 output samples per input sample): a header that claims 1 Hz would otherwise turn 80 KB into hours.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 384_000
#: Fewest bytes any codec stores one second of audio in (FLAC's constant blocks of digital silence take
#: about 20): a file that decodes to more than its size allows is refused, so the work a file causes is
#: bounded by its real size, whatever its header claims.
MIN_BYTES_PER_SECOND = 4
#: Ogg's capture pattern and the header-type flag of a logical stream's last page.
_OGG_MAGIC, _OGG_END_OF_STREAM = b"OggS", 0x04
#: Seconds ffmpeg may go without writing anything before it is considered stalled and killed.
FFMPEG_STALL_SECONDS = 60.0
#: Shortfall of decoded audio against the header's frame count tolerated as codec padding, in seconds
#: (mp3 files without a Xing header only carry an estimate, off by the encoder delay and padding).
TRUNCATION_TOLERANCE_SECONDS = 0.1
#: Lines of ffmpeg's stderr kept for error messages (the rest is read and counted, never buffered).
_STDERR_LINES = 4
#: A WAV data-chunk size this large (the 2/4-GiB placeholders of streamed WAVs) means "unknown length".
_WAV_UNKNOWN_LENGTH = 0x7FFF0000
_FFMPEG_CONTEXT = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")  # "[aac @ 0x55d5...] " before a message
_WAV_DATA_LOG = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


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
    frames: int = -1
    """Frames at the native rate that the header declares (-1 when unknown)."""


def _check_path(path: Path) -> None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:  # a name too long, a parent that is a file, no permission, a NUL
        raise AudioError(f"{path}: cannot be opened ({getattr(err, 'strerror', None) or err})") from None
    if stat.S_ISDIR(found.st_mode):
        raise AudioError(f"{path}: is a directory, expected an audio file")
    if not stat.S_ISREG(found.st_mode):
        raise AudioError(f"{path}: expected a regular audio file, found a device, pipe or socket")
    if found.st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def check_samples(block: np.ndarray, name: str) -> None:
    """Refuses NaN, infinite, or out-of-range samples (beyond ±`MAX_ABS_SAMPLE`).

    Args:
        block: (N,) float32 samples.
        name: How the error refers to the input.

    Raises:
        AudioError: Naming how many samples are bad and the largest magnitude found.
    """
    if block.size == 0:
        return
    bad = ~np.isfinite(block)
    if bad.any():
        raise AudioError(f"{name}: expected finite samples, found {int(bad.sum())} NaN or infinite")
    peak = float(np.abs(block).max())
    if peak > MAX_ABS_SAMPLE:
        count = int((np.abs(block) > MAX_ABS_SAMPLE).sum())
        raise AudioError(f"{name}: expected samples within ±{MAX_ABS_SAMPLE:.3g} (nominally ±1), found {count} "
                         f"up to {peak:.3g}; the data is corrupt")


def check_sample_rate(sample_rate: object, name: str = "sample_rate") -> int:
    """Validates a sample rate given by a caller.

    Args:
        sample_rate: Rate in Hz: an integer (or an integral float) in
            [`MIN_SAMPLE_RATE`, `MAX_SAMPLE_RATE`].
        name: How the error refers to it.

    Returns:
        The rate as an int.

    Raises:
        AudioError: Not a number, not integral, or out of range.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise AudioError(f"{name}: expected an integer in Hz, found {type(sample_rate).__name__} {sample_rate!r}")
    rate = float(sample_rate)
    if not rate.is_integer() or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: expected an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, "
                         f"found {sample_rate!r}")
    return int(rate)


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


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] → int16 (rounded; values outside full scale are clipped)."""
    x = np.round(np.asarray(samples, dtype=np.float32) * INT16_FULL_SCALE)
    return np.clip(x, -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resamples (N,) float32 from ``rate`` to ``target`` Hz (no-op when equal)."""
    if rate == target:
        return samples
    if rate <= 0:
        raise AudioError(f"sample rate: expected > 0 Hz, found {rate}")
    import soxr
    return soxr.resample(samples, rate, target).astype(np.float32, copy=False)


class StreamResampler:
    """Resamples the consecutive blocks of one stream to 16 kHz (soxr's streaming resampler, so block
    edges leave no trace); at 16 kHz it passes blocks through.

    Args:
        rate: The stream's sample rate in Hz (checked by `check_sample_rate`).
    """

    def __init__(self, rate: object) -> None:
        self.rate = check_sample_rate(rate, "sample_rate")
        self._soxr: Any = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._soxr = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """(N,) float32 samples at ``rate`` → float32 samples at 16 kHz (``last``: flush the filter)."""
        x = np.asarray(block, dtype=np.float32)
        if self._soxr is None:
            return x
        return np.asarray(self._soxr.resample_chunk(x, last=last), dtype=np.float32)


def resampler_for(current: StreamResampler | None, rate: object, name: str) -> StreamResampler:
    """The resampler of a stream's next block: a new one for the first block, the same one after.

    Raises:
        AudioError: A bad sample rate (`check_sample_rate`).
        ConfigError: A rate different from the stream's earlier blocks.
    """
    rate = check_sample_rate(rate, f"{name} sample_rate")
    if current is None:
        return StreamResampler(rate)
    if current.rate != rate:
        raise ConfigError(f"{name}: sample rate changed from {current.rate} to {rate} Hz; use one rate per stream")
    return current


def prepare_array(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, name: str = "array") -> np.ndarray:
    """Validates and converts an in-memory signal to 16-kHz mono float32.

    Args:
        samples: (N,) or (N, C) samples; a (C, N) array with C <= 8 < N is also accepted.
        sample_rate: Its rate in Hz (see `check_sample_rate`).
        name: How errors refer to it.

    Raises:
        AudioError: No samples, bad samples (see `check_samples`), a bad rate, or an unsupported
            dtype/shape.
    """
    rate = check_sample_rate(sample_rate)
    x = read_block(samples, name)
    if x.size == 0:
        raise AudioError(f"{name}: holds no samples")
    return resample(x, rate)


def read_block(samples: object, name: str = "array") -> np.ndarray:
    """Reads in-memory samples as (N,) float32 mono, as `prepare_array` does, without resampling.

    Args:
        samples: A numpy array or torch tensor of shape (N,), (1, N), (N, 1), (N, C), or (C, N) with
            C <= 8 < N (any other 2-D shape is ambiguous and refused); integer samples are scaled to [-1, 1].
        name: How errors refer to it.

    Returns:
        (N,) float32 (empty for an empty input).

    Raises:
        AudioError: Bad samples (see `check_samples`) or an unsupported dtype/shape.
    """
    x = samples.detach().cpu().numpy() if hasattr(samples, "detach") else np.asarray(samples)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)  # (1, N) or (N, 1): mono either way
    elif x.ndim == 2 and x.shape[0] <= MAX_CHANNELS < x.shape[1]:
        x = x.T
    elif x.ndim == 2 and not x.shape[1] <= MAX_CHANNELS < x.shape[0]:
        raise AudioError(f"{name}: ambiguous layout {x.shape}: expected (samples,), (samples, channels) or "
                         f"(channels, samples) with at most {MAX_CHANNELS} channels and more than {MAX_CHANNELS} "
                         "samples; pass mono (samples,) or a longer block")
    if x.size == 0 and x.ndim in (1, 2) and x.dtype.kind in "iuf":
        return np.zeros(0, dtype=np.float32)
    x = to_mono_float(x)
    check_samples(x, name)
    return x


def _wav_truncation(path: Path, extra_info: str) -> str | None:
    """libsndfile's log of a WAV whose data chunk declares more bytes than the file holds."""
    m = _WAV_DATA_LOG.search(extra_info)
    if m is None:
        return None
    declared, present = int(m.group(1)), int(m.group(2))
    if declared <= present or declared >= _WAV_UNKNOWN_LENGTH:
        return None
    return f"{path}: truncated: the header declares {declared} bytes of audio data, the file holds {present}"


def _ogg_damage(path: Path) -> str | None:
    """Why an Ogg file (Vorbis, Opus, FLAC in Ogg) is cut short, or None when it is whole.

    Walks the page headers (27 bytes and a segment table each, the rest is skipped): a file whose last
    page ends past the end of the file, or a logical stream that began and has no page with the
    end-of-stream flag, was truncated. Bytes between pages are skipped to the next capture pattern.
    """
    size = path.stat().st_size
    open_streams: set[int] = set()
    pos = 0
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(27)
            if head[:4] != _OGG_MAGIC:
                f.seek(pos + 1)
                rest = f.read(1 << 16)
                found = rest.find(_OGG_MAGIC)
                if found < 0:
                    if len(rest) < (1 << 16):
                        break  # trailing bytes that are not a page
                    pos += 1 + len(rest) - 3
                    continue
                pos += 1 + found
                continue
            if len(head) < 27:
                return f"the last Ogg page is cut short ({size - pos} of its header's 27 bytes)"
            flags, serial, count = head[5], int.from_bytes(head[14:18], "little"), head[26]
            table = f.read(count)
            end = pos + 27 + count + sum(table)
            if len(table) < count or end > size:
                return f"the last Ogg page is cut short (it ends at byte {end}, the file at {size})"
            if flags & 0x02:
                open_streams.add(serial)
            if flags & _OGG_END_OF_STREAM:
                open_streams.discard(serial)
            pos = end
    if open_streams:
        return "no Ogg page carries the end-of-stream flag (the file ends mid-stream)"
    return None


def _ffmpeg_blocks(path: Path, block_bytes: int, limit_seconds: float | None = None) -> Iterator[bytes]:
    """Runs ffmpeg on a file and yields its 16-kHz mono float32 output in ``block_bytes`` pieces.

    Both pipes are read in one loop, so ffmpeg never blocks on a full stderr pipe; its stderr is
    counted and its last lines kept. A decoder that writes nothing for `FFMPEG_STALL_SECONDS` is
    killed, and so is one left running when the caller stops early.

    Raises:
        AudioError: ffmpeg is missing, stalls, exits non-zero, or reports decoding errors.
    """
    ff = _ffmpeg()
    if ff is None:
        raise AudioError(f"{path}: reading {path.suffix or 'this file'} needs ffmpeg (apt-get install ffmpeg)")
    cmd = [ff, "-nostdin", "-v", "error", "-i", str(path)]
    if limit_seconds is not None:
        cmd += ["-t", f"{limit_seconds:g}"]
    cmd += ["-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPE above
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    pending = bytearray()
    err_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
    err_partial = b""
    err_lines = 0
    decoded = 0
    try:
        last_output = time.monotonic()
        while sel.get_map():
            events = sel.select(timeout=1.0)
            if not events and time.monotonic() - last_output > FFMPEG_STALL_SECONDS:
                raise AudioError(f"{path}: ffmpeg wrote nothing for {FFMPEG_STALL_SECONDS:g} s after "
                                 f"{decoded / 4 / SAMPLE_RATE:.2f} s of audio; stopped it (stalled decoder)")
            for key, _ in events:
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                last_output = time.monotonic()
                if key.data == "err":
                    lines = (err_partial + data).split(b"\n")
                    err_partial = lines.pop()
                    for line in lines:
                        if line.strip():
                            err_lines += 1
                            err_tail.append(_FFMPEG_CONTEXT.sub("", line.decode(errors="replace").strip()))
                    continue
                pending += data
                decoded += len(data)
                while len(pending) >= block_bytes:
                    yield bytes(pending[:block_bytes])
                    del pending[:block_bytes]
                    last_output = time.monotonic()  # the caller's time with the block is not a stall
        if err_partial.strip():
            err_lines += 1
            err_tail.append(_FFMPEG_CONTEXT.sub("", err_partial.decode(errors="replace").strip()))
        code = proc.wait()
        if code != 0 or err_lines:
            status = f", exit code {code}" if code != 0 else ""
            last = err_tail[-1] if err_tail else "no message"
            raise AudioError(f"{path}: damaged or truncated: ffmpeg reported {err_lines} decoding error(s){status} "
                             f"after {decoded / 4 / SAMPLE_RATE:.2f} s of audio (last: {last})")
        if pending:
            yield bytes(pending)
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Reads a file's header (and checks it can be decoded).

    Raises:
        AudioError: Missing, a directory, empty, truncated (a WAV data chunk longer than the file), or
            not a decodable audio file.
    """
    p = Path(path)
    _check_path(p)
    if p.suffix.lower() not in FFMPEG_ONLY:
        import soundfile as sf
        try:
            info = sf.info(str(p))
            if info.frames == 0:
                raise AudioError(f"{p}: holds no audio samples")
            if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
                raise AudioError(f"{p}: the header declares a sample rate of {info.samplerate} Hz, expected "
                                 f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz; the header is damaged")
            cut = _wav_truncation(p, info.extra_info)
            if cut:
                raise AudioError(cut)
            with open(p, "rb") as f:
                is_ogg = f.read(4) == _OGG_MAGIC
            damage = _ogg_damage(p) if is_ogg else None
            if damage:
                raise AudioError(f"{p}: truncated: {damage}")
            return AudioInfo(p, int(info.samplerate), int(info.channels), float(info.duration), "soundfile",
                             int(info.frames))
        except AudioError:
            raise
        except Exception as err:  # libsndfile raises its own error types for unreadable files
            sf_error = str(err).splitlines()[0] if str(err) else type(err).__name__
    else:
        sf_error = f"{p.suffix} is not readable by libsndfile"
    if _ffmpeg() is None:
        hint = " (install ffmpeg to read it: apt-get install ffmpeg)" if p.suffix.lower() in FFMPEG_ONLY else ""
        raise AudioError(f"{p}: not a readable audio file ({sf_error}){hint}")
    try:
        head = b"".join(_ffmpeg_blocks(p, 1 << 16, limit_seconds=0.1))
    except AudioError as err:
        raise AudioError(f"{p}: not a readable audio file ({sf_error}; {str(err).removeprefix(f'{p}: ')})") from None
    if not head:
        raise AudioError(f"{p}: not a readable audio file ({sf_error}; ffmpeg: no audio decoded)")
    return AudioInfo(p, SAMPLE_RATE, 1, -1.0, "ffmpeg")


def iter_audio(path: str | os.PathLike[str], block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yields a file as consecutive 16-kHz mono float32 blocks, holding one block in memory.

    Args:
        path: Audio file.
        block_seconds: Approximate block length (the last block is shorter).

    Raises:
        AudioError: The file cannot be decoded, holds no samples, holds bad samples (see
            `check_samples`), or is damaged or truncated (see the module docstring). Damage found
            while decoding is raised after the blocks decoded before it.
    """
    info = probe(path)
    name = str(info.path)
    total = 0
    size = info.path.stat().st_size
    most = int((size / MIN_BYTES_PER_SECOND + 1) * SAMPLE_RATE)  # output samples the file's size allows

    def bounded(n: int) -> int:
        if n > most:
            raise AudioError(f"{name}: decodes to more than {most / SAMPLE_RATE:.0f} s of audio, more than a file of "
                             f"{size} bytes can hold; the file is damaged")
        return n
    if info.decoder == "soundfile":
        import soundfile as sf
        to_16k = StreamResampler(info.sample_rate)
        block = max(1, int(block_seconds * info.sample_rate))
        native = 0
        try:
            with sf.SoundFile(name) as f:
                while True:
                    raw = f.read(block, dtype="float32", always_2d=True)
                    native += len(raw)
                    last = len(raw) < block
                    x = to_mono_float(raw)
                    check_samples(x, name)
                    x = to_16k(x, last=last)
                    if len(x):
                        total = bounded(total + len(x))
                        yield x
                    if last:
                        break
        except AudioError:
            raise
        except Exception as err:
            raise AudioError(f"{name}: decoding failed after {total / SAMPLE_RATE:.2f} s ({err})") from None
        missing = info.frames - native
        if native and missing > TRUNCATION_TOLERANCE_SECONDS * info.sample_rate:
            raise AudioError(f"{name}: truncated: the header declares {info.frames / info.sample_rate:.2f} s, "
                             f"only {native / info.sample_rate:.2f} s could be decoded")
    else:
        nbytes = int(block_seconds * SAMPLE_RATE) * 4
        for data in _ffmpeg_blocks(info.path, nbytes):
            x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float32)
            check_samples(x, name)
            total = bounded(total + len(x))
            yield x
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
