"""A language-model bundle: the KenLM file, its word list and its tuned weights, as one object.

A model folder may ship a language model in ``lm/``::

    lm/lm.binary           KenLM model (.binary, .bin or .arpa)
    lm/lm.unigrams.txt     its words, one per line (pyctcdecode's unigram list; an .arpa holds its own)
    lm/attrs.json          {"unit": "word" | "character", "alpha": ..., "beta": ...} (optional, more
                           keys allowed): what the LM's words are, and weights tuned on a dev set

The unit says what the LM was built over: the vocabulary's words, or, for a vocabulary whose words are
characters (`Vocabulary.per_character`: Chinese, Japanese, Thai), single characters. It is written
when the LM is built for a model (``streamer lm build --model``) and checked against the model's
vocabulary when the LM is loaded for decoding (`LmBundle.check_unit`).

`LmBundle` is the one place that reads and writes that layout (`from_model_folder`, `save`) and that
loads the files for decoding (`language_model`). Building a KenLM model from text is
`streamer.decoding.build_lm`'s job; the beam search (`streamer.decoding.beam.BeamSearchDecoder`) takes
the bundle itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streamer import jsonfile
from streamer.errors import ConfigError, missing_dependency
from streamer.files import atomic_files

#: Folder of a model that holds its language model.
LM_FOLDER = "lm"
#: File in `LM_FOLDER` with the tuned weights.
ATTRS_FILE = "attrs.json"
#: ARPA markers that are not words.
_MARKERS = frozenset({"<s>", "</s>", "<unk>"})
#: KenLM file suffixes searched in a model's `LM_FOLDER`, in order of preference.
LM_SUFFIXES = (".binary", ".bin", ".arpa")
#: What an LM's words can be: words of the text, or single characters.
LM_UNITS = ("word", "character")


def lm_unit_for(vocab: Any) -> str:
    """The LM unit a vocabulary needs: ``"character"`` when its words are characters
    (`Vocabulary.per_character`), else ``"word"``."""
    return "character" if vocab.per_character else "word"


def unigrams_file_for(lm_path: str | os.PathLike[str]) -> Path:
    """The word list that belongs to a KenLM file: ``lm.binary`` -> ``lm.unigrams.txt``."""
    return Path(lm_path).with_suffix(".unigrams.txt")


@dataclass(frozen=True)
class LmBundle:
    """A KenLM model with its word list and tuned weights.

    Attributes:
        kenlm: The KenLM model file (.binary/.bin/.arpa).
        unigrams: Its word list, or None for an .arpa (whose 1-grams are read instead).
        alpha: Tuned LM weight, or None (the decoder's default applies).
        beta: Tuned word insertion bonus, or None.
        unit: What the LM's words are (one of `LM_UNITS`), or None when not recorded (a bare file).
    """

    kenlm: Path
    unigrams: Path | None = None
    alpha: float | None = None
    beta: float | None = None
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.unit is not None and self.unit not in LM_UNITS:
            raise ConfigError(f"lm.unit: expected one of {LM_UNITS} or None, found {self.unit!r}")

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], alpha: float | None = None,
                 beta: float | None = None, unit: str | None = None) -> "LmBundle":
        """A KenLM file with the word list beside it (``<stem>.unigrams.txt`` or ``unigrams.txt``), if any.

        Raises:
            ConfigError: No file at ``path``.
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"lm: expected a KenLM .binary/.arpa file, found nothing at {p}")
        for cand in (unigrams_file_for(p), p.parent / "unigrams.txt"):
            if cand.is_file():
                return cls(p, cand, alpha, beta, unit)
        return cls(p, None, alpha, beta, unit)

    @classmethod
    def from_model_folder(cls, folder: str | os.PathLike[str]) -> "LmBundle | None":
        """The bundle in ``<folder>/lm/``, or None when the model ships no language model.

        Raises:
            ConfigError: ``attrs.json`` is not a JSON object with numeric alpha/beta and a known unit.
        """
        d = Path(folder) / LM_FOLDER
        if not d.is_dir():
            return None
        cands = [p for suffix in LM_SUFFIXES for p in sorted(d.glob(f"*{suffix}"))]
        if not cands:
            return None
        attrs: dict[str, Any] = {}
        if (d / ATTRS_FILE).is_file():
            try:
                attrs = jsonfile.parse((d / ATTRS_FILE).read_bytes())
            except (OSError, jsonfile.JsonSyntaxError) as err:
                raise ConfigError(f"lm: expected {d / ATTRS_FILE} to hold JSON, found unreadable text ({err})") from None
            if not isinstance(attrs, dict):
                raise ConfigError(f"lm: expected {d / ATTRS_FILE} to hold a JSON object, found {type(attrs).__name__}")
        weights = []
        for key in ("alpha", "beta"):
            v = attrs.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ConfigError(f"lm: expected a finite number for {key} in {d / ATTRS_FILE}, found {v!r}")
            weights.append(None if v is None else float(v))
        unit = attrs.get("unit")
        if unit is not None and unit not in LM_UNITS:
            raise ConfigError(f"lm: expected the unit in {d / ATTRS_FILE} to be one of {LM_UNITS}, found {unit!r}")
        return cls.for_file(cands[0], *weights, unit=unit)

    @classmethod
    def resolve(cls, lm: str | os.PathLike[str] | None, model_folder: str | os.PathLike[str]) -> "LmBundle | None":
        """What a recognizer's ``lm`` argument names: ``"auto"`` (the model's ``lm/``, if any), a file, or None."""
        if lm is None:
            return None
        if isinstance(lm, str) and lm == "auto":
            return cls.from_model_folder(model_folder)
        return cls.for_file(lm)

    def save(self, model_folder: str | os.PathLike[str], **attrs: Any) -> "LmBundle":
        """Copies the bundle into ``<model_folder>/lm/`` (with ``attrs.json``) and returns the copy.

        Args:
            model_folder: The model folder.
            **attrs: More JSON-ready facts to record in ``attrs.json`` (order, pruning, dev WER, ...).
                The bundle's own unit, alpha and beta are recorded when set.
        """
        d = Path(model_folder) / LM_FOLDER
        d.mkdir(parents=True, exist_ok=True)
        kenlm = d / f"lm{self.kenlm.suffix}"
        unigrams = None if self.unigrams is None else unigrams_file_for(kenlm)
        copies = [(src, dest) for src, dest in ((self.kenlm, kenlm), (self.unigrams, unigrams))
                  if src is not None and src.resolve() != dest.resolve()]
        record = {**attrs, **{k: v for k, v in (("unit", self.unit), ("alpha", self.alpha), ("beta", self.beta)) if v is not None}}
        with atomic_files([dest for _, dest in copies] + [d / ATTRS_FILE], overwrite=True) as temps:
            for (src, _), tmp in zip(copies, temps):
                shutil.copyfile(src, tmp)
            temps[-1].write_text(json.dumps(record, indent=1) + "\n")
        return replace(self, kenlm=kenlm, unigrams=unigrams)

    def check_unit(self, vocab: Any) -> None:
        """Checks that the LM was built over the units the vocabulary needs (see `lm_unit_for`).

        An LM whose unit was not recorded passes.

        Raises:
            ConfigError: A word LM for a vocabulary whose words are characters, or the reverse.
        """
        need = lm_unit_for(vocab)
        if self.unit is not None and self.unit != need:
            why = ("its words are characters: a script written without spaces" if need == "character"
                   else "it writes words separated by spaces")
            raise ConfigError(
                f"lm: expected a {need} LM for this model's vocabulary ({why}), found one recorded as a "
                f"{self.unit} LM in {self.kenlm.parent / ATTRS_FILE}. Rebuild it for the model with: "
                f"streamer lm build CORPUS --model MODEL_FOLDER")

    def words(self) -> list[str]:
        """The LM's vocabulary: the word list, or the 1-grams of an .arpa.

        Raises:
            ConfigError: A binary LM without its word list.
        """
        if self.unigrams is not None:
            return load_unigrams(self.unigrams)
        if self.kenlm.suffix == ".arpa":
            return load_unigrams(self.kenlm)
        raise ConfigError(
            f"lm: a binary LM needs its word list; expected {unigrams_file_for(self.kenlm)} "
            "(written by 'streamer lm build'), found none. Put it beside the LM or rebuild the LM.")

    def language_model(self, alpha: float, beta: float, unk_score_offset: float, score_boundary: bool) -> Any:
        """Loads KenLM and the words into pyctcdecode's ``LanguageModel`` (the beam search's scorer).

        Raises:
            ConfigError: Missing word list, or a file KenLM cannot read.
            MissingDependencyError: kenlm or pyctcdecode is not installed.
        """
        unigrams = self.words()
        model = self.kenlm_model()
        from pyctcdecode.language_model import LanguageModel

        return LanguageModel(model, unigrams, alpha=alpha, beta=beta, unk_score_offset=unk_score_offset,
                             score_boundary=score_boundary)

    def kenlm_model(self) -> Any:
        """Loads the KenLM file (a ``kenlm.Model``).

        Raises:
            ConfigError: A file KenLM cannot read.
            MissingDependencyError: kenlm is not installed.
        """
        try:
            import kenlm
        except ImportError as err:
            raise missing_dependency("kenlm", "lm", "Language-model decoding") from err
        try:
            return kenlm.Model(str(self.kenlm))
        except (OSError, RuntimeError) as err:
            raise ConfigError(f"lm: expected a KenLM model at {self.kenlm}, found a file KenLM cannot read ({err})") from err


