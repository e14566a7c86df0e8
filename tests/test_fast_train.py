"""The fast training step: on-device augmentation and masks, the int16 bank and its buckets, the
tensor-mask forward, the Opus pack, and the GPU recipe's CPU dry run (pack, run, resume, join)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO
from streamer.model.config import tiny_config
from streamer.model.masks import ChunkAttention, chunk_mask
from streamer.model.model import Wav2Vec2CTC
from streamer.train.device_augment import (
    DeviceAugmentConfig,
    DeviceAugmenter,
    mulaw_roundtrip,
    resample_rows,
    room_impulse_responses,
    valid_mask,
    warp_rows,
)
from streamer.train.fast import AudioBank, ShapeBuckets, chunk_allowed, masked_forward, time_span_mask
from streamer.train.masking import DynamicChunkConfig
from streamer.train.pack import check_pack, join_parts, pack_corpus, split_file
from streamer.vocab import english_characters

SR = 16000
SENTENCES = ["open the door", "close the window", "turn on the light", "good morning", "what time is it",
             "play some music"]


def _tone(hz: float, n: int, amp: float = 0.3) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * hz * torch.arange(n) / SR)


def _peak_hz(x: torch.Tensor) -> float:
    spec = torch.fft.rfft(x * torch.hann_window(len(x), dtype=x.dtype)).abs()
    return float(spec.argmax()) * SR / len(x)


def test_device_defaults_equal_the_numpy_reference():
    from streamer.corpus.augment import AugmentConfig

    ref, dev = AugmentConfig(), DeviceAugmentConfig()
    shared = {f.name for f in dataclasses.fields(dev)} & {f.name for f in dataclasses.fields(ref)}
    assert len(shared) >= 15
    assert {k: getattr(dev, k) for k in shared} == {k: getattr(ref, k) for k in shared}


@pytest.mark.parametrize("p,q", [(11, 10), (9, 10), (21, 20)])
def test_speed_moves_a_tone_by_the_factor_and_sets_lengths(p, q):
    n, length = 64000, 48000
    wave = (_tone(440, n) * (torch.arange(n) < length))[None]
    out, new = resample_rows(wave, torch.tensor([length]), p, q)
    assert int(new) == length * q // p
    body = out[0, 2000:int(new) - 2000]
    assert _peak_hz(body) == pytest.approx(440 * p / q, abs=2.0)
    assert float(body.abs().max()) == pytest.approx(0.3, abs=0.01)
    assert float(out[0, int(new):].abs().max()) == 0.0


def test_warp_identity_and_a_shift_below_the_cutoff():
    n = 32000
    wave = torch.stack([_tone(500, n), _tone(500, n)])
    out = warp_rows(wave, torch.tensor([n, n]), torch.tensor([1.0, 1.1]), 4800.0)
    assert float((out[0] - wave[0]).abs().max()) < 1e-3
    assert _peak_hz(out[1]) == pytest.approx(550, abs=4)
    assert float(out[1].pow(2).mean()) == pytest.approx(float(wave[1].pow(2).mean()), rel=1e-3)


def test_room_impulse_responses_have_unit_energy_and_decay():
    gen = torch.Generator().manual_seed(0)
    h = room_impulse_responses(torch.tensor([0.1, 0.5]), torch.tensor([0.0, 10.0]), gen, 0.6)
    assert torch.allclose(h.pow(2).sum(1), torch.ones(2), atol=1e-5)
    assert float(h[0, int(0.12 * SR):].abs().max()) == 0.0  # the 0.1-s room is silent after its RT60
    assert float(h[1, 1:].pow(2).sum() / h[1, 0] ** 2) == pytest.approx(0.1, rel=1e-3)  # DRR 10 dB


def test_mulaw_matches_the_numpy_reference():
    from streamer.corpus.augment import mulaw_roundtrip as reference

    x = np.linspace(-1.2, 1.2, 2001, dtype=np.float32)
    assert np.allclose(mulaw_roundtrip(torch.from_numpy(x)).numpy(), reference(x), atol=1e-6)


def test_augmenter_contract_lengths_zero_tail_peak():
    gen = torch.Generator().manual_seed(3)
    b, n = 8, 48000
    lengths = torch.tensor([48000, 40000, 30000, 20000, 47000, 16000, 44000, 36000])
    wave = torch.randn(b, n, generator=gen) * 0.3 * valid_mask(lengths, n)
    cfg = DeviceAugmentConfig(speed_prob=1.0, warp_prob=1.0, reverb_prob=1.0, noise_prob=1.0, channel_prob=1.0)
    aug = DeviceAugmenter(cfg, torch.device("cpu"), seed=1)
    for _ in range(3):
        speed = aug.draw_speed(lengths.numpy(), n)
        out, after = aug(wave, lengths, speed)
        assert torch.equal(after, torch.from_numpy(speed.lengths))
        assert bool(torch.isfinite(out).all())
        assert float(out.abs().max()) <= cfg.peak_limit + 1e-6
        assert float((out * ~valid_mask(after, n)).abs().max()) == 0.0
        assert int(after.max()) <= n
        assert not torch.allclose(out, wave)


def test_telephone_channel_removes_the_upper_band():
    n = 32000
    cfg = DeviceAugmentConfig(speed_prob=0, warp_prob=0, reverb_prob=0, noise_prob=0, channel_prob=1.0,
                              lowpass_hz_range=(3400.0, 3400.0), gain_prob=0.0)
    aug = DeviceAugmenter(cfg, torch.device("cpu"), seed=0)
    wave = (_tone(1000, n, 0.2) + _tone(6000, n, 0.2))[None].repeat(4, 1)
    out, _ = aug(wave, torch.full((4,), n))
    spec = torch.fft.rfft(out).abs()
    hz = torch.fft.rfftfreq(n, 1 / SR)
    assert bool((spec[:, (hz - 6000).abs() < 20].amax(1) < 0.01 * spec[:, (hz - 1000).abs() < 20].amax(1)).all())


def test_bank_take_places_utterances_after_their_lead():
    vocab = english_characters()
    waves = [np.full(100, 0.25, np.float32), np.full(50, -0.5, np.float32)]
    bank = AudioBank.from_waves(waves, ["ab", "c"], vocab)
    out = bank.take(torch.tensor([1, 0]), 160, torch.tensor([10, 0]))
    assert out.shape == (2, 160)
    assert torch.all(out[0, 10:60] == -0.5) and torch.all(out[0, :10] == 0) and torch.all(out[0, 60:] == 0)
    assert torch.all(out[1, :100] == 0.25) and torch.all(out[1, 100:] == 0)
    assert bank.labels[0, :2].tolist() == vocab.encode("ab")


def test_buckets_have_fixed_shapes_under_the_budget_and_cover_every_utterance():
    rng = np.random.default_rng(0)
    lengths = (rng.uniform(1.0, 12.0, 500) * SR).astype(int)
    buckets = ShapeBuckets.fit(lengths, 100.0, 6, pad_samples=4800)
    assert sorted(np.concatenate(buckets.members).tolist()) == list(range(500))
    for w, r, m in zip(buckets.widths, buckets.rows, buckets.members):
        assert r * w <= 100 * SR and bool((lengths[m] + 4800 <= w).all())
    seen = set()
    for b, rows in buckets.epoch(seed=1):
        assert len(rows) == buckets.rows[b]
        seen.update(rows.tolist())
    assert seen == set(range(500))
    assert 0 < buckets.padding_share(lengths) < 0.5


def test_masked_forward_equals_the_model_forward():
    torch.manual_seed(0)
    model = Wav2Vec2CTC(tiny_config(pos_conv_causal=True)).eval()
    model.reset_parameters()
    wave = torch.randn(3, 16000)
    lengths = torch.tensor([16000, 12000, 9000])
    t = model.config.num_frames(16000)
    for chunk in (None, ChunkAttention(8, 2, 3), ChunkAttention(5, -1, 0)):
        allowed = torch.ones(t, t, dtype=torch.bool) if chunk is None else chunk_mask(t, chunk)
        ref, ref_len = model(wave, lengths, chunk=chunk)
        got, got_len = masked_forward(model, wave, lengths, allowed)
        assert torch.equal(ref_len, got_len)
        assert torch.allclose(ref, got, atol=1e-5)


def test_device_chunk_masks_are_block_causal_or_full():
    gen = torch.Generator().manual_seed(0)
    cfg = DynamicChunkConfig(full_prob=0.0, chunk_min=4, chunk_max=4, left_choices=(1,))
    allowed = chunk_allowed(40, cfg, gen, torch.device("cpu"))
    offsets = [o for o in range(4) if torch.equal(allowed, chunk_mask(40, ChunkAttention(4, 1, o)))]
    assert len(offsets) == 1
    assert bool(chunk_allowed(40, DynamicChunkConfig(full_prob=1.0), gen, torch.device("cpu")).all())


def test_time_span_mask_stays_inside_and_masks_about_the_expected_share():
    gen = torch.Generator().manual_seed(0)
    valid = torch.tensor([400] * 50 + [100] * 50)
    mask = time_span_mask(valid, 400, 0.05, 10, gen)
    assert not bool(mask[50:, 100:].any())
    from streamer.train.masking import span_mask

    reference = span_mask((50, 400), 0.05, 10, valid[:50], gen)  # the host version the old loop uses
    share, expected = float(mask[:50].float().mean()), float(reference.float().mean())
    assert abs(share - expected) < 0.01 and 0.03 < share < 0.06  # ~2 spans of 10 frames per 400


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six espeak-ng utterances and a manifest."""
    from streamer.corpus.tts import Voice, synthesize

    root = tmp_path_factory.mktemp("fastcorpus")
    lines = []
    for i, text in enumerate(SENTENCES):
        sf.write(root / f"u{i}.flac", synthesize(Voice("espeak", "en-us+m1" if i % 2 else "en-us+f2"), text), SR)
        lines.append(f"u{i}.flac\t{text}")
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    return root / "train.tsv"


