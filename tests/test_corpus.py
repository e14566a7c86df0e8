"""Tests of the synthetic-speech corpus tools (streamer.train.corpus); the whole file runs in seconds."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import soundfile as sf

from streamer.constants import SAMPLE_RATE
from streamer.train.corpus.build import (
    ManifestEntry,
    build_corpus,
    iter_plan,
    parse_weights,
    plan_split,
    read_manifest,
    write_manifest,
)
from streamer.train.corpus.text_sources import (
    HeldOutFilter,
    Sentence,
    SplitConfig,
    TextRejected,
    available_sources,
    clean_sentence,
    load_sentences,
    split_into_sentences,
    split_of,
    split_sentences,
    write_lm_text,
)
from streamer.train.corpus.tts import (
    HELD_OUT_VOICES,
    OUTPUT_PEAK,
    Synthesizer,
    Voice,
    check_audio,
    engine_missing,
    held_out_voices,
    sample_voice,
    training_voices,
    trim_silence,
)
from streamer.errors import AudioError, ConfigError
from streamer.text import normalize_text

# ------------------------------------------------------------------------------------------------
# Text


@pytest.mark.parametrize("raw, text", [
    ("Don't panic, it's only a test!", "don't panic it's only a test"),
    ("\u201cWell\u2014I never,\u201d she said.", "well i never she said"),
    ("The caf\u00e9 (on the left) was closed.", "the cafe on the left was closed"),
    ("O Lord, hear my prayer.", "o lord hear my prayer"),
])
def test_clean_sentence_keeps_good_sentences(raw, text):
    sentence = clean_sentence(raw, "test")
    assert sentence.text == text
    assert normalize_text(sentence.spoken) == sentence.text
    assert sentence.spoken.isascii()


@pytest.mark.parametrize("raw, reason", [
    ("I bought 42 apples today.", "digits"),
    ("Mr. Smith went to town.", "abbreviation"),
    ("The NASA rocket went up.", "capitals"),
    ("Press the x key now please.", "letter"),
    ("Q: What is the answer to this?", "letter"),
    ("Send mail to joe@example now.", "characters"),
    ("Too short.", "too few words"),
    (" ".join(["word"] * 21) + ".", "too many words"),
])
def test_clean_sentence_rejects_text_tts_would_misread(raw, reason):
    with pytest.raises(TextRejected) as info:
        clean_sentence(raw, "test")
    assert info.value.reason == reason


def test_split_into_sentences_keeps_abbreviations_whole():
    pieces = split_into_sentences("Mr. Smith went home. Was he tired? Yes!\nHe slept.")
    assert pieces == ["Mr. Smith went home.", "Was he tired?", "Yes!", "He slept."]


def _synthetic_sentences(n: int) -> list[Sentence]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    out = []
    for i in range(n):
        text = " ".join(words[int(d)] for d in f"{i:05d}")
        out.append(Sentence(text=text, spoken=text.capitalize() + ".", source="fortunes" if i % 2 else "wordnet"))
    return out


def test_split_is_deterministic_disjoint_and_order_free():
    sentences = _synthetic_sentences(20000)
    config = SplitConfig(dev_fraction=0.05, test_fraction=0.05)
    splits = split_sentences(sentences, config)
    shuffled = sentences[:]
    random.Random(1).shuffle(shuffled)
    again = split_sentences(shuffled, config)
    for name in ("train", "dev", "test"):
        assert {s.text for s in splits.of(name)} == {s.text for s in again.of(name)}
    train = {s.text for s in splits.train}
    dev = {s.text for s in splits.dev}
    test = {s.text for s in splits.test}
    assert not train & dev and not train & test and not dev & test
    assert len(train) + len(dev) + len(test) == 20000
    assert 800 < len(dev) < 1200 and 800 < len(test) < 1200
    assert all(split_of(t, 0.05, 0.05) == "dev" for t in dev)


def test_split_config_validates():
    with pytest.raises(ConfigError, match="dev_fraction"):
        SplitConfig(dev_fraction=0.7)
    with pytest.raises(ConfigError, match="min_words"):
        SplitConfig(min_words=5, max_words=3)


def test_lm_text_excludes_held_out_sentences(tmp_path):
    splits = split_sentences(_synthetic_sentences(3000), SplitConfig(dev_fraction=0.1, test_fraction=0.1))
    dev_text, test_text = splits.dev[0].text, splits.test[0].text
    extra = [f"once upon a time {dev_text} the end", "a harmless line of text", test_text.upper()]
    stats = write_lm_text(tmp_path / "lm.txt", splits, extra_lines=extra, sources=())
    lines = (tmp_path / "lm.txt").read_text().splitlines()
    assert stats.train_lines == len(splits.train) and stats.extra_lines == 1 and stats.dropped_lines >= 2
    held = splits.held_out_texts()
    guard = HeldOutFilter(held)
    assert not any(guard.contains_held_out(line) for line in lines)
    assert "a harmless line of text" in lines
    assert not held & set(lines)


def test_held_out_filter_matches_whole_words_only():
    guard = HeldOutFilter(["i love you"])
    assert guard.contains_held_out("and i love you so")
    assert not guard.contains_held_out("i love your dog")


@pytest.mark.skipif("fortunes" not in available_sources(), reason="fortunes not installed (apt-get install fortunes)")
def test_fortune_sentences_obey_the_rules():
    loaded = load_sentences(["fortunes"])
    sentences, rejected = loaded.sentences, loaded.rejected
    assert len(sentences) > 10000
    assert len({s.text for s in sentences}) == len(sentences)
    for s in sentences[::50]:
        assert s.text == normalize_text(s.spoken)
        assert 3 <= len(s.text.split()) <= 20
        assert not any(c.isdigit() for c in s.spoken)
    assert rejected["digits"] > 0


# ------------------------------------------------------------------------------------------------
# Voices and TTS


def test_voice_validation():
    with pytest.raises(ConfigError, match="fixed pitch"):
        Voice("flite", "rms", pitch=1.1)
    with pytest.raises(ConfigError, match="engine"):
        Voice("sam", "x")
    with pytest.raises(ConfigError, match="rate"):
        Voice("espeak", "en-us+m1", rate=3.0)
    with pytest.raises(ConfigError, match="variation"):
        Voice("flite", "slt", variation=1.2)
    assert Voice("espeak", "en-us+m3", rate=1.1, pitch=0.9).id == "espeak-en-us+m3-r1.10-p0.90"


def test_held_out_voices_are_separate():
    train = {v.base_id for v in training_voices()}
    test = {v.base_id for v in held_out_voices()}
    assert test == set(HELD_OUT_VOICES)
    assert not train & test
    assert "flite:rms" in test and sum(v.startswith("espeak:") for v in test) == 3


def test_sample_voice_stays_in_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = sample_voice(Voice("festival", "slt_hts"), rng)
        assert v.pitch == 1.0 and 0.85 <= v.rate <= 1.2
        p = sample_voice(Voice("piper", "joe"), rng)
        assert 0.7 <= p.variation <= 1.3 and p.pitch == 1.0


_ENGINE_VOICES = [
    Voice("espeak", "en-us+m3"),
    Voice("flite", "slt", rate=1.1, pitch=1.1),
    Voice("festival", "kal", rate=0.9, pitch=1.1),
    Voice("festival", "slt_hts", rate=1.1),
    Voice("piper", "joe", variation=0.8),
]


@pytest.fixture(scope="module")
def synthesizer():
    with Synthesizer() as synth:
        yield synth


@pytest.mark.parametrize("voice", _ENGINE_VOICES, ids=lambda v: v.id)
def test_each_engine_speaks(voice, synthesizer):
    missing = engine_missing(voice.engine)
    if missing:
        pytest.skip(f"{voice.engine} is not installed: {missing}")
    text = "The quick brown fox jumps over the lazy dog."
    wave = synthesizer(voice, text)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert np.all(np.isfinite(wave))
    assert abs(float(np.max(np.abs(wave))) - OUTPUT_PEAK) < 1e-3
    assert 1.2 < len(wave) / SAMPLE_RATE < 6.0
    frame = SAMPLE_RATE // 100
    rms = np.sqrt(np.mean(wave[: len(wave) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    assert np.mean(rms > 0.01) > 0.3  # mostly speech, not silence


def test_trim_silence_keeps_at_most_the_margin():
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    trimmed = trim_silence(np.concatenate([silence, tone, silence]))
    assert abs(len(trimmed) - (SAMPLE_RATE + 2 * 0.3 * SAMPLE_RATE)) <= 2 * SAMPLE_RATE // 100


def test_check_audio_rejects_bad_output():
    text = "a short sentence for checking"
    good = 0.3 * np.sin(np.arange(2 * SAMPLE_RATE) / 5.0).astype(np.float32)
    check_audio(good, text)
    with pytest.raises(AudioError, match="sound"):
        check_audio(np.zeros(2 * SAMPLE_RATE, np.float32), text)
    bad = good.copy()
    bad[10] = np.nan
    with pytest.raises(AudioError, match="finite"):
        check_audio(bad, text)
    with pytest.raises(AudioError, match="expected"):
        check_audio(np.tile(good, 10), text)  # 20 s for 29 characters


# ------------------------------------------------------------------------------------------------
# Augmentation


# ------------------------------------------------------------------------------------------------
# Plan, manifests, build


def test_plan_is_deterministic_and_keeps_held_out_voices_out_of_training():
    sentences = _synthetic_sentences(500)
    weights = {"espeak": 0.2, "flite": 0.3, "festival": 0.25, "piper": 0.25}
    plan = plan_split("train", sentences, training_voices(), weights, hours=0.5, seed=3)
    again = plan_split("train", sentences, training_voices(), weights, hours=0.5, seed=3)
    assert plan == again
    assert plan != plan_split("train", sentences, training_voices(), weights, hours=0.5, seed=4)
    assert not any(item.voice.held_out for item in plan)
    planned = {e: sum(i.estimated_s for i in plan[:300] if i.voice.engine == e) for e in weights}
    total = sum(planned.values())
    for engine, weight in weights.items():  # any prefix has the mix
        assert abs(planned[engine] / total - weight) < 0.03
    with pytest.raises(ConfigError, match="held-out"):
        plan_split("train", sentences, held_out_voices(), {"flite": 1.0}, hours=0.1, seed=0)
    test_plan = plan_split("test", sentences, held_out_voices(), {"flite": 0.6, "espeak": 0.4}, hours=0.2, seed=0)
    assert test_plan and all(item.voice.held_out for item in test_plan)


def test_plan_prefix_does_not_depend_on_hours():
    sentences = _synthetic_sentences(200)
    short = plan_split("dev", sentences, training_voices(["flite"]), {"flite": 1}, hours=0.05, seed=1)
    long = plan_split("dev", sentences, training_voices(["flite"]), {"flite": 1}, hours=0.2, seed=1)
    assert long[: len(short)] == short
    first = next(iter_plan("dev", sentences, training_voices(["flite"]), {"flite": 1}, seed=1))
    assert first == short[0]


def test_parse_weights():
    assert parse_weights("flite=3, piper=1", ["flite", "piper"]) == {"flite": 0.75, "piper": 0.25}
    with pytest.raises(ConfigError, match="name=weight"):
        parse_weights("sam=1", ["flite"])
    with pytest.raises(ConfigError, match="positive"):
        parse_weights("flite=0", ["flite"])


def test_manifest_round_trip(tmp_path):
    entries = [ManifestEntry(f"audio/train/flite/{i}.flac", f"text number {i}", 1.0 + i / 8, f"flite-slt-{i}")
               for i in range(5)]
    write_manifest(tmp_path / "train.tsv", entries)
    assert read_manifest(tmp_path / "train.tsv") == entries
    assert (tmp_path / "train.tsv").read_text().splitlines()[0] == "audio/train/flite/0.flac\ttext number 0"
    # A sidecar one line short (a corpus being written): the common prefix is returned.
    (tmp_path / "train.lengths").write_text("".join(f"{e.duration_s:.3f}\n" for e in entries[:4]))
    assert read_manifest(tmp_path / "train.tsv") == entries[:4]
    # A plain two-column file reads without sidecars.
    (tmp_path / "plain.tsv").write_text("a.flac\thello there\n")
    assert read_manifest(tmp_path / "plain.tsv") == [ManifestEntry("a.flac", "hello there")]
    (tmp_path / "bad.tsv").write_text("only-one-field\n")
    with pytest.raises(ConfigError, match="expected 'path<TAB>text'"):
        read_manifest(tmp_path / "bad.tsv")
    with pytest.raises(ConfigError, match="tabs"):
        write_manifest(tmp_path / "x.tsv", [ManifestEntry("a\tb.flac", "text")])


@pytest.mark.skipif(bool(engine_missing("flite")), reason="flite not installed (apt-get install flite)")
def test_build_small_corpus_and_resume(tmp_path):
    splits = split_sentences(_synthetic_sentences(400), SplitConfig(dev_fraction=0.2, test_fraction=0.2))
    kwargs = dict(hours_train=30 / 3600, hours_dev=8 / 3600, hours_test=8 / 3600, seed=5,
                  engine_weights={"flite": 1.0}, test_engine_weights={"flite": 1.0}, write_lm=False,
                  progress=False, manifest_every=3, splits=splits)
    summary = build_corpus(tmp_path, **kwargs)
    by_split = {s.split: s for s in summary.splits}
    sets = {name: {s.text for s in splits.of(name)} for name in ("train", "dev", "test")}
    for name in ("train", "dev", "test"):
        entries = read_manifest(tmp_path / f"{name}.tsv")
        assert len(entries) == by_split[name].utterances > 0
        assert by_split[name].seconds >= by_split[name].target_s
        for entry in entries:
            assert entry.text in sets[name]
            info = sf.info(str(tmp_path / entry.path))
            assert info.samplerate == SAMPLE_RATE and info.channels == 1 and info.format == "FLAC"
            assert abs(info.duration - entry.duration_s) < 2e-3
            held = entry.voice_id.startswith("flite-rms-")
            assert held == (name == "test")
    before = {name: read_manifest(tmp_path / f"{name}.tsv") for name in ("train", "dev", "test")}
    again = build_corpus(tmp_path, **kwargs)
    assert all(s.synthesized == 0 for s in again.splits)
    assert [dataclasses.replace(s, synthesized=0) for s in summary.splits] == list(again.splits)
    for name, entries in before.items():
        assert read_manifest(tmp_path / f"{name}.tsv") == entries
