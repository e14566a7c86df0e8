"""Training data: manifests, length-bucketed batches, padding.

A manifest is a TSV file, one utterance a line: ``path<TAB>text`` (paths relative to the manifest's
folder, or absolute). A Common Voice style file with a header line naming ``path`` and ``sentence``
(or ``text``) columns also reads. Durations come from a sidecar ``<manifest stem>.lengths`` (one
duration in seconds a line, same order) when present, else from the audio headers. Both files are
UTF-8 text; an error names the file and line.
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import AudioError, ConfigError
from streamer.text import normalize_text
from streamer.vocab import Vocabulary


@dataclass(frozen=True)
class Utterance:
    """One manifest entry."""

    path: Path
    text: str
    """Transcript, normalized for the model's vocabulary (see `read_manifest`)."""
    duration: float
    """Seconds of audio."""


#: Longest duration a ``.lengths`` file may give one utterance, in seconds (a day: beyond it, the file is wrong).
MAX_LENGTH_SECONDS = 86_400.0


def _utf8_text(path: Path, what: str) -> str:
    """A file's text; one `ConfigError` naming the line of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path}:{line}: expected UTF-8 text in this {what}, found the byte "
                          f"{data[err.start]:#04x} (another encoding, such as Latin-1: convert it with "
                          "iconv -t UTF-8)") from None


def _sidecar_lengths(manifest: Path, count: int) -> list[float] | None:
    for candidate in (manifest.with_suffix(".lengths"), manifest.parent / f"{manifest.name}.lengths"):
        if candidate.is_file():
            values = []
            for number, line in enumerate(_utf8_text(candidate, "lengths file").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    value = float(line)
                except ValueError:
                    value = math.nan
                if not 0.0 < value <= MAX_LENGTH_SECONDS:
                    raise ConfigError(f"{candidate}:{number}: expected a duration in seconds (above 0, at most "
                                      f"{MAX_LENGTH_SECONDS:g}), found {line.strip()[:40]!r}")
                values.append(value)
            if len(values) != count:
                raise ConfigError(f"{candidate}: expected {count} durations (one per manifest line), found {len(values)}")
            return values
    return None


def read_manifest(manifest: str | Path, max_items: int | None = None, vocab: Vocabulary | None = None,
                  normalize: bool = True) -> list[Utterance]:
    """Reads a manifest (see the module docstring) and normalizes its transcripts.

    Args:
        manifest: The TSV file.
        max_items: Read at most this many utterances.
        vocab: The model's vocabulary; transcripts are normalized for it with
            `streamer.text.normalize_text` (None = the English characters of the bundled models).
        normalize: False keeps the transcripts as written (to build a vocabulary from them).

    Raises:
        ConfigError: The manifest is missing, or a line has no text column or names a missing or
            unreadable audio file (the message names the manifest line).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ConfigError(f"manifest: expected a TSV file, found nothing at {manifest}")
    text = _utf8_text(manifest, "manifest")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    path_col, text_col, first_line = 0, 1, 1
    if rows and "path" in rows[0] and ("sentence" in rows[0] or "text" in rows[0]):
        header = rows.pop(0)
        path_col = header.index("path")
        text_col = header.index("sentence") if "sentence" in header else header.index("text")
        first_line = 2
    numbered = [(n, r) for n, r in enumerate(rows, first_line) if r and r[0].strip()]
    rows = [r for _, r in numbered]
    lengths = _sidecar_lengths(manifest, len(rows))
    out = []
    for i, row in enumerate(rows):
        where = f"{manifest}:{numbered[i][0]}"
        if len(row) <= max(path_col, text_col):
            raise ConfigError(f"{where}: expected 'path<TAB>text', found {row!r}")
        path = Path(row[path_col])
        if not path.is_absolute():
            path = manifest.parent / path
        if lengths is not None:  # the sidecar spares reading every header; a bad file fails when loaded
            if not path.is_file():
                raise ConfigError(f"{where}: {path}: " + ("is a folder, expected an audio file" if path.is_dir()
                                                          else "no such file"))
            duration = lengths[i]
        else:
            duration = _duration(path, where)
        out.append(Utterance(path, normalize_text(row[text_col], vocab) if normalize else row[text_col], duration))
        if max_items is not None and len(out) >= max_items:
            break
    return out


def _duration(path: Path, where: str) -> float:
    """Seconds of audio in a manifest's file (decoded when the header does not say)."""
    from streamer.audio import iter_audio, probe

    try:
        info = probe(path)
        return info.duration if info.duration >= 0 else sum(len(b) for b in iter_audio(path)) / SAMPLE_RATE
    except AudioError as err:
        raise ConfigError(f"{where}: {err}") from None


def load_waveform(path: Path) -> np.ndarray:
    """Reads a training file as float32 mono at 16 kHz (`streamer.audio.load_audio`: every format, one
    `AudioError` line for a bad file)."""
    from streamer.audio import load_audio

    return load_audio(path)


def length_batches(durations: Sequence[float], max_batch_seconds: float, rng: random.Random | None,
                   sorted_order: bool = False, bucket_size: int = 100) -> list[list[int]]:
    """Groups utterance indices into batches of similar length, each under a total duration.

    The batch cost is its padded size: ``len(batch) * longest`` seconds must stay under
    ``max_batch_seconds`` (a single longer utterance forms its own batch).

    Args:
        durations: Seconds per utterance.
        max_batch_seconds: Budget of padded audio per batch.
        rng: Shuffles buckets and batch order; None keeps the sorted order.
        sorted_order: Return batches from shortest to longest (curriculum: short utterances first).
        bucket_size: Utterances sorted together before batching (small buckets = more randomness).
    """
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    if rng is not None and not sorted_order:
        # Shuffle within windows of similar length so batches vary from epoch to epoch.
        chunks = [order[i:i + bucket_size] for i in range(0, len(order), bucket_size)]
        for c in chunks:
            rng.shuffle(c)
            c.sort(key=lambda i: durations[i])
        order = [i for c in chunks for i in c]
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0.0
    for i in order:
        d = durations[i]
        if cur and max(longest, d) * (len(cur) + 1) > max_batch_seconds:
            batches.append(cur)
            cur, longest = [], 0.0
        cur.append(i)
        longest = max(longest, d)
    if cur:
        batches.append(cur)
    if rng is not None and not sorted_order:
        rng.shuffle(batches)
    return batches
