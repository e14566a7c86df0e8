"""Greedy (best-path) CTC decoding with word timestamps: the one greedy decoder of streamer.

`GreedyDecoder` implements the decoder protocol of `streamer.decoding.base` (streamed, chunk by
chunk); `greedy_text` is the same decoder on a whole utterance, which training evaluation uses, so
that measured error rates are those of inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from streamer.grid import XLSR_GRID
from streamer.decoding.base import as_log_probs, make_partial, word_separator
from streamer.errors import ConfigError
from streamer.results import Final, Partial, Word
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
    """Groups token runs into words at the delimiter; times in seconds (+ ``time_offset``).

    For a per-character vocabulary (`Vocabulary.per_character`) every character is a word.
    """
    words: list[Word] = []
    per_character = vocab.per_character
    cur: list[TokenSpan] = []

    def flush() -> None:
        text = vocab.ids_to_text([s.token for s in cur]).strip()
        if text:
            start = cur[0].start_frame * XLSR_GRID.frame_seconds + time_offset
            end = (cur[-1].end_frame + 1) * XLSR_GRID.frame_seconds + time_offset
            conf = float(np.mean([s.prob for s in cur]))
            words.append(Word(text, round(start, 3), round(end, 3), round(conf, 4)))
        cur.clear()

    for s in spans:
        if s.token == vocab.delimiter_id or vocab.token_text(s.token) == " ":
            flush()
        elif vocab.token_text(s.token):
            if per_character:
                flush()
            cur.append(s)
    flush()
    return tuple(words)


class GreedyState:
    """Per-stream state of a `GreedyDecoder` (updated in place by ``advance``).

    Attributes:
        time_offset: Stream time of the first frame, in seconds.
        frames: Frames consumed so far.
        log_score: Sum over frames of the best token's log-probability (the best path's score).
    """

    __slots__ = ("_owner", "time_offset", "frames", "log_score", "_last", "_run", "_word", "_words",
                 "_blank_run")

    def __init__(self, owner: object, time_offset: float) -> None:
        self._owner = owner
        self.time_offset = float(time_offset)
        self.frames = 0
        self.log_score = 0.0
        self._last = -1          # token of the previous frame
        self._run: list | None = None  # open token run: [token, start, end, prob sum, frames]
        self._word: list = []    # closed token runs (TokenSpan) of the word in progress
        self._words: list[Word] = []  # committed words
        self._blank_run = 0      # blank frames since the last non-blank frame

    @property
    def committed_words(self) -> tuple[Word, ...]:
        """Words that can no longer change."""
        return tuple(self._words)


class GreedyDecoder:
    """Best-path CTC decoding, streamed: each chunk costs time proportional to its frames.

    Commit rule: a word is committed as soon as the best path emits the word delimiter after it
    (for a per-character vocabulary, as soon as its character's run ends),
    or after ``commit_blank_frames`` consecutive blank frames following it; such a blank run then
    also acts as a word break (a character after it starts a new word). Only the word in progress
    is tentative. With ``commit_blank_frames=None`` the text equals plain best-path decoding
    (`best_path`, and `greedy_text`) and only delimiters commit.

    Args:
        vocab: The model's output vocabulary.
        commit_blank_frames: Blank frames that end a word (25 = 0.5 s), or None.
    """

    def __init__(self, vocab: Vocabulary, commit_blank_frames: int | None = 25) -> None:
        if commit_blank_frames is not None and (isinstance(commit_blank_frames, bool)
                                                or not isinstance(commit_blank_frames, int)
                                                or commit_blank_frames < 1):
            raise ConfigError(f"greedy decoder.commit_blank_frames: expected an integer >= 1 or None, "
                              f"found {commit_blank_frames!r}")
        self.vocab = vocab
        self.commit_blank_frames = commit_blank_frames
        self._per_character = vocab.per_character
        self._sep = word_separator(vocab)
        self._delimiters = {i for i in range(len(vocab)) if vocab.token_text(i) == " "} | {vocab.delimiter_id}

    def new_state(self, time_offset: float = 0.0) -> GreedyState:
        """A fresh state for one utterance (``time_offset``: stream time of its first frame, s)."""
        return GreedyState(self, time_offset)

    def advance(self, state: GreedyState, logits: Any) -> GreedyState:
        """Consumes (T, V) logits or log-probs (T may be 0); updates ``state`` in place and returns it."""
        if not isinstance(state, GreedyState) or state._owner is not self:
            raise ValueError(f"GreedyDecoder.advance: expected a state made by this decoder's new_state(), "
                             f"found {type(state).__name__}")
        logp = as_log_probs(logits, len(self.vocab), "GreedyDecoder.advance")
        if logp.shape[0] == 0:
            return state
        ids = logp.argmax(axis=1)
        best = logp[np.arange(len(ids)), ids]
        probs = np.exp(best).tolist()
        blank = self.vocab.blank_id
        frame = state.frames
        for tok, p, lp in zip(ids.tolist(), probs, best.tolist()):
            state.log_score += lp  # frame by frame, so that chunking does not change the sum
            if tok == blank:
                self._close_run(state)
                state._blank_run += 1
                if state._blank_run == self.commit_blank_frames:
                    self._end_word(state)
            elif tok == state._last and state._run is not None:
                run = state._run
                run[2], run[3], run[4] = frame, run[3] + p, run[4] + 1
            else:
                self._close_run(state)
                if tok in self._delimiters:
                    self._end_word(state)
                state._run = [tok, frame, frame, p, 1]
                state._blank_run = 0
            state._last = tok
            frame += 1
        state.frames = frame
        return state

    def partial(self, state: GreedyState) -> Partial:
        """Committed words and the word in progress (tentative)."""
        tentative = self._pending_words(state)
        committed = state._words
        return make_partial(committed, tentative, state.time_offset + state.frames * XLSR_GRID.frame_seconds, self._sep)

    def finalize(self, state: GreedyState) -> Final:
        """The utterance's best path as a `Final` (nbest holds it with its log-score)."""
        words = tuple(state._words) + tuple(self._pending_words(state))
        text = self._sep.join(w.text for w in words)
        return Final(text=text, words=words, start=round(state.time_offset, 6),
                     end=round(state.time_offset + state.frames * XLSR_GRID.frame_seconds, 6),
                     nbest=((text, state.log_score),))

    def decode(self, logits: Any, time_offset: float = 0.0) -> Final:
        """Decodes a whole utterance."""
        return self.finalize(self.advance(self.new_state(time_offset), logits))

    # token runs -> words
    def _close_run(self, state: GreedyState) -> None:
        run = state._run
        if run is not None:
            state._run = None
            if run[0] not in self._delimiters:
                state._word.append(_span(run))
                if self._per_character:  # words are characters: a closed run is a complete word
                    self._end_word(state)

    def _end_word(self, state: GreedyState) -> None:
        if state._word:
            state._words.extend(spans_to_words(state._word, self.vocab, state.time_offset))
            state._word = []

    def _pending_words(self, state: GreedyState) -> tuple[Word, ...]:
        spans = list(state._word)
        if state._run is not None and state._run[0] not in self._delimiters:
            spans.append(_span(state._run))
        return spans_to_words(spans, self.vocab, state.time_offset) if spans else ()


def _span(run: Sequence) -> TokenSpan:
    """A closed token run as a TokenSpan (token, first and last frame, mean probability)."""
    return TokenSpan(int(run[0]), int(run[1]), int(run[2]), float(run[3] / run[4]))


def greedy_text(logits: Tensor | np.ndarray, vocab: Vocabulary) -> str:
    """Best-path text of one utterance's (T, V) logits: `GreedyDecoder` without the blank-run word break."""
    return GreedyDecoder(vocab, commit_blank_frames=None).decode(logits).text
