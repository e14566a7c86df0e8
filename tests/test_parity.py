"""Converted == reference: streamer's encoder against transformers' Wav2Vec2ForCTC, same random weights."""

from __future__ import annotations

import gc

import pytest
import torch

from conftest import make_hf_checkpoint
from streamer.checkpoint import load_checkpoint

#: Largest allowed |Δ logits| between streamer and transformers.
TOLERANCE = 1e-4


def _max_diff(tmp_path, config_name: str, samples: int, batch: int = 2, safetensors: bool = True) -> float:
    ref = make_hf_checkpoint(tmp_path, config_name, safetensors=safetensors)
    ours = load_checkpoint(tmp_path)
    torch.manual_seed(1)
    x = torch.randn(batch, samples) * 0.2
    with torch.no_grad():
        expected = ref(x).logits
        got, _ = ours.model(x)
    assert got.shape == expected.shape
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("config_name", ["hf_tiny_layer_norm", "hf_tiny_group_norm"])
def test_tiny_parity(tmp_path, config_name):
    diff = _max_diff(tmp_path, config_name, samples=16000 + 555)
    print(f"{config_name}: max |Δ logits| = {diff:.3e}")
    assert diff <= TOLERANCE


def test_parity_from_pytorch_model_bin(tmp_path):
    diff = _max_diff(tmp_path, "hf_tiny_group_norm", samples=8000, safetensors=False)
    assert diff <= TOLERANCE


def test_padded_batch_matches_reference_with_attention_mask(tmp_path):
    """Layer-norm models take an attention mask: padded rows must match the unpadded reference."""
    ref = make_hf_checkpoint(tmp_path, "hf_tiny_layer_norm")
    ours = load_checkpoint(tmp_path).model
    torch.manual_seed(2)
    long, short = torch.randn(16000) * 0.2, torch.randn(9000) * 0.2
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :9000] = long, short
    lengths = torch.tensor([16000, 9000])
    with torch.no_grad():
        got, frames = ours(batch, lengths)
        alone = ref(short[None]).logits[0]
    n = int(frames[1])
    assert n == alone.shape[0]
    assert (got[1, :n] - alone).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_xlsr53_large_parity(tmp_path):
    """The full wav2vec2-large-xlsr-53 architecture (315M parameters), random weights."""
    diff = _max_diff(tmp_path, "hf_xlsr53_large_ctc", samples=32000, batch=1)
    print(f"XLSR-53-large: max |Δ logits| = {diff:.3e}")
    gc.collect()
    assert diff <= TOLERANCE
