"""Builds a synthetic-speech corpus: plan (sentence, voice) pairs, synthesize, write manifests.

Layout of ``out_dir`` (every path in a manifest is relative to ``out_dir``)::

    out_dir/
      audio/<split>/<engine>/<xx>/<sentence key>-<voice id>.flac   16-kHz mono FLAC, 16-bit
      train.tsv  dev.tsv  test.tsv            path<TAB>text, no header (the Common Voice shape)
      train.lengths  dev.lengths  ...         one duration in seconds per line, same order
      train.voices   dev.voices   ...         one voice id per line, same order
      sentences/<split>.txt                   every normalized sentence of the split
      lm/train.txt                            language-model text without dev/test sentences
      meta.json                               seed, weights, voices, held-out voices, hours

Manifest format: UTF-8, one utterance per line, ``relative/path.flac`` TAB ``normalized text``
(``[a-z' ]``, see :func:`streamer.text.normalize_text`); no header, no quoting. The sidecars
``<split>.lengths`` and ``<split>.voices`` have exactly one line per manifest line. Readers that
only want ``path, text`` can ignore them (:func:`read_manifest` reads both shapes).

Splits: **train** and **dev** use the training voices (every voice not in
:data:`~streamer.train.corpus.tts.HELD_OUT_VOICES`); dev and **test** use held-out sentences (see
:mod:`streamer.train.corpus.text_sources`); test is spoken only by the held-out voices.

Order and partial corpora: the plan of a split is a deterministic function of the seed and the
sentences, and engines are interleaved in it (each prefix has the engine mix of the whole), so
synthesis proceeds in plan order and manifests are rewritten every ``manifest_every`` utterances:
a training run can start on the first hours while the rest is synthesized. Rewrites only append
lines (a new manifest starts with the old one); the ``.lengths`` file is written before the
``.tsv``, each by an atomic rename, so a reader that sees different line counts should use the
common prefix. ``meta.json`` says ``"status": "complete"`` once every split is done.

Resuming: an utterance whose FLAC file exists is not synthesized again (files are written to a
temporary name and renamed, so an existing file is whole); rerun the same command.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import logging
import math
import multiprocessing
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.constants import SAMPLE_RATE
from streamer.train.corpus.text_sources import (
    SPLITS,
    Sentence,
    SentenceSplits,
    SplitConfig,
    load_splits,
    write_lm_text,
)
from streamer.train.corpus.tts import (
    ENGINES,
    HELD_OUT_VOICES,
    Synthesizer,
    Voice,
    engine_missing,
    held_out_voices,
    sample_voice,
    training_voices,
)
from streamer.errors import ConfigError, MissingDependencyError, StreamerError
from streamer.files import atomic_files, write_atomic

_LOG = logging.getLogger(__name__)

#: Share of training and dev audio per engine (hours). The realistic engines dominate; espeak-ng
#: (robotic formant synthesis) brings accent and speaker variety at about a fifth of the audio.
DEFAULT_ENGINE_WEIGHTS: dict[str, float] = {"espeak": 0.20, "flite": 0.25, "festival": 0.27, "piper": 0.28}
#: Share of test audio per engine, over the held-out voices (flite ``rms``, three espeak pairs).
DEFAULT_TEST_ENGINE_WEIGHTS: dict[str, float] = {"flite": 0.6, "espeak": 0.4}
#: Share of utterances per text source (renormalized over the sources that are installed).
DEFAULT_SOURCE_WEIGHTS: dict[str, float] = {"fortunes": 0.4, "wordnet": 0.3, "bible": 0.3}

#: Characters of TTS input per second of audio at rate 1.0, measured on fortunes. Used only to
#: plan; the builder stops on measured durations.
_CHARS_PER_SECOND: dict[str, float] = {"espeak": 17.5, "flite": 16.0, "festival": 15.2, "piper": 18.3}
#: The plan holds this much more estimated audio than the target, in case estimates run short.
_PLAN_MARGIN = 1.3
#: Abort when more than this share of attempted utterances failed (after 100 attempts).
_MAX_FAILURE_SHARE = 0.05
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class PlannedUtterance:
    """One utterance of the plan.

    Attributes:
        split: ``"train"``, ``"dev"`` or ``"test"``.
        index: Position in the split's plan (0-based).
        sentence: What is said.
        voice: Who says it, and how.
        estimated_s: Planned duration in seconds (an estimate from the text length).
    """

    split: str
    index: int
    sentence: Sentence
    voice: Voice
    estimated_s: float

    @property
    def utt_id(self) -> str:
        """``<sentence key>-<voice id>``: equal for equal text and voice, whatever the plan."""
        return f"{self.sentence.key}-{self.voice.id}"

    @property
    def relpath(self) -> str:
        """Path of the FLAC file relative to the corpus folder."""
        return f"audio/{self.split}/{self.voice.engine}/{self.sentence.key[:2]}/{self.utt_id}.flac"


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One manifest line.

    Attributes:
        path: Audio path relative to the manifest's folder.
        text: Normalized transcript.
        duration_s: Duration in seconds, or ``None`` if no ``.lengths`` sidecar gave it.
        voice_id: Voice id, or ``""`` if no ``.voices`` sidecar gave it.
    """

    path: str
    text: str
    duration_s: float | None = None
    voice_id: str = ""


