"""Streaming CTC decoders: parity with pyctcdecode, chunking invariance, partial results, cost."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.decoding.lm_bundle import LmBundle
from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig, log_softmax
from streamer.decoding.greedy import GreedyDecoder, best_path, greedy_text
from streamer.errors import ConfigError
from streamer.vocab import english_characters

pyctcdecode = pytest.importorskip("pyctcdecode")
pytest.importorskip("kenlm")

VOCAB = english_characters()
V = len(VOCAB)
FRAME = 0.02

# A tiny bigram LM over a handful of words ("the cat" is likelier than "the hat").
ARPA = """\\data\\
ngram 1=10
ngram 2=8

\\1-grams:
-1.5\t<unk>\t0
-99\t<s>\t-0.5
-0.9\t</s>\t0
-0.7\tthe\t-0.3
-1.0\tcat\t-0.3
-1.4\that\t-0.3
-1.0\tsat\t-0.3
-1.1\ton\t-0.3
-1.3\tmat\t-0.3
-1.2\ta\t-0.3

\\2-grams:
-0.2\t<s> the
-0.3\tthe cat
-1.1\tthe hat
-0.2\tcat sat
-0.3\tsat on
-0.4\ton the
-0.5\ton a
-0.3\tmat </s>

\\end\\
"""
LEXICON = ("the", "cat", "hat", "sat", "on", "mat", "a", "dog", "hello")
PLACEHOLDER = re.compile("\u2047\\d+")


@pytest.fixture(scope="module")
def arpa_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lm") / "tiny.arpa"
    path.write_text(ARPA)
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def _quiet_pyctcdecode():
    """pyctcdecode warns about the tiny unigram list on every decoder; not what is tested here."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    yield
    logging.disable(previous)


_REFERENCE: dict = {}


def reference_decoder(lm: str | None):
    """pyctcdecode's decoder on the same labels (built once per LM)."""
    if lm not in _REFERENCE:
        _REFERENCE[lm] = pyctcdecode.build_ctcdecoder(VOCAB.labels(), kenlm_model_path=lm, alpha=0.5, beta=1.5)
    return _REFERENCE[lm]


def render(text: str) -> str:
    """pyctcdecode's text as streamer writes it: special-token placeholders removed."""
    return " ".join(w for w in (PLACEHOLDER.sub("", x) for x in text.split()) if w)


def peaky_logits(words, rng: np.random.Generator, noise: float = 1.0, peak: float = 6.0) -> np.ndarray:
    """CTC-like logits spelling ``words``: 1-2 frames per character, blanks and delimiters between."""
    ids: list[int] = [0] * int(rng.integers(0, 3))
    for word in words:
        for ch in word:
            ids += [VOCAB.tokens.index(ch)] * int(rng.integers(1, 3)) + [0] * int(rng.integers(0, 2))
        ids += [VOCAB.delimiter_id] + [0] * int(rng.integers(0, 3))
    x = rng.normal(size=(len(ids), V)) * noise
    x[np.arange(len(ids)), ids] += peak
    return x


def run_chunked(decoder, logits: np.ndarray, cuts, time_offset: float = 0.0):
    """Decodes in chunks split at ``cuts``; returns the final and the partial after each chunk."""
    state = decoder.new_state(time_offset)
    partials = []
    bounds = [0, *sorted(cuts), len(logits)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        decoder.advance(state, logits[a:b])
        partials.append(decoder.partial(state))
    return decoder.finalize(state), partials


# ----------------------------------------------------------------------------------------------
# Strategies


@st.composite
def logit_matrices(draw) -> np.ndarray:
    """Either peaky logits of random words, or small raw matrices with many exact ties."""
    if draw(st.booleans()):
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        words = [LEXICON[i] for i in rng.integers(0, len(LEXICON), size=draw(st.integers(1, 5)))]
        return peaky_logits(words, rng, noise=draw(st.sampled_from([0.5, 1.5, 3.0])))
    t = draw(st.integers(1, 8))
    values = draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, -1.0, 2.5, -4.0]), min_size=t * V, max_size=t * V))
    return np.array(values, dtype=np.float64).reshape(t, V)


search_settings = st.fixed_dictionaries({
    "beam_width": st.sampled_from([1, 3, 8, 16]),
    "prune_history": st.booleans(),
    "hotwords": st.sampled_from([(), ("cat",), ("hat", "on the")]),
    "token_min_logp": st.sampled_from([-5.0, -8.0, -2.0]),
    "beam_prune_logp": st.sampled_from([-10.0, -4.0]),
})


