"""Greedy (best-path) CTC decoding with word timestamps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamer.constants import FRAME_SECONDS
from streamer.results import Word
from streamer.vocab import Vocabulary


@dataclass(frozen=True)
class TokenSpan:
    """One emitted token of a best path: its id and the frames of its run (inclusive)."""

    token: int
    start_frame: int
    end_frame: int
    prob: float
    """Mean probability of the token over its frames."""


def best_path(logits: Tensor | np.ndarray, blank_id: int, frame_offset: int = 0) -> list[TokenSpan]:
    """Collapses the best path of CTC logits into token runs.

    Args:
        logits: (T, V) logits or log-probabilities of one utterance.
        blank_id: Index of the blank.
        frame_offset: Added to every frame index (the position of ``logits[0]`` in the stream).

    Returns:
        Token runs in order (blanks removed, repeats merged).
    """
    x = torch.as_tensor(logits, dtype=torch.float32)
    if x.dim() != 2:
        raise ValueError(f"best_path: expected logits of shape (T, V), found {tuple(x.shape)}")
    if x.shape[0] == 0:
        return []
    probs = x.softmax(-1)
    p, ids = probs.max(-1)
    ids_l, p_l = ids.tolist(), p.tolist()
    spans: list[TokenSpan] = []
    t, n = 0, len(ids_l)
    while t < n:
        tok = ids_l[t]
        end = t
        while end + 1 < n and ids_l[end + 1] == tok:
            end += 1
        if tok != blank_id:
            spans.append(TokenSpan(tok, t + frame_offset, end + frame_offset,
                                   float(sum(p_l[t:end + 1]) / (end - t + 1))))
        t = end + 1
    return spans


def spans_to_words(spans: list[TokenSpan], vocab: Vocabulary, time_offset: float = 0.0) -> tuple[Word, ...]:
    """Groups token runs into words at the delimiter; times in seconds (+ ``time_offset``)."""
    words: list[Word] = []
    cur: list[TokenSpan] = []

    def flush() -> None:
        text = vocab.ids_to_text([s.token for s in cur]).strip()
        if text:
            start = cur[0].start_frame * FRAME_SECONDS + time_offset
            end = (cur[-1].end_frame + 1) * FRAME_SECONDS + time_offset
            conf = float(np.mean([s.prob for s in cur]))
            words.append(Word(text, round(start, 3), round(end, 3), round(conf, 4)))
        cur.clear()

    for s in spans:
        if s.token == vocab.delimiter_id or vocab.token_text(s.token) == " ":
            flush()
        elif vocab.token_text(s.token):
            cur.append(s)
    flush()
    return tuple(words)


def greedy_text(logits: Tensor | np.ndarray, vocab: Vocabulary) -> str:
    """Best-path text of (T, V) logits."""
    return vocab.ids_to_text([s.token for s in best_path(logits, vocab.blank_id)])
