"""Error rates: word error rate (WER) and character error rate (CER) by Levenshtein alignment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


def edit_distance(ref: Sequence[object], hyp: Sequence[object]) -> int:
    """Levenshtein distance (substitutions + deletions + insertions) between two sequences."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class ErrorRate:
    """Accumulated errors over a set of utterances."""

    errors: int
    """Edit operations summed over the utterances."""
    reference_length: int
    """Reference units (words or characters) summed over the utterances."""

    @property
    def rate(self) -> float:
        """errors / reference_length (0.0 for an empty reference set with no errors)."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_length

    def __add__(self, other: "ErrorRate") -> "ErrorRate":
        return ErrorRate(self.errors + other.errors, self.reference_length + other.reference_length)


def word_errors(ref: str, hyp: str) -> ErrorRate:
    """Word-level errors of one utterance (texts split on whitespace)."""
    r, h = ref.split(), hyp.split()
    return ErrorRate(edit_distance(r, h), len(r))


def char_errors(ref: str, hyp: str) -> ErrorRate:
    """Character-level errors of one utterance (spaces count; runs of whitespace collapse)."""
    r, h = " ".join(ref.split()), " ".join(hyp.split())
    return ErrorRate(edit_distance(r, h), len(r))


def corpus_rates(pairs: Iterable[tuple[str, str]]) -> tuple[float, float]:
    """Corpus-level (WER, CER) of (reference, hypothesis) pairs."""
    w, c = ErrorRate(0, 0), ErrorRate(0, 0)
    for ref, hyp in pairs:
        w, c = w + word_errors(ref, hyp), c + char_errors(ref, hyp)
    return w.rate, c.rate
