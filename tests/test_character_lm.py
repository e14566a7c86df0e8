"""Beam search with a character LM for scripts written without spaces (Chinese, Japanese), on
random-weight checkpoints: the LM's unit recorded and checked, the LM fixing a near-miss that greedy
decoding keeps, streaming partials ending at the offline beam, endpoint and two-pass finals with one
word per character, hotwords as character sequences, and an LM at weight 0 changing nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.checkpoint import model_vocabulary
from streamer.constants import SECOND_PASS_BUCKET_SECONDS
from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig
from streamer.decoding.build_lm import main as lm_main
from streamer.decoding.greedy import GreedyDecoder
from streamer.decoding.lm_bundle import LmBundle
from streamer.endpoint import EndpointConfig
from streamer.errors import ConfigError
from streamer.pipeline import FramePipeline
from streamer.preprocess import normalize_utterance
from streamer.recognizer import Recognizer
from streamer.results import Final, Partial
from streamer.streaming import StreamingConfig
from streamer.vocab import english_characters, vocabulary_from_text
from test_multilingual import LANGUAGES, _spelling_logits, make_language_checkpoint

CHARACTER_LANGUAGES = ("zh", "ja")
#: Beam of the Recognizer tests (its default is 32; a random model writes a character on most frames).
STREAM_BEAM = DecoderConfig(beam_width=8)


@pytest.fixture(scope="module", params=CHARACTER_LANGUAGES)
def lang(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model_with_lm(lang, kenlm_tools, tmp_path_factory) -> Path:
    """A random-weight checkpoint of the language with a character LM built into its lm/ folder."""
    folder = make_language_checkpoint(tmp_path_factory.mktemp(f"{lang}-model"), lang)
    corpus = folder.parent / "corpus.txt"
    corpus.write_text("\n".join(LANGUAGES[lang]["lm_text"]) + "\n", encoding="utf-8")
    assert lm_main(["build", str(corpus), "--model", str(folder), "--order", "3"]) == 0
    return folder


@pytest.fixture(autouse=True)
def _quiet_single_thread():
    """No pyctcdecode notes; one PyTorch thread (the tiny model's small ops are slower on two busy cores)."""
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    yield
    logging.disable(logging.NOTSET)


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


def _run_stream(rec: Recognizer, x: np.ndarray, piece: int) -> list:
    s = rec.create_stream()
    events = []
    for i in range(0, len(x), piece):
        events += rec.feed(s, x[i:i + piece])
    events += rec.input_finished(s)
    assert s.done
    return events


# -- the LM's unit ------------------------------------------------------------------------------------

def test_build_into_the_model_records_the_unit_and_decoding_checks_it(lang, model_with_lm, tmp_path):
    attrs = json.loads((model_with_lm / "lm" / "attrs.json").read_text())
    assert attrs["unit"] == "character" and attrs["order"] == 3
    bundle = LmBundle.from_model_folder(model_with_lm)
    assert bundle.unit == "character" and bundle.kenlm == model_with_lm / "lm" / "lm.binary"
    rec = Recognizer.load(model_with_lm)  # lm="auto": the model's lm/ folder
    assert rec.decoder_name == "beam+lm" and rec.decoder.lm == bundle and rec.decoder.lm_order == 3
    # A word LM recorded for this vocabulary, and a character LM for a word vocabulary, are refused.
    word_lm = LmBundle(bundle.kenlm, bundle.unigrams, unit="word")
    with pytest.raises(ConfigError, match="expected a character LM .* found one recorded as a word LM"):
        BeamSearchDecoder(rec.vocab, DecoderConfig(), word_lm)
    with pytest.raises(ConfigError, match="expected a word LM .* found one recorded as a character LM"):
        BeamSearchDecoder(english_characters(), DecoderConfig(), bundle)
    copy = tmp_path / "copy"
    bundle.save(copy, unit_note="x")
    (copy / "lm" / "attrs.json").write_text(json.dumps({"unit": "word"}))
    with pytest.raises(ConfigError, match="character LM"):
        BeamSearchDecoder(rec.vocab, DecoderConfig(), LmBundle.from_model_folder(copy))
    (copy / "lm" / "attrs.json").write_text(json.dumps({"unit": "syllable"}))
    with pytest.raises(ConfigError, match="unit"):
        LmBundle.from_model_folder(copy)
    assert LmBundle.for_file(bundle.kenlm).unit is None  # a bare file records nothing: not checked


def test_lm_build_into_a_model_needs_a_folder(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("我爱北京\n", encoding="utf-8")
    assert lm_main(["build", str(corpus)]) == 2
    assert lm_main(["build", str(corpus), "--model", str(tmp_path / "missing")]) == 2
    assert "expected -o OUTPUT, or --model naming a model folder" in capsys.readouterr().err


# -- the LM changes the result ------------------------------------------------------------------------

def test_lm_fixes_a_near_miss_that_greedy_keeps(lang, model_with_lm):
    """Logits spelling the LM's sentence with one character acoustically beaten by a confusable one."""
    info = LANGUAGES[lang]
    rec = Recognizer.load(model_with_lm)
    a, b = info["confusable"]
    logits = _spelling_logits(rec.vocab, info["sentence"], swap=(a, b))
    near_miss = info["sentence"].replace(a, b)
    greedy = GreedyDecoder(rec.vocab).decode(logits, time_offset=1.0)
    plain_beam = BeamSearchDecoder(rec.vocab, DecoderConfig()).decode(logits)
    fused = rec.decoder.decode(logits, time_offset=1.0)
    assert (greedy.text, plain_beam.text, fused.text) == (near_miss, near_miss, info["sentence"])
    # One word per character, in order, on the stream clock.
    assert [w.text for w in fused.words] == list(info["sentence"])
    assert all(1.0 <= w.start < w.end <= v.start for w, v in zip(fused.words, fused.words[1:]))
    assert [(w.start, w.end) for w in fused.words] == [(w.start, w.end) for w in greedy.words]
    assert fused.nbest[0][0] == fused.text


def test_hotwords_are_character_sequences(lang, tmp_path):
    """A hotword boosts its characters where they follow each other, not one character alone."""
    vocab = model_vocabulary(make_language_checkpoint(tmp_path, lang))
    hot, cold = LANGUAGES[lang]["hotword"]
    if len(hot) == 1:  # zh's single-character hotword: use a two-character one of its letters
        hot, cold = "北京", "北中"
    last, rival = hot[-1], cold[-1]
    boosted = BeamSearchDecoder(vocab, DecoderConfig(beam_width=16, hotwords=(hot,)))
    plain = BeamSearchDecoder(vocab, DecoderConfig(beam_width=16))
    in_sequence = _spelling_logits(vocab, hot, swap=(hot, cold))  # the last character loses to a rival
    assert (plain.decode(in_sequence).text, boosted.decode(in_sequence).text) == (cold, hot)
    other = next(c for c in LANGUAGES[lang]["letters"] if c not in hot + cold)
    alone = _spelling_logits(vocab, other + last, swap=(other + last, other + rival))  # no first character
    assert boosted.decode(alone).text == plain.decode(alone).text == other + rival


# -- streaming --------------------------------------------------------------------------------------

def test_streaming_partials_end_at_the_offline_beam(lang, model_with_lm):
    """The Recognizer's stream with the LM: committed text only grows, and the last partial and the
    final equal the offline beam search over the same streamed logits."""
    cfg = StreamingConfig.from_seconds("window", 0.32)  # a checkpoint with a centred positional conv
    rec = Recognizer.load(model_with_lm, streaming=cfg, two_pass=False, endpoint=EndpointConfig(max_utterance=60.0),
                          decoder=STREAM_BEAM)
    assert rec.decoder_name == "beam+lm"
    x = _signal(3.0, seed=7)
    events = _run_stream(rec, x, 777)
    partials = [e for e in events if isinstance(e, Partial)]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and len(partials) >= 5
    for p, q in zip(partials, partials[1:]):
        assert q.committed.startswith(p.committed)
    assert " " not in finals[0].text and partials[-1].separator == ""
    pipe = FramePipeline(rec.streaming_encoder, rec.preprocess.normalize, rec.grid)
    logits = torch.cat([f[1] for f in (*pipe.push(x), *pipe.drain())])
    offline = rec.decoder.decode(logits)
    assert len(offline.text) > 20  # a random model writes a character on most frames
    assert partials[-1].text == finals[0].text == offline.text
    assert finals[0].words == offline.words
    greedy_text = GreedyDecoder(rec.vocab).decode(logits).text
    assert offline.text != greedy_text  # the LM and beam did change this random text


def test_endpoint_and_two_pass_finals(lang, model_with_lm):
    """Endpoints cut the stream into several finals of one word per character; a two-pass final is
    the full-context beam+LM decode of its utterance."""
    rec = Recognizer.load(model_with_lm, streaming=StreamingConfig.from_seconds("window", 0.32), two_pass=False,
                          endpoint=EndpointConfig(max_utterance=1.0), decoder=STREAM_BEAM)
    finals = [e for e in _run_stream(rec, _signal(4.0, seed=1), 4000) if isinstance(e, Final)]
    assert len(finals) >= 3
    for a, b in zip(finals, finals[1:]):
        assert a.start < a.end <= b.start + 1e-6
    for f in finals:
        assert f.text == "".join(w.text for w in f.words) and all(len(w.text) == 1 for w in f.words)
        assert all(f.start - 1e-6 <= w.start < w.end <= f.end + 0.03 for w in f.words)
    two_pass = Recognizer.load(model_with_lm, streaming=StreamingConfig.from_seconds("window", 0.32), two_pass=True,
                               endpoint=EndpointConfig(max_utterance=60.0), decoder=STREAM_BEAM)
    x = _signal(2.0, seed=2)
    finals = [e for e in _run_stream(two_pass, x, 3000) if isinstance(e, Final)]
    assert len(finals) == 1
    # The second pass's forward: the utterance's audio (its frames' span), normalized, padded to whole
    # buckets with its length masked.
    grid, model, bucket = two_pass.grid, two_pass.model, round(SECOND_PASS_BUCKET_SECONDS * 16000)
    utterance = x[:grid.span_samples(grid.frames_in(finals[0].end))]
    assert two_pass.preprocess.normalize  # the checkpoint's feature extractor normalizes each utterance
    audio = torch.from_numpy(normalize_utterance(utterance))[None]
    padded = torch.nn.functional.pad(audio, (0, -(-audio.shape[1] // bucket) * bucket - audio.shape[1]))
    with torch.no_grad():
        logits, _ = model(padded, torch.tensor([audio.shape[1]]), piece_frames=model.config.num_frames(bucket))
    full_context = two_pass.decoder.decode(logits[0, :model.config.num_frames(audio.shape[1])].float())
    assert finals[0].text == full_context.text and finals[0].words == full_context.words


# -- an LM at weight 0 changes nothing ----------------------------------------------------------------

@pytest.fixture(scope="module")
def zero_weight_decoders(kenlm_tools, tmp_path_factory):
    """Per vocabulary kind (zh checkpoint with '|', ja without a delimiter): the vocabulary, and
    decoders with the character LM at alpha = beta = 0 (beam 1 and 8), without an LM (beam 8), and with
    the LM at its default weights (beam 8)."""
    out = {}
    for lang, kind in (("zh", "checkpoint"), ("ja", "no delimiter")):
        folder = make_language_checkpoint(tmp_path_factory.mktemp(f"{lang}-zero"), lang)
        vocab = model_vocabulary(folder)
        if kind == "no delimiter":
            vocab = vocabulary_from_text([LANGUAGES[lang]["letters"]], language=lang)
        lm_dir = tmp_path_factory.mktemp(f"{lang}-zero-lm")
        corpus = lm_dir / "corpus.txt"
        corpus.write_text("\n".join(LANGUAGES[lang]["lm_text"]) + "\n", encoding="utf-8")
        lm_path = lm_dir / "lm.binary"
        assert lm_main(["build", str(corpus), "-o", str(lm_path), "--model", str(folder), "--order", "3"]) == 0
        lm = LmBundle.for_file(lm_path, unit="character")
        zero = DecoderConfig(beam_width=8, alpha=0.0, beta=0.0, nbest=8)
        out[lang] = (vocab, BeamSearchDecoder(vocab, DecoderConfig(beam_width=1, alpha=0.0, beta=0.0), lm),
                     BeamSearchDecoder(vocab, zero, lm), BeamSearchDecoder(vocab, DecoderConfig(beam_width=8, nbest=8)),
                     BeamSearchDecoder(vocab, DecoderConfig(beam_width=8), lm))
    return out


@st.composite
def random_logits(draw, vocab_size: int) -> np.ndarray:
    """(T, V) random logits: plain noise of any scale, or peaky (one clear token per frame)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = draw(st.integers(1, 60))
    x = rng.normal(size=(t, vocab_size)) * draw(st.sampled_from([0.3, 1.0, 3.0, 8.0]))
    if draw(st.booleans()):
        x[np.arange(t), rng.integers(0, vocab_size, size=t)] += 16.0
    return x


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), lang=st.sampled_from(CHARACTER_LANGUAGES))
def test_lm_at_weight_zero_is_the_lm_free_search(zero_weight_decoders, data, lang):
    vocab, beam1_zero, beam8_zero, beam8_plain, beam8_lm = zero_weight_decoders[lang]
    logits = data.draw(random_logits(len(vocab)), label="logits")
    greedy = GreedyDecoder(vocab, commit_blank_frames=None).decode(logits)
    # Beam 1 with the LM at weight 0 is the best path: same text, same characters and times.
    one = beam1_zero.decode(logits)
    assert one.text == greedy.text
    assert [(w.text, w.start, w.end) for w in one.words] == [(w.text, w.start, w.end) for w in greedy.words]
    # A wider beam with the LM at weight 0 is exactly the search without an LM.
    zero, plain = beam8_zero.decode(logits), beam8_plain.decode(logits)
    assert zero.text == plain.text and zero.words == plain.words and zero.nbest == plain.nbest
    top2 = np.sort(logits, axis=1)[:, -2:]
    if np.all(top2[:, 1] - top2[:, 0] > 10.0):  # one token has nearly all the mass of every frame
        assert zero.text == greedy.text
    # With the LM weighted, decoding in chunks equals decoding at once.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(logits)), max_size=4), label="cuts"))
    state = beam8_lm.new_state()
    for lo, hi in zip([0, *cuts], [*cuts, len(logits)]):
        beam8_lm.advance(state, logits[lo:hi])
        beam8_lm.partial(state)
    assert beam8_lm.finalize(state) == beam8_lm.decode(logits)


def test_cost_per_chunk_does_not_grow_with_utterance_length(lang, model_with_lm):
    """Work counted by the decoder (beam extensions, scorings, tree steps) per 1-s chunk of a 30-s
    utterance that says the LM's sentence again and again: flat, with a short tentative tail."""
    rec = Recognizer.load(model_with_lm)
    second = _spelling_logits(rec.vocab, LANGUAGES[lang]["sentence"], seed=3)
    blank = np.zeros((50 - len(second), len(rec.vocab)))
    blank[:, rec.vocab.blank_id] = 6.0
    logits = np.tile(np.concatenate([second, blank]), (30, 1))
    decoder = rec.decoder
    state = decoder.new_state()
    work, depth = [], []
    for i in range(0, len(logits), 50):
        decoder.advance(state, logits[i:i + 50])
        decoder.partial(state)
        work.append(state.last_work)
        depth.append(state.uncommitted_depth)
    assert np.mean(work[-10:]) <= 1.2 * np.mean(work[2:12]), work
    assert max(depth) <= 2 * len(LANGUAGES[lang]["sentence"])
    assert "".join(w.text for w in state.committed_words).startswith(LANGUAGES[lang]["sentence"] * 20)
