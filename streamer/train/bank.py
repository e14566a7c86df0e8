"""Training sets as batch sources: audio, labels and teacher targets, gathered by row indices.

Two sources with one interface (`Source`):

* `AudioBank`: every utterance decoded once and held as int16 on the training device (1 h =
  115 MB), its labels and teacher targets in tensors beside it; a batch is a gather.
* `FileBank`: the same rows read from their files for each batch (corpora larger than memory).

`ShapeBuckets` gives every batch one of a few fixed shapes, so compiled graphs and the caching
allocator are reused.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from streamer.audio import to_int16
from streamer.constants import INT16_FULL_SCALE, SAMPLE_RATE
from streamer.errors import ConfigError
from streamer.grid import XLSR_GRID
from streamer.train.data import Utterance, load_waveform, read_manifest
from streamer.train.labels import LabelStore, is_label_store
from streamer.train.targets import TargetStore, audio_key
from streamer.vocab import Vocabulary

#: Bucket widths are rounded up to a multiple of this many samples (0.1 s).
BUCKET_QUANTUM_SAMPLES = 1600


def encode_labels(texts: Sequence[str], vocab: Vocabulary) -> tuple[Tensor, Tensor]:
    """Transcripts → (U, L) int64 zero-padded label ids and (U,) label counts (0 = no transcript)."""
    ids = [vocab.encode(t) if t else [] for t in texts]
    labels = torch.zeros(len(ids), max([1] + [len(x) for x in ids]), dtype=torch.long)
    for i, x in enumerate(ids):
        labels[i, :len(x)] = torch.tensor(x, dtype=torch.long)
    return labels, torch.tensor([len(x) for x in ids], dtype=torch.long)


class Source(Protocol):
    """What the training step reads: rows of audio, labels and teacher targets."""

    lengths: Tensor
    """(U,) int64 samples per utterance (on the training device)."""
    labels: Tensor
    """(U, L) int64 label ids, zero-padded (on the training device)."""
    label_lengths: Tensor
    """(U,) int64 labels per utterance; 0 = no transcript (on the host)."""
    texts: tuple[str, ...]

    def __len__(self) -> int: ...

    def take(self, idx: Tensor, width: int, lead: Tensor | None = None) -> Tensor:
        """(B,) rows → (B, N=width) float32 samples, ``lead`` samples of silence first."""
        ...

    def targets(self, idx: np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        """Teacher ``k``'s targets of rows ``idx``: (B, F, C) float values, zero-padded, and (B,)
        frames (0 = none), on the training device."""
        ...


@dataclass(frozen=True)
class TargetBank:
    """One teacher's targets for every utterance of a bank, back to back."""

    values: Tensor
    """(F, C) float16."""
    starts: np.ndarray
    """(U,) int64 first frame of each utterance."""
    frames: np.ndarray
    """(U,) int64 frames of each utterance (0 = the store had none)."""

    def gather(self, idx: np.ndarray) -> tuple[Tensor, Tensor]:
        """Rows ``idx`` → (B, F, C) float32 zero-padded targets and (B,) frames."""
        frames = self.frames[idx]
        width = max(1, int(frames.max()) if len(frames) else 1)
        device = self.values.device
        if len(self.values) == 0:  # the store has nothing for this bank
            return (torch.zeros(len(idx), width, self.values.shape[1], device=device),
                    torch.from_numpy(frames).to(device))
        pos = np.arange(width)[None, :]
        inside = pos < frames[:, None]
        flat = np.where(inside, self.starts[idx][:, None] + pos, 0)
        out = self.values[torch.from_numpy(flat).to(device)].float()
        out = out * torch.from_numpy(inside).to(device)[..., None]
        return out, torch.from_numpy(frames).to(device)

    def to(self, device: torch.device) -> "TargetBank":
        """The bank with its values on ``device``."""
        return dataclasses.replace(self, values=self.values.to(device))

    def head(self, count: int) -> "TargetBank":
        """The first ``count`` utterances' targets."""
        return dataclasses.replace(self, starts=self.starts[:count], frames=self.frames[:count])


