"""Sentences for synthetic speech, their train/dev/test split, and language-model text.

Three offline text sources are read (each only when its Debian package is installed):

========== ================================= ==========================================
source     Debian package                    what is taken
========== ================================= ==========================================
fortunes   ``fortunes`` (fortune-mod)        every fortune file except ``off/`` and
                                             ``ascii-art``; attributions dropped
bible      ``sword-text-web`` + ``diatheke`` World English Bible, sentences across verses
wordnet    ``dict-wn``                       the quoted usage examples of WordNet 3.0
========== ================================= ==========================================

Every raw sentence goes through one filter (:func:`clean_sentence`). It keeps two forms of a
sentence: ``spoken``, an ASCII string with its punctuation that is handed to the TTS engines (commas
and question marks shape their prosody), and ``text``, ``normalize_text(spoken)``, the training label.
Sentences a TTS engine would read differently from their label are rejected rather than patched:
digits (``42`` is said "forty two", normalized "four two"), abbreviations (``Mr.``), all-capital
words (``NASA`` may be spelled out), lone letters other than *a*, *I* and *O*, and symbols.

The split is a pure function of the normalized sentence (:func:`split_of`): a SHA-1 of the text
mapped to [0, 1). It never depends on the order, the source or the other sentences, so a sentence
keeps its split when sources are added, and the same sentence from two sources lands in one split.
:func:`write_lm_text` writes language-model text that contains no dev or test sentence, not even as
a part of a longer line.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from streamer.errors import ConfigError, MissingDependencyError
from streamer.files import atomic_files
from streamer.text import normalize_text

#: Names of the splits, in the order the corpus builder writes them.
SPLITS: tuple[str, ...] = ("train", "dev", "test")

#: Every text source this module can read.
SOURCES: tuple[str, ...] = ("fortunes", "bible", "wordnet")

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DICT = Path("/usr/share/dictd/wn.dict.dz")
BIBLE_MODULE = "engWEB2015eb"
BIBLE_CONF = Path("/usr/share/sword/mods.d/engWEB2015eb.conf")

#: Fortune files (or folders) that are not prose: offensive fortunes and ASCII drawings.
_SKIPPED_FORTUNES = frozenset({"off", "ascii-art"})

_INSTALL_HINT = {
    "fortunes": "apt-get install fortunes",
    "bible": "apt-get install sword-text-web diatheke",
    "wordnet": "apt-get install dict-wn",
}

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'",
                         "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"'})
_BREAKS = re.compile(r"\s*(?:--+|\u2014|\u2013|[()\[\]])\s*")
_ALLOWED = re.compile(r"[A-Za-z' ,.;:!?\"-]*")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_CLAUSE_END = re.compile(r"[;:](?=\s|$)")
_ABBREVIATION_END = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|Inc|Ltd|Co|Prof|Gen|Col|Lt|Sgt|Capt|Rev|Mt|No|Vol|Fig|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|[A-Za-z])\.)$"
)
_ABBREVIATION = re.compile(r"\b[A-Za-z]\.[A-Za-z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|Inc|Ltd|Co|"
                           r"Prof|Capt|Sgt|Lt|Mt)\.")
_ALL_CAPS = re.compile(r"\b[A-Z]{2,}\b")
_LONE_LETTER = re.compile(r"(?<![A-Za-z'])(?!(?:a|A|I|O)(?![A-Za-z']))[A-Za-z](?![A-Za-z'])")
_LETTER_LABEL = re.compile(r"(?<![A-Za-z'])[A-Za-z][:.](?=\s|$)")  # "Q:", "A:", "B."
_REPEATED_PUNCT = re.compile(r"([.!?,;:])[.!?,;:]*")
_EDGE_APOSTROPHES = re.compile(r"(^|[\s\"])'+|'+(?=[\s\",.;:!?]|$)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_LEADING_PUNCT = re.compile(r"^[\s,.;:!?'-]+")
_MULTI_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z']+")

_MAX_WORD_LETTERS = 18
_MIN_LETTER_FRACTION = 0.8


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One sentence of the corpus.

    Attributes:
        text: The training label: ``normalize_text(spoken)``, ``[a-z' ]`` with single spaces.
        spoken: What the TTS engine reads: ASCII letters, apostrophes, spaces and ``,.;:!?-``.
        source: The text source it came from (one of :data:`SOURCES`, or a caller's own name).
    """

    text: str
    spoken: str
    source: str

    @property
    def key(self) -> str:
        """Stable 16-hex-digit id of the normalized text (the first digits of its SHA-1)."""
        return text_hash(self.text)[:16]


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How sentences are divided between train, dev and test.

    Attributes:
        dev_fraction: Share of distinct sentences held out for dev, in [0, 0.5).
        test_fraction: Share held out for test, in [0, 0.5).
        min_words: Fewest words a corpus sentence may have (after normalization).
        max_words: Most words a corpus sentence may have.
    """

    dev_fraction: float = 0.03
    test_fraction: float = 0.03
    min_words: int = 3
    max_words: int = 20

    def __post_init__(self) -> None:
        for name in ("dev_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise ConfigError(f"SplitConfig.{name}: expected a fraction in [0, 0.5), found {value!r}")
        if self.min_words < 1 or self.max_words < self.min_words:
            raise ConfigError(
                "SplitConfig: expected 1 <= min_words <= max_words, "
                f"found min_words={self.min_words}, max_words={self.max_words}"
            )


@dataclasses.dataclass(frozen=True)
class SentenceSplits:
    """Distinct sentences of each split; no normalized text occurs in two splits.

    Attributes:
        train: Sentences for training audio and language-model text.
        dev: Held-out sentences for validation (spoken by training voices).
        test: Held-out sentences for testing (spoken by held-out voices).
        config: The split configuration that produced them.
    """

    train: tuple[Sentence, ...]
    dev: tuple[Sentence, ...]
    test: tuple[Sentence, ...]
    config: SplitConfig

    def of(self, split: str) -> tuple[Sentence, ...]:
        """Returns the sentences of ``split`` (``"train"``, ``"dev"`` or ``"test"``)."""
        if split not in SPLITS:
            raise ConfigError(f"split: expected one of {SPLITS}, found {split!r}")
        return getattr(self, split)

    def held_out_texts(self) -> frozenset[str]:
        """The normalized texts of every dev and test sentence."""
        return frozenset(s.text for s in self.dev) | frozenset(s.text for s in self.test)


@dataclasses.dataclass(frozen=True)
class LoadedSentences:
    """What :func:`load_sentences` found.

    Attributes:
        sentences: Distinct sentences (by normalized text), in source order.
        rejected: Raw sentences rejected, per reason (see :func:`clean_sentence`).
    """

    sentences: tuple[Sentence, ...]
    rejected: dict[str, int]


@dataclasses.dataclass(frozen=True)
class LmTextStats:
    """What :func:`write_lm_text` wrote.

    Attributes:
        path: The text file written, one normalized sentence per line.
        train_lines: Train-split sentences written.
        extra_lines: Other lines written (long or short sentences, WordNet glosses, caller's text).
        dropped_lines: Lines left out because they contain a dev or test sentence.
        words: Words written in total.
    """

    path: Path
    train_lines: int
    extra_lines: int
    dropped_lines: int
    words: int


class TextRejected(ValueError):
    """A raw sentence does not pass the corpus filter; ``reason`` says which rule it broke."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(f"{reason}: {raw[:80]!r}")
        self.reason = reason


def text_hash(text: str) -> str:
    """Returns the SHA-1 hex digest of a (normalized) text, encoded as UTF-8."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def split_of(text: str, dev_fraction: float = 0.03, test_fraction: float = 0.03) -> str:
    """Assigns a normalized sentence to a split by a stable hash of its text.

    The first 8 bytes of the SHA-1 of ``text`` give a number u in [0, 1): u < test_fraction is test,
    u < test_fraction + dev_fraction is dev, the rest is train. The result depends on the text
    alone, never on the order or on the other sentences.

    Args:
        text: A normalized sentence (see :func:`streamer.text.normalize_text`).
        dev_fraction: Share of sentences assigned to dev.
        test_fraction: Share of sentences assigned to test.

    Returns:
        ``"train"``, ``"dev"`` or ``"test"``.
    """
    u = int(text_hash(text)[:16], 16) / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + dev_fraction:
        return "dev"
    return "train"


def speakable_text(raw: str) -> str:
    """Turns raw prose into the ASCII text given to a TTS engine, without judging it.

    Accents are stripped, curly quotes straightened, dashes, parentheses and brackets become
    commas, double quotes and quote-like apostrophes at word edges are dropped, and repeated
    punctuation and whitespace collapse.

    Args:
        raw: One sentence of any Unicode text.

    Returns:
        The cleaned sentence (possibly empty).
    """
    text = _BREAKS.sub(", ", raw.translate(_QUOTES))  # before folding, which would drop dashes
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = text.replace('"', " ")
    text = _EDGE_APOSTROPHES.sub(r"\1", text)
    text = _MULTI_SPACE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_PUNCT.sub(r"\1", text)
    text = _LEADING_PUNCT.sub("", text)
    text = re.sub(r"(?<=\s)-+|-+(?=\s|$)", "", text)  # dashes that are not inside a word
    text = _MULTI_SPACE.sub(" ", text).strip()
    return text.rstrip(",;:- ")


def clean_sentence(raw: str, source: str, *, min_words: int = 3, max_words: int = 20) -> Sentence:
    """Checks one raw sentence against the corpus rules and returns its two forms.

    Args:
        raw: One sentence of prose.
        source: Name of the source, stored in the result.
        min_words: Fewest words allowed after normalization.
        max_words: Most words allowed after normalization.

    Returns:
        The sentence with its label (``text``) and its TTS input (``spoken``).

    Raises:
        TextRejected: The sentence breaks a rule; ``reason`` is one of ``"characters"``,
            ``"digits"``, ``"abbreviation"``, ``"capitals"``, ``"letter"``, ``"long word"``,
            ``"too few words"``, ``"too many words"``.
    """
    spoken = speakable_text(raw)
    reason = _rejection(raw, spoken)
    if reason:
        raise TextRejected(reason, raw)
    text = normalize_text(spoken)
    n_words = text.count(" ") + 1 if text else 0
    if n_words < min_words:
        raise TextRejected("too few words", raw)
    if n_words > max_words:
        raise TextRejected("too many words", raw)
    return Sentence(text=text, spoken=spoken, source=source)


def _rejection(raw: str, spoken: str) -> str:
    """Returns why ``spoken`` (made from ``raw``) is unfit for TTS, or ``""`` when it is fit."""
    if any(c.isdigit() for c in raw):
        return "digits"
    if not spoken or not _ALLOWED.fullmatch(spoken):
        return "characters"
    letters = sum(c.isalpha() for c in spoken)
    if letters < _MIN_LETTER_FRACTION * len(spoken.replace(" ", "")):
        return "characters"
    if _ABBREVIATION.search(spoken):
        return "abbreviation"
    if _ALL_CAPS.search(spoken):
        return "capitals"
    if _LONE_LETTER.search(spoken) or _LETTER_LABEL.search(spoken):
        return "letter"
    if any(len(w) > _MAX_WORD_LETTERS for w in _WORD.findall(spoken)):
        return "long word"
    return ""


def split_into_sentences(paragraph: str) -> list[str]:
    """Splits prose into sentences at ``.``, ``!`` and ``?`` (abbreviations kept whole).

    A piece that ends in an abbreviation or an initial (``Mr.``, ``J.``) is joined to the next
    one, so that :func:`clean_sentence` can reject the whole sentence instead of half of it.

    Args:
        paragraph: Text with sentences, on one or several lines.

    Returns:
        The sentences, stripped, in order.
    """
    text = _MULTI_SPACE.sub(" ", paragraph).strip()
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[start:match.end()].strip())
        start = match.end()
    if start < len(text):
        pieces.append(text[start:].strip())
    merged: list[str] = []
    for piece in pieces:
        if merged and _ABBREVIATION_END.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return [p for p in merged if p]


def split_into_clauses(sentence: str) -> list[str]:
    """Splits one sentence further at ``;`` and ``:`` (used for sentences that are too long)."""
    parts = []
    start = 0
    for match in _CLAUSE_END.finditer(sentence):
        parts.append(sentence[start:match.start()].strip())
        start = match.end()
    parts.append(sentence[start:].strip())
    return [p for p in parts if p]


# ---------------------------------------------------------------------------------------------
# Sources


def available_sources() -> tuple[str, ...]:
    """Returns the sources of :data:`SOURCES` whose Debian packages are installed."""
    found = []
    if FORTUNES_DIR.is_dir():
        found.append("fortunes")
    if BIBLE_CONF.is_file() and shutil.which("diatheke"):
        found.append("bible")
    if WORDNET_DICT.is_file():
        found.append("wordnet")
    return tuple(found)


def iter_paragraphs(source: str) -> Iterator[str]:
    """Yields the raw paragraphs of one source (a fortune, a Bible chapter, a WordNet example).

    Args:
        source: One of :data:`SOURCES`.

    Yields:
        Raw text blocks, each holding one or more sentences.

    Raises:
        ConfigError: ``source`` is unknown.
        MissingDependencyError: The source's Debian package is not installed.
    """
    if source not in SOURCES:
        raise ConfigError(f"text source: expected one of {SOURCES}, found {source!r}")
    if source not in available_sources():
        raise MissingDependencyError(
            f"text source {source!r} is not installed; install it with: {_INSTALL_HINT[source]}"
        )
    if source == "fortunes":
        yield from _fortune_paragraphs()
    elif source == "bible":
        yield from _bible_paragraphs()
    else:
        yield from (text for kind, text in _wordnet_entries() if kind == "example")


def _fortune_files() -> list[Path]:
    files = []
    for path in sorted(FORTUNES_DIR.rglob("*")):
        rel = path.relative_to(FORTUNES_DIR)
        if rel.parts[0] in _SKIPPED_FORTUNES or not path.is_file() or path.suffix:
            continue  # skips off/, ascii-art, and the .dat/.u8 index files
        files.append(path)
    return files


def _fortune_paragraphs() -> Iterator[str]:
    for path in _fortune_files():
        content = path.read_text(encoding="utf-8", errors="replace")
        for fortune in re.split(r"^%\s*$", content, flags=re.MULTILINE):
            lines = []
            for line in fortune.splitlines():
                if re.match(r"^\s*(?:--|\u2014)", line):
                    break  # an attribution ("-- Mark Twain") and what follows it
                lines.append(line)
            # Blank lines separate unrelated parts of one fortune.
            for block in re.split(r"\n\s*\n", "\n".join(lines)):
                if block.strip():
                    yield block


def _bible_paragraphs() -> Iterator[str]:
    """Yields each chapter of the World English Bible as plain text."""
    command = ["diatheke", "-b", BIBLE_MODULE, "-f", "osis", "-k", "Genesis 1:1-Revelation 22:21"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise MissingDependencyError(
            f"diatheke could not read {BIBLE_MODULE} (exit {result.returncode}): "
            f"{result.stderr.strip()[:200]}; reinstall with: {_INSTALL_HINT['bible']}"
        )
    verse = re.compile(r"^(.+?) (\d+):(\d+): (.*)$")
    chapter_key = None
    chapter: list[str] = []
    for line in result.stdout.splitlines():
        match = verse.match(line)
        if not match:
            continue
        key = (match.group(1), match.group(2))
        body = match.group(4).replace("</w><w", "</w> <w")  # adjacent words lack a space
        body = re.sub(r"<[^>]*>", "", body)
        if key != chapter_key and chapter:
            yield " ".join(chapter)
            chapter = []
        chapter_key = key
        chapter.append(body)
    if chapter:
        yield " ".join(chapter)


def _wordnet_entries() -> Iterator[tuple[str, str]]:
    """Yields ``(kind, text)`` pairs: kind ``"example"`` usage examples, ``"gloss"`` definitions."""
    content = gzip.open(WORDNET_DICT, "rt", encoding="utf-8", errors="replace").read()
    entry: list[str] = []

    def flush() -> Iterator[tuple[str, str]]:
        if len(entry) < 2 or entry[0].startswith("00-database"):
            return
        body = _MULTI_SPACE.sub(" ", " ".join(line.strip() for line in entry[1:]))
        body = re.sub(r"\[(?:syn|ant|also|see)?:?[^\]]*\]", " ", body)
        for sense in re.split(r"(?:\b(?:n|v|adj|adv)\s+)?\b\d+:\s", body):
            sense = sense.strip()
            if not sense:
                continue
            gloss = re.split(r";\s*\"", sense)[0].strip(' ;"')
            if gloss:
                yield "gloss", gloss
            for example in re.findall(r"\"([^\"]+)\"", sense):
                yield "example", example

    for line in content.splitlines():
        if line and not line[0].isspace():
            yield from flush()
            entry = [line]
        else:
            entry.append(line)
    yield from flush()


def iter_raw_sentences(source: str, *, max_words: int = 20) -> Iterator[str]:
    """Yields the raw sentences of one source, long ones cut at ``;`` and ``:``.

    Args:
        source: One of :data:`SOURCES`.
        max_words: Sentences with more words than this are split into clauses.

    Yields:
        Raw sentences (not yet filtered).
    """
    for paragraph in iter_paragraphs(source):
        for sentence in split_into_sentences(paragraph):
            if len(sentence.split()) > max_words:
                yield from split_into_clauses(sentence)
            else:
                yield sentence


def load_sentences(
    sources: Sequence[str] | None = None, *, min_words: int = 3, max_words: int = 20
) -> LoadedSentences:
    """Reads, filters and deduplicates the sentences of the given sources.

    Args:
        sources: Source names (default: every installed one, in :data:`SOURCES` order).
        min_words: Fewest words a sentence may have.
        max_words: Most words a sentence may have.

    Returns:
        The distinct sentences in source order (the first occurrence of a normalized text wins)
        and the count of rejected raw sentences per reason.

    Raises:
        MissingDependencyError: No source is installed, or a named one is missing.
    """
    names = tuple(sources) if sources is not None else available_sources()
    if not names:
        raise MissingDependencyError(
            "no text source is installed; install at least one of: "
            + "; ".join(_INSTALL_HINT.values())
        )
    seen: set[str] = set()
    sentences: list[Sentence] = []
    rejected: Counter = Counter()
    for source in names:
        for raw in iter_raw_sentences(source, max_words=max_words):
            try:
                sentence = clean_sentence(raw, source, min_words=min_words, max_words=max_words)
            except TextRejected as err:
                rejected[err.reason] += 1
                continue
            if sentence.text not in seen:
                seen.add(sentence.text)
                sentences.append(sentence)
    return LoadedSentences(sentences=tuple(sentences), rejected=dict(rejected))


def split_sentences(sentences: Iterable[Sentence], config: SplitConfig = SplitConfig()) -> SentenceSplits:
    """Divides distinct sentences into train, dev and test with :func:`split_of`.

    Args:
        sentences: Sentences (duplicates of a normalized text are dropped, the first kept).
        config: Fractions for dev and test.

    Returns:
        The three splits, each in input order.
    """
    parts: dict[str, list[Sentence]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    for sentence in sentences:
        if sentence.text in seen:
            continue
        seen.add(sentence.text)
        parts[split_of(sentence.text, config.dev_fraction, config.test_fraction)].append(sentence)
    return SentenceSplits(train=tuple(parts["train"]), dev=tuple(parts["dev"]),
                          test=tuple(parts["test"]), config=config)


def load_splits(sources: Sequence[str] | None = None, config: SplitConfig = SplitConfig()) -> SentenceSplits:
    """Loads the sentences of the installed sources and splits them (see :func:`load_sentences`)."""
    loaded = load_sentences(sources, min_words=config.min_words, max_words=config.max_words)
    return split_sentences(loaded.sentences, config)


# ---------------------------------------------------------------------------------------------
# Language-model text


class HeldOutFilter:
    """Finds lines that contain a held-out sentence as a run of whole words.

    Lookup is by the first three words of each held-out sentence (every corpus sentence has at
    least ``min_words`` >= 1 words; shorter ones are indexed by what they have), so a line costs
    one dictionary lookup per word.

    Args:
        held_out: Normalized held-out sentences.
    """

    def __init__(self, held_out: Iterable[str]) -> None:
        self._by_prefix: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        self._prefix_lengths: set[int] = set()
        for text in held_out:
            words = tuple(text.split())
            if not words:
                continue
            prefix = words[:3]
            self._prefix_lengths.add(len(prefix))
            self._by_prefix.setdefault(prefix, []).append(words)

    def contains_held_out(self, line: str) -> bool:
        """Returns whether the normalized ``line`` contains any held-out sentence."""
        words = line.split()
        for i in range(len(words)):
            for n in self._prefix_lengths:
                for candidate in self._by_prefix.get(tuple(words[i:i + n]), ()):
                    if tuple(words[i:i + len(candidate)]) == candidate:
                        return True
        return False


def iter_extra_lm_lines(sources: Sequence[str] | None = None, *, max_words: int = 60) -> Iterator[str]:
    """Yields normalized text for the language model beyond the corpus sentences.

    These are all sentences of the sources up to ``max_words`` words, whatever the corpus filter
    thinks of them (so also one- and two-word sentences, long ones, and ones with abbreviations
    or capitals), plus the WordNet glosses; raw text with digits is skipped, since its spoken form
    is ambiguous. Corpus sentences come out again here; :func:`write_lm_text` deduplicates.

    Args:
        sources: Source names (default: every installed one).
        max_words: Longer lines are skipped.

    Yields:
        Normalized lines, not deduplicated and not yet checked against held-out sentences.
    """
    names = tuple(sources) if sources is not None else available_sources()
    for source in names:
        for raw in iter_raw_sentences(source, max_words=max_words):
            if any(c.isdigit() for c in raw):
                continue
            text = normalize_text(speakable_text(raw))
            if text and text.count(" ") < max_words:
                yield text
        if source == "wordnet":
            for kind, gloss in _wordnet_entries():
                if kind == "gloss" and not any(c.isdigit() for c in gloss):
                    text = normalize_text(gloss)
                    if text:
                        yield text


def write_lm_text(
    path: str | Path,
    splits: SentenceSplits,
    *,
    extra_lines: Iterable[str] = (),
    sources: Sequence[str] | None = (),
) -> LmTextStats:
    """Writes language-model training text that holds no dev or test sentence.

    The file gets every train-split sentence, then the distinct ``extra_lines`` and the extra
    text of ``sources`` (see :func:`iter_extra_lm_lines`), one normalized line each. Any line,
    train sentences included, that contains a dev or test sentence as a run of whole words is
    left out, so n-grams spanning a held-out sentence never reach the LM.

    Args:
        path: Output text file (parent folders are created).
        splits: The sentence splits; only ``train`` is written, ``dev``/``test`` are excluded.
        extra_lines: Further text (normalized here).
        sources: Sources whose extra text is added; ``None`` means every installed source, the
            default ``()`` none.

    Returns:
        Counts of what was written and dropped.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    guard = HeldOutFilter(splits.held_out_texts())
    seen: set[str] = set()
    train_lines = extra_lines_written = dropped = words = 0
    with atomic_files([path], overwrite=True) as (tmp,), open(tmp, "w", encoding="utf-8") as out:
        for sentence in splits.train:
            if sentence.text in seen:
                continue
            seen.add(sentence.text)
            if guard.contains_held_out(sentence.text):
                dropped += 1
                continue
            out.write(sentence.text + "\n")
            train_lines += 1
            words += sentence.text.count(" ") + 1
        streams: list[Iterable[str]] = [(normalize_text(line) for line in extra_lines)]
        if sources is None or len(sources) > 0:
            streams.append(iter_extra_lm_lines(sources))
        for stream in streams:
            for text in stream:
                if not text or text in seen:
                    continue
                seen.add(text)
                if guard.contains_held_out(text):
                    dropped += 1
                    continue
                out.write(text + "\n")
                extra_lines_written += 1
                words += text.count(" ") + 1
    return LmTextStats(path=path, train_lines=train_lines, extra_lines=extra_lines_written,
                       dropped_lines=dropped, words=words)
