"""Sequence-level teacher labels: the label store, CTC to a teacher's strings through a shared
phone head, the gradient scale that keeps the character CTC off the phone layers, and the options."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from streamer.errors import ConfigError
from streamer.model.config import tiny_config
from streamer.model.model import Wav2Vec2CTC
from streamer.train.labels import LabelStore, collapse_ctc, is_label_store, token_error_rate, write_label_store
from streamer.train.targets import StoreMeta

SR = 16000
TOKENS = ["a", "b", "<wb>", "<blank>"]


def test_collapse_and_token_error_rate():
    assert collapse_ctc([3, 0, 0, 3, 1, 1, 3, 1], blank=3) == [0, 1, 1]
    assert collapse_ctc([], blank=3) == []
    # one substitution in 4 reference tokens once the word boundary (2) is left out
    assert token_error_rate([([0, 2, 1, 1, 0], [0, 1, 0, 0])], ignore=[2]) == pytest.approx(0.25)
    assert token_error_rate([([0, 1], [0, 1]), ([1], [])]) == pytest.approx(1 / 3)


def test_label_store_round_trip_is_byte_stable(tmp_path):
    meta = StoreMeta("toy", "labels", len(TOKENS), 320)
    labels = {"f" * 40: [0, 2, 1], "0" * 40: [], "a" * 40: [1, 1]}
    assert write_label_store(tmp_path / "s", meta, TOKENS, labels) == 3
    first = (tmp_path / "s" / "labels.tsv").read_bytes()
    write_label_store(tmp_path / "s", meta, TOKENS, dict(reversed(list(labels.items()))))
    assert (tmp_path / "s" / "labels.tsv").read_bytes() == first  # sorted by key: same labels, same bytes
    assert first.splitlines()[0] == b"0" * 40 + b"\t"
    store = LabelStore(tmp_path / "s")
    assert is_label_store(tmp_path / "s") and len(store) == 3 and store.blank == 3
    assert store.get("f" * 40).tolist() == [0, 2, 1] and store.get("0" * 40).tolist() == []
    assert store.get("1" * 40) is None
    assert store.decode(store.encode(["b", "<wb>"])) == ["b", "<wb>"]
    with pytest.raises(ConfigError, match="blank"):
        store.encode(["<blank>"])
    with pytest.raises(ConfigError, match="ids below"):
        write_label_store(tmp_path / "t", meta, TOKENS, {"e" * 40: [3]})


def test_label_store_refuses_bad_lines(tmp_path):
    write_label_store(tmp_path / "s", StoreMeta("toy", "labels", len(TOKENS), 320), TOKENS, {"e" * 40: [1]})
    (tmp_path / "s" / "labels.tsv").write_text("e" * 40 + "\t1 3\n")  # 3 is the blank
    with pytest.raises(ConfigError, match=r"labels.tsv:1: expected key<TAB>ids below 3"):
        LabelStore(tmp_path / "s")
    (tmp_path / "s" / "labels.tsv").write_text("short\t1\n")
    with pytest.raises(ConfigError, match="labels.tsv:1"):
        LabelStore(tmp_path / "s")


def test_gradient_scale_keeps_the_forward_and_scales_what_reaches_the_lower_layers():
    torch.manual_seed(0)
    model = Wav2Vec2CTC(tiny_config(vocab_size=8))
    model.reset_parameters()
    x = torch.randn(2, 12, model.config.hidden_size)
    lower = model.encoder.layers[0].feed_forward.fc2.weight
    grads, outs = {}, {}
    for scale in (None, 0.0, 0.25):
        model.zero_grad()
        out, (tap,) = model.encoder.forward_taps(x, None, (1,), None if scale is None else (1, scale))
        out.square().sum().backward()
        grads[scale] = torch.zeros_like(lower) if lower.grad is None else lower.grad.clone()
        outs[scale] = out.detach()
    assert torch.allclose(outs[0.0], outs[None], atol=1e-6) and torch.allclose(outs[0.25], outs[None], atol=1e-5)
    assert float(grads[0.0].abs().max()) == 0.0  # nothing from above layer 1 reaches it
    assert torch.allclose(grads[0.25], 0.25 * grads[None], rtol=1e-4, atol=1e-7)
    # the tapped state keeps its whole gradient
    model.zero_grad()
    _, (tap,) = model.encoder.forward_taps(x, None, (1,), (1, 0.0))
    tap.sum().backward()
    assert float(lower.grad.abs().max()) > 0


def test_shared_head_is_one_module_and_one_prediction():
    from streamer.train.config import DistillConfig, DistillTarget
    from streamer.train.step import DistillHeads

    metas = [StoreMeta("hama", "log_posteriors", 4, 320), StoreMeta("hama", "labels", 4, 320)]
    targets = (DistillTarget("post", layer=1, head_norm=True), DistillTarget("labels", layer=1, share_head=0))
    DistillConfig(targets)  # valid
    heads = DistillHeads(16, targets, metas)
    assert heads.head(1) is heads.head(0)
    assert sum(p.numel() for p in heads.parameters()) == 16 * 2 + 16 * 4 + 4  # LayerNorm + Linear, once
    a, b = heads.predictions(torch.zeros(1, 3, 16), [torch.randn(1, 3, 16)])
    assert a is b
    with pytest.raises(ConfigError, match="share_head"):
        DistillConfig((DistillTarget("post", layer=1), DistillTarget("labels", layer=2, share_head=0)))
    with pytest.raises(ConfigError, match="share_head"):
        DistillConfig((DistillTarget("labels", layer=1, share_head=0),))


def test_distill_option_parses_head_modifiers():
    from streamer.train.cli import _distill_target

    t = _distill_target("data/labels/hama:1:6:share0+fixed")
    assert (t.layer, t.share_head, t.decays, t.head_norm) == (6, 0, False, False)
    t = _distill_target("data/targets/hama:1:6:linear+norm")
    assert (t.share_head, t.decays, t.head_norm, t.head_hidden) == (None, True, True, 0)
    with pytest.raises(argparse.ArgumentTypeError, match="HEAD"):
        _distill_target("x:1:6:linear+loud")


def _phone_string(text: str) -> list[int]:
    """A stand-in teacher's labels: vowels 0, consonants 1, a word boundary 2 between words."""
    out: list[int] = []
    for w in text.split():
        if out:
            out.append(2)
        out.extend(0 if c in "aeiou" else 1 for c in w if c.isalpha())
    return out


