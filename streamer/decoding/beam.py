"""An incremental CTC prefix beam search with optional KenLM fusion and hotwords.

It implements the decoder protocol of `streamer.decoding.base` (the greedy decoder is
`streamer.decoding.greedy.GreedyDecoder`); language-model files load through
`streamer.decoding.lm_bundle.LmBundle`::

    decoder = BeamSearchDecoder(english_characters(), DecoderConfig(), LmBundle.for_file("lm.binary"))
    state = decoder.new_state()                  # one per utterance / stream
    for chunk in chunks:                         # (T_i, V) logits or log-probs, any T_i >= 0
        decoder.advance(state, chunk)            # updates `state` in place and returns it
        print(decoder.partial(state).text)       # committed words + tentative tail
    final = decoder.finalize(state)              # Final: text, word times, n-best

How the beam search is incremental
----------------------------------
pyctcdecode's ``BeamSearchDecoderCTC.decode_beams`` is a frame-synchronous prefix beam search, so
every frame's step depends only on the surviving beams; the one thing that makes it non-streaming is
how a beam is stored. A beam holds its whole text as a string and its word frames as a list, and its
LM scores are cached under the whole text, so each frame costs time proportional to the text so far
(string concatenation, hashing, ``text.split()`` for history pruning, a hotword regex over the text).

This module runs the same search with the text held as a node of a per-stream word tree
(`_Node`: one word, a link to the prefix, the KenLM state and the cumulative LM and hotword scores
of that prefix). Nodes are interned (a child per distinct next word), so two beams have the same
text exactly when they hold the same node, and every per-frame operation is O(1) in the utterance
length. The scoring itself is pyctcdecode's: its ``LanguageModel`` (KenLM word scores, alpha, beta,
unknown-word offset, partial-word penalty from the unigram trie, end-of-sentence score) and its
``HotwordScorer`` (partial-word hotword bonus). Per frame the step is, in pyctcdecode's order:

1. candidate tokens: those with log-prob >= ``token_min_logp`` plus the frame's best token;
2. extend every beam with every candidate (blank / repeat / word delimiter / new character);
3. merge extensions with equal (text, partial word, last token) by log-sum-exp of their acoustic
   scores (the merged beam takes the first one's place in the order and the last one's frames);
4. score = acoustic + LM and hotword score of the text + partial-word score;
5. drop beams below best + ``beam_prune_logp``, keep the ``beam_width`` best (stable on ties);
6. optionally keep one beam per (last LM-order-1 words, partial word, last token).

Because the arithmetic is the same, in the same order, the result equals ``decode_beams`` on the
whole utterance (text, word frames and scores), for any split of the logits into chunks; the tests
check this with random logits and chunkings, with and without a KenLM model and hotwords.
``finalize`` (and ``partial``, to show its tentative tail) performs pyctcdecode's end-of-utterance
step: the partial last word becomes a word and every beam gets its end-of-sentence LM score.

Committed text
--------------
After each ``advance`` the longest word prefix shared by all surviving beams is committed: every
later beam extends a surviving beam, so those words can no longer change. Committed words take
their times from the best beam at the moment they were committed (the final result re-derives the
times from its own beam, which may differ by a few frames; the words themselves never change).

A beam that differs from the best one only in an early word can survive at a constant score
offset for the whole utterance; then nothing gets committed and the commit bookkeeping, which is
O(beams x uncommitted words) per chunk, grows with the utterance. ``commit_lag_seconds`` (default
2 s) bounds this: every 0.5 s of frames (at fixed frame indices, so chunking does not matter) the
best beam's words that ended at least that long ago are imposed and disagreeing beams dropped.
This is the one departure from pyctcdecode's search; ``commit_lag_seconds=None`` removes it.

pyctcdecode behaviour kept for parity: at the end of an utterance a beam whose last token was the
word delimiter gets an extra empty word scored by the LM (an unknown word, about
``alpha x unk_score_offset`` nats). Models trained on labels without a trailing delimiter (the
usual case) rarely end on one.

Scripts written without spaces
------------------------------
For a vocabulary whose words are characters (`Vocabulary.per_character`: Chinese, Japanese, Thai;
the rule `streamer.text.normalize_text` follows too) there is no word to wait for. Every emitted
character is at once a word of the text: it gets its node, and a character n-gram LM (built by
`streamer.decoding.build_lm` over space-separated characters; `LmBundle.unit` ``"character"``)
scores it on that frame, ``alpha x (ln P(char | previous characters) + unk offset if unseen) +
beta``. There are no partial words, so no partial-word score; at the end of the utterance each beam
gets ``alpha x ln P(</s> | its last characters)``. With ``alpha = beta = 0`` the LM therefore adds
exactly nothing and the search is the LM-free one. A delimiter token (Hugging Face vocabularies for
these scripts often keep a ``|``) writes nothing. A hotword is a character sequence: the text
gets ``hotword_weight`` for every place it ends with a whole hotword, and, while it ends with the
first k characters of a hotword of n characters, ``hotword_weight x k / n`` (pyctcdecode's partial
bonus). Results join their words (characters, with times) without spaces. Committing, forced
commits, partials and finals are the same as for words.

Input: logits or log-probabilities of shape (T, V), V = len(vocab); both are normalized with a
log-softmax in float64 and clipped to [log 1e-15, 0], as pyctcdecode does for logits. (Plain
probabilities are not accepted: pass their logarithm.)
"""