# ----------------------------------------------------------------------------------------------
# Beam search


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logits=logit_matrices(), search=search_settings, use_lm=st.booleans(), data=st.data())
def test_chunked_equals_whole_equals_pyctcdecode(arpa_path, logits, search, use_lm, data):
    t = len(logits)
    cuts = data.draw(st.lists(st.integers(0, t), max_size=4), label="cuts")
    lm = arpa_path if use_lm else None
    config = DecoderConfig(nbest=min(3, search["beam_width"]), commit_lag_seconds=None, **search)
    decoder = BeamSearchDecoder(VOCAB, config, None if lm is None else LmBundle.for_file(lm))
    chunked, _ = run_chunked(decoder, logits, cuts)
    whole = decoder.decode(logits)
    # pyctcdecode gets log-probs, so its probability heuristic cannot misread raw test matrices.
    ref = reference_decoder(lm).decode_beams(
        log_softmax(logits), beam_width=search["beam_width"], beam_prune_logp=search["beam_prune_logp"],
        token_min_logp=search["token_min_logp"], prune_history=search["prune_history"],
        hotwords=list(search["hotwords"]), hotword_weight=config.hotword_weight)

    assert chunked.text == whole.text == render(ref[0][0])
    # Same ranking and the same scores (acoustic + LM + hotwords) as pyctcdecode's n-best.
    assert [text for text, _ in chunked.nbest] == [render(b[0]) for b in ref[: config.nbest]]
    assert np.allclose([s for _, s in chunked.nbest], [float(b[4]) for b in ref[: config.nbest]], rtol=0, atol=1e-9)
    assert chunked.nbest == whole.nbest
    # Same word frames.
    ref_words = [(PLACEHOLDER.sub("", w), round(a * FRAME, 3), round(b * FRAME, 3)) for w, (a, b) in ref[0][2]]
    assert [(w.text, w.start, w.end) for w in chunked.words] == [x for x in ref_words if x[0]]
    assert chunked.words == whole.words


@pytest.mark.parametrize("prune_history", [False, True])
def test_long_utterance_matches_pyctcdecode_at_beam_32(arpa_path, prune_history):
    rng = np.random.default_rng(42)
    logits = peaky_logits([LEXICON[i] for i in rng.integers(0, len(LEXICON), size=80)], rng, noise=2.0)
    assert len(logits) > 500  # > 10 s
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=32, hotwords=("mat",), prune_history=prune_history,
                                                     commit_lag_seconds=None), LmBundle.for_file(arpa_path))
    final, _ = run_chunked(decoder, logits, range(7, len(logits), 37))
    ref = reference_decoder(arpa_path).decode_beams(log_softmax(logits), beam_width=32, hotwords=["mat"],
                                                    prune_history=prune_history)
    assert final.text == render(ref[0][0])
    assert [t for t, _ in final.nbest] == [render(b[0]) for b in ref[:5]]
    assert np.allclose([s for _, s in final.nbest], [float(b[4]) for b in ref[:5]], rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_words=st.integers(5, 25), use_lm=st.booleans(),
       lag=st.sampled_from([0.1, 0.5, 2.0]), prune_history=st.booleans(), data=st.data())
def test_forced_commit_is_chunking_invariant_and_partials_only_grow(arpa_path, seed, n_words, use_lm, lag,
                                                                   prune_history, data):
    rng = np.random.default_rng(seed)
    logits = peaky_logits([LEXICON[i] for i in rng.integers(0, len(LEXICON), size=n_words)], rng, noise=2.0)
    t = len(logits)
    cuts = data.draw(st.lists(st.integers(0, t), min_size=1, max_size=12), label="cuts")
    config = DecoderConfig(beam_width=8, commit_lag_seconds=lag, prune_history=prune_history)
    decoder = BeamSearchDecoder(VOCAB, config, LmBundle.for_file(arpa_path) if use_lm else None)
    final, partials = run_chunked(decoder, logits, cuts, time_offset=1.5)
    assert final == decoder.decode(logits, time_offset=1.5)
    # Committed words are never rewritten: each partial's committed words extend the previous ones.
    previous: tuple = ()
    for p in partials:
        committed = p.words[: p.committed_words]
        assert committed[: len(previous)] == previous
        assert p.committed == " ".join(w.text for w in committed)
        previous = committed
    # At the end, committed + tentative is the final text.
    assert partials[-1].text == final.text
    assert final.text.startswith(partials[-1].committed)


