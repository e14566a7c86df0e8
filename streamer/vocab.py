"""The CTC output vocabulary: token strings, the blank, the word delimiter and the unknown token."""

from __future__ import annotations

import collections
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from streamer import jsonfile
from streamer.constants import ENGLISH_ALPHABET
from streamer.errors import ConfigError
from streamer.files import write_atomic
from streamer.text import is_unsegmented_letter


@dataclass(frozen=True)
class Vocabulary:
    """Maps CTC output indices to text.

    Attributes:
        tokens: Token string of each output index (index = position).
        blank_id: Index of the CTC blank (Hugging Face checkpoints use the pad token).
        word_delimiter: Token that separates words (``"|"`` in wav2vec2 vocabularies), or None for
            a language written without spaces (Chinese, Japanese, Thai): its text is a string of
            characters, decoded, language-modelled and scored per character.
        unk_id: Index of the unknown token, or None if the vocabulary has none.
        special_ids: Indices that never appear in text (blank, bos, eos, pad, unk).
        language: ISO 639-1 code of the language the vocabulary writes, when known (None for
            checkpoints that do not say; `streamer.text` then infers how to spell digits).
    """

    tokens: tuple[str, ...]
    blank_id: int
    word_delimiter: str | None = "|"
    unk_id: int | None = None
    special_ids: tuple[int, ...] = ()
    language: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        specials = set(int(i) for i in self.special_ids) | {int(self.blank_id)}
        if self.unk_id is not None:
            specials.add(int(self.unk_id))
        object.__setattr__(self, "special_ids", tuple(sorted(specials)))
        n = len(self.tokens)
        if n < 2:
            raise ConfigError(f"vocabulary: expected at least 2 tokens, found {n}")
        for name, value in (("blank_id", self.blank_id), ("unk_id", self.unk_id)):
            if value is not None and not 0 <= value < n:
                raise ConfigError(f"vocabulary.{name}: expected an index in [0, {n}), found {value}")
        outside = [i for i in self.special_ids if not 0 <= i < n]
        if outside:
            raise ConfigError(f"vocabulary.special_ids: expected indices in [0, {n}), found {outside[:8]}")
        if len(set(self.tokens)) != n:
            dupes = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ConfigError(f"vocabulary: expected unique tokens, found duplicates {dupes}")
        if self.language is not None and not (isinstance(self.language, str) and self.language.strip()):
            raise ConfigError(f"vocabulary.language: expected an ISO 639-1 code or None, found {self.language!r}")
        if self.word_delimiter is not None and self.word_delimiter not in self.tokens and " " not in self.tokens:
            raise ConfigError(
                f"vocabulary: expected the word delimiter {self.word_delimiter!r} (or ' ') among the tokens, "
                f"found none in {list(self.tokens)[:40]}"
            )

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def delimiter_id(self) -> int | None:
        """Index of the word delimiter token (None for a vocabulary without one)."""
        if self.word_delimiter is None:
            return None
        if self.word_delimiter in self.tokens:
            return self.tokens.index(self.word_delimiter)
        return self.tokens.index(" ")

    @property
    def per_character(self) -> bool:
        """True when words are characters: no delimiter, or mostly letters of a script written without
        spaces (Chinese, Japanese, Thai; Hugging Face vocabularies for them often keep a ``|``).
        Such text has no spaces, is scored by CER and its language model is built over characters."""
        if self.word_delimiter is None:
            return True
        letters = [c for i, t in enumerate(self.tokens) if i not in self.special_ids for c in t if c.isalpha()]
        return bool(letters) and sum(is_unsegmented_letter(c) for c in letters) * 2 > len(letters)

    @property
    def lowercase(self) -> bool:
        """True when the letters of the vocabulary are lower case (the text is then written as is)."""
        letters = [c for i, t in enumerate(self.tokens) if i not in self.special_ids for c in t if c.isalpha()]
        return not letters or sum(c.islower() for c in letters) * 2 >= len(letters)

    def token_text(self, index: int) -> str:
        """Text of one output index: '' for special tokens, ' ' for the delimiter."""
        if index in self.special_ids:
            return ""
        tok = self.tokens[index]
        return " " if tok == self.word_delimiter else tok

    def ids_to_text(self, ids: Sequence[int]) -> str:
        """Joins already-collapsed CTC ids into text (no blank removal or repeat merging here)."""
        text = "".join(self.token_text(int(i)) for i in ids)
        text = " ".join(text.split())
        return text if self.lowercase else text.lower()

    def encode(self, text: str) -> list[int]:
        """Turns normalized text into label ids (spaces become the delimiter).

        Raises:
            ConfigError: A character has no token and the vocabulary has no unknown token.
        """
        index = {t: i for i, t in enumerate(self.tokens)}
        if not self.lowercase:  # upper-case vocabularies: upper-case each character that has one token for it
            text = "".join(c.upper() if len(c.upper()) == 1 and c.upper() in index else c for c in text)
        out = []
        for ch in text:
            if ch == " ":
                if self.word_delimiter is not None:
                    out.append(self.delimiter_id)
            elif ch in index:
                out.append(index[ch])
            elif self.unk_id is not None:
                out.append(self.unk_id)
            else:
                raise ConfigError(f"vocabulary: character {ch!r} has no token and there is no unknown token")
        return out

    def labels(self) -> list[str]:
        """Per-index labels in pyctcdecode's convention: '' for blank/specials, ' ' for the delimiter."""
        out = []
        for i, tok in enumerate(self.tokens):
            if i in self.special_ids:
                out.append("" if i == self.blank_id else f"\u2047{i}")
            elif tok == self.word_delimiter:
                out.append(" ")
            else:
                out.append(tok if self.lowercase else tok.lower())
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved in a checkpoint's config.json)."""
        out = {"tokens": list(self.tokens), "blank_id": self.blank_id, "word_delimiter": self.word_delimiter,
               "unk_id": self.unk_id, "special_ids": list(self.special_ids)}
        if self.language is not None:  # absent for the English demo, whose saved config stays as it was
            out["language"] = self.language
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Vocabulary":
        """Inverse of `to_dict`, for JSON read from a file: every field's type is checked.

        Raises:
            ConfigError: A missing or unknown key, or a field of the wrong type or value (named as
                ``vocabulary.<field>``).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"vocabulary: expected an object, found {type(data).__name__}")
        known = ("tokens", "blank_id", "word_delimiter", "unk_id", "special_ids", "language")
        missing = [k for k in ("tokens", "blank_id") if k not in data]
        unknown = sorted(str(k) for k in data if k not in known)
        if missing or unknown:
            raise ConfigError(f"vocabulary: expected the keys {list(known)} (tokens and blank_id required), "
                              f"found {'no ' + repr(missing) if missing else 'unknown keys ' + repr(unknown)}")

        def bad(name: str, expected: str) -> ConfigError:
            value = data.get(name)
            return ConfigError(f"vocabulary.{name}: expected {expected}, found {type(value).__name__} "
                               f"{str(value)[:40]!r}")

        def index(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        tokens = data["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise bad("tokens", "a list of strings")
        if not index(data["blank_id"]):
            raise bad("blank_id", "an integer index")
        if data.get("unk_id") is not None and not index(data["unk_id"]):
            raise bad("unk_id", "an integer index or null")
        specials = data.get("special_ids", [])
        if not isinstance(specials, list) or not all(index(i) for i in specials):
            raise bad("special_ids", "a list of integer indices")
        if data.get("word_delimiter", "|") is not None and not isinstance(data.get("word_delimiter", "|"), str):
            raise bad("word_delimiter", "a string or null (no delimiter: Chinese, Japanese, Thai)")
        return cls(tokens=tuple(tokens), blank_id=data["blank_id"], word_delimiter=data.get("word_delimiter", "|"),
                   unk_id=data.get("unk_id"), special_ids=tuple(specials), language=data.get("language"))

    def to_hf_vocab(self) -> dict[str, int]:
        """The Hugging Face ``vocab.json`` mapping (token → index)."""
        return {t: i for i, t in enumerate(self.tokens)}


def english_characters() -> Vocabulary:
    """The character vocabulary of the bundled English models: blank, unk, delimiter, a–z and '."""
    tokens = ("<pad>", "<unk>", "|") + tuple(ENGLISH_ALPHABET)
    return Vocabulary(tokens=tokens, blank_id=0, word_delimiter="|", unk_id=1)