@dataclass(frozen=True)
class LabelBank:
    """One teacher's label strings for every utterance of a bank (`streamer.train.labels`)."""

    ids: Tensor
    """(U, L) int64 label ids, zero-padded."""
    frames: np.ndarray
    """(U,) int64 labels per utterance (0 = none, or the store had none); named as `TargetBank`'s
    so both say which rows have a target."""

    def gather(self, idx: np.ndarray) -> tuple[Tensor, Tensor]:
        """Rows ``idx`` → (B, L) int64 label ids, zero-padded, and (B,) label counts."""
        counts = self.frames[idx]
        width = max(1, int(counts.max()) if len(counts) else 1)
        device = self.ids.device
        return self.ids[torch.from_numpy(np.asarray(idx)).to(device), :width], torch.from_numpy(counts).to(device)

    def to(self, device: torch.device) -> "LabelBank":
        """The bank with its ids on ``device``."""
        return dataclasses.replace(self, ids=self.ids.to(device))

    def head(self, count: int) -> "LabelBank":
        """The first ``count`` utterances' labels."""
        return dataclasses.replace(self, ids=self.ids[:count], frames=self.frames[:count])


def label_bank(found: Sequence[np.ndarray | None]) -> LabelBank:
    """Label strings (None = none) → a `LabelBank`."""
    counts = np.array([0 if t is None else len(t) for t in found], dtype=np.int64)
    ids = torch.zeros(len(found), max(1, int(counts.max(initial=0))), dtype=torch.long)
    for i, t in enumerate(found):
        if t is not None and len(t):
            ids[i, : len(t)] = torch.from_numpy(t.astype(np.int64))
    return LabelBank(ids, counts)


#: A teacher's store as a training set reads it: frame targets or label strings.
Store = Union[TargetStore, LabelStore]


def open_store(folder: str | Path) -> Store:
    """The frame-target store (`streamer.train.targets`) or label store (`streamer.train.labels`) in ``folder``."""
    return LabelStore(folder) if is_label_store(folder) else TargetStore(folder)


@dataclass(frozen=True)
class AudioBank:
    """A training set held in memory: int16 samples of every utterance, padded labels, targets."""

    samples: Tensor
    """(S,) int16, the utterances (and whatever lies between them) back to back."""
    starts: Tensor
    """(U,) int64 first sample of each utterance in `samples`."""
    lengths: Tensor
    """(U,) int64 samples of each utterance."""
    labels: Tensor
    """(U, L) int64 label ids, zero-padded."""
    label_lengths: Tensor
    """(U,) int64 labels per utterance (0 = no transcript)."""
    texts: tuple[str, ...]
    """Normalized transcripts."""
    teacher: tuple[TargetBank | LabelBank, ...] = ()
    """Teacher targets, one bank per distillation target."""

    @classmethod
    def build(cls, samples: np.ndarray, starts: Sequence[int], lengths: Sequence[int], texts: Sequence[str],
              vocab: Vocabulary, teacher: Sequence[TargetBank | LabelBank] = ()) -> "AudioBank":
        """Makes a bank from an int16 stream and utterance spans in it.

        Raises:
            ConfigError: A span falls outside ``samples`` or the counts differ.
        """
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ConfigError(f"bank samples: expected 1-D int16, found {samples.ndim}-D {samples.dtype}")
        if not len(starts) == len(lengths) == len(texts):
            raise ConfigError(f"bank: expected as many starts, lengths and texts, found {len(starts)}, {len(lengths)}, {len(texts)}")
        st = torch.tensor(list(starts), dtype=torch.long)
        ln = torch.tensor(list(lengths), dtype=torch.long)
        if len(st) and (int(st.min()) < 0 or int((st + ln).max()) > len(samples)):
            raise ConfigError(f"bank: expected utterance spans inside {len(samples)} samples, found one outside")
        labels, label_lengths = encode_labels(texts, vocab)
        return cls(torch.from_numpy(np.ascontiguousarray(samples)), st, ln, labels, label_lengths, tuple(texts),
                   tuple(teacher))

    @classmethod
    def from_waves(cls, waves: Sequence[np.ndarray], texts: Sequence[str], vocab: Vocabulary,
                   stores: Sequence[Store] = ()) -> "AudioBank":
        """Makes a bank from float waveforms (16 kHz), concatenated without gaps, with the targets
        each store holds for them (looked up by `streamer.train.targets.audio_key`)."""
        ints = [to_int16(w) for w in waves]
        lengths = [len(w) for w in ints]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if ints else np.zeros(0, np.int64)
        samples = np.concatenate(ints) if ints else np.zeros(0, np.int16)
        keys = [audio_key(w) for w in ints] if stores else []
        return cls.build(samples, starts.tolist(), lengths, texts, vocab, [target_bank(s, keys) for s in stores])

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def seconds(self) -> float:
        """Audio in the utterances, in seconds."""
        return float(self.lengths.sum()) / SAMPLE_RATE

    def to(self, device: torch.device) -> "AudioBank":
        """The bank on ``device`` (label counts stay on the host)."""
        return dataclasses.replace(
            self, samples=self.samples.to(device), starts=self.starts.to(device), lengths=self.lengths.to(device),
            labels=self.labels.to(device), teacher=tuple(t.to(device) for t in self.teacher))

    def head(self, count: int) -> "AudioBank":
        """The first ``count`` utterances."""
        return dataclasses.replace(
            self, starts=self.starts[:count], lengths=self.lengths[:count], labels=self.labels[:count],
            label_lengths=self.label_lengths[:count], texts=self.texts[:count],
            teacher=tuple(t.head(count) for t in self.teacher))

    def take(self, idx: Tensor, width: int, lead: Tensor | None = None) -> Tensor:
        """Gathers utterances into a zero-padded float batch, on the bank's device.

        Args:
            idx: (B,) utterance indices (on the bank's device).
            width: Samples per row N; every ``lead + length`` must fit.
            lead: (B,) samples of silence before each utterance (None = none).

        Returns:
            (B, N) float32 samples in [-1, 1].
        """
        length = self.lengths[idx]
        pos = torch.arange(width, device=self.samples.device)[None, :]
        if lead is not None:
            pos = pos - lead[:, None]
        inside = (pos >= 0) & (pos < length[:, None])
        flat = (self.starts[idx][:, None] + pos.clamp(min=0)).clamp(max=max(0, len(self.samples) - 1))
        return self.samples[flat].float() * (1.0 / INT16_FULL_SCALE) * inside

    def targets(self, idx: np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        """See `Source.targets`."""
        return self.teacher[k].gather(np.asarray(idx))


def target_bank(store: Store, keys: Sequence[str]) -> TargetBank | LabelBank:
    """The targets ``store`` holds for utterances with content hashes ``keys``, back to back."""
    if isinstance(store, LabelStore):
        return label_bank([store.get(k) for k in keys])
    found = [store.get(k) for k in keys]
    frames = np.array([0 if t is None else len(t) for t in found], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(frames)[:-1]]).astype(np.int64) if len(frames) else frames
    present = [t for t in found if t is not None]
    values = (np.concatenate(present) if present else np.zeros((0, store.meta.dim), np.float16)).astype(np.float16)
    return TargetBank(torch.from_numpy(values), starts, frames)


