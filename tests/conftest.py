"""Shared test fixtures: random-weight reference models built from stored configs (no downloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def hf_config_dict(name: str) -> dict:
    """A stored Hugging Face config (tests/fixtures/<name>.json)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def make_hf_checkpoint(folder: Path, config_name: str, *, seed: int = 0, safetensors: bool = True,
                       vocab: dict | None = None) -> "torch.nn.Module":
    """Writes a random-weight transformers Wav2Vec2ForCTC checkpoint and returns the reference model."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    config = Wav2Vec2Config(**hf_config_dict(config_name))
    model = Wav2Vec2ForCTC(config).eval()
    # Random non-trivial values where HF initializes constants, so the parity check covers them.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("conv.bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder, safe_serialization=safetensors)
    if vocab is None:
        vocab = json.loads((FIXTURES / "hf_tiny_vocab.json").read_text())
        size = config.vocab_size
        vocab = {k: v for k, v in vocab.items() if v < size}
        vocab.update({f"x{i}": i for i in range(len(vocab), size)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"word_delimiter_token": "|", "pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}))
    return model


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random-weight streamer checkpoint with a causal positional conv (cached streaming works)."""
    from streamer.checkpoint import save_checkpoint
    from streamer.model import Wav2Vec2CTC
    from streamer.model.config import tiny_config
    from streamer.vocab import english_characters

    torch.manual_seed(0)
    m = Wav2Vec2CTC(tiny_config(pos_conv_causal=True))
    m.reset_parameters()
    return save_checkpoint(tmp_path_factory.mktemp("model"), m.eval(), english_characters())


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory):
    """A tiny random-weight Hugging Face Wav2Vec2ForCTC checkpoint (vocab.json of 12 tokens); read it, never
    write into it (tests that edit a file link the others into a folder of their own)."""
    folder = tmp_path_factory.mktemp("hf")
    make_hf_checkpoint(folder, "hf_tiny_layer_norm")
    return folder


@pytest.fixture(scope="session")
def kenlm_tools():
    """lmplz/build_binary (tools/build_kenlm.sh); built here only when STREAMER_BUILD_KENLM=1."""
    import subprocess

    from streamer.decoding.build_lm import BUILD_SCRIPT, KenLMToolsMissingError, find_kenlm_tools

    try:
        return find_kenlm_tools()
    except KenLMToolsMissingError:
        if os.environ.get("STREAMER_BUILD_KENLM") != "1":
            pytest.skip(f"KenLM's lmplz/build_binary are not built: run 'bash {BUILD_SCRIPT}' "
                        "(or set STREAMER_BUILD_KENLM=1 to let this test build them)")
    subprocess.run(["bash", str(REPO / BUILD_SCRIPT)], check=True, env={**os.environ, "JOBS": os.environ.get("JOBS", "2")})
    return find_kenlm_tools()