@dataclasses.dataclass(frozen=True)
class SplitSummary:
    """What one split of a build holds.

    Attributes:
        split: Split name.
        utterances: Utterances in its manifest.
        seconds: Audio in its manifest, in seconds.
        seconds_by_engine: Audio per engine, in seconds.
        synthesized: Utterances synthesized by this run (the rest existed already).
        failures: Utterances that failed to synthesize in this run (left out).
        target_s: Requested audio, in seconds.
    """

    split: str
    utterances: int
    seconds: float
    seconds_by_engine: dict[str, float]
    synthesized: int
    failures: int
    target_s: float


@dataclasses.dataclass(frozen=True)
class CorpusSummary:
    """Result of :func:`build_corpus`.

    Attributes:
        out_dir: The corpus folder.
        splits: One summary per split, in build order.
        elapsed_s: Wall time of the build, in seconds.
    """

    out_dir: Path
    splits: tuple[SplitSummary, ...]
    elapsed_s: float


# ---------------------------------------------------------------------------------------------
# Weights and planning


def parse_weights(text: str, allowed: Sequence[str], what: str = "engine") -> dict[str, float]:
    """Parses ``"name=weight,name=weight"`` into normalized weights.

    Args:
        text: Comma-separated ``name=weight`` pairs; weights are non-negative numbers.
        allowed: Valid names.
        what: What the names are, for error messages.

    Returns:
        Weights summing to 1, zero weights dropped, in the order given.

    Raises:
        ConfigError: A name is unknown, a weight is not a non-negative number, or all are zero.
    """
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in allowed:
            raise ConfigError(f"{what} weights: expected 'name=weight' with name in {tuple(allowed)}, "
                              f"found {item!r}")
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"{what} weight of {name}: expected a number, found {value!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{what} weight of {name}: expected a finite number >= 0, found {weight!r}")
        weights[name] = weight
    return normalize_weights(weights, allowed, what)


def normalize_weights(weights: Mapping[str, float], allowed: Sequence[str], what: str = "engine") -> dict[str, float]:
    """Checks weights and scales them to sum to 1 (zero weights dropped)."""
    for name, weight in weights.items():
        if name not in allowed:
            raise ConfigError(f"{what} weights: expected names in {tuple(allowed)}, found {name!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{what} weight of {name}: expected a finite number >= 0, found {weight!r}")
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError(f"{what} weights: expected at least one positive weight, found {dict(weights)}")
    return {name: weight / total for name, weight in weights.items() if weight > 0}


def _split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split)])


