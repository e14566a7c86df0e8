"""Input normalization: equals Hugging Face's feature extractor offline; running statistics converge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import make_hf_checkpoint
from streamer.checkpoint import load_checkpoint
from streamer.errors import ConfigError
from streamer.offline import iter_window_logits
from streamer.preprocess import NormState, PreprocessConfig, normalize_running, normalize_utterance


def test_hf_pipeline_parity_with_normalization(tmp_path):
    """Feature extractor + model of transformers == streamer's offline path, for an offset, scaled signal."""
    from transformers import Wav2Vec2FeatureExtractor

    ref = make_hf_checkpoint(tmp_path, "hf_tiny_layer_norm")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    fe.save_pretrained(tmp_path)
    ck = load_checkpoint(tmp_path)
    assert ck.preprocess.normalize
    x = (np.random.default_rng(0).standard_normal(24000) * 0.3 + 0.05).astype(np.float32)
    with torch.no_grad():
        expected = ref(fe(x, sampling_rate=16000, return_tensors="pt").input_values).logits[0]
    got = torch.cat([t for _, t in iter_window_logits(ck.model, [x], normalize=ck.preprocess.normalize)])
    assert (got - expected).abs().max().item() < 1e-4


def test_preprocessor_config_fields(tmp_path):
    assert PreprocessConfig.from_hf({}).normalize is True
    assert PreprocessConfig.from_hf({"do_normalize": False}).normalize is False
    with pytest.raises(ConfigError, match="sampling_rate"):
        PreprocessConfig.from_hf({"sampling_rate": 8000})
    make_hf_checkpoint(tmp_path, "hf_tiny_group_norm")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False, "sampling_rate": 16000}))
    assert load_checkpoint(tmp_path).preprocess.normalize is False


def test_running_statistics_equal_batch_statistics():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(50_000) * 0.2 + 0.1).astype(np.float32)
    state = NormState()
    for i in range(0, len(x), 3333):
        state, _ = normalize_running(state, x[i:i + 3333])
    assert state.count == len(x)
    assert state.mean == pytest.approx(float(x.mean()), abs=1e-6)
    assert state.m2 / state.count == pytest.approx(float(x.var()), rel=1e-5)
    # late chunks are normalized almost exactly like the whole utterance
    _, last = normalize_running(state, x[-1000:])
    assert np.max(np.abs(last - normalize_utterance(x)[-1000:])) < 0.02


def test_normalize_utterance():
    y = normalize_utterance(np.array([1.0, 3.0, 5.0], dtype=np.float32))
    assert abs(y.mean()) < 1e-6 and abs(y.std() - 1) < 1e-3
    assert normalize_utterance(np.zeros(0, dtype=np.float32)).shape == (0,)
