"""Checkpoint loading and saving: formats, hub ids (from a local cache), and errors that name the problem."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import make_hf_checkpoint
from streamer.checkpoint import load_checkpoint, load_pretrained_encoder, save_checkpoint
from streamer.convert.huggingface import encoder_config_from_hf, fold_weight_norm
from streamer.errors import CheckpointError, ConfigError
from streamer.model import EncoderConfig, Wav2Vec2CTC
from streamer.model.config import tiny_config
from streamer.vocab import english_characters


def _fake_hub_cache(cache, repo_id: str, files_from) -> None:
    """Lays out a Hugging Face hub cache entry (refs/main → snapshots/<commit>) holding a folder's files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        shutil.copy(f, snap / f.name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_streamer_format_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Wav2Vec2CTC(tiny_config(pos_conv_causal=True))
    model.reset_parameters()
    vocab = english_characters()
    save_checkpoint(tmp_path, model.eval(), vocab, {"note": "round trip"})
    loaded = load_checkpoint(tmp_path)
    assert loaded.format == "streamer-ctc"
    assert loaded.config == model.config
    assert loaded.vocab == vocab
    assert loaded.metadata["note"] == "round trip"
    x = torch.randn(1, 8000)
    with torch.no_grad():
        assert torch.equal(loaded.model(x)[0], model(x)[0])
    assert json.loads((tmp_path / "vocab.json").read_text())["a"] == vocab.tokens.index("a")


def test_hf_checkpoint_vocabulary(tmp_path):
    make_hf_checkpoint(tmp_path, "hf_tiny_layer_norm")
    ck = load_checkpoint(tmp_path)
    assert ck.format == "huggingface"
    assert ck.vocab.blank_id == 0
    assert ck.vocab.unk_id == 3
    assert ck.vocab.tokens[4] == "|"
    assert ck.vocab.ids_to_text([5, 6, 4, 7]) == "ab c"


def test_hub_id_loads_from_local_cache(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ref = make_hf_checkpoint(src, "hf_tiny_group_norm")
    cache = tmp_path / "cache"
    _fake_hub_cache(cache, "someone/tiny-ctc", src)
    ck = load_checkpoint("someone/tiny-ctc", cache_dir=cache)
    x = torch.randn(1, 6000)
    with torch.no_grad():
        assert (ck.model(x)[0] - ref(x).logits).abs().max() < 1e-4


def test_unknown_hub_id_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="could not be fetched"):
        load_checkpoint("nobody/does-not-exist", cache_dir=tmp_path)


@pytest.mark.parametrize("source, message", [
    ("not a model name!", "not a folder"),
])
def test_bad_source(source, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(source)


def test_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="neither a streamer checkpoint"):
        load_checkpoint(tmp_path)


def test_missing_weights_and_wrong_shapes(tmp_path):
    make_hf_checkpoint(tmp_path, "hf_tiny_layer_norm")
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "model.safetensors").rename(tmp_path / "moved.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors or pytorch_model.bin"):
        load_checkpoint(tmp_path)
    (tmp_path / "moved.safetensors").rename(tmp_path / "model.safetensors")
    cfg["intermediate_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("field, value, expected", [
    ("add_adapter", True, "add_adapter"),
    ("feat_extract_norm", "batch", "feat_extract_norm"),
    ("hidden_act", "mish", "hidden_act"),
    ("num_feat_extract_layers", 6, "num_feat_extract_layers"),
    ("model_type", "hubert", "model_type"),
])
def test_unsupported_config_names_field_and_value(field, value, expected):
    cfg = json.loads(open("tests/fixtures/hf_tiny_layer_norm.json").read())
    cfg[field] = value
    with pytest.raises(ConfigError, match=expected) as err:
        encoder_config_from_hf(cfg)
    assert str(value) in str(err.value)


def test_encoder_config_validation():
    with pytest.raises(ConfigError, match="num_heads"):
        EncoderConfig(hidden_size=100, num_heads=16)
    with pytest.raises(ConfigError, match="same length"):
        EncoderConfig(conv_dim=(512,) * 6)


def test_weight_norm_folding_matches_torch():
    conv = torch.nn.Conv1d(8, 8, 5, groups=2)
    wn = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    g = wn.parametrizations.weight.original0.detach()
    v = wn.parametrizations.weight.original1.detach()
    assert torch.allclose(fold_weight_norm(g, v, dim=2), wn.weight.detach(), atol=1e-6)


def test_pretrained_encoder_gets_fresh_head(tmp_path):
    ref = make_hf_checkpoint(tmp_path, "hf_tiny_layer_norm")
    vocab = english_characters()
    model = load_pretrained_encoder(tmp_path, vocab)
    assert model.config.vocab_size == len(vocab)
    hf = ref.state_dict()
    assert torch.equal(model.encoder.layers[0].attention.q_proj.weight,
                       hf["wav2vec2.encoder.layers.0.attention.q_proj.weight"])


def test_pretraining_only_checkpoint_needs_fine_tuning(tmp_path):
    make_hf_checkpoint(tmp_path, "hf_tiny_layer_norm")
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["architectures"] = ["Wav2Vec2ForPreTraining"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no CTC head"):
        load_checkpoint(tmp_path)
