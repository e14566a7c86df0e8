"""The CTC output vocabulary: token strings, the blank, the word delimiter and the unknown token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from streamer.constants import ENGLISH_ALPHABET
from streamer.errors import ConfigError


@dataclass(frozen=True)
class Vocabulary:
    """Maps CTC output indices to text.

    Attributes:
        tokens: Token string of each output index (index = position).
        blank_id: Index of the CTC blank (Hugging Face checkpoints use the pad token).
        word_delimiter: Token that separates words (``"|"`` in wav2vec2 vocabularies).
        unk_id: Index of the unknown token, or None if the vocabulary has none.
        special_ids: Indices that never appear in text (blank, bos, eos, pad, unk).
    """

    tokens: tuple[str, ...]
    blank_id: int
    word_delimiter: str = "|"
    unk_id: int | None = None
    special_ids: tuple[int, ...] = ()

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
        if len(set(self.tokens)) != n:
            dupes = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ConfigError(f"vocabulary: expected unique tokens, found duplicates {dupes}")
        if self.word_delimiter not in self.tokens and " " not in self.tokens:
            raise ConfigError(
                f"vocabulary: expected the word delimiter {self.word_delimiter!r} (or ' ') among the tokens, "
                f"found none in {list(self.tokens)[:40]}"
            )

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def delimiter_id(self) -> int:
        """Index of the word delimiter token."""
        if self.word_delimiter in self.tokens:
            return self.tokens.index(self.word_delimiter)
        return self.tokens.index(" ")

    @property
    def lowercase(self) -> bool:
        """True when the letters of the vocabulary are lower case (the text is then written as is)."""
        letters = [c for t in self.tokens for c in t if c.isalpha()]
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
        if not self.lowercase:
            text = text.upper()
        out = []
        for ch in text:
            if ch == " ":
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
        return {"tokens": list(self.tokens), "blank_id": self.blank_id, "word_delimiter": self.word_delimiter,
                "unk_id": self.unk_id, "special_ids": list(self.special_ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Vocabulary":
        """Inverse of `to_dict`."""
        try:
            return cls(tokens=tuple(data["tokens"]), blank_id=int(data["blank_id"]),
                       word_delimiter=data.get("word_delimiter", "|"), unk_id=data.get("unk_id"),
                       special_ids=tuple(data.get("special_ids", ())))
        except KeyError as err:
            raise ConfigError(f"vocabulary: expected the key {err.args[0]!r}, found keys {sorted(data)}") from None

    def to_hf_vocab(self) -> dict[str, int]:
        """The Hugging Face ``vocab.json`` mapping (token → index)."""
        return {t: i for i, t in enumerate(self.tokens)}


def english_characters() -> Vocabulary:
    """The character vocabulary of the bundled English models: blank, unk, delimiter, a–z and '."""
    tokens = ("<pad>", "<unk>", "|") + tuple(ENGLISH_ALPHABET)
    return Vocabulary(tokens=tokens, blank_id=0, word_delimiter="|", unk_id=1)
