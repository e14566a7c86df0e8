"""Text normalization that follows a model's vocabulary: labels, LM text, hotwords and references.

One function decides what a text looks like to a model, and it is a function of the model's
:class:`~streamer.vocab.Vocabulary`, so that training labels, language-model text, hotwords and
evaluation references can never disagree with each other or with what the model can write:

1. Unicode NFC (composed characters stay composed: ``für`` keeps its ``ü``).
2. Case folding to lower case, only when the vocabulary is one-case (all its cased letters lower,
   or all upper; an upper-case vocabulary is matched through `Vocabulary.encode`). A mixed-case
   vocabulary keeps the text's case.
3. Each character the vocabulary writes is kept. Any other character is replaced by its
   compatibility decomposition without accents (NFKD minus combining marks: ``é`` → ``e``,
   ``ё`` → ``е``, ``ﬁ`` → ``fi``, full-width ``Ａ`` → ``a``), one character at a time, and what is
   still missing is handled by kind: ASCII whitespace and punctuation (and what decomposes to them,
   such as a no-break space or ``…``) separate words; digits are
   kept when the vocabulary has them, else spelled one by one in the vocabulary's language when
   :data:`DIGIT_WORDS` has it (``42`` → ``four two``), else they separate words; everything else is
   removed. Accents are therefore stripped only where the stripped letter is in the vocabulary.
4. Apostrophes (when the vocabulary has ``'``): a backquote becomes ``'``; quotes at word edges
   are dropped.
5. Runs of spaces collapse. A per-character vocabulary (`Vocabulary.per_character`: Chinese,
   Japanese, Thai) gets no spaces at all: its text is a string of characters, scored and
   language-modelled per character.

For the English character vocabulary of the bundled models (`english_characters`) the result is
the ``[a-z' ]`` text the demo models were trained on, character for character
(``tests/test_multilingual.py`` pins it against the original English-only rule).

Example:
    >>> from streamer.vocab import Vocabulary, english_characters
    >>> normalize_text("Café No. 42!", english_characters())
    'cafe no four two'
    >>> german = Vocabulary(("<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyzäöüß"), blank_id=0, unk_id=1)
    >>> normalize_text("Für die Straße, bitte.", german)
    'für die straße bitte'
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from streamer.constants import ENGLISH_ALPHABET


class Vocabulary(Protocol):
    """What normalization reads of a vocabulary (`streamer.vocab.Vocabulary` has it)."""

    tokens: tuple[str, ...]
    special_ids: tuple[int, ...]
    word_delimiter: str | None
    language: str | None

    @property
    def per_character(self) -> bool: ...

    def __len__(self) -> int: ...

#: Words for the digits 0-9, per language (ISO 639-1). Digits are spelled one by one, the way the
#: English models were trained; a language missing here has its digits removed unless the
#: vocabulary writes digits.
DIGIT_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
    "ru": ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"),
    "es": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
    "fr": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    "it": ("zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove"),
    "zh": ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九"),
}

#: Scripts written without spaces between words (a vocabulary in them has no word delimiter).
UNSEGMENTED_SCRIPTS: tuple[str, ...] = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")

_DIGITS = "0123456789"
_SPACES = re.compile(r" +")
_EDGE_APOSTROPHES = re.compile(r"(^|\s)'+|'+(?=\s|$)")


def _strip_marks(ch: str) -> str:
    """Compatibility decomposition of one character without combining marks (may be empty)."""
    return "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))


def is_unsegmented_letter(ch: str) -> bool:
    """True for a letter of a script written without spaces (Han, kana, Thai, ...)."""
    name = unicodedata.name(ch, "")
    return ch.isalpha() and name.startswith(UNSEGMENTED_SCRIPTS)


@dataclass(frozen=True)
class TextNormalizer:
    """The normalization of one vocabulary (see the module docstring); call it on text.

    Build it with :meth:`for_vocabulary` (or use :func:`normalize_text`, which caches it).

    Attributes:
        alphabet: Characters the vocabulary writes, in the text's case (lower case when folded).
        fold_case: Lower-case the text first (the vocabulary is one-case).
        word_breaks: The vocabulary has a word delimiter, so spaces separate words; False for
            per-character scripts (no spaces in the output).
        digit_words: Words for 0-9 used when the vocabulary has no digits (None = remove digits).
    """

    alphabet: frozenset[str]
    fold_case: bool = True
    word_breaks: bool = True
    digit_words: tuple[str, ...] | None = None

    @classmethod
    def for_vocabulary(cls, vocab: "Vocabulary", language: str | None = None) -> "TextNormalizer":
        """The normalizer of a vocabulary.

        Args:
            vocab: The model's vocabulary.
            language: ISO 639-1 code for spelling digits; default: ``vocab.language``, else English
                when every letter of the vocabulary is ASCII, else none (digits are removed).
        """
        chars = {c for i in range(len(vocab)) if i not in vocab.special_ids
                 for c in (vocab.tokens[i] if vocab.tokens[i] != vocab.word_delimiter else "")}
        cased = [c for c in chars if c.lower() != c.upper()]
        one_case = all(c.islower() for c in cased) or all(c.isupper() for c in cased)
        alphabet = frozenset(c.lower() for c in chars) if one_case else frozenset(chars)
        language = language or vocab.language
        if language is None and all(ord(c) < 128 for c in alphabet if c.isalpha()):
            language = "en"
        return cls(alphabet=alphabet, fold_case=one_case, word_breaks=not vocab.per_character,
                   digit_words=DIGIT_WORDS.get(language or ""))

    def _map_char(self, ch: str, decompose: bool = True) -> str:
        if ch in self.alphabet:
            return ch
        if ch == "`" and "'" in self.alphabet:
            return "'"
        if ch in _DIGITS:
            if self.digit_words is None:
                return " "
            return " " + "".join(c for c in self.digit_words[int(ch)] if c in self.alphabet) + " "
        if decompose:
            folded = _strip_marks(ch)
            if self.fold_case:  # compatibility forms may decompose to capitals: '🄐' -> '(A)'
                folded = folded.lower()
            if folded and folded != ch:
                return "".join(self._map_char(c, decompose=False) for c in folded)
        return " " if ord(ch) < 128 else ""

    def __call__(self, text: str) -> str:
        """Normalizes one text (any Unicode); the result may be empty."""
        text = unicodedata.normalize("NFC", text)
        if self.fold_case:
            text = text.lower()
        text = "".join(self._map_char(c) for c in text)
        if "'" in self.alphabet:
            text = _EDGE_APOSTROPHES.sub(" ", text)
        if not self.word_breaks:
            return "".join(text.split())
        return _SPACES.sub(" ", text).strip()


@functools.lru_cache(maxsize=32)
def _cached_normalizer(vocab: "Vocabulary", language: str | None) -> TextNormalizer:
    return TextNormalizer.for_vocabulary(vocab, language)


def normalizer_for(vocab: "Vocabulary | None" = None, language: str | None = None) -> TextNormalizer:
    """The (cached) normalizer of ``vocab``; None means the bundled English character vocabulary."""
    if vocab is None:
        return _english_normalizer(language)
    return _cached_normalizer(vocab, language)


@functools.lru_cache(maxsize=8)
def _english_normalizer(language: str | None) -> TextNormalizer:
    """The normalizer of the bundled English character vocabulary (a–z and the apostrophe)."""
    return TextNormalizer(alphabet=frozenset(ENGLISH_ALPHABET), word_breaks=True,
                          digit_words=DIGIT_WORDS.get(language or "en"))


def normalize_text(text: str, vocab: "Vocabulary | None" = None, *, language: str | None = None) -> str:
    """Normalizes text for a vocabulary (see the module docstring).

    Args:
        text: Any Unicode text.
        vocab: The model's vocabulary; None = the English characters of the bundled models
            (``[a-z' ]``, accents stripped, digits spelled in English).
        language: Language for spelling digits (default: the vocabulary's).

    Returns:
        The normalized text, possibly empty.
    """
    return normalizer_for(vocab, language)(text)


def decoder_words(text: str, vocab: "Vocabulary") -> str:
    """Text as the beam search and the language model see it: `normalize_text` for ``vocab``, and for
    a per-character vocabulary its characters separated by spaces (each character is a word).

    LM text (`streamer.decoding.build_lm.build_lm`) and word hotwords go through this one function (the
    beam search matches a per-character vocabulary's hotwords as `normalize_text` character sequences).
    """
    norm = normalize_text(text, vocab)
    return " ".join(norm) if vocab.per_character else norm