from __future__ import annotations

import functools
import heapq
import math
import re
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any, Callable, Iterable

import numpy as np

from streamer.grid import XLSR_GRID
from streamer.decoding.base import (  # noqa: F401  (LOGP_FLOOR, MIN_TOKEN_PROB, log_softmax: re-exported)
    LOGP_FLOOR, MIN_TOKEN_PROB, as_log_probs, log_softmax, make_partial, word_separator)
from streamer.decoding.lm_bundle import LmBundle
from streamer.errors import ConfigError, MissingDependencyError
from streamer.results import Final, Partial, Word
from streamer.text import decoder_words, normalize_text
from streamer.vocab import Vocabulary

_PLACEHOLDER = re.compile("\u2047\\d+")  # Vocabulary.labels() renders non-blank specials as '⁇N'
_NO_FRAMES = (-1, -1)
#: Period of the forced-commit check (DecoderConfig.commit_lag_seconds), in frames (0.5 s). It runs
#: at fixed absolute frame indices, so where the logits are cut into chunks does not matter.
COMMIT_CHECK_FRAMES: int = 25
_score_of = itemgetter(0)
#: ln 10: KenLM scores are log10 (pyctcdecode's LOG_BASE_CHANGE_FACTOR).
_LN10: float = math.log(10.0)


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)), computed as pyctcdecode does (so merged scores agree bit for bit)."""
    if a >= b:
        return a + math.log(1 + math.exp(b - a))
    return b + math.log(1 + math.exp(a - b))


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


#: LM weight used when neither the config nor the LM bundle gives one (pyctcdecode's default).
DEFAULT_ALPHA: float = 0.5
#: Word insertion bonus used when neither the config nor the LM bundle gives one (pyctcdecode's default).
DEFAULT_BETA: float = 1.5


#: Ranges of `DecoderConfig`'s numbers (the command line's --beam, --alpha, --beta and --hotword-weight
#: share them). The beam search's time and memory grow with the beam: 1024 is far past any gain.
DECODER_RANGES: dict[str, tuple[float, float]] = {
    "beam_width": (1, 1024), "nbest": (1, 1024), "alpha": (0.0, 100.0), "beta": (-100.0, 100.0),
    "beam_prune_logp": (-1000.0, 0.0), "token_min_logp": (-1000.0, 0.0), "hotword_weight": (-100.0, 100.0),
    "unk_score_offset": (-1000.0, 0.0), "commit_lag_seconds": (0.0, 600.0),
}
#: Most hotwords, and longest hotword in characters.
MAX_HOTWORDS, MAX_HOTWORD_CHARS = 1000, 200


@dataclass(frozen=True)
class DecoderConfig:
    """Beam-search settings (pyctcdecode's meaning and defaults, except ``beam_width``).

    Every number has a range (`DECODER_RANGES`), checked on creation.

    Attributes:
        beam_width: Beams kept after each frame (1 to 1024).
        alpha: Weight of the LM log-probability (shallow fusion). Used only with an LM. None: the
            LM bundle's tuned value (``lm/attrs.json``, see `streamer.decoding.lm_bundle`), else
            `DEFAULT_ALPHA`.
        beta: Bonus added per word scored by the LM (word insertion bonus). Used only with an LM.
            None: the tuned value, else `DEFAULT_BETA`.
        beam_prune_logp: Beams scoring more than this many nats below the best are dropped (<= 0).
        token_min_logp: Tokens below this log-prob are not tried at a frame, except the frame's
            best token (<= 0).
        prune_history: Keep a single beam per (last LM-order-1 words, partial word, last token):
            faster and commits sooner, but a less diverse n-best.
        hotwords: Words or phrases to boost (each word of a phrase is boosted on its own; for a
            per-character vocabulary each space-free part is a character sequence); stored
            lower-cased with single spaces.
        hotword_weight: Bonus per hotword in the text, in nats (and a proportional bonus for a
            partial word that starts a hotword).
        nbest: Alternatives returned in ``Final.nbest`` (at most ``beam_width`` exist).
        unk_score_offset: Log-score added to words missing from the unigrams, and to partial words
            that start no known word.
        lm_score_boundary: Score the first word after ``<s>`` and the last before ``</s>``.
        commit_lag_seconds: Bound on how long a word may stay tentative. Every
            ``COMMIT_CHECK_FRAMES`` frames, the words of the best beam that ended at least this long
            ago are committed and the beams that disagree with them are dropped. Without it a beam
            that differs only in an early word can survive at a constant score offset for the whole
            utterance, so nothing is committed and the bookkeeping grows with the utterance. None:
            commit only what all beams share, which is exactly pyctcdecode's search.
    """

    beam_width: int = 32
    alpha: float | None = None
    beta: float | None = None
    beam_prune_logp: float = -10.0
    token_min_logp: float = -5.0
    prune_history: bool = False
    hotwords: tuple[str, ...] = ()
    hotword_weight: float = 10.0
    nbest: int = 5
    unk_score_offset: float = -10.0
    lm_score_boundary: bool = True
    commit_lag_seconds: float | None = 2.0

    def __post_init__(self) -> None:
        def need_int(name: str) -> None:
            value, (low, high) = getattr(self, name), DECODER_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ConfigError(f"decoder.{name}: expected an integer from {low} to {high}, found {value!r}")
            object.__setattr__(self, name, int(value))

        def need_float(name: str) -> None:
            value, (low, high) = getattr(self, name), DECODER_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or not low <= value <= high:
                raise ConfigError(f"decoder.{name}: expected a number from {low:g} to {high:g}, found {value!r}")
            object.__setattr__(self, name, float(value))

        need_int("beam_width")
        need_int("nbest")
        for name in ("alpha", "beta", "commit_lag_seconds"):
            if getattr(self, name) is not None:
                need_float(name)
        for name in ("beam_prune_logp", "token_min_logp", "hotword_weight", "unk_score_offset"):
            need_float(name)
        for name in ("prune_history", "lm_score_boundary"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"decoder.{name}: expected True or False, found {getattr(self, name)!r}")
        hotwords = self.hotwords
        if isinstance(hotwords, str) or not isinstance(hotwords, Iterable):
            raise ConfigError(f"decoder.hotwords: expected a sequence of strings, found {hotwords!r}")
        hotwords = tuple(hotwords)
        bad = [h for h in hotwords if not isinstance(h, str) or not h.strip() or len(h) > MAX_HOTWORD_CHARS]
        if bad:
            raise ConfigError(f"decoder.hotwords: expected non-empty strings of at most {MAX_HOTWORD_CHARS} "
                              f"characters, found {[str(b)[:40] for b in bad[:3]]!r}")
        if len(hotwords) > MAX_HOTWORDS:
            raise ConfigError(f"decoder.hotwords: expected at most {MAX_HOTWORDS}, found {len(hotwords)}")
        # Lower case, like the decoder's labels (Vocabulary.labels()), so that 'Paris' can match.
        object.__setattr__(self, "hotwords", tuple(" ".join(h.lower().split()) for h in hotwords))


# ----------------------------------------------------------------------------------------------
# Beam search
# ----------------------------------------------------------------------------------------------


class _Node:
    """One word sequence (a beam's text): the last word, its prefix and the prefix's scores.

    Attributes:
        word: The last word ('' for the root, the empty text).
        parent: The node of the text without its last word (None for the root).
        depth: Number of words.
        children: Interned extensions, next word -> node (None until the first one).
        tail: The last max(1, LM order - 1) words (the history pyctcdecode's pruning compares).
        hot_count: Number of the text's words that are hotwords.
        hot_score: hotword_weight x hot_count (pyctcdecode's hotword score of the whole text).
        raw_lm: Cumulative LM score of the text (alpha, beta and unk offset applied, no hotwords).
        lm_state: KenLM state after the text (None without an LM).
        hot_prefix: Per-character mode: the longest end of the text that starts a hotword ('' if none).
        text_score: raw_lm + hot_score (+ the partial bonus of ``hot_prefix`` in per-character
            mode): the text's LM and hotword score during the search.
    """

    __slots__ = ("word", "parent", "depth", "children", "tail", "hot_count", "hot_score", "raw_lm",
                 "lm_state", "hot_prefix", "text_score")

    def __init__(self, word: str, parent: "_Node | None", tail: tuple[str, ...], hot_count: int,
                 hotword_weight: float, raw_lm: float, lm_state: Any, hot_prefix: str = "",
                 prefix_bonus: float = 0.0) -> None:
        self.word = word
        self.parent = parent
        self.depth = 0 if parent is None else parent.depth + 1
        self.children: dict[str, _Node] | None = None
        self.tail = tail
        self.hot_count = hot_count
        self.hot_score = hotword_weight * hot_count
        self.raw_lm = raw_lm
        self.lm_state = lm_state
        self.hot_prefix = hot_prefix
        self.text_score = raw_lm + self.hot_score
        if prefix_bonus:
            self.text_score += prefix_bonus


# A beam between frames: (node, partial word, last token label, word frames, partial-word frames,
# acoustic log-score). Word frames are a linked list ((start, end), previous) aligned with the
# node's words, newest first; frames are [start, end) indices from the start of the state.
_Beam = tuple


class DecoderState:
    """Per-stream (per-utterance) state of a `BeamSearchDecoder`.

    Create it with ``decoder.new_state()``; ``decoder.advance`` updates it in place. A state belongs
    to the decoder that created it and to one stream.

    Attributes:
        time_offset: Stream time of the state's first frame, in seconds (added to word times).
        frames: Frames consumed so far.
        last_work: Elementary steps of the last ``advance`` call (beam extensions + beams scored +
            word nodes created + tree steps of the commit bookkeeping): a cost counter for tests
            and benchmarks that does not depend on the machine.
        total_work: Sum of ``last_work`` over all calls.
    """

    __slots__ = ("_owner", "time_offset", "frames", "last_work", "total_work", "_root", "_beams",
                 "_committed", "_committed_words")

    def __init__(self, owner: object, root: _Node, time_offset: float) -> None:
        self._owner = owner
        self.time_offset = float(time_offset)
        self.frames = 0
        self.last_work = 0
        self.total_work = 0
        self._root = root
        self._beams: list[_Beam] = [(root, "", None, None, _NO_FRAMES, 0.0)]
        self._committed = root
        self._committed_words: list[Word] = []

    @property
    def committed_words(self) -> tuple[Word, ...]:
        """Words that can no longer change, with times in seconds."""
        return tuple(self._committed_words)

    @property
    def num_beams(self) -> int:
        """Beams alive after the last frame."""
        return len(self._beams)

    @property
    def uncommitted_depth(self) -> int:
        """Most words any beam holds beyond the committed prefix."""
        base = self._committed.depth
        return max(b[0].depth for b in self._beams) - base


@dataclass(frozen=True)
class _Hypothesis:
    """One end-of-utterance hypothesis: total and acoustic scores, text node and word frames."""

    score: float
    logit_score: float
    node: _Node
    frames: Any


class BeamSearchDecoder:
    """Incremental CTC prefix beam search with optional KenLM shallow fusion and hotwords.

    Shared between streams: it holds the vocabulary, the settings, the loaded LM and a bounded LRU
    cache of partial-word scores (a pure function of the partial word); every per-stream value
    lives in the `DecoderState`.

    Example:
        >>> from streamer.vocab import english_characters
        >>> decoder = BeamSearchDecoder(english_characters(), DecoderConfig(beam_width=8))
        >>> state = decoder.new_state()
        >>> logits = np.zeros((10, 30)); logits[:, 0] = 5.0  # blanks only
        >>> decoder.advance(state, logits[:6]) is state
        True
        >>> decoder.finalize(decoder.advance(state, logits[6:])).text
        ''

    Args:
        vocab: The model's output vocabulary (a character vocabulary; BPE is not supported).
        config: Search settings (default: `DecoderConfig()`).
        lm: The language model (`streamer.decoding.lm_bundle.LmBundle`), or None for none. Its
            tuned alpha / beta apply where ``config`` leaves them None.

    Raises:
        ConfigError: The vocabulary looks like BPE, the LM's files cannot be read, or the LM's
            recorded unit (`LmBundle.unit`) does not fit the vocabulary.
        MissingDependencyError: pyctcdecode (or kenlm, with an LM) is not installed.
    """

    _PARTIAL_CACHE_SIZE = 1 << 16

    def __init__(self, vocab: Vocabulary, config: DecoderConfig | None = None, lm: LmBundle | None = None) -> None:
        self.vocab = vocab
        config = config if config is not None else DecoderConfig()
        if lm is not None:  # the bundle's tuned weights where the settings leave them open
            config = replace(config, alpha=config.alpha if config.alpha is not None else lm.alpha,
                             beta=config.beta if config.beta is not None else lm.beta)
        self.config = config
        self.lm = lm
        labels = vocab.labels()
        if any(lab.startswith("##") or lab.startswith("\u2581") for lab in labels):
            raise ConfigError("beam decoder: expected a character vocabulary, found BPE-style tokens "
                              f"({[lab for lab in labels if lab.startswith(('##', chr(0x2581)))][:5]})")
        if "" not in labels or (" " not in labels and not vocab.per_character):
            raise ConfigError(f"beam decoder: expected a blank ('') and a delimiter (' ') among the labels, "
                              f"found {labels[:40]}")
        self._labels = labels
        # Scripts written without spaces: every character is a word (of the LM, of the result).
        self._per_character = vocab.per_character
        self._sep = word_separator(vocab)
        self._has_placeholders = any(_PLACEHOLDER.fullmatch(lab) for lab in labels)
        try:
            from pyctcdecode.language_model import HotwordScorer
        except ImportError as err:
            # Not in the "lm" extra: pyctcdecode 0.5.0 declares numpy<2, so tools/install.sh adds it
            # with --no-deps.
            raise MissingDependencyError(
                "Beam-search decoding needs the Python module 'pyctcdecode', which is not installed. Install it "
                "with: pip install 'streamer[lm]' && pip install --no-deps pyctcdecode==0.5.0  (see tools/install.sh)"
            ) from err
        cfg = self.config
        alpha = DEFAULT_ALPHA if cfg.alpha is None else cfg.alpha
        beta = DEFAULT_BETA if cfg.beta is None else cfg.beta
        if lm is not None:
            lm.check_unit(vocab)
        self._char_hotwords: _CharacterHotwords | None = None
        if self._per_character:
            # Each space-free part of a hotword is a character sequence, normalized like the labels.
            self._char_hotwords = _CharacterHotwords(
                [w for h in cfg.hotwords for w in (normalize_text(part, vocab) for part in h.split()) if w])
            hotwords: list[str] = []
            self._lm = None if lm is None else _CharacterLM(
                lm.kenlm_model(), lm.words(), alpha, beta, cfg.unk_score_offset, cfg.lm_score_boundary)
        else:
            # Hotwords are normalized for the vocabulary like labels and LM text ('Ёлка' -> 'елка' without ё).
            hotwords = [w for w in (decoder_words(h, vocab) for h in cfg.hotwords) if w]
            self._lm = None if lm is None else lm.language_model(alpha, beta, cfg.unk_score_offset,
                                                                 cfg.lm_score_boundary)
        self._hotwords = HotwordScorer.build_scorer(hotwords, weight=cfg.hotword_weight)
        self._hot_words = frozenset(w for phrase in hotwords for w in phrase.split())
        self._history = max(1, self._lm.order - 1) if self._lm is not None else 1
        self._partial_score = _partial_word_scorer(self._lm, self._hotwords, self._PARTIAL_CACHE_SIZE)

    @property
    def lm_order(self) -> int:
        """Order of the loaded n-gram LM, or 0 without an LM."""
        return 0 if self._lm is None else int(self._lm.order)

    # -- public API ------------------------------------------------------------------------------

    def new_state(self, time_offset: float = 0.0) -> DecoderState:
        """A fresh state for one utterance.

        Args:
            time_offset: Stream time of the first frame, in seconds.
        """
        lm_state = self._lm.get_start_state() if self._lm is not None else None
        root = _Node("", None, (), 0, self.config.hotword_weight, 0.0, lm_state)
        return DecoderState(self, root, time_offset)

    def advance(self, state: DecoderState, logits: Any) -> DecoderState:
        """Consumes one chunk of frames; the cost is proportional to the chunk, not to the utterance.

        Args:
            state: The stream's state (updated in place).
            logits: (T, V) logits or log-probs of the next T frames (T may be 0).

        Returns:
            ``state`` itself, for chaining.

        Raises:
            ValueError: Wrong shape or values, or a state from another decoder.
        """
        self._check_state(state, "advance")
        logp = as_log_probs(logits, len(self._labels), "BeamSearchDecoder.advance")
        if logp.shape[0] == 0:
            state.last_work = 0
            return state
        work = self._search(state, logp)
        work += self._commit(state)
        state.last_work = work
        state.total_work += work
        return state

    def partial(self, state: DecoderState) -> Partial:
        """The interim result: committed words, and the tentative rest of the best hypothesis.

        The tentative tail is the hypothesis that would win if the utterance ended now (the same
        end-of-utterance scoring as `finalize`), so ``partial(s).text == finalize(s).text``.
        """
        self._check_state(state, "partial")
        best = self._end_hypotheses(state)[0]
        committed = state._committed_words
        tentative = self._words_between(best.node, best.frames, state._committed, state.time_offset)
        return make_partial(committed, tentative, state.time_offset + state.frames * XLSR_GRID.frame_seconds, self._sep)

    def finalize(self, state: DecoderState) -> Final:
        """End-of-utterance result: scores the last partial word and the sentence end, ranks beams.

        Does not modify the state's beams. Word times are seconds from the stream start
        (frame index x the grid's frame seconds + ``state.time_offset``).

        Returns:
            The best text, its words, the utterance span and up to ``config.nbest`` alternatives
            ``(text, score)`` sorted by decreasing score (score = acoustic + LM + hotword log-score).
        """
        self._check_state(state, "finalize")
        hyps = self._end_hypotheses(state)
        best = hyps[0]
        words = self._words_between(best.node, best.frames, None, state.time_offset)
        sep = self._sep
        nbest = tuple(
            (sep.join(w for w in (self._render(x) for x in _node_words(h.node)) if w), float(h.score))
            for h in hyps[: self.config.nbest]
        )
        return Final(
            text=sep.join(w.text for w in words),
            words=tuple(words),
            start=round(state.time_offset, 6),
            end=round(state.time_offset + state.frames * XLSR_GRID.frame_seconds, 6),
            nbest=nbest,
        )

    def decode(self, logits: Any, time_offset: float = 0.0) -> Final:
        """Decodes a whole utterance: ``finalize(advance(new_state(), logits))``.

        Args:
            logits: (T, V) logits or log-probs.
            time_offset: Stream time of the first frame, in seconds.
        """
        return self.finalize(self.advance(self.new_state(time_offset), logits))

    # -- the search ------------------------------------------------------------------------------

    def _check_state(self, state: DecoderState, who: str) -> None:
        if not isinstance(state, DecoderState) or state._owner is not self:
            raise ValueError(f"BeamSearchDecoder.{who}: expected a state made by this decoder's new_state(), "
                             f"found {type(state).__name__}")

    def _child(self, node: _Node, word: str) -> tuple[_Node, int]:
        """The interned node for ``node``'s text + ``word`` (created and scored on first use).

        Returns:
            The node and the work done (0 if it existed, 1 if it was created).
        """
        kids = node.children
        if kids is None:
            kids = node.children = {}
        child = kids.get(word)
        if child is not None:
            return child, 0
        tail = (node.tail + (word,))[-self._history:]
        weight = self.config.hotword_weight
        if self._per_character:
            hot = self._char_hotwords
            prefix, ended = hot.advance(node.hot_prefix, word)
            raw_lm, lm_state = 0.0, None
            if self._lm is not None:
                score, lm_state = self._lm.score(node.lm_state, word)
                raw_lm = node.raw_lm + score
            child = _Node(word, node, tail, node.hot_count + ended, weight, raw_lm, lm_state, prefix,
                          weight * hot.partial_share(prefix))
        else:
            hot_count = node.hot_count + (word in self._hot_words)
            if self._lm is not None:
                score, lm_state = self._lm.score(node.lm_state, word, is_last_word=False)
                child = _Node(word, node, tail, hot_count, weight, node.raw_lm + score, lm_state)
            else:
                child = _Node(word, node, tail, hot_count, weight, 0.0, None)
        kids[word] = child
        return child, 1

    def _search(self, state: DecoderState, logp: np.ndarray) -> int:
        """Runs the frame-synchronous beam search over (T, V) log-probs; returns the work done."""
        cfg = self.config
        labels = self._labels
        child = self._child
        partial_score = self._partial_score
        with_lm = self._lm is not None
        per_character = self._per_character
        prune_logp, width = cfg.beam_prune_logp, cfg.beam_width
        lag = None if cfg.commit_lag_seconds is None else round(cfg.commit_lag_seconds / XLSR_GRID.frame_seconds)
        candidates = logp >= cfg.token_min_logp
        best_ids = logp.argmax(axis=1).tolist()
        rows = logp.tolist()
        beams = state._beams
        frame = state.frames
        work = 0
        for i, col in enumerate(rows):
            # Same set construction as pyctcdecode, so the iteration order (hence merge order) matches.
            token_ids = set(np.flatnonzero(candidates[i]).tolist()) | {best_ids[i]}
            merged: dict[tuple, _Beam] = {}
            end = frame + 1
            for idx in token_ids:
                p = col[idx]
                ch = labels[idx]
                work += len(beams)
                for node, part, last, frames, pframes, score in beams:
                    if per_character and ch and ch != " ":  # words are characters: no partial word
                        if last == ch:  # the same character again: its word lasts one frame longer
                            beam = (node, "", ch, ((frames[0][0], end), frames[1]), _NO_FRAMES, score + p)
                        else:  # a new character is a word at once, scored by the LM now
                            node, created = child(node, ch)
                            work += created
                            beam = (node, "", ch, ((frame, end), frames), _NO_FRAMES, score + p)
                    elif ch == "" or last == ch:  # blank, or the same token again: no new character
                        beam = (node, part, ch, frames, pframes if ch == "" else (pframes[0], end), score + p)
                    elif ch == " ":  # word delimiter: the partial word becomes a word
                        if part:
                            node, created = child(node, part)
                            work += created
                            beam = (node, "", " ", (pframes, frames), _NO_FRAMES, score + p)
                        else:
                            beam = (node, "", " ", frames, _NO_FRAMES, score + p)
                    else:  # a new character of the partial word
                        start = frame if pframes[0] < 0 else pframes[0]
                        beam = (node, part + ch, ch, frames, (start, end), score + p)
                    key = (beam[0], beam[1], beam[2])
                    old = merged.get(key)
                    if old is None:
                        merged[key] = beam
                    else:  # pyctcdecode keeps the first one's place and the last one's frames
                        merged[key] = beam[:5] + (_log_add(old[5], beam[5]),)
            scored = []
            if per_character:  # no partial words: the text's score is all there is
                for beam in merged.values():
                    scored.append((beam[5] + beam[0].text_score, beam))
            elif with_lm:
                for beam in merged.values():
                    text_score = beam[0].text_score
                    if beam[1]:
                        text_score = text_score + partial_score(beam[1])
                    scored.append((beam[5] + text_score, beam))
            else:
                for beam in merged.values():
                    scored.append(((beam[5] + beam[0].hot_score) + partial_score(beam[1]), beam))
            work += len(scored)
            floor = max(s for s, _ in scored) + prune_logp
            kept = heapq.nlargest(width, [x for x in scored if x[0] >= floor], key=_score_of)
            if cfg.prune_history:
                seen: set[tuple] = set()
                beams = []
                for _, beam in kept:
                    key = (beam[0].tail, beam[1], beam[2])
                    if key not in seen:
                        seen.add(key)
                        beams.append(beam)
            else:
                beams = [beam for _, beam in kept]
            if lag is not None and end % COMMIT_CHECK_FRAMES == 0:
                beams, steps = _keep_agreeing(beams, end - lag, state._committed)
                work += steps
            frame = end
        state._beams = beams
        state.frames = frame
        return work

    def _commit(self, state: DecoderState) -> int:
        """Commits the words all beams share and forgets tree branches no beam can reach."""
        beams = state._beams
        work = 0
        common = beams[0][0]
        for beam in beams[1:]:
            node = beam[0]
            while node.depth > common.depth:
                node = node.parent
                work += 1
            while common.depth > node.depth:
                common = common.parent
                work += 1
            while node is not common:
                node, common = node.parent, common.parent
                work += 2
        old = state._committed
        if common is not old:
            # The best beam's frames for the newly committed words.
            words = _pairs_between(beams[0][0], beams[0][3], old)
            words = words[: common.depth - old.depth]
            for word, (start, end) in words:
                text = self._render(word)
                if text:
                    state._committed_words.append(_word(text, start, end, state.time_offset))
            work += beams[0][0].depth - old.depth
            node = common.parent
            while node is not None and node.depth >= old.depth:  # branches above: unreachable now
                node.children = None
                node = node.parent
                work += 1
            state._committed = common
        # Keep only the interned nodes that some beam's text passes through.
        keep: dict[int, dict[str, _Node]] = {}
        live: dict[int, _Node] = {id(common): common}
        for beam in beams:
            node = beam[0]
            while node is not common and id(node) not in live:
                live[id(node)] = node
                keep.setdefault(id(node.parent), {})[node.word] = node
                node = node.parent
                work += 1
        for key, node in live.items():
            node.children = keep.get(key)
        return work

    def _end_hypotheses(self, state: DecoderState) -> list[_Hypothesis]:
        """pyctcdecode's end-of-utterance step on the current beams, best first (at most beam_width)."""
        groups: dict[_Node, list] = {}
        for node, part, _last, frames, pframes, score in state._beams:
            if part:
                full, _ = self._child(node, part)
                entry = [node, part, (pframes, frames), score]
            else:
                full = node
                entry = [node, "", frames, score]
            old = groups.get(full)
            if old is None:
                groups[full] = entry
            else:  # the first one's place, the last one's text split and frames (as pyctcdecode)
                groups[full] = entry[:3] + [_log_add(old[3], score)]
        hyps = []
        for full, (base, word, frames, score) in groups.items():
            if self._per_character:  # the sentence end after the last character; whole hotwords only
                end = 0.0 if self._lm is None else full.raw_lm + self._lm.end_score(full.lm_state)
                total = score + (end + full.hot_score)
            elif self._lm is not None:
                # pyctcdecode scores the pending word (possibly '') with the sentence end, from the
                # LM state of the text as split by the last beam merged into this group.
                lm_score, _ = self._lm.score(base.lm_state, word, is_last_word=True)
                total = score + ((base.raw_lm + lm_score) + full.hot_score)
            else:
                total = (score + full.hot_score) + self._partial_score("")
            hyps.append((total, _Hypothesis(total, score, full, frames)))
        floor = max(s for s, _ in hyps) + self.config.beam_prune_logp
        kept = heapq.nlargest(self.config.beam_width, [x for x in hyps if x[0] >= floor], key=_score_of)
        return [h for _, h in kept]

    # -- rendering -------------------------------------------------------------------------------

    def _render(self, word: str) -> str:
        """A search word as output text: special-token placeholders ('⁇N') removed."""
        return _PLACEHOLDER.sub("", word) if self._has_placeholders else word

    def _words_between(self, node: _Node, frames: Any, stop: _Node | None, time_offset: float) -> list[Word]:
        """Rendered words of ``node``'s text below ``stop`` (None: all), oldest first."""
        out = []
        for word, (start, end) in _pairs_between(node, frames, stop):
            text = self._render(word)
            if text:
                out.append(_word(text, start, end, time_offset))
        return out


class _CharacterLM:
    """A character n-gram KenLM model that scores one character at a time (per-character mode).

    The arithmetic is pyctcdecode's word score with a character for the word: ``alpha x (log10 P x
    ln 10 + unk offset for a character the LM has not seen) + beta``; the sentence end scores
    ``alpha x log10 P(</s>) x ln 10`` (no bonus, no unknown word), or 0 without boundary scoring.

    Args:
        model: The loaded ``kenlm.Model`` (over space-separated characters).
        chars: Its characters (the word list).
        alpha, beta: LM weight and per-character bonus.
        unk_score_offset: Log-score added for an unseen character.
        score_boundary: Start from ``<s>`` and score ``</s>`` at the end.
    """

    def __init__(self, model: Any, chars: Iterable[str], alpha: float, beta: float, unk_score_offset: float,
                 score_boundary: bool) -> None:
        import kenlm  # loaded already: `model` is a kenlm.Model

        self._model = model
        self._chars = frozenset(chars)
        self._new_state = kenlm.State
        self._alpha, self._beta, self._unk = alpha, beta, unk_score_offset
        self._boundary = score_boundary
        self.order = int(model.order)

    def get_start_state(self) -> Any:
        """The KenLM state before the first character."""
        state = self._new_state()
        if self._boundary:
            self._model.BeginSentenceWrite(state)
        else:
            self._model.NullContextWrite(state)
        return state

    def score(self, state: Any, char: str) -> tuple[float, Any]:
        """The weighted score of ``char`` after ``state``, and the state after it."""
        out = self._new_state()
        logp = self._model.BaseScore(state, char, out)
        if char not in self._chars or char not in self._model:
            logp += self._unk
        return self._alpha * logp * _LN10 + self._beta, out

    def end_score(self, state: Any) -> float:
        """The weighted score of the sentence end after ``state``."""
        if not self._boundary:
            return 0.0
        return self._alpha * self._model.BaseScore(state, "</s>", self._new_state()) * _LN10


class _CharacterHotwords:
    """Hotwords as character sequences (per-character mode), matched at the end of the text.

    A text is summarized by its hot prefix: the longest end of it that starts some hotword. The hot
    prefix after one more character, and the hotwords that end there, follow from the previous hot
    prefix alone, so a node computes its own from its parent's.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(words)
        # Every start of a hotword -> length of the shortest hotword it starts.
        self._shortest: dict[str, int] = {}
        for w in self.words:
            for k in range(1, len(w) + 1):
                self._shortest[w[:k]] = min(self._shortest.get(w[:k], len(w)), len(w))

    def advance(self, prefix: str, char: str) -> tuple[str, int]:
        """The hot prefix after ``char``, and how many hotwords the text now ends with."""
        if not self._shortest:
            return "", 0
        text = prefix + char
        ended = sum(text[k:] in self.words for k in range(len(text)))
        while text and text not in self._shortest:
            text = text[1:]
        return text, ended

    def partial_share(self, prefix: str) -> float:
        """k / n for a hot prefix of k characters that starts a hotword of n (the shortest such);
        0 for none, and for a whole hotword (already counted)."""
        if not prefix or prefix in self.words:
            return 0.0
        return len(prefix) / self._shortest[prefix]


def _partial_word_scorer(lm: Any, hotwords: Any, cache_size: int) -> Callable[[str], float]:
    """pyctcdecode's score of an unfinished word, memoized (LRU, so recurring words stay cached).

    With an LM: the hotword bonus if the partial word starts a hotword, else the LM's penalty for
    a partial word that starts no known word. Without an LM: the hotword bonus (0 if none).
    """

    @functools.lru_cache(maxsize=cache_size)
    def score(part: str) -> float:
        if lm is None or part in hotwords:
            return hotwords.score_partial_token(part)
        return lm.score_partial_token(part)

    return score


def _keep_agreeing(beams: list[_Beam], limit: int, committed: _Node) -> tuple[list[_Beam], int]:
    """Forced commit: keeps the beams whose text starts with the best beam's words ending by ``limit``.

    Args:
        beams: Beams, best first.
        limit: Frame index; the best beam's words whose end frame is <= limit are imposed.
        committed: The state's committed node (an ancestor of every beam).

    Returns:
        The kept beams (in order; the best is always kept) and the work done.
    """
    node, frames = beams[0][0], beams[0][3]
    work = 0
    while node.depth > committed.depth and frames[0][1] > limit:
        node, frames = node.parent, frames[1]
        work += 1
    if node.depth <= committed.depth or len(beams) == 1:
        return beams, work
    kept = []
    for beam in beams:
        anc = beam[0]
        while anc.depth > node.depth:
            anc = anc.parent
            work += 1
        if anc is node:
            kept.append(beam)
    return kept, work


def _pairs_between(node: _Node, frames: Any, stop: _Node | None) -> list[tuple[str, tuple[int, int]]]:
    """(word, frames) of ``node``'s text below the ancestor ``stop`` (None: the root), oldest first."""
    out = []
    stop_depth = 0 if stop is None else stop.depth
    while node.depth > stop_depth:
        out.append((node.word, frames[0]))
        node, frames = node.parent, frames[1]
    out.reverse()
    return out


def _node_words(node: _Node) -> list[str]:
    """The words of a node's text, oldest first."""
    out = []
    while node.parent is not None:
        out.append(node.word)
        node = node.parent
    out.reverse()
    return out


def _word(text: str, start: int, end: int, time_offset: float) -> Word:
    """A Word from [start, end) frame indices."""
    return Word(text, round(start * XLSR_GRID.frame_seconds + time_offset, 3), round(end * XLSR_GRID.frame_seconds + time_offset, 3))