def test_committed_text_advances_and_matches_final(arpa_path):
    rng = np.random.default_rng(7)
    words = ["the", "cat", "sat", "on", "the", "mat"] * 4
    logits = peaky_logits(words, rng, noise=0.5)
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=16), LmBundle.for_file(arpa_path))
    final, partials = run_chunked(decoder, logits, range(10, len(logits), 10))
    assert final.text == " ".join(words)
    counts = [p.committed_words for p in partials]
    assert counts == sorted(counts)
    # With the default commit_lag_seconds=2.0 (checked every 0.5 s), committed words reach to
    # within 2.5 s of the end, plus at most one word.
    last_committed = partials[-1].words[counts[-1] - 1]
    assert last_committed.end >= len(logits) * FRAME - 2.5 - 0.5
    assert partials[-1].text == final.text
    assert partials[-1].time == pytest.approx(len(logits) * FRAME)


def test_cost_per_chunk_does_not_grow_with_utterance_length(arpa_path):
    """Work counted by the decoder (beam extensions, scorings, tree steps), not time."""
    rng = np.random.default_rng(3)
    second = peaky_logits(["the", "cat", "sat", "on", "a", "mat"], rng, noise=1.0)[:50]
    second = np.concatenate([second, np.tile(np.eye(V)[0] * 6.0, (50 - len(second), 1))])
    logits = np.tile(second, (60, 1))  # 60 s: the same second of audio again and again
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=32), LmBundle.for_file(arpa_path))
    state = decoder.new_state()
    work, depth, frames = [], [], []
    for i in range(0, len(logits), 50):
        before = state.frames
        decoder.advance(state, logits[i:i + 50])
        frames.append(state.frames - before)
        work.append(state.last_work)
        depth.append(state.uncommitted_depth)
    assert frames == [50] * 60  # each call consumes only its own frames
    early, late = np.mean(work[2:12]), np.mean(work[-10:])
    assert late <= 1.2 * early, (early, late)
    assert max(depth) <= 20  # the tentative tail stays short, so the bookkeeping stays bounded
    assert state.total_work == sum(work)
    assert len(state.committed_words) > 200


def _cat_or_hat(margin: float) -> np.ndarray:
    """Logits for one word whose first letter is 'c' by ``margin`` over 'h': '?at'."""
    rows = []
    for token, alt in (("c", "h"), (None, None), ("a", None), (None, None), ("t", None), (None, None)):
        row = np.zeros(V)
        if token is None:
            row[VOCAB.blank_id] = 8.0
        else:
            row[VOCAB.tokens.index(token)] = 8.0
            if alt:
                row[VOCAB.tokens.index(alt)] = 8.0 - margin
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("use_lm", [False, True])
def test_hotword_boosts_a_word_that_otherwise_loses(arpa_path, use_lm):
    logits = _cat_or_hat(margin=1.0)
    lm = LmBundle.for_file(arpa_path) if use_lm else None
    plain = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=8), lm).decode(logits)
    boosted = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=8, hotwords=("hat",)), lm).decode(logits)
    assert plain.text == "cat"
    assert boosted.text == "hat"
    assert "cat" in [t for t, _ in boosted.nbest]


def test_lm_prefers_the_likelier_word(arpa_path):
    logits = np.concatenate([peaky_logits(["the"], np.random.default_rng(0), noise=0.0), _cat_or_hat(margin=-0.5)])
    assert BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=8)).decode(logits).text == "the hat"
    assert BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=8), LmBundle.for_file(arpa_path)).decode(logits).text == "the cat"


def test_nbest_sorted_and_timestamps_monotonic_within_audio(arpa_path):
    rng = np.random.default_rng(11)
    logits = peaky_logits(["the", "cat", "sat", "on", "a", "hat"], rng, noise=2.5)
    offset = 3.0
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=16, nbest=10), LmBundle.for_file(arpa_path))
    final = decoder.decode(logits, time_offset=offset)
    scores = [s for _, s in final.nbest]
    assert len(final.nbest) == 10
    assert scores == sorted(scores, reverse=True)
    assert final.nbest[0][0] == final.text
    assert final.start == offset and final.end == pytest.approx(offset + len(logits) * FRAME)
    assert [w.text for w in final.words] == final.text.split()
    for w in final.words:
        assert offset <= w.start < w.end <= final.end
    for a, b in zip(final.words, final.words[1:]):
        assert a.end <= b.start


def test_accepts_logits_or_log_probs_and_torch_tensors():
    import torch

    rng = np.random.default_rng(5)
    logits = peaky_logits(["cat", "on", "a", "mat"], rng, noise=1.0)
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=8))
    a = decoder.decode(logits)
    assert a.text == "cat on a mat"
    b = decoder.decode(log_softmax(logits))  # normalizing log-probs again moves only the last bits
    assert (b.text, b.words) == (a.text, a.words)
    assert np.allclose([s for _, s in b.nbest], [s for _, s in a.nbest], rtol=0, atol=1e-6)
    assert decoder.decode(torch.from_numpy(logits)) == a
    assert decoder.decode(np.zeros((0, V))).text == ""


