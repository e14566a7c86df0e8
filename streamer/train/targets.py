"""Teacher targets stored as data: frame-aligned float16 arrays keyed by the audio's content hash.

A target store is a folder written once per teacher and corpus (``tools/data/teacher_targets.py``)
and read beside the audio by the training batch source::

    store/
      meta.json          teacher name, width C, frame hop (samples), what the values are
      index.tsv          key<TAB>shard<TAB>first row<TAB>frames, one utterance a line
      shard-00000.npy    (F, C) float16, the frames of many utterances back to back

The key is the SHA-1 of the utterance's 16-kHz int16 samples as training reads them
(`audio_key`), so the same audio listed in two manifests, or renamed, finds its targets, and
different audio never does. Frame ``i`` of a target is centred on sample ``hop * i`` of the
utterance; an utterance of N samples has ``ceil(N / hop)`` frames.

A shard is written whole (temporary name, then rename) before its index lines are appended, so a
store interrupted at any point reads back as the utterances of its finished shards, and writing it
again resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from streamer.audio import to_int16
from streamer.errors import ConfigError
from streamer.files import atomic_files, write_atomic

#: Rows gathered before a shard is written (about 20 MB of float16 at 191 classes).
SHARD_ROWS = 50_000


#: What a store can hold (`StoreMeta.kind`).
STORE_KINDS = ("log_posteriors", "states", "labels")


def audio_key(samples: np.ndarray) -> str:
    """The content hash of an utterance.

    Args:
        samples: (N,) float32 samples in [-1, 1] at 16 kHz, or their int16 form.

    Returns:
        The SHA-1 hex digest of the int16 samples (little-endian).
    """
    if samples.dtype != np.int16:
        samples = to_int16(samples)
    return hashlib.sha1(np.ascontiguousarray(samples).astype("<i2", copy=False).tobytes()).hexdigest()


def target_frames(num_samples: int, hop: int) -> int:
    """Frames of a target for an utterance of ``num_samples`` samples: ``ceil(N / hop)``."""
    return -(-int(num_samples) // int(hop))


@dataclass(frozen=True)
class StoreMeta:
    """What a target store holds."""

    teacher: str
    """Teacher name (``hama``, ``whisper-tiny.en``)."""
    kind: str
    """``log_posteriors`` (log-probabilities over ``dim`` classes), ``states`` (hidden states) or
    ``labels`` (token strings over ``dim`` classes, blank last; `streamer.train.labels`)."""
    dim: int
    """Values per frame C (for labels: the classes of a CTC head, blank included)."""
    hop: int
    """Samples between frames at 16 kHz."""

    def __post_init__(self) -> None:
        if self.kind not in STORE_KINDS:
            raise ConfigError(f"target store kind: expected one of {', '.join(STORE_KINDS)}, found {self.kind!r}")
        if self.dim < 1 or self.hop < 1:
            raise ConfigError(f"target store: expected dim and hop >= 1, found {self.dim} and {self.hop}")


@dataclass(frozen=True)
class _Entry:
    shard: int
    start: int
    frames: int


class TargetStore:
    """Reads a target store (see the module docstring); shards are memory-mapped.

    Args:
        folder: The store's folder.

    Raises:
        ConfigError: The folder is not a target store, or its index names a shard that is missing.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise ConfigError(f"target store: expected {meta_path} (written by tools/data/teacher_targets.py), found nothing")
        try:
            raw = json.loads(meta_path.read_text(encoding="utf-8"))
            self.meta = StoreMeta(**raw)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"target store: {meta_path} is not a store description ({err})") from None
        self._index: dict[str, _Entry] = {}
        index = self.folder / "index.tsv"
        if index.is_file():
            for n, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split("\t")
                if len(parts) != 4:
                    raise ConfigError(f"{index}:{n}: expected key<TAB>shard<TAB>start<TAB>frames, found {line!r}")
                self._index[parts[0]] = _Entry(int(parts[1]), int(parts[2]), int(parts[3]))
        self._shards: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def shard_path(self, shard: int) -> Path:
        """Path of shard number ``shard``."""
        return self.folder / f"shard-{shard:05d}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The (F, C) float16 target of an utterance, or None when the store does not have it."""
        entry = self._index.get(key)
        if entry is None:
            return None
        data = self._shards.get(entry.shard)
        if data is None:
            path = self.shard_path(entry.shard)
            if not path.is_file():
                raise ConfigError(f"target store: {path} is listed in the index but missing")
            data = self._shards[entry.shard] = np.load(path, mmap_mode="r")
        return np.asarray(data[entry.start: entry.start + entry.frames])


class TargetWriter:
    """Appends targets to a store, a shard at a time; resumes a store written before.

    Args:
        folder: The store's folder (created when missing).
        meta: What the store holds; must equal the meta of an existing store.
        shard_rows: Rows gathered before a shard is written.

    Raises:
        ConfigError: The folder holds a store of another teacher or shape.
    """

    def __init__(self, folder: str | os.PathLike[str], meta: StoreMeta, shard_rows: int = SHARD_ROWS) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "meta.json"
        if meta_path.is_file():
            existing = TargetStore(self.folder)
            if existing.meta != meta:
                raise ConfigError(f"target store {self.folder}: holds {existing.meta}, expected {meta}; "
                                  "write to another folder")
            self._done = set(existing._index)
            shards = [e.shard for e in existing._index.values()]
            self._next_shard = max(shards) + 1 if shards else 0
        else:
            write_atomic(meta_path, json.dumps(meta.__dict__, indent=1) + "\n")
            self._done, self._next_shard = set(), 0
        self.meta, self.shard_rows = meta, shard_rows
        self._pending: list[tuple[str, np.ndarray]] = []
        self._rows = 0

    def __contains__(self, key: str) -> bool:
        return key in self._done

    def add(self, key: str, target: np.ndarray) -> None:
        """Queues one utterance's (F, C) target; writes a shard when enough rows are queued."""
        if target.ndim != 2 or target.shape[1] != self.meta.dim:
            raise ConfigError(f"target: expected (frames, {self.meta.dim}), found {target.shape}")
        if key in self._done:
            return
        self._pending.append((key, np.asarray(target, dtype=np.float16)))
        self._done.add(key)
        self._rows += len(target)
        if self._rows >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Writes the queued targets as one shard and lists them in the index."""
        if not self._pending:
            return
        shard = self._next_shard
        path = self.folder / f"shard-{shard:05d}.npy"
        with atomic_files([path], overwrite=True) as (tmp,), open(tmp, "wb") as f:
            np.save(f, np.concatenate([t for _, t in self._pending]))
        lines, start = [], 0
        for key, t in self._pending:
            lines.append(f"{key}\t{shard}\t{start}\t{len(t)}\n")
            start += len(t)
        with open(self.folder / "index.tsv", "a", encoding="utf-8") as f:
            f.writelines(lines)
        self._next_shard += 1
        self._pending, self._rows = [], 0

    def close(self) -> None:
        """Writes what is queued."""
        self.flush()


def coverage(store: TargetStore, keys: Iterable[str]) -> float:
    """Share of ``keys`` the store has targets for."""
    keys = list(keys)
    return sum(k in store for k in keys) / max(1, len(keys))