def iter_plan(
    split: str,
    sentences: Sequence[Sentence],
    voices: Sequence[Voice],
    engine_weights: Mapping[str, float],
    *,
    seed: int,
    source_weights: Mapping[str, float] | None = None,
) -> Iterator[PlannedUtterance]:
    """Yields the endless, deterministic plan of one split.

    Engines are interleaved by deficit: the next utterance goes to the engine whose planned
    hours are furthest below its weight, so every prefix of the plan has the engine mix of the
    whole. The engine's speaker is drawn uniformly, its prosody by
    :func:`~streamer.train.corpus.tts.sample_voice`, the sentence's source by ``source_weights``, and
    the sentence is the next one of that source's shuffled list (reshuffled when used up). The
    same arguments always give the same sequence.

    Args:
        split: The split being planned.
        sentences: The split's sentences.
        voices: Speakers to draw from (default prosody).
        engine_weights: Share of audio per engine (engines without voices are an error).
        seed: Seed of the plan.
        source_weights: Share of utterances per source (default :data:`DEFAULT_SOURCE_WEIGHTS`);
            renormalized over the sources present in ``sentences``.

    Yields:
        Planned utterances with increasing ``index``.

    Raises:
        ConfigError: No sentences, or an engine with weight but without voices.
    """
    if not sentences:
        raise ConfigError(f"plan for {split}: expected sentences, found none")
    weights = normalize_weights(engine_weights, ENGINES)
    by_engine: dict[str, list[Voice]] = {e: [v for v in voices if v.engine == e] for e in weights}
    empty = [e for e, vs in by_engine.items() if not vs]
    if empty:
        raise ConfigError(f"plan for {split}: engines {empty} have weight but no voices in this split")
    pools: dict[str, list[Sentence]] = {}
    for sentence in sentences:
        pools.setdefault(sentence.source, []).append(sentence)
    wanted = dict(source_weights if source_weights is not None else DEFAULT_SOURCE_WEIGHTS)
    present = {s: wanted.get(s, 0.0) for s in pools}
    if sum(present.values()) <= 0:
        present = {s: 1.0 for s in pools}
    sources = sorted(s for s, w in present.items() if w > 0)
    probabilities = np.array([present[s] for s in sources]) / sum(present[s] for s in sources)

    rng = _split_rng(seed, split)
    orders = {s: rng.permutation(len(pools[s])) for s in sources}
    cursors = dict.fromkeys(sources, 0)
    planned = dict.fromkeys(weights, 0.0)
    engines = list(weights)
    index = 0
    while True:
        engine = min(engines, key=lambda e: (planned[e] / weights[e], engines.index(e)))
        base = by_engine[engine][int(rng.integers(len(by_engine[engine])))]
        voice = sample_voice(base, rng)
        source = sources[int(rng.choice(len(sources), p=probabilities))]
        if cursors[source] >= len(orders[source]):
            orders[source] = rng.permutation(len(pools[source]))
            cursors[source] = 0
        sentence = pools[source][int(orders[source][cursors[source]])]
        cursors[source] += 1
        estimated = len(sentence.spoken) / _CHARS_PER_SECOND[engine] / voice.rate
        planned[engine] += estimated
        yield PlannedUtterance(split, index, sentence, voice, estimated)
        index += 1


def plan_split(
    split: str,
    sentences: Sequence[Sentence],
    voices: Sequence[Voice],
    engine_weights: Mapping[str, float],
    *,
    hours: float,
    seed: int,
    source_weights: Mapping[str, float] | None = None,
    margin: float = _PLAN_MARGIN,
) -> list[PlannedUtterance]:
    """Takes the prefix of :func:`iter_plan` whose estimated audio reaches ``hours * margin``.

    The builder stops earlier, once the measured audio reaches ``hours``. Held-out voices may
    appear only in the test split.

    Raises:
        ConfigError: ``hours`` is negative, or a held-out voice is planned for train or dev.
    """
    if hours < 0 or not math.isfinite(hours):
        raise ConfigError(f"hours for {split}: expected a finite number >= 0, found {hours!r}")
    if split != "test":
        leaked = sorted({v.base_id for v in voices} & HELD_OUT_VOICES)
        if leaked:
            raise ConfigError(f"plan for {split}: held-out voices {leaked} must not be used outside test")
    plan: list[PlannedUtterance] = []
    total = 0.0
    budget = hours * 3600.0 * margin
    if budget <= 0:
        return plan
    for item in iter_plan(split, sentences, voices, engine_weights, seed=seed, source_weights=source_weights):
        plan.append(item)
        total += item.estimated_s
        if total >= budget:
            break
    return plan


