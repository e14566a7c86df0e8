"""Batched streams: `Recognizer.decode_streams` (one encoder forward for all ready streams) gives each
stream what it gets alone, for streams of different lengths fed in different pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.endpoint import EndpointConfig
from streamer.pipeline import FramePipeline
from streamer.recognizer import Recognizer
from streamer.results import Final
from streamer.streaming import StreamingConfig

pytest.importorskip("pyctcdecode")
pytest.importorskip("kenlm")

#: Largest |Δ logits| allowed between a stream's batched and its lone forward.
TOLERANCE = 1e-5

# A tiny ARPA model over short words (the random-weight model writes random letters; the LM then
# rescores them, which is what has to stay identical between batched and lone streams).
ARPA = """\\data\\
ngram 1=7
ngram 2=4

\\1-grams:
-1.5\t<unk>\t0
-99\t<s>\t-0.5
-0.9\t</s>\t0
-0.7\tthe\t-0.3
-1.0\ta\t-0.3
-1.2\tcat\t-0.3
-1.2\tsat\t-0.3

\\2-grams:
-0.3\t<s> the
-0.4\tthe cat
-0.4\tcat sat
-0.5\ta cat

\\end\\
"""

SETUPS = {  # mode -> (streaming config, two-pass finals)
    "window": (StreamingConfig("window", 8, 16, 4), False),
    "cached": (StreamingConfig("cached", 8, 16, 0), True),
}


@pytest.fixture(scope="module")
def recognizers(model_dir, tmp_path_factory):
    arpa = tmp_path_factory.mktemp("lm") / "tiny.arpa"
    arpa.write_text(ARPA)
    endpoint = EndpointConfig(silence_before_speech=0.4, silence_after_speech=0.3, max_utterance=0.9)
    out = {}
    for mode, (cfg, two_pass) in SETUPS.items():
        for use_lm in (False, True):
            out[mode, use_lm] = Recognizer.load(model_dir, lm=arpa if use_lm else None, streaming=cfg,
                                                endpoint=endpoint, two_pass=two_pass)
    return out


def _signals(lengths: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]


def _summary(events: list) -> list[tuple]:
    """What must be equal: each event's kind and text, and every Final's times."""
    return [(type(e).__name__, e.text) + ((e.start, e.end, tuple((w.start, w.end) for w in e.words))
                                          if isinstance(e, Final) else ()) for e in events]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(0, 24000), min_size=2, max_size=4), piece=st.sampled_from([700, 2560, 9000]),
       seed=st.integers(0, 2**16))
@pytest.mark.parametrize("use_lm", [False, True])
@pytest.mark.parametrize("mode", ["window", "cached"])
def test_decode_streams_equals_each_stream_alone(recognizers, mode, use_lm, lengths, piece, seed):
    rec = recognizers[mode, use_lm]
    assert rec.decoder_name == ("beam+lm" if use_lm else "greedy")
    signals = _signals(lengths, seed)
    batched = [rec.create_stream() for _ in signals]
    alone = [rec.create_stream() for _ in signals]
    got = [[] for _ in signals]
    want = [[] for _ in signals]
    for start in range(0, max(lengths) + piece, piece):
        for x, b, a in zip(signals, batched, alone):
            block = x[start:start + piece]
            if len(block):
                b.accept_waveform(block)
                a.accept_waveform(block)
            elif start < len(x) + piece and start >= len(x):  # this stream just ran out: end it
                b.input_finished()
                a.input_finished()
        for i, events in enumerate(rec.decode_streams(batched)):
            got[i] += events
        for i, a in enumerate(alone):
            want[i] += rec.decode_stream(a)
    for b, a in zip(batched, alone):
        b.input_finished()
        a.input_finished()
    for i, events in enumerate(rec.decode_streams(batched)):
        got[i] += events
    for i, a in enumerate(alone):
        want[i] += rec.decode_stream(a)
    for g, w, s in zip(got, want, batched):
        assert s.done
        assert _summary(g) == _summary(w)
        assert any(isinstance(e, Final) for e in g) or not any(isinstance(e, Final) for e in w)


@pytest.mark.parametrize("mode", ["window", "cached"])
def test_batched_step_logits_match_lone_steps(recognizers, mode):
    """The frames each pipeline gets from a batched forward are its lone frames (within TOLERANCE)."""
    rec = recognizers[mode, False]
    signals = _signals([3000, 9000, 20000, 14000], seed=7)
    batched = [FramePipeline(rec.streaming_encoder) for _ in signals]
    alone = [FramePipeline(rec.streaming_encoder) for _ in signals]
    for p, q, x in zip(batched, alone, signals):
        p.append(x)
        q.append(x)
        p.input_finished()
        q.input_finished()
    got: list[list] = [[] for _ in signals]
    while any(p.ready for p in batched):
        idx = [i for i, p in enumerate(batched) if p.ready]
        for i, out in zip(idx, FramePipeline.step_many([batched[i] for i in idx])):
            if out is not None:
                got[i].append(out)
    for i, q in enumerate(alone):
        want = []
        while q.ready:
            out = FramePipeline.step_many([q])[0]
            if out is not None:
                want.append(out)
        assert [f for f, _ in got[i]] == [f for f, _ in want]
        a = torch.cat([t for _, t in got[i]])
        b = torch.cat([t for _, t in want])
        assert a.shape == b.shape == (rec.model.config.num_frames(len(signals[i])), len(rec.vocab))
        assert (a - b).abs().max().item() <= TOLERANCE