def test_input_and_config_errors(arpa_path, tmp_path):
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=4))
    with pytest.raises(ValueError, match=r"expected logits of shape \(T, 30\), found \(4, 29\)"):
        decoder.advance(decoder.new_state(), np.zeros((4, 29)))
    with pytest.raises(ValueError, match="NaN"):
        decoder.advance(decoder.new_state(), np.full((2, V), np.nan))
    other = BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=4))
    with pytest.raises(ValueError, match="made by this decoder"):
        decoder.advance(other.new_state(), np.zeros((1, V)))
    for bad, match in [({"beam_width": 0}, "beam_width"), ({"nbest": 0}, "nbest"),
                       ({"hotwords": "cat"}, "hotwords"), ({"beam_prune_logp": 1.0}, "beam_prune_logp"),
                       ({"alpha": float("nan")}, "alpha"),
                       ({"commit_lag_seconds": -1.0}, "commit_lag_seconds")]:
        with pytest.raises(ConfigError, match=match):
            DecoderConfig(**bad)
    with pytest.raises(ConfigError, match="found nothing"):
        LmBundle.for_file(tmp_path / "missing.binary")
    binary = tmp_path / "lm.binary"
    binary.write_bytes(b"")
    with pytest.raises(ConfigError, match="lm.unigrams.txt"):
        BeamSearchDecoder(VOCAB, DecoderConfig(), LmBundle.for_file(binary))


def test_unknown_token_is_not_written():
    logits = np.full((5, V), -5.0)
    for i, tok in enumerate(["c", "<unk>", "t", "|", "a"]):
        logits[i, VOCAB.tokens.index(tok)] = 5.0
    assert BeamSearchDecoder(VOCAB, DecoderConfig(beam_width=4)).decode(logits).text == "ct a"


# ----------------------------------------------------------------------------------------------
# Greedy decoder


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), noise=st.sampled_from([0.5, 2.0, 4.0]), data=st.data())
def test_greedy_chunked_equals_whole_and_best_path(seed, noise, data):
    rng = np.random.default_rng(seed)
    logits = peaky_logits([LEXICON[i] for i in rng.integers(0, len(LEXICON), size=6)], rng, noise=noise)
    cuts = data.draw(st.lists(st.integers(0, len(logits)), max_size=8), label="cuts")
    decoder = GreedyDecoder(VOCAB, commit_blank_frames=None)
    final, partials = run_chunked(decoder, logits, cuts, time_offset=0.5)
    assert final == decoder.decode(logits, time_offset=0.5)
    assert final.text == greedy_text(logits, VOCAB)  # the helper training evaluation uses
    assert final.text == VOCAB.ids_to_text([s.token for s in best_path(logits, VOCAB.blank_id)])  # plain best path
    assert partials[-1].text == final.text
    previous: tuple = ()
    for p in partials:
        committed = p.words[: p.committed_words]
        assert committed[: len(previous)] == previous
        previous = committed


def test_greedy_commit_rule_blank_run_ends_a_word():
    def rows(tokens):
        x = np.zeros((len(tokens), V))
        for i, tok in enumerate(tokens):
            x[i, VOCAB.tokens.index(tok)] = 9.0
        return x

    decoder = GreedyDecoder(VOCAB, commit_blank_frames=5)
    state = decoder.new_state()
    decoder.advance(state, rows(["h", "i", "|", "y", "o"]))
    p = decoder.partial(state)
    assert (p.committed, p.tentative) == ("hi", "yo")  # the delimiter committed "hi"
    decoder.advance(state, rows(["<pad>"] * 4))
    assert decoder.partial(state).committed == "hi"
    decoder.advance(state, rows(["<pad>", "u"]))  # the 5th blank commits "yo"; "u" starts a new word
    p = decoder.partial(state)
    assert (p.committed, p.tentative) == ("hi yo", "u")
    final = decoder.finalize(state)
    assert final.text == "hi yo u"
    assert [(w.start, w.end) for w in final.words] == [(0.0, 0.04), (0.06, 0.1), (0.2, 0.22)]
    assert GreedyDecoder(VOCAB, commit_blank_frames=None).decode(
        np.concatenate([rows(["y", "o"]), rows(["<pad>"] * 6), rows(["u"])])).text == "you"