# ---------------------------------------------------------------------------------------------
# Manifests


def _atomic_write(path: Path, text: str) -> None:
    write_atomic(path, text, overwrite=True)


def write_manifest(tsv_path: str | Path, entries: Sequence[ManifestEntry]) -> None:
    """Writes ``<name>.tsv`` and its ``.lengths`` / ``.voices`` sidecars (see the module doc).

    Sidecars are written first, each file by an atomic rename. A sidecar is written only if
    every entry has the value (a duration, a voice id).

    Raises:
        ConfigError: A path or text holds a tab or newline.
    """
    tsv_path = Path(tsv_path)
    lines = []
    for entry in entries:
        if any(c in entry.path + entry.text for c in "\t\n\r"):
            raise ConfigError(f"manifest entry: expected no tabs or newlines, found {entry!r}")
        lines.append(f"{entry.path}\t{entry.text}\n")
    if all(e.duration_s is not None for e in entries):
        _atomic_write(tsv_path.with_suffix(".lengths"), "".join(f"{e.duration_s:.3f}\n" for e in entries))
    if all(e.voice_id for e in entries):
        _atomic_write(tsv_path.with_suffix(".voices"), "".join(f"{e.voice_id}\n" for e in entries))
    _atomic_write(tsv_path, "".join(lines))