#: Leading special tokens of a vocabulary built from text (the Hugging Face wav2vec2 order).
PAD_TOKEN, UNK_TOKEN, DELIMITER_TOKEN = "<pad>", "<unk>", "|"


def characters_of(texts: Iterable[str], *, min_count: int = 1) -> collections.Counter[str]:
    """Counts the characters a vocabulary built from ``texts`` would hold.

    Texts are NFC-normalized and lower-cased; letters and combining marks count, and so does an
    apostrophe inside a word (``don't``). Digits, hyphens, other punctuation and spaces do not
    (digits are spelled or removed by `streamer.text`; a hyphen separates words).

    Args:
        texts: Raw transcripts.
        min_count: Characters seen fewer times are left out (stray foreign letters).
    """
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        text = unicodedata.normalize("NFC", text).lower()
        for i, ch in enumerate(text):
            if unicodedata.category(ch)[0] in "LM":
                counts[ch] += 1
            elif ch == "'" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha():
                counts[ch] += 1
    return collections.Counter({c: n for c, n in counts.items() if n >= min_count})


def vocabulary_from_text(texts: Iterable[str], *, language: str | None = None, min_count: int = 1,
                         min_share: float = 0.0, per_character: bool | None = None) -> Vocabulary:
    """A character vocabulary built from training text: blank, unk, delimiter and the characters seen.

    The order is the Hugging Face wav2vec2 one (``<pad>`` = blank 0, ``<unk>`` 1, ``|`` 2, then the
    characters sorted by code point), so `Vocabulary.to_hf_vocab` gives a usable ``vocab.json``.

    Args:
        texts: Raw training transcripts (see `characters_of`).
        language: ISO 639-1 code stored with the vocabulary (digit spelling; fine-tuning decisions).
        min_count: Characters seen fewer times are left out.
        min_share: Characters making up less than this share of all counted characters are left out.
        per_character: No word delimiter (None = decide from the script: most letters Han, kana,
            Thai, ... → True).

    Raises:
        ConfigError: The texts hold no letter.
    """
    counts = characters_of(texts, min_count=min_count)
    total = sum(counts.values())
    counts = collections.Counter({c: n for c, n in counts.items() if n >= min_share * total})
    if not counts:
        raise ConfigError(f"vocabulary: expected letters in the training text, found none (min_count={min_count})")
    if per_character is None:
        unsegmented = sum(n for c, n in counts.items() if is_unsegmented_letter(c))
        per_character = unsegmented * 2 > sum(counts.values())
    specials = (PAD_TOKEN, UNK_TOKEN) if per_character else (PAD_TOKEN, UNK_TOKEN, DELIMITER_TOKEN)
    return Vocabulary(tokens=specials + tuple(sorted(counts)), blank_id=0, unk_id=1,
                      word_delimiter=None if per_character else DELIMITER_TOKEN, language=language)