def load_unigrams(path: str | Path) -> list[str]:
    """Reads an LM's words: a word-list file (one per line) or the 1-grams of an ARPA file.

    Args:
        path: ``*.unigrams.txt`` or ``*.arpa``.

    Returns:
        The words, without ``<s>``, ``</s>`` and ``<unk>``, in file order.

    Raises:
        ConfigError: The file is missing or holds no words.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"unigrams: expected a word-list or ARPA file, found no file at {path}")
    try:
        with open(path, encoding="utf-8") as f:
            first = ""
            for line in f:
                if line.strip():
                    first = line.strip()
                    break
            if first == "\\data\\":
                words = _arpa_unigrams(f, path)
            else:
                words = [first] if first else []
                words += [w for w in (line.strip() for line in f) if w]
    except UnicodeDecodeError as err:
        raise ConfigError(f"unigrams: expected UTF-8 text in {path}, found the byte {err.object[err.start]:#04x} "
                          "that is not (re-encode it, or rebuild it with 'streamer lm build')") from None
    except OSError as err:
        raise ConfigError(f"unigrams: cannot read {path} ({err.strerror or type(err).__name__})") from None
    words = [w for w in words if w not in _MARKERS]
    if not words:
        raise ConfigError(f"unigrams: expected at least one word in {path}, found none")
    return words


def _arpa_unigrams(lines, path: Path) -> list[str]:
    """Words of the \\1-grams: section of an ARPA file (lines after the \\data\\ header).

    Raises:
        ConfigError: A 1-gram line without a word.
    """
    words = []
    inside = False
    for line in lines:
        line = line.strip()
        if line == "\\1-grams:":
            inside = True
        elif inside and (line.startswith("\\") or not line and words):
            break
        elif inside and line:
            parts = line.split("\t")
            if len(parts) < 2:
                parts = line.split()
            if len(parts) < 2:
                raise ConfigError(f"unigrams: expected '<log10 p> <word>' lines in the \\1-grams: section of {path}, "
                                  f"found {line[:40]!r}")
            words.append(parts[1])
    return words
