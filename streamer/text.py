"""Text normalization shared by training labels, evaluation and language-model text.

The bundled English models write lower-case ``a``–``z``, the apostrophe and single spaces. The same
function turns corpus sentences into labels, references into scoring text and LM text into training
lines, so that the three can never disagree.
"""

from __future__ import annotations

import re
import unicodedata

_NUMBER_WORDS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_NOT_ALLOWED = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r" +")
_EDGE_APOSTROPHES = re.compile(r"(^|\s)'+|'+(?=\s|$)")


def normalize_text(text: str, *, spell_digits: bool = True) -> str:
    """Normalizes free text to the ``[a-z' ]`` alphabet of the English models.

    Accents are stripped (``café`` → ``cafe``), curly apostrophes become ``'``, digits are spelled
    one by one when ``spell_digits`` is true (``42`` → ``four two``), every other character becomes a
    word break, quotes at word edges are dropped, and runs of spaces collapse.

    Args:
        text: Any Unicode text.
        spell_digits: Spell digits as words instead of dropping them.

    Returns:
        The normalized text, possibly empty.
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = text.translate(_APOSTROPHES).lower()
    if spell_digits:
        text = "".join(f" {_NUMBER_WORDS[c]} " if c in _NUMBER_WORDS else c for c in text)
    text = _NOT_ALLOWED.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
