"""Window stitching of long audio: exact frame tiling, and windowed == whole where the context suffices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamer.errors import ConfigError
from streamer.model import ChunkAttention, Wav2Vec2CTC
from streamer.model.config import tiny_config
from streamer.offline import WindowConfig, iter_window_logits

torch.manual_seed(5)
MODEL = Wav2Vec2CTC(tiny_config(pos_conv_causal=True))
MODEL.reset_parameters()
MODEL.eval()


def _blocks(x: np.ndarray, size: int):
    return [x[i:i + size] for i in range(0, len(x), size)]


@pytest.mark.parametrize("samples", [400, 16000, 32080, 100_000 + 17, 320 * 333 + 80])
@pytest.mark.parametrize("block", [999, 16000, 10**7])
def test_frames_tile_exactly(samples, block):
    x = np.random.default_rng(samples).standard_normal(samples).astype(np.float32) * 0.3
    parts = list(iter_window_logits(MODEL, _blocks(x, block), WindowConfig(80, 20)))
    starts = [s for s, _ in parts]
    ends = [s + len(t) for s, t in parts]
    assert starts[0] == 0
    assert all(e == s for e, s in zip(ends, starts[1:])), "gap or overlap between windows"
    assert ends[-1] == MODEL.config.num_frames(samples)


def test_windowed_equals_whole_when_context_covers_receptive_field():
    """A block-causal model sees a bounded past, so with enough window context every frame matches."""
    x = np.random.default_rng(0).standard_normal(16000 * 6).astype(np.float32) * 0.3
    chunk = ChunkAttention(4, 1, 0)  # receptive field: 2 layers x (2 chunks) + pos conv < 30 frames
    with torch.no_grad():
        whole, _ = MODEL(torch.from_numpy(x)[None], chunk=chunk)
    stitched = torch.cat([t for _, t in iter_window_logits(MODEL, _blocks(x, 5000), WindowConfig(100, 30), chunk)])
    assert stitched.shape == whole[0].shape
    assert (stitched - whole[0]).abs().max().item() < 1e-4


def test_full_attention_windows_agree_far_from_edges():
    """Full attention: frames far from window edges stay close to the whole-file logits (not exact)."""
    model = Wav2Vec2CTC(tiny_config())
    model.reset_parameters()
    model.eval()
    x = np.random.default_rng(1).standard_normal(16000 * 4).astype(np.float32) * 0.3
    with torch.no_grad():
        whole, _ = model(torch.from_numpy(x)[None])
    stitched = torch.cat([t for _, t in iter_window_logits(model, _blocks(x, 7000), WindowConfig(150, 40))])
    assert stitched.shape == whole[0].shape
    corr = torch.corrcoef(torch.stack([stitched.flatten(), whole[0].flatten()]))[0, 1]
    assert corr > 0.9


def test_window_config_errors():
    with pytest.raises(ConfigError, match="window_frames > 2"):
        WindowConfig(100, 50)
    assert WindowConfig.from_seconds(20.0, 2.0) == WindowConfig(1000, 100)