def test_training_learns_label_strings_of_untranscribed_audio(tmp_path):
    """Rows without a transcript learn a teacher's label strings by CTC on a LayerNorm head on layer 1,
    under speed augmentation (labels need no time map); the character CTC on top learns from the
    transcribed rows with no gradient into layer 1; the evaluation reports the token error rate."""
    from streamer.train.config import DistillConfig, DistillTarget, TrainConfig
    from streamer.train.corpus.tts import Voice, synthesize
    from streamer.train.masking import SpecAugmentConfig
    from streamer.train.augment import AugmentConfig
    from streamer.train.run import train
    from streamer.train.targets import audio_key
    from streamer.train.data import load_waveform

    sentences = ["open the door", "close the window", "turn on the light", "good morning", "what time is it",
                 "play some music"]
    labels, text_rows, audio_rows = {}, [], []
    for i, text in enumerate(sentences):
        path = tmp_path / f"u{i}.flac"
        sf.write(path, synthesize(Voice("espeak", "en-us+m1" if i % 2 else "en-us+f2"), text), SR)
        labels[audio_key(load_waveform(path))] = _phone_string(text)
        text_rows.append(f"{path}\t{text}\n")
        audio_rows.append(f"{path}\t\n")
    write_label_store(tmp_path / "labels", StoreMeta("toy", "labels", len(TOKENS), 320), TOKENS, labels)
    (tmp_path / "text.tsv").write_text("".join(text_rows[:2]))
    (tmp_path / "audio.tsv").write_text("".join(audio_rows))
    distill = DistillConfig((DistillTarget(str(tmp_path / "labels"), layer=1, head_norm=True),),
                            heldout=(str(tmp_path / "audio.tsv"),), ctc_grad_layer=1, ctc_grad_scale=0.0)
    steps = 80
    cfg = TrainConfig(train_manifests=(str(tmp_path / "text.tsv"), str(tmp_path / "audio.tsv")),
                      out_dir=str(tmp_path / "run"), preset="tiny", max_steps=steps, dev_manifest=str(tmp_path / "text.tsv"),
                      warmup_steps=2, peak_lr=3e-3, max_batch_seconds=12.0, buckets=2, eval_every=steps, log_every=10,
                      augment=AugmentConfig(speed_prob=1.0), threads=1, seed=0,
                      specaugment=SpecAugmentConfig(time_prob=0.0), distill=distill)
    summary = train(cfg, show_progress=False)
    assert summary.steps == steps
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    curve = [x["distill0"] for x in rows if "distill0" in x]
    assert curve[-1] < 0.75 * curve[0], curve  # per-label CTC falls with the speed changes on
    assert rows[-1 if "eval" in rows[-1] else -2]["eval"]["step"] == steps
    last_eval = [x for x in rows if "eval" in x][-1]
    per = last_eval["teacher_gap"][str(tmp_path / "audio.tsv")][0]
    assert 0.0 <= per <= 1.5  # a token error rate, not a loss


def test_merge_label_stores_keeps_the_first_and_refuses_another_inventory(tmp_path):
    from streamer.train.labels import merge_label_stores

    meta = StoreMeta("toy", "labels", len(TOKENS), 320)
    write_label_store(tmp_path / "a", meta, TOKENS, {"a" * 40: [0], "b" * 40: [1]})
    write_label_store(tmp_path / "b", meta, TOKENS, {"b" * 40: [0, 0], "c" * 40: [2]})
    assert merge_label_stores(tmp_path / "a", [tmp_path / "b"]) == 3
    merged = LabelStore(tmp_path / "a")
    assert merged.get("b" * 40).tolist() == [1] and merged.get("c" * 40).tolist() == [2]
    write_label_store(tmp_path / "x", StoreMeta("toy", "labels", 3, 320), ["a", "b", "<blank>"], {"d" * 40: [1]})
    with pytest.raises(ConfigError, match="expected toy over 4"):
        merge_label_stores(tmp_path / "a", [tmp_path / "x"])


def test_a_store_with_nothing_for_a_bank_gives_empty_targets():
    """A held-out set none of whose audio a store covers (the synthetic corpus's posteriors on real
    speech, say) gathers zero frames instead of indexing an empty array."""
    from streamer.train.bank import TargetBank, label_bank

    empty = TargetBank(torch.zeros(0, 4, dtype=torch.float16), np.zeros(3, np.int64), np.zeros(3, np.int64))
    values, frames = empty.gather(np.array([0, 2]))
    assert values.shape == (2, 1, 4) and frames.tolist() == [0, 0]
    ids, counts = label_bank([None, np.array([1, 0], np.int16), None]).gather(np.array([2, 1]))
    assert ids.tolist() == [[0, 0], [1, 0]] and counts.tolist() == [0, 2]