def new_letters(vocab: Vocabulary, texts: Iterable[str], *, min_share: float = 1e-3) -> list[str]:
    """Letters of ``texts`` missing from ``vocab``, each at least ``min_share`` of all letters.

    A letter the vocabulary writes only without its accent (``ü`` for an ``a-z`` vocabulary) is
    missing: the language needs its own head.
    """
    from streamer.text import normalizer_for

    alphabet = normalizer_for(vocab).alphabet
    counts = characters_of(texts)
    total = sum(n for c, n in counts.items() if c.isalpha())
    return sorted(c for c, n in counts.items() if c.isalpha() and c not in alphabet and n >= min_share * total)


def load_vocab_json(path: str | Path, *, language: str | None = None) -> Vocabulary:
    """Reads a Hugging Face style ``vocab.json`` (token → id) written by `save_vocab_json`, or any
    wav2vec2 CTC vocabulary with ``<pad>`` as blank, ``<unk>`` and (optionally) ``|``."""
    path = Path(path)
    try:
        mapping = jsonfile.parse(path.read_bytes())
    except OSError as err:
        raise ConfigError(f"vocab.json: cannot read {path} ({err.strerror or type(err).__name__})") from None
    except jsonfile.JsonSyntaxError as err:
        raise ConfigError(f"vocab.json: expected a JSON token→id map at {path}, found invalid JSON: {err}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                for v in mapping.values()):
        raise ConfigError(f"vocab.json: expected a token→id map (integer ids) at {path}, found "
                          f"{type(mapping).__name__} {str(mapping)[:40]!r}")
    if not mapping:
        raise ConfigError(f"vocab.json: expected a token→id map at {path}, found an empty object")
    size = max(mapping.values()) + 1
    if len(mapping) != size or min(mapping.values()) < 0 or len(set(mapping.values())) != size:
        raise ConfigError(f"vocab.json: expected ids 0..{size - 1} once each at {path}, found {sorted(mapping.values())[:10]}...")
    tokens = tuple(sorted(mapping, key=mapping.__getitem__))
    if PAD_TOKEN not in mapping:
        raise ConfigError(f"vocab.json: expected the blank token {PAD_TOKEN!r} at {path}, found {list(tokens)[:8]}")
    return Vocabulary(tokens=tokens, blank_id=mapping[PAD_TOKEN], unk_id=mapping.get(UNK_TOKEN),
                      word_delimiter=DELIMITER_TOKEN if DELIMITER_TOKEN in mapping or " " in mapping else None,
                      language=language)


def save_vocab_json(vocab: Vocabulary, path: str | Path) -> Path:
    """Writes ``vocab`` in the Hugging Face ``vocab.json`` shape (token → id), replacing ``path`` atomically."""
    return write_atomic(path, json.dumps(vocab.to_hf_vocab(), ensure_ascii=False, indent=1) + "\n", overwrite=True)