def read_manifest(tsv_path: str | Path) -> list[ManifestEntry]:
    """Reads a manifest and, when present, its ``.lengths`` and ``.voices`` sidecars.

    Lines have two tab-separated fields (``path``, ``text``); a third field, if any, is read as
    the duration in seconds. When a sidecar has fewer lines than the manifest (a corpus being
    written), only the common prefix is returned.

    Args:
        tsv_path: The ``.tsv`` file.

    Returns:
        Entries in file order.

    Raises:
        ConfigError: A line does not have 2 or 3 fields, or a duration is not a number.
    """
    tsv_path = Path(tsv_path)
    entries: list[ManifestEntry] = []
    for number, line in enumerate(tsv_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise ConfigError(f"{tsv_path}:{number}: expected 'path<TAB>text', found {len(fields)} fields")
        duration = None
        if len(fields) == 3:
            try:
                duration = float(fields[2])
            except ValueError:
                raise ConfigError(f"{tsv_path}:{number}: expected a duration in seconds, "
                                  f"found {fields[2]!r}") from None
        entries.append(ManifestEntry(fields[0], fields[1], duration))
    count = len(entries)
    lengths_path, voices_path = tsv_path.with_suffix(".lengths"), tsv_path.with_suffix(".voices")
    if lengths_path.is_file():
        lengths = [float(x) for x in lengths_path.read_text(encoding="utf-8").split()]
        count = min(count, len(lengths))
        entries = [dataclasses.replace(e, duration_s=d) for e, d in zip(entries, lengths)]
    if voices_path.is_file():
        voice_ids = voices_path.read_text(encoding="utf-8").split()
        count = min(count, len(voice_ids))
        entries = [dataclasses.replace(e, voice_id=v) for e, v in zip(entries, voice_ids)]
    return entries[:count]


# ---------------------------------------------------------------------------------------------
# Synthesis workers

_WORKER_SYNTHESIZER: Synthesizer | None = None


def _init_worker() -> None:
    """Pool initializer: one synthesizer (one piper model) per worker process."""
    global _WORKER_SYNTHESIZER
    _WORKER_SYNTHESIZER = Synthesizer(piper_threads=1)


def _synthesize_job(job: tuple[str, Voice, str, str]) -> tuple[str, float, str]:
    """Synthesizes one utterance into its FLAC file.

    Args:
        job: ``(absolute FLAC path, voice, text to speak, label)``.

    Returns:
        ``(path, duration in seconds, error)``; on failure duration is 0 and error says why.
    """
    path, voice, spoken, _ = job
    synthesizer = _WORKER_SYNTHESIZER
    if synthesizer is None:
        raise RuntimeError("corpus worker used before _init_worker")
    try:
        wave = synthesizer(voice, spoken)
    except MissingDependencyError:
        raise
    except Exception as err:  # one bad sentence must not stop an hour-long build; counted and logged
        return path, 0.0, f"{type(err).__name__}: {err}"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_files([target], overwrite=True) as (tmp,):
        sf.write(tmp, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return path, len(wave) / SAMPLE_RATE, ""


class _Deferred:
    """A result computed when asked for (the inline pool's ``AsyncResult``)."""

    def __init__(self, func, args: tuple) -> None:
        self._func, self._args = func, args

    def get(self):
        return self._func(*self._args)


class _InlinePool:
    """The part of ``multiprocessing.Pool`` the builder uses, run lazily in this process."""

    window = 1

    def __init__(self) -> None:
        _init_worker()

    def apply_async(self, func, args: tuple) -> _Deferred:
        return _Deferred(func, args)

    def close(self) -> None:
        global _WORKER_SYNTHESIZER
        if _WORKER_SYNTHESIZER is not None:
            _WORKER_SYNTHESIZER.close()
            _WORKER_SYNTHESIZER = None

    def join(self) -> None:
        pass


class _ProcessPool:
    """A spawn-context process pool with one :class:`Synthesizer` per worker."""

    def __init__(self, workers: int) -> None:
        self._pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
        self.window = 4 * workers

    def apply_async(self, func, args: tuple):
        return self._pool.apply_async(func, args)

    def close(self) -> None:
        self._pool.terminate()  # results still in flight past the target are not needed

    def join(self) -> None:
        self._pool.join()


# ---------------------------------------------------------------------------------------------
# Build


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _check_engines(engines: Sequence[str]) -> None:
    problems = [f"{e}: {m}" for e in engines if (m := engine_missing(e))]
    if problems:
        raise MissingDependencyError("TTS engines missing: " + "; ".join(problems))


def _write_sentence_lists(out_dir: Path, splits: SentenceSplits) -> None:
    folder = out_dir / "sentences"
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _atomic_write(folder / f"{split}.txt", "".join(s.text + "\n" for s in splits.of(split)))


class _SplitState:
    """Manifest entries and counters of one split while it is built."""

    def __init__(self, split: str, target_s: float) -> None:
        self.split = split
        self.target_s = target_s
        self.entries: list[ManifestEntry] = []
        self.engines: list[str] = []
        self.seconds = 0.0
        self.synthesized = 0
        self.failures = 0

    def add(self, item: PlannedUtterance, duration: float) -> None:
        self.entries.append(ManifestEntry(item.relpath, item.sentence.text, duration, item.voice.id))
        self.engines.append(item.voice.engine)
        self.seconds += duration

    def summary(self) -> SplitSummary:
        by_engine: dict[str, float] = {}
        for engine, entry in zip(self.engines, self.entries):
            by_engine[engine] = by_engine.get(engine, 0.0) + (entry.duration_s or 0.0)
        return SplitSummary(self.split, len(self.entries), self.seconds, by_engine, self.synthesized,
                            self.failures, self.target_s)


def build_corpus(
    out_dir: str | Path,
    *,
    hours_train: float = 12.0,
    hours_dev: float = 0.3,
    hours_test: float = 0.5,
    seed: int = 0,
    workers: int = 1,
    engine_weights: Mapping[str, float] | None = None,
    test_engine_weights: Mapping[str, float] | None = None,
    source_weights: Mapping[str, float] | None = None,
    sources: Sequence[str] | None = None,
    split_config: SplitConfig = SplitConfig(),
    manifest_every: int = 200,
    write_lm: bool = True,
    progress: bool = True,
    splits: SentenceSplits | None = None,
) -> CorpusSummary:
    """Synthesizes (or completes) a corpus in ``out_dir``; see the module doc for the layout.

    Splits are built in the order dev, test, train (the small ones first, so that evaluation
    sets exist while training audio is still being made).

    Args:
        out_dir: Corpus folder (created).
        hours_train: Training audio to reach, in hours.
        hours_dev: Dev audio (training voices, held-out sentences), in hours.
        hours_test: Test audio (held-out voices and sentences), in hours.
        seed: Seed of the plan (voices, prosody, sentence order).
        workers: Synthesis processes; 1 synthesizes in this process.
        engine_weights: Share of train/dev audio per engine (default :data:`DEFAULT_ENGINE_WEIGHTS`).
        test_engine_weights: Share of test audio per engine (default
            :data:`DEFAULT_TEST_ENGINE_WEIGHTS`).
        source_weights: Share of utterances per text source (default :data:`DEFAULT_SOURCE_WEIGHTS`).
        sources: Text sources to read (default: every installed one). Ignored with ``splits``.
        split_config: Held-out fractions and sentence lengths. Ignored with ``splits``.
        manifest_every: Rewrite the manifests after this many new utterances.
        write_lm: Also write ``lm/train.txt`` (see :func:`~streamer.train.corpus.text_sources.write_lm_text`).
        progress: Show a tqdm progress bar (audio seconds, with ETA) on stderr.
        splits: Sentences to use instead of loading ``sources`` (tests pass small ones).

    Returns:
        What each split holds and how long the build took.

    Raises:
        ConfigError: An argument is out of range.
        MissingDependencyError: A TTS engine with a positive weight, or every text source, is
            missing.
        StreamerError: More than 5% of the attempted utterances of a split failed.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    hours = {"train": hours_train, "dev": hours_dev, "test": hours_test}
    for split, value in hours.items():
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"hours_{split}: expected a finite number >= 0, found {value!r}")
    if workers < 1:
        raise ConfigError(f"workers: expected >= 1, found {workers!r}")
    if manifest_every < 1:
        raise ConfigError(f"manifest_every: expected >= 1, found {manifest_every!r}")
    weights = normalize_weights(engine_weights or DEFAULT_ENGINE_WEIGHTS, ENGINES)
    test_weights = normalize_weights(test_engine_weights or DEFAULT_TEST_ENGINE_WEIGHTS, ENGINES)
    used = [e for e in ENGINES if (hours_train + hours_dev > 0 and e in weights)
            or (hours_test > 0 and e in test_weights)]
    _check_engines(used)

    if splits is None:
        splits = load_splits(sources, split_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_sentence_lists(out_dir, splits)
    if write_lm:
        stats = write_lm_text(out_dir / "lm" / "train.txt", splits, sources=sources)
        _LOG.info("LM text: %d train + %d extra lines, %d words, %d dropped", stats.train_lines,
                  stats.extra_lines, stats.words, stats.dropped_lines)

    train_voices = training_voices(list(weights))
    test_voices = held_out_voices(list(test_weights))
    order = ("dev", "test", "train")
    plans = {
        split: plan_split(split, splits.of(split), test_voices if split == "test" else train_voices,
                          test_weights if split == "test" else weights, hours=hours[split], seed=seed,
                          source_weights=source_weights)
        for split in order
    }
    meta = {
        "format": _FORMAT_VERSION,
        "status": "building",
        "started": _now(),
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "hours_target": hours,
        "engine_weights": weights,
        "test_engine_weights": test_weights,
        "source_weights": dict(source_weights or DEFAULT_SOURCE_WEIGHTS),
        "split_config": dataclasses.asdict(splits.config),
        "sentences": {split: len(splits.of(split)) for split in SPLITS},
        "held_out_voices": sorted(HELD_OUT_VOICES),
        "voices": {"train": [v.base_id for v in train_voices], "dev": [v.base_id for v in train_voices],
                   "test": [v.base_id for v in test_voices]},
        "splits": {},
    }
    _atomic_write(out_dir / "meta.json", json.dumps(meta, indent=1) + "\n")

    pool = _InlinePool() if workers == 1 else _ProcessPool(workers)
    summaries: list[SplitSummary] = []
    try:
        for split in order:
            state = _build_split(out_dir, split, plans[split], hours[split] * 3600.0, pool,
                                 manifest_every, progress, meta, started)
            summaries.append(state.summary())
    finally:
        pool.close()
        pool.join()
    elapsed = time.monotonic() - started
    meta["status"] = "complete"
    meta["finished"] = _now()
    meta["elapsed_s"] = round(elapsed, 1)
    _atomic_write(out_dir / "meta.json", json.dumps(meta, indent=1) + "\n")
    return CorpusSummary(out_dir, tuple(summaries), elapsed)


def _split_meta(summary: SplitSummary) -> dict:
    return {
        "utterances": summary.utterances,
        "hours": round(summary.seconds / 3600.0, 4),
        "hours_by_engine": {e: round(s / 3600.0, 4) for e, s in sorted(summary.seconds_by_engine.items())},
        "failures": summary.failures,
    }


def _build_split(out_dir: Path, split: str, plan: list[PlannedUtterance], target_s: float, pool,
                 manifest_every: int, progress: bool, meta: dict, started: float) -> _SplitState:
    """Synthesizes one split in plan order until ``target_s`` seconds of audio are listed."""
    state = _SplitState(split, target_s)
    tsv = out_dir / f"{split}.tsv"
    bar = None
    if progress and plan:
        from tqdm import tqdm

        # Progress in audio seconds: the rate ("s/s") is the speed in multiples of real time.
        bar = tqdm(total=round(target_s), desc=f"{split} audio", unit="s", dynamic_ncols=True,
                   file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} s "
                              "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def flush() -> None:
        write_manifest(tsv, state.entries)
        meta["splits"][split] = _split_meta(state.summary())
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        _atomic_write(out_dir / "meta.json", json.dumps(meta, indent=1) + "\n")

    # At most `window` utterances are in flight, consumed in plan order; files that exist are
    # measured instead of synthesized. Stopping at the target wastes at most `window` syntheses.
    window = pool.window
    upcoming = iter(plan)
    in_flight: collections.deque = collections.deque()

    def submit() -> None:
        item = next(upcoming, None)
        if item is None:
            return
        path = out_dir / item.relpath
        if path.is_file():
            in_flight.append((item, None))
        else:
            job = (str(path), item.voice, item.sentence.spoken, item.sentence.text)
            in_flight.append((item, pool.apply_async(_synthesize_job, (job,))))

    for _ in range(window):
        submit()
    since_flush = 0
    try:
        while in_flight:
            item, pending = in_flight.popleft()
            submit()
            if pending is None:
                duration = sf.info(str(out_dir / item.relpath)).duration
            else:
                _, duration, error = pending.get()
                if error:
                    state.failures += 1
                    _LOG.warning("%s: %s failed: %s", split, item.utt_id, error)
                    attempts = state.synthesized + state.failures
                    if attempts >= 100 and state.failures > _MAX_FAILURE_SHARE * attempts:
                        raise StreamerError(f"{split}: {state.failures} of {attempts} utterances failed "
                                            f"(expected at most {_MAX_FAILURE_SHARE:.0%}); last: {error}")
                    continue
                state.synthesized += 1
            state.add(item, duration)
            since_flush += 1
            if bar is not None:
                bar.update(min(duration, max(0.0, target_s - bar.n)))
                bar.set_postfix(utts=len(state.entries), new=state.synthesized, failed=state.failures,
                                refresh=False)
            if since_flush >= manifest_every:
                flush()
                since_flush = 0
            if state.seconds >= target_s:
                break
    finally:
        if bar is not None:
            bar.close()
        flush()
    if state.seconds < target_s:
        _LOG.warning("%s: the plan ran out at %.2f h of %.2f h", split, state.seconds / 3600, target_s / 3600)
    return state

