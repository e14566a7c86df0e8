"""A corpus packed for carrying to another machine: a few long Ogg/Opus streams and an index.

Layout of a pack folder::

    pack.json      sample rate, gap, bitrate, shards (name, samples, bytes), totals
    index.tsv      shard<TAB>start sample<TAB>length in samples<TAB>text   (one utterance a line)
    shard-000.ogg  utterances back to back, 0.25 s of silence between them, 16 kHz mono Opus

Per-utterance Ogg files would waste 1–2 KB of container each; long streams cost only the codec's
bits (12 kbps ≈ 5.4 MB per hour). Decoding gives the int16 stream the training bank indexes
directly (`streamer.train.bank.load_source`), so nothing is cut or copied per utterance.

Encoding uses ffmpeg's libopus. Decoding uses soundfile (libsndfile ≥ 1.0.29 reads Ogg/Opus at the
stream's 16 kHz) or, without it, ffmpeg; neither needs soxr. `check_pack` measures that every
utterance decodes at its indexed offset (best-aligned lag 0) and its signal-to-error ratio.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, MissingDependencyError

#: Silence between two utterances of a stream, in seconds.
GAP_SECONDS = 0.25
#: Opus bit rate of the shards, in kbit/s.
BITRATE_KBPS = 12


@dataclass(frozen=True)
class PackEntry:
    """One utterance of a pack."""

    shard: str
    """Shard file name."""
    start: int
    """First sample in the shard."""
    length: int
    """Samples."""
    text: str
    """Transcript."""
    global_start: int = 0
    """First sample in the concatenation of all shards (set by `read_pack`)."""


@dataclass(frozen=True)
class PackSummary:
    """What `pack_corpus` wrote."""

    folder: str
    utterances: int
    seconds: float
    """Audio of the utterances (gaps aside), in seconds."""
    bytes: int
    """Size of the folder's files."""
    shards: int

    @property
    def megabytes_per_hour(self) -> float:
        """Pack size per hour of utterance audio, in MB (10**6 bytes)."""
        return self.bytes / 1e6 / max(1e-9, self.seconds / 3600)


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise MissingDependencyError("ffmpeg: expected on PATH to encode (and, without soundfile, decode) Ogg/Opus; "
                                     "install it (apt-get install ffmpeg)")
    return path


def encode_opus(samples: np.ndarray, path: Path, bitrate_kbps: int = BITRATE_KBPS) -> None:
    """Writes int16 16-kHz mono samples as Ogg/Opus with ffmpeg's libopus."""
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1",
           "-i", "-", "-c:a", "libopus", "-b:a", f"{bitrate_kbps}k", "-application", "voip", str(path)]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(samples, dtype="<i2").tobytes(), capture_output=True)
    if proc.returncode:
        raise ConfigError(f"ffmpeg: expected to encode {path}, found exit {proc.returncode}: {proc.stderr.decode()[-500:]}")


