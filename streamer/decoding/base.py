"""What every CTC decoder shares: the decoder protocol and the input normalization.

A decoder is shared between streams and keeps every per-stream value in a state object::

    state = decoder.new_state(time_offset=1.28)  # one per utterance; its first frame's stream time (s)
    decoder.advance(state, logits)               # (T, V) logits of the next frames, in place
    decoder.partial(state)                       # Partial: committed words + tentative tail
    decoder.finalize(state)                      # Final: text, word times, n-best
    decoder.decode(logits, time_offset=0.0)      # a whole utterance at once

`streamer.decoding.greedy.GreedyDecoder` (best path) and `streamer.decoding.beam.BeamSearchDecoder`
(prefix beam search with KenLM fusion) implement it. Word times are seconds from the stream start:
frame index x the frame step (`streamer.grid.XLSR_GRID`) + the state's ``time_offset``, which the caller (the utterance tracker,
`streamer.utterances`) decides when it opens the state; results are never shifted afterwards.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from streamer.results import Final, Partial, Word

MIN_TOKEN_PROB: float = 1e-15
#: log(MIN_TOKEN_PROB), computed the way pyctcdecode computes its clip bound.
LOGP_FLOOR: float = float(np.log(MIN_TOKEN_PROB))

class Decoder(Protocol):
    """The interface of streamer's CTC decoders (see the module docstring)."""

    def new_state(self, time_offset: float = 0.0) -> Any:
        """A fresh state for one utterance whose first frame is at ``time_offset`` seconds."""

    def advance(self, state: Any, logits: Any) -> Any:
        """Consumes (T, V) logits (T >= 0); updates ``state`` in place and returns it."""

    def partial(self, state: Any) -> Partial:
        """The interim result of the frames consumed so far."""

    def finalize(self, state: Any) -> Final:
        """The utterance's result (does not end the state's use for `partial`)."""

    def decode(self, logits: Any, time_offset: float = 0.0) -> Final:
        """``finalize(advance(new_state(time_offset), logits))``."""


def word_separator(vocab: Any) -> str:
    """What joins a result's words: a space, or nothing when words are characters
    (`Vocabulary.per_character`: Chinese, Japanese, Thai)."""
    return "" if vocab.per_character else " "


def make_partial(committed: Sequence[Word], tentative: Sequence[Word], now: float, sep: str = " ") -> Partial:
    """A `Partial` from committed and tentative words at stream time ``now`` (seconds), joined by ``sep``."""
    return Partial(committed=sep.join(w.text for w in committed), tentative=sep.join(w.text for w in tentative),
                   words=tuple(committed) + tuple(tentative), committed_words=len(committed), time=round(now, 6),
                   separator=sep)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, clipped to [LOGP_FLOOR, 0].

    The operations and their order follow pyctcdecode's (max-shift, exp, sum, log, clip), so the
    result is bit-identical to what ``decode_beams`` computes from the same float64 input, and a
    row's result does not depend on the other rows (chunking does not change it).

    Args:
        x: (T, V) float64 logits or log-probabilities.

    Returns:
        (T, V) float64 natural-log probabilities.
    """
    peak = np.max(x, axis=1, keepdims=True)
    peak[~np.isfinite(peak)] = 0.0
    shifted = x - peak
    with np.errstate(divide="ignore"):
        norm = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return np.clip(shifted - norm, LOGP_FLOOR, 0.0)


def as_log_probs(logits: Any, vocab_size: int, who: str) -> np.ndarray:
    """Validates a (T, V) chunk of logits or log-probs and returns float64 log-probs.

    Args:
        logits: (T, V) array-like or torch tensor of logits or log-probabilities (T may be 0).
        vocab_size: Expected V.
        who: Name used in error messages.

    Returns:
        (T, V) contiguous float64 log-probabilities.

    Raises:
        ValueError: Wrong rank or width, NaN or +inf values.
    """
    if hasattr(logits, "detach"):  # a torch tensor; torch itself is not imported here
        logits = logits.detach().cpu().double().numpy()
    x = np.ascontiguousarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != vocab_size:
        raise ValueError(f"{who}: expected logits of shape (T, {vocab_size}), found {tuple(x.shape)}")
    if x.size and (np.isnan(x).any() or np.isposinf(x).any()):
        raise ValueError(f"{who}: expected finite logits (or -inf), found NaN or +inf values")
    if x.shape[0] == 0:
        return x
    return log_softmax(x)
