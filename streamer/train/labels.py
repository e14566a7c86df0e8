"""Sequence-level teacher labels stored as text: what a teacher heard, keyed by the audio's content hash.

Frame targets (`streamer.train.targets`) ask the student to reproduce where a teacher puts each
spike and how sure it is; a label store holds only the teacher's decision, a token string per
utterance (hama's greedy phone string, say), learned with CTC. It is invariant to every
augmentation that keeps the words (speed, reverb, noise, codecs), a few bytes per second of audio,
and plain text, so it can be kept under version control::

    store/
      meta.json     {"teacher": "hama", "kind": "labels", "dim": 191, "hop": 320, "tokens": [...]}
      labels.tsv    key<TAB>id id id ...   (one utterance a line, sorted by key)

``tokens`` is the inventory (ids index it; hama's holds a space, so lines hold ids), blank last: a CTC head over a label store has ``dim`` outputs and its
blank is ``dim - 1``. The key is `streamer.train.targets.audio_key` of the 16-kHz int16 samples. An
utterance with an empty line was heard as nothing; one that is missing has no label.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from streamer.errors import ConfigError
from streamer.files import write_atomic
from streamer.metrics import edit_distance
from streamer.train.targets import StoreMeta

#: Name of a label store's text file.
LABELS_FILE = "labels.tsv"


def collapse_ctc(ids: Iterable[int], blank: int) -> list[int]:
    """Greedy CTC collapse: repeats merged, blanks dropped.

    Args:
        ids: Frame-wise argmax ids.
        blank: Blank id.
    """
    out: list[int] = []
    prev = None
    for i in ids:
        i = int(i)
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def token_error_rate(pairs: Iterable[tuple[Sequence[int], Sequence[int]]], ignore: Sequence[int] = ()) -> float:
    """Corpus token error rate: summed edit distance over summed reference length.

    Args:
        pairs: (reference, hypothesis) id sequences.
        ignore: Ids left out of both before scoring (hama's word boundary, say).
    """
    skip = set(int(i) for i in ignore)
    errors = total = 0
    for ref, hyp in pairs:
        r = [i for i in ref if i not in skip]
        h = [i for i in hyp if i not in skip]
        errors += edit_distance(r, h)
        total += len(r)
    return errors / max(1, total)


class LabelStore:
    """Reads a label store (see the module docstring).

    Args:
        folder: The store's folder.

    Raises:
        ConfigError: The folder is not a label store, or a line is malformed.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise ConfigError(f"label store: expected {meta_path} (written by tools/data/teacher_labels.py), found nothing")
        try:
            raw = json.loads(meta_path.read_text(encoding="utf-8"))
            tokens = [str(t) for t in raw.pop("tokens")]
            self.meta = StoreMeta(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ConfigError(f"label store: {meta_path} is not a label store description ({err})") from None
        if self.meta.kind != "labels" or len(tokens) != self.meta.dim:
            raise ConfigError(f"label store {meta_path}: expected kind 'labels' and {self.meta.dim} tokens, found "
                              f"{self.meta.kind!r} and {len(tokens)}")
        self.tokens = tuple(tokens)
        self.blank = self.meta.dim - 1
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        self._labels: dict[str, np.ndarray] = {}
        path = self.folder / LABELS_FILE
        if path.is_file():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                key, sep, text = line.partition("\t")
                try:
                    ids = np.asarray([int(i) for i in text.split()], dtype=np.int16)
                except ValueError:
                    ids = None
                if not sep or len(key) != 40 or ids is None or (len(ids) and not (0 <= ids.min() and ids.max() < self.blank)):
                    raise ConfigError(f"{path}:{n}: expected key<TAB>ids below {self.blank} (the blank), found {line[:60]!r}")
                self._labels[key] = ids

    def encode(self, tokens: Sequence[str], where: str = "labels") -> np.ndarray:
        """Token strings → (L,) int16 ids.

        Raises:
            ConfigError: A token is not in the inventory, or is the blank.
        """
        try:
            ids = [self._ids[t] for t in tokens]
        except KeyError as err:
            raise ConfigError(f"{where}: token {err.args[0]!r} is not in the store's inventory") from None
        if self.blank in ids:
            raise ConfigError(f"{where}: the blank token {self.tokens[self.blank]!r} is not a label")
        return np.asarray(ids, dtype=np.int16)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids → token strings."""
        return [self.tokens[int(i)] for i in ids]

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, key: str) -> bool:
        return key in self._labels

    def keys(self) -> list[str]:
        """The keys of the stored utterances."""
        return list(self._labels)

    def get(self, key: str) -> np.ndarray | None:
        """The (L,) int16 label ids of an utterance, or None when the store does not have it."""
        return self._labels.get(key)


def write_label_store(folder: str | os.PathLike[str], meta: StoreMeta, tokens: Sequence[str],
                      labels: Mapping[str, Sequence[int]], overwrite: bool = True) -> int:
    """Writes (or rewrites) a label store, lines sorted by key so the file is the same for the same labels.

    Args:
        folder: The store's folder (created when missing).
        meta: What it holds (kind ``labels``, ``dim`` = ``len(tokens)``).
        tokens: The inventory, blank last.
        labels: Key → label ids (below the blank, ``len(tokens) - 1``).
        overwrite: Replace an existing store's files.

    Returns:
        The number of utterances written.

    Raises:
        ConfigError: The meta does not describe a label store of these tokens, or an id is out of range.
    """
    if meta.kind != "labels" or meta.dim != len(tokens):
        raise ConfigError(f"label store: expected kind 'labels' with dim {len(tokens)}, found {meta.kind!r} and {meta.dim}")
    blank = len(tokens) - 1
    for key, ids in labels.items():
        if len(key) != 40 or any(not 0 <= int(i) < blank for i in ids):
            raise ConfigError(f"label store: expected 40-hex keys and ids below {blank}, found {key!r}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "meta.json", json.dumps({**meta.__dict__, "tokens": list(tokens)}, ensure_ascii=False, indent=1)
                 + "\n", overwrite=overwrite)
    lines = "".join(f"{k}\t{' '.join(str(int(i)) for i in labels[k])}\n" for k in sorted(labels))
    write_atomic(out / LABELS_FILE, lines, overwrite=overwrite)
    return len(labels)


def is_label_store(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds a label store (its meta says kind ``labels``)."""
    meta = Path(folder) / "meta.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("kind") == "labels"
    except (OSError, ValueError, AttributeError):
        return False


def merge_label_stores(dest: str | os.PathLike[str], sources: Sequence[str | os.PathLike[str]]) -> int:
    """Writes the union of label stores of one teacher into ``dest`` (itself included when it exists).

    Args:
        dest: The store written (created when missing).
        sources: Stores merged into it, in order (a key in several keeps the first one's labels).

    Returns:
        The number of utterances in ``dest``.

    Raises:
        ConfigError: The stores hold different teachers or inventories.
    """
    folders = ([dest] if is_label_store(dest) else []) + list(sources)
    stores = [LabelStore(f) for f in folders]
    first = stores[0]
    labels: dict[str, list[int]] = {}
    for folder, store in zip(folders, stores):
        if store.meta != first.meta or store.tokens != first.tokens:
            raise ConfigError(f"merge: {folder} holds {store.meta.teacher} labels over {store.meta.dim} tokens, "
                              f"expected {first.meta.teacher} over {first.meta.dim}")
        for key in store.keys():
            labels.setdefault(key, store.get(key).tolist())
    return write_label_store(dest, first.meta, first.tokens, labels)
