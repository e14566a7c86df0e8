"""Streamed == whole: the streaming encoder against the offline forward, and exact frame bookkeeping."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import ConfigError
from streamer.model import Wav2Vec2CTC
from streamer.model.config import tiny_config
from streamer.pipeline import stream_whole
from streamer.streaming import StreamingConfig, StreamingEncoder

#: Largest allowed |Δ logits| between cached streaming and the offline forward with the same mask.
TOLERANCE = 1e-4


def _model(causal: bool = True, **kw) -> Wav2Vec2CTC:
    torch.manual_seed(3)
    m = Wav2Vec2CTC(tiny_config(pos_conv_causal=causal, **kw))
    m.reset_parameters()
    return m.eval()


MODEL = _model()


@settings(max_examples=25, deadline=None)
@given(chunk=st.integers(1, 40), left_chunks=st.integers(1, 5), samples=st.integers(400, 30000))
def test_cached_equals_offline_with_same_mask(chunk, left_chunks, samples):
    cfg = StreamingConfig("cached", chunk, chunk * left_chunks, 0)
    enc = StreamingEncoder(MODEL, cfg)
    x = torch.randn(samples, generator=torch.Generator().manual_seed(samples)) * 0.3
    with torch.no_grad():
        ref, _ = MODEL(x[None], chunk=cfg.chunk_attention())
    out = stream_whole(enc, x)
    assert out.shape == ref[0].shape
    assert (out - ref[0]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("chunk, left, right", [(1, 0, 0), (10, 20, 5), (16, 32, 8), (25, 50, 30), (50, 100, 25)])
@pytest.mark.parametrize("samples", [400, 401, 719, 720, 16000, 16000 + 1, 320 * 50 * 2 + 80, 47_123])
def test_window_frames_match_offline_count(chunk, left, right, samples):
    enc = StreamingEncoder(MODEL, StreamingConfig("window", chunk, left, right))
    x = torch.randn(samples) * 0.3
    out = stream_whole(enc, x)
    assert out.shape[0] == MODEL.config.num_frames(samples)


def test_window_with_enough_context_equals_offline():
    """With left/right context covering the whole utterance, window mode is the offline forward."""
    model = _model(causal=False)
    x = torch.randn(16000 * 2) * 0.3
    frames = model.config.num_frames(len(x))
    enc = StreamingEncoder(model, StreamingConfig("window", 10, frames + 20, frames + 20))
    with torch.no_grad():
        ref, _ = model(x[None])
    out = stream_whole(enc, x)
    assert (out - ref[0]).abs().max().item() <= TOLERANCE


def test_cached_state_is_bounded_and_step_shapes_fixed():
    cfg = StreamingConfig("cached", 8, 24, 0)
    enc = StreamingEncoder(MODEL, cfg)
    state = enc.init_state(2)
    shapes = None
    for _ in range(6):
        logits, valid, state = enc.step(torch.randn(2, cfg.chunk_samples), state)
        now = (tuple(logits.shape), tuple(valid.shape), tuple(state.keys.shape), tuple(state.pos_history.shape))
        assert shapes is None or now == shapes
        shapes = now
    assert state.keys.shape[3] == 24


def test_streams_in_a_batch_are_independent():
    cfg = StreamingConfig("cached", 8, 16, 0)
    enc = StreamingEncoder(MODEL, cfg)
    a, b = torch.randn(cfg.chunk_samples * 3), torch.randn(cfg.chunk_samples * 3)
    sa, sb, sab = enc.init_state(1), enc.init_state(1), enc.init_state(2)
    for i in range(3):
        piece = slice(i * cfg.chunk_samples, (i + 1) * cfg.chunk_samples)
        la, _, sa = enc.step(a[piece][None], sa)
        lb, _, sb = enc.step(b[piece][None], sb)
        lab, _, sab = enc.step(torch.stack([a[piece], b[piece]]), sab)
        assert torch.allclose(lab[0], la[0], atol=1e-5) and torch.allclose(lab[1], lb[0], atol=1e-5)


def test_config_errors():
    with pytest.raises(ConfigError, match="causal positional conv"):
        StreamingEncoder(_model(causal=False), StreamingConfig("cached", 8, 16, 0))
    with pytest.raises(ConfigError, match="multiple of chunk_frames"):
        StreamingConfig("cached", 8, 12, 0)
    with pytest.raises(ConfigError, match="look-ahead"):
        StreamingConfig("cached", 8, 16, 4)
    with pytest.raises(ConfigError, match="mode"):
        StreamingConfig("chunky", 8, 16, 0)
    enc = StreamingEncoder(MODEL, StreamingConfig("window", 8, 16, 4))
    with pytest.raises(ConfigError, match="2560 samples"):
        enc.step(torch.zeros(1, 100), enc.init_state())


def test_from_seconds_rounds_to_frames():
    cfg = StreamingConfig.from_seconds("cached", 0.64)
    assert (cfg.chunk_frames, cfg.left_frames, cfg.right_frames) == (32, 128, 0)
    w = StreamingConfig.from_seconds("window", 1.0, 2.0, 0.5)
    assert (w.chunk_frames, w.left_frames, w.right_frames) == (50, 100, 25)
    assert abs(w.latency_seconds - (1.0 + 0.5 + 0.02 + 0.005)) < 1e-9
