"""The training loop: fine-tuning a tiny random XLSR-shaped checkpoint, resuming, budgets, distillation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_hf_checkpoint
from streamer.checkpoint import load_checkpoint, save_checkpoint
from streamer.train.data import length_batches, read_manifest
from streamer.train.masking import DynamicChunkConfig, SpecAugmentConfig
from streamer.train.config import TrainConfig
from streamer.train.run import lr_at, train

SENTENCES = ["open the door", "close the window", "turn on the light", "good morning"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four espeak-ng utterances and a manifest (the CI install provides espeak-ng)."""
    from streamer.train.corpus.tts import Voice, synthesize

    root = tmp_path_factory.mktemp("corpus")
    lines = []
    for i, text in enumerate(SENTENCES):
        sf.write(root / f"u{i}.flac", synthesize(Voice("espeak", "en-us+m1"), text), 16000)
        lines.append(f"u{i}.flac\t{text}")
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    return root / "train.tsv"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny random checkpoint in the shape of XLSR-53 pre-training (no CTC head)."""
    folder = tmp_path_factory.mktemp("xlsr-tiny")
    make_hf_checkpoint(folder, "hf_tiny_layer_norm")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["Wav2Vec2ForPreTraining"]
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def _config(corpus: Path, out: Path, **kw) -> TrainConfig:
    base = dict(train_manifests=(str(corpus),), dev_manifest=str(corpus), out_dir=str(out), max_steps=24,
                warmup_steps=4, peak_lr=3e-3, final_lr_ratio=0.5, max_batch_seconds=30.0, eval_every=24,
                log_every=4, augment=None, pad_seconds=0.0, threads=2, seed=1,
                specaugment=SpecAugmentConfig(time_prob=0.0), dynamic_chunk=None)
    base.update(kw)
    return TrainConfig(**base)


def test_fine_tuning_loss_decreases_and_checkpoint_round_trips(corpus, pretrained, tmp_path):
    cfg = _config(corpus, tmp_path / "run", init_from=str(pretrained), freeze_feature_encoder=True,
                  causal_pos_conv=False)
    summary = train(cfg, show_progress=False)
    assert summary.steps == 24
    losses = _losses(tmp_path / "run")
    assert losses[-1] < 0.7 * losses[0], losses
    best = load_checkpoint(tmp_path / "run" / "best")
    last = load_checkpoint(tmp_path / "run" / "last")
    assert best.config.hidden_size == 48 and len(last.vocab) == 30
    # the frozen feature encoder kept the pre-trained weights
    from safetensors.torch import load_file
    hf = load_file(str(pretrained / "model.safetensors"))
    key = "wav2vec2.feature_extractor.conv_layers.0.conv.weight"
    assert (last.model.feature_extractor.conv_layers[0].conv.weight - hf[key]).abs().max() == 0


def test_resume_continues_from_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    train(_config(corpus, out, preset="tiny", max_steps=8, dynamic_chunk=DynamicChunkConfig()), show_progress=False)
    first = _losses(out)
    summary = train(_config(corpus, out, preset="tiny", max_steps=12, dynamic_chunk=DynamicChunkConfig()), show_progress=False)
    assert summary.steps == 12
    assert len(_losses(out)) == len(first) + 1  # steps 9..12 logged once more (log_every=4)


def test_lr_schedule_and_batching():
    cfg = TrainConfig(train_manifests=("x.tsv",), out_dir="o", max_steps=1000, warmup_steps=100, peak_lr=1e-3,
                      final_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    assert all(lr_at(i, cfg) >= lr_at(i + 1, cfg) for i in range(100, 999))
    durations = list(np.random.default_rng(0).uniform(1, 10, 300))
    batches = length_batches(durations, 40.0, rng=None, sorted_order=True)
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert all(len(b) * max(durations[i] for i in b) <= 40.0 or len(b) == 1 for b in batches)
    firsts = [durations[b[0]] for b in batches]
    assert firsts == sorted(firsts)


def test_manifest_formats(tmp_path):
    (tmp_path / "a.tsv").write_text("x.flac\tHello, World!\n")
    (tmp_path / "a.lengths").write_text("1.5\n")
    (tmp_path / "x.flac").write_bytes(b"")  # with .lengths, only its existence is checked when the manifest is read
    (tmp_path / "cv.tsv").write_text("client_id\tpath\tsentence\n1\ty.flac\tIt's fine.\n")
    sf.write(tmp_path / "y.flac", np.zeros(8000, dtype=np.float32), 16000)
    a = read_manifest(tmp_path / "a.tsv")[0]
    assert (a.text, a.duration, a.path) == ("hello world", 1.5, tmp_path / "x.flac")
    cv = read_manifest(tmp_path / "cv.tsv")[0]
    assert (cv.text, cv.duration) == ("it's fine", 0.5)


def test_warm_restart_keeps_a_matching_head_and_replaces_another(corpus, tmp_path):
    from streamer.checkpoint import load_pretrained_encoder
    from streamer.vocab import english_characters

    train(_config(corpus, tmp_path / "a", preset="tiny", max_steps=2, warmup_steps=1, eval_every=100), show_progress=False)
    source = load_checkpoint(tmp_path / "a" / "last")
    vocab = english_characters()
    kept = load_pretrained_encoder(tmp_path / "a" / "last", vocab, pos_conv_causal=True)
    assert (kept.ctc_head.weight - source.model.ctc_head.weight).abs().max() == 0
    other = load_pretrained_encoder(tmp_path / "a" / "last", vocab, pos_conv_causal=True, keep_matching_head=False)
    assert (other.ctc_head.weight - source.model.ctc_head.weight).abs().max() > 0
    # the encoder body is carried over either way
    key = "feature_extractor.conv_layers.0.conv.weight"
    assert (other.state_dict()[key] - source.model.state_dict()[key]).abs().max() == 0


def test_time_budget_anneals_and_stops(corpus, tmp_path):
    cfg = TrainConfig(train_manifests=("x.tsv",), out_dir="o", max_steps=1000, warmup_steps=10, peak_lr=1e-3,
                      final_lr_ratio=0.1, time_budget_minutes=1.0)
    no_budget = TrainConfig.from_dict({**cfg.to_dict(), "time_budget_minutes": None})
    assert lr_at(20, cfg, elapsed_s=0.0) == pytest.approx(lr_at(20, no_budget))
    assert lr_at(20, cfg, elapsed_s=30.0) < lr_at(20, cfg, elapsed_s=0.0)
    assert lr_at(20, cfg, elapsed_s=60.0) == pytest.approx(1e-4)  # budget spent: the floor
    summary = train(_config(corpus, tmp_path / "b", preset="tiny", max_steps=10_000, eval_every=10_000,
                            time_budget_minutes=0.05), show_progress=False)
    assert 0 < summary.steps < 10_000
    # resuming a spent budget takes no further step
    again = train(_config(corpus, tmp_path / "b", preset="tiny", max_steps=10_000, eval_every=10_000,
                          time_budget_minutes=0.05), show_progress=False)
    assert again.steps == summary.steps


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_resume_refuses_a_checkpoint_that_would_run_code(corpus, tmp_path, monkeypatch):
    import pickle

    from streamer.errors import CheckpointError

    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"model": _Payload(), "optimizer": {}, "state": {}}))
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        train(_config(corpus, out, preset="tiny", max_steps=2, warmup_steps=1), show_progress=False)
    assert not (tmp_path / "PWNED").exists()


def test_a_model_folder_is_never_a_run_folder(corpus, tmp_path):
    """--out naming a model folder is refused before anything is written; a run resumes in its own."""
    from streamer.errors import ConfigError

    model = tmp_path / "model"
    save_checkpoint(model, load_checkpoint("demo-en").model, load_checkpoint("demo-en").vocab)
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="not a training run's"):
        train(_config(corpus, model, preset="tiny", max_steps=2, warmup_steps=1), show_progress=False)
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before
    with pytest.raises(ConfigError, match="differ"):  # a run trained with other settings is not resumed
        out = tmp_path / "run"
        train(_config(corpus, out, preset="tiny", max_steps=2, warmup_steps=1), show_progress=False)
        train(_config(corpus, out, preset="tiny", max_steps=3, warmup_steps=1, peak_lr=1e-2), show_progress=False)