class FileBank:
    """The rows of a manifest read from their files for each batch (nothing held but the list).

    Args:
        utterances: The training utterances.
        vocab: Label vocabulary.
        device: The training device.
        stores: Teacher target stores (looked up by content hash when a row is read).
    """

    def __init__(self, utterances: Sequence[Utterance], vocab: Vocabulary, device: torch.device,
                 stores: Sequence[Store] = ()) -> None:
        self.utterances = list(utterances)
        self.device = device
        self.stores = list(stores)
        # Durations from the manifest; the files are trusted to match within one hop (a longer file is cut).
        self.lengths = torch.tensor([int(round(u.duration * SAMPLE_RATE)) for u in self.utterances], dtype=torch.long,
                                    device=device)
        labels, self.label_lengths = encode_labels([u.text for u in self.utterances], vocab)
        self.labels = labels.to(device)
        self.texts = tuple(u.text for u in self.utterances)
        self._last: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def take(self, idx: Tensor, width: int, lead: Tensor | None = None) -> Tensor:
        rows = idx.tolist()
        leads = [0] * len(rows) if lead is None else lead.tolist()
        out = np.zeros((len(rows), width), np.float32)
        self._last = {}
        for r, (i, pad) in enumerate(zip(rows, leads)):
            wave = load_waveform(self.utterances[i].path)[: int(self.lengths[i])]
            self._last[i] = wave
            n = min(len(wave), width - pad)
            out[r, pad: pad + n] = wave[:n]
        return torch.from_numpy(out).to(self.device)

    def targets(self, idx: np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        found = []
        for i in np.asarray(idx).tolist():
            wave = self._last.get(i)
            if wave is None:
                wave = load_waveform(self.utterances[i].path)
            found.append(self.stores[k].get(audio_key(wave)))
        if isinstance(self.stores[k], LabelStore):
            bank = label_bank(found)
            return bank.ids.to(self.device), torch.from_numpy(bank.frames).to(self.device)
        frames = np.array([0 if t is None else len(t) for t in found], dtype=np.int64)
        out = np.zeros((len(found), max(1, int(frames.max(initial=0))), self.stores[k].meta.dim), np.float32)
        for r, t in enumerate(found):
            if t is not None:
                out[r, :len(t)] = t
        return torch.from_numpy(out).to(self.device), torch.from_numpy(frames).to(self.device)


def _least_padding_widths(units: np.ndarray, count: int) -> list[int]:
    """Bucket widths (in units) minimizing sum over utterances of their bucket's width, ``count`` at most.

    Args:
        units: Each utterance's rounded-up width.
        count: Most buckets.
    """
    values, counts = np.unique(units, return_counts=True)
    m = len(values)
    k = min(count, m)
    before = np.concatenate([[0], np.cumsum(counts)])  # utterances below values[i]
    # cost[j][i]: least area covering values[:i] with j buckets, the last ending at values[i - 1]
    inf = float("inf")
    cost = np.full((k + 1, m + 1), inf)
    cut = np.zeros((k + 1, m + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for j in range(1, k + 1):
        for i in range(j, m + 1):
            # the last bucket holds values[a:i] at width values[i - 1]
            a = np.arange(j - 1, i)
            options = cost[j - 1, a] + values[i - 1] * (before[i] - before[a])
            best = int(np.argmin(options))
            cost[j, i], cut[j, i] = options[best], a[best]
    j = int(np.argmin(cost[1:, m])) + 1
    widths, i = [], m
    while j > 0 and i > 0:
        widths.append(int(values[i - 1]))
        i, j = int(cut[j, i]), j - 1
    return sorted(widths)


@dataclass(frozen=True)
class ShapeBuckets:
    """A few fixed batch shapes: widths (samples) and rows per batch, and each utterance's bucket."""

    widths: tuple[int, ...]
    """Samples per row of each bucket, ascending."""
    rows: tuple[int, ...]
    """Rows per batch of each bucket (``rows * width <= max_batch_seconds``, at least 1)."""
    members: tuple[np.ndarray, ...]
    """Utterance indices in each bucket."""

    @classmethod
    def fit(cls, lengths: Sequence[int], max_batch_seconds: float, count: int, pad_samples: int = 0) -> "ShapeBuckets":
        """Buckets whose widths waste the least padded area: of all ways to cut the sorted lengths
        (rounded up to `BUCKET_QUANTUM_SAMPLES`) into ``count`` runs, the one with the smallest sum
        of width x members (exact, by dynamic programming over the distinct rounded lengths).

        Args:
            lengths: Samples per utterance.
            max_batch_seconds: Padded audio per batch.
            count: Number of buckets (fewer when there are fewer distinct rounded lengths).
            pad_samples: Room for edge silence the width must hold beyond each utterance.
        """
        need = np.asarray(lengths, dtype=np.int64) + pad_samples
        if len(need) == 0:
            raise ConfigError("buckets: expected at least one utterance, found none")
        widths = _least_padding_widths(np.ceil(need / BUCKET_QUANTUM_SAMPLES).astype(np.int64), count)
        widths = [int(w) * BUCKET_QUANTUM_SAMPLES for w in widths]
        which = np.searchsorted(np.asarray(widths), need, side="left")
        members = tuple(np.flatnonzero(which == b) for b in range(len(widths)))
        keep = [b for b in range(len(widths)) if len(members[b])]
        widths = [widths[b] for b in keep]
        budget = max_batch_seconds * SAMPLE_RATE
        if widths[-1] > budget + pad_samples + BUCKET_QUANTUM_SAMPLES:  # one row alone over the budget
            raise ConfigError(f"buckets: an utterance of {(int(need.max()) - pad_samples) / SAMPLE_RATE:.1f} s "
                              f"(with {pad_samples / SAMPLE_RATE:g} s of edge silence) does not fit the batch budget "
                              f"of {max_batch_seconds:g} s; leave it out (max_utterance_seconds) or raise the budget")
        rows = tuple(max(1, int(budget // w)) for w in widths)
        return cls(tuple(widths), rows, tuple(members[b] for b in keep))

    def epoch(self, seed: int) -> list[tuple[int, np.ndarray]]:
        """One epoch's batches in random order: (bucket, row indices). A bucket's last batch is
        filled up with random members of the bucket, so every batch has its bucket's shape."""
        rng = np.random.default_rng(seed)
        batches: list[tuple[int, np.ndarray]] = []
        for b, (members, rows) in enumerate(zip(self.members, self.rows)):
            order = rng.permutation(members)
            short = (-len(order)) % rows
            if short:
                order = np.concatenate([order, rng.choice(members, short)])
            batches.extend((b, part) for part in order.reshape(-1, rows))
        rng.shuffle(batches)
        return batches

    def padding_share(self, lengths: Sequence[int]) -> float:
        """Share of the padded batch area that is padding, over one epoch (fill-up rows aside)."""
        total = sum(len(m) * w for m, w in zip(self.members, self.widths))
        used = sum(int(np.asarray(lengths)[m].sum()) for m in self.members)
        return 1.0 - used / max(1, total)


def usable(utterances: Sequence[Utterance], vocab: Vocabulary, max_seconds: float, untranscribed: bool) -> list[Utterance]:
    """The utterances a run can learn from.

    Too long ones are left out, and so are transcripts with too many labels for their frames (CTC
    needs a frame per label and room for repeats); utterances without a transcript stay only when
    ``untranscribed`` (they teach through teacher targets alone).
    """
    keep = []
    for u in utterances:
        if u.duration > max_seconds or (not u.text and not untranscribed):
            continue
        if u.text and len(vocab.encode(u.text)) * 1.1 >= XLSR_GRID.num_frames(int(u.duration * SAMPLE_RATE)):
            continue
        keep.append(u)
    return keep


def load_source(sources: Sequence[str | Path], vocab: Vocabulary, device: torch.device, *, in_memory: bool = True,
                max_seconds: float = math.inf, stores: Sequence[Store] = ()) -> tuple[Source, int]:
    """Reads manifests and packed corpus folders (`streamer.train.pack`) into one batch source.

    Args:
        sources: Manifests (TSV) or pack folders.
        vocab: Label vocabulary.
        device: The training device.
        in_memory: An `AudioBank` (True) or a `FileBank` (False; packs are always in memory).
        max_seconds: Longer utterances are left out (`usable`).
        stores: Teacher target stores; with any, untranscribed utterances are kept.

    Returns:
        The source and the number of utterances left out.
    """
    untranscribed = bool(stores)
    utts: list[Utterance] = []
    skipped = 0
    waves: list[np.ndarray] = []
    packed = False
    for src in sources:
        path = Path(src)
        if path.is_dir():
            from streamer.train.pack import read_pack

            packed = True
            samples, entries = read_pack(path)
            found = [Utterance(path / e.shard, e.text, e.length / SAMPLE_RATE) for e in entries]
            kept = {id(u) for u in usable(found, vocab, max_seconds, untranscribed)}
            for e, u in zip(entries, found):
                if id(u) in kept:
                    utts.append(u)
                    waves.append(samples[e.global_start: e.global_start + e.length].astype(np.float32) / INT16_FULL_SCALE)
            skipped += len(found) - len(kept)
        else:
            found = read_manifest(path, vocab=vocab)
            kept_list = usable(found, vocab, max_seconds, untranscribed)
            skipped += len(found) - len(kept_list)
            utts.extend(kept_list)
            waves.extend([None] * len(kept_list))  # type: ignore[list-item]
    if not in_memory and not packed:
        return FileBank(utts, vocab, device, stores), skipped
    import sys

    from tqdm import tqdm

    loaded = [w if w is not None else load_waveform(u.path)
              for u, w in tqdm(list(zip(utts, waves)), desc="loading audio", unit="utt", leave=False,
                               disable=len(utts) < 2000 or not sys.stderr.isatty())]
    # The durations came from headers or a .lengths file; an utterance whose audio is longer than the
    # limit after all is left out too, so no batch goes over its budget.
    fits = [len(w) <= max_seconds * SAMPLE_RATE for w in loaded]
    skipped += fits.count(False)
    utts = [u for u, ok in zip(utts, fits) if ok]
    loaded = [w for w, ok in zip(loaded, fits) if ok]
    if not loaded:
        raise ConfigError(f"training set: no utterance of at most {max_seconds:g} s in {[str(s) for s in sources]}")
    bank = AudioBank.from_waves(loaded, [u.text for u in utts], vocab, stores)
    return bank.to(device), skipped