def test_pack_decodes_sample_exact_at_the_offsets(corpus, tmp_path):
    summary = pack_corpus(corpus, tmp_path / "pack")
    assert summary.utterances == len(SENTENCES) and summary.shards == 1
    check = check_pack(tmp_path / "pack", corpus)
    assert check.streams_exact
    assert check.exact >= len(SENTENCES) - 1 and all(abs(lag) <= 8 for lag in check.lags)
    assert check.median_ser_db > 5.0


def test_split_and_join_round_trip_and_catch_a_damaged_part(tmp_path):
    data = np.random.default_rng(0).bytes(2500)
    (tmp_path / "blob.bin").write_bytes(data)
    parts = split_file(tmp_path / "blob.bin", tmp_path / "parts", part_bytes=1000)
    assert [p.stat().st_size for p in parts] == [1000, 1000, 500]
    assert join_parts(tmp_path / "parts", "blob.bin", tmp_path / "back.bin").read_bytes() == data
    parts[1].write_bytes(b"x" * 1000)
    from streamer.errors import ConfigError

    with pytest.raises(ConfigError, match="does not match"):
        join_parts(tmp_path / "parts", "blob.bin", tmp_path / "bad.bin")


def _gpu_train():
    spec = importlib.util.spec_from_file_location("gpu_train", REPO / "tools" / "gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_recipe_dry_run_packs_trains_returns_resumes_and_joins(corpus, tmp_path, capsys):
    from streamer.checkpoint import load_checkpoint

    tool = _gpu_train()
    carry, ret = tmp_path / "carry", tmp_path / "return"
    assert tool.main(["pack", "--train", str(corpus), "--dev", str(corpus), "--out", str(carry)]) == 0
    # The GPU machine has neither soundfile nor soxr: run with both blocked (ffmpeg decodes the Opus).
    blocker = ("import runpy, sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('soundfile', 'soxr'):\n"
               "            raise ImportError(name + ' is absent on the GPU machine')\n"
               "sys.meta_path.insert(0, Block())\n"
               f"sys.argv = ['gpu_train.py'] + sys.argv[1:]\n"
               f"runpy.run_path({str(REPO / 'tools' / 'gpu_train.py')!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", blocker, "run", "--dry-run", "--corpus", str(carry), "--out",
                           str(tmp_path / "run"), "--budget-minutes", "5", "--return-dir", str(ret)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done: 6 steps" in proc.stdout
    parts = sorted(ret.glob("compact.pt.part*"))
    assert parts and all(p.stat().st_size <= 16 * 2**20 for p in parts)
    summary = json.loads((ret / "summary.json").read_text())
    assert summary["steps"] == 6
    losses = [json.loads(x)["loss"] for x in (ret / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    # A fresh machine: the returned parts resume the run (step count and budget continue).
    assert tool.main(["run", "--dry-run", "--corpus", str(carry), "--out", str(tmp_path / "run2"),
                      "--budget-minutes", "5", "--max-steps", "9", "--resume-from", str(ret)]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 6" in out and "done: 9 steps" in out
    assert tool.main(["join", "--parts", str(ret), "--out", str(tmp_path / "joined")]) == 0
    ckpt = load_checkpoint(tmp_path / "joined" / "last")
    assert ckpt.metadata["step"] == 6
    assert ckpt.model.config == tiny_config(vocab_size=len(ckpt.vocab), pos_conv_causal=True)