def decode_opus(path: Path) -> np.ndarray:
    """Reads an Ogg/Opus shard as int16 16-kHz mono: soundfile when importable, else ffmpeg."""
    try:
        import soundfile as sf
    except ImportError:
        sf = None
    if sf is not None:
        wave, rate = sf.read(str(path), dtype="int16", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ConfigError(f"{path}: expected {SAMPLE_RATE} Hz, found {rate} Hz")
        return np.ascontiguousarray(wave[:, 0])
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode:
        raise ConfigError(f"ffmpeg: expected to decode {path}, found exit {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.int16)


def pack_corpus(manifest: str | Path, out_dir: str | Path, max_hours: float | None = None,
                shard_hours: float = 1.0, bitrate_kbps: int = BITRATE_KBPS) -> PackSummary:
    """Packs a manifest's utterances (in manifest order) into Opus shards and an index.

    Args:
        manifest: Training manifest (TSV, see `streamer.train.data`).
        out_dir: Pack folder (created; must not hold a pack already).
        max_hours: Stop after this much utterance audio (None = all).
        shard_hours: Audio per shard stream, in hours.
        bitrate_kbps: Opus bit rate.

    Returns:
        What was written.
    """
    from streamer.train.data import load_waveform, read_manifest
    from streamer.audio import to_int16

    out = Path(out_dir)
    if (out / "pack.json").exists():
        raise ConfigError(f"pack: expected a new folder, found a pack in {out}")
    out.mkdir(parents=True, exist_ok=True)
    utts = read_manifest(manifest)
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.int16)
    shards: list[dict] = []
    lines: list[str] = []
    pieces: list[np.ndarray] = []
    filled = 0
    total = 0

    def flush() -> None:
        nonlocal pieces, filled
        if not pieces:
            return
        name = f"shard-{len(shards):03d}.ogg"
        stream = np.concatenate(pieces)
        encode_opus(stream, out / name, bitrate_kbps)
        shards.append({"name": name, "samples": int(len(stream)), "bytes": (out / name).stat().st_size})
        pieces, filled = [], 0

    for u in utts:
        if max_hours is not None and total >= max_hours * 3600 * SAMPLE_RATE:
            break
        wave = to_int16(load_waveform(u.path))
        if not pieces:
            pieces.append(gap)
            filled = len(gap)
        lines.append(f"shard-{len(shards):03d}.ogg\t{filled}\t{len(wave)}\t{u.text}")
        pieces += [wave, gap]
        filled += len(wave) + len(gap)
        total += len(wave)
        if filled >= shard_hours * 3600 * SAMPLE_RATE:
            flush()
    flush()
    (out / "index.tsv").write_text("\n".join(lines) + "\n")
    meta = {"sample_rate": SAMPLE_RATE, "gap_seconds": GAP_SECONDS, "bitrate_kbps": bitrate_kbps, "shards": shards,
            "utterances": len(lines), "seconds": total / SAMPLE_RATE, "source": str(manifest)}
    (out / "pack.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return PackSummary(str(out), len(lines), total / SAMPLE_RATE, size, len(shards))


def read_index(folder: str | Path) -> tuple[dict, list[PackEntry]]:
    """A pack's metadata and index (no decoding).

    Raises:
        ConfigError: The folder is not a pack or its index is malformed.
    """
    folder = Path(folder)
    if not (folder / "pack.json").is_file() or not (folder / "index.tsv").is_file():
        raise ConfigError(f"pack: expected pack.json and index.tsv in {folder}, found {sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'no folder'}")
    meta = json.loads((folder / "pack.json").read_text())
    if meta.get("sample_rate") != SAMPLE_RATE:
        raise ConfigError(f"{folder}/pack.json: expected sample_rate {SAMPLE_RATE}, found {meta.get('sample_rate')}")
    entries = []
    for i, line in enumerate((folder / "index.tsv").read_text().splitlines()):
        cols = line.split("\t")
        if len(cols) != 4:
            raise ConfigError(f"{folder}/index.tsv:{i + 1}: expected shard, start, length, text; found {line!r}")
        entries.append(PackEntry(cols[0], int(cols[1]), int(cols[2]), cols[3]))
    return meta, entries


def read_pack(folder: str | Path) -> tuple[np.ndarray, list[PackEntry]]:
    """Decodes a pack: all shards concatenated (int16) and entries with their offsets into it.

    Raises:
        ConfigError: A shard decodes shorter than its index needs.
    """
    from concurrent.futures import ThreadPoolExecutor

    folder = Path(folder)
    meta, entries = read_index(folder)
    streams, offsets, at = [], {}, 0
    # Shards decode in parallel (libsndfile and ffmpeg run outside the GIL): ~5 CPU-s per hour each.
    with ThreadPoolExecutor(max_workers=max(1, min(len(meta["shards"]), os.cpu_count() or 1))) as pool:
        decoded = list(pool.map(lambda shard: decode_opus(folder / shard["name"]), meta["shards"]))
    for shard, samples in zip(meta["shards"], decoded):
        need = max((e.start + e.length for e in entries if e.shard == shard["name"]), default=0)
        if len(samples) < need:
            raise ConfigError(f"{folder / shard['name']}: expected at least {need} samples, decoded {len(samples)}")
        offsets[shard["name"]] = at
        streams.append(samples)
        at += len(samples)
    placed = [PackEntry(e.shard, e.start, e.length, e.text, offsets[e.shard] + e.start) for e in entries]
    return (np.concatenate(streams) if streams else np.zeros(0, np.int16)), placed


@dataclass(frozen=True)
class PackCheck:
    """How faithfully a pack decodes at its offsets (`check_pack`)."""

    utterances: int
    streams_exact: bool
    """Every shard decodes to exactly the number of samples that was encoded (no drift, no trim)."""
    exact: int
    """Utterances whose best-aligned lag is 0 samples."""
    lags: dict[int, int]
    """Best-aligned lag (samples) → count. At 12 kbps Opus changes the phase of some voices a
    little (flite's most), so a few utterances correlate best 1–5 samples (≤ 0.3 ms) early even
    though their offsets are exact; a misplaced offset shows as a large lag."""
    median_ser_db: float
    """Median signal-to-error ratio of the decoded utterances at lag 0, in dB (Opus is lossy)."""


def check_pack(folder: str | Path, manifest: str | Path, max_lag: int = 160, limit: int | None = None) -> PackCheck:
    """Compares each decoded utterance with its source file around the indexed offset.

    Args:
        folder: Pack folder.
        manifest: The manifest it was packed from (same order).
        max_lag: Lags searched on each side, in samples.
        limit: Check only the first utterances.
    """
    from streamer.train.data import load_waveform, read_manifest
    from streamer.audio import to_int16

    meta, _ = read_index(folder)
    samples, entries = read_pack(folder)
    streams_exact = len(samples) == sum(shard["samples"] for shard in meta["shards"])
    utts = read_manifest(manifest)[: len(entries)]
    entries = entries[:limit] if limit else entries
    lags: dict[int, int] = {}
    sers = []
    for e, u in zip(entries, utts):
        ref = to_int16(load_waveform(u.path)).astype(np.float64)
        if len(ref) != e.length:
            raise ConfigError(f"check_pack: {u.path} has {len(ref)} samples, the index says {e.length}")
        lo = max(0, e.global_start - max_lag)
        seg = samples[lo:e.global_start + e.length + max_lag].astype(np.float64)
        # Cross-correlation by FFT: score[a] = sum_i seg[a + i] * ref[i] for every start a.
        size = 1 << (len(seg) + len(ref)).bit_length()
        score = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(ref, size)), size)[: len(seg) - len(ref) + 1]
        best = int(np.argmax(score)) + lo - e.global_start
        lags[best] = lags.get(best, 0) + 1
        got = samples[e.global_start:e.global_start + e.length].astype(np.float64)
        err = float(np.sum((got - ref) ** 2))
        sers.append(10 * np.log10(float(np.sum(ref ** 2)) / max(err, 1e-9)))
    exact = lags.get(0, 0)
    return PackCheck(len(entries), streams_exact, exact, dict(sorted(lags.items())), float(np.median(sers)) if sers else float("nan"))
