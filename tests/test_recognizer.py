"""Recognizer and Stream: live streams == file streaming, endpoints, two-pass finals, input handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamer.endpoint import EndpointConfig
from streamer.errors import ConfigError
from streamer.recognizer import Recognizer
from streamer.results import Final, Partial
from streamer.streaming import StreamingConfig


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


def _run_stream(rec: Recognizer, x: np.ndarray, piece: int, rate: int = 16000) -> tuple[list, list[Final]]:
    s = rec.create_stream()
    events = []
    for i in range(0, len(x), piece):
        events += rec.feed(s, x[i:i + piece], rate)
    events += rec.input_finished(s)
    assert s.done
    return events, [e for e in events if isinstance(e, Final)]


@pytest.mark.parametrize("mode", ["window", "cached"])
@pytest.mark.parametrize("piece", [777, 16000])
def test_stream_equals_file_streaming(model_dir, mode, piece):
    x = _signal(4.3)
    cfg = StreamingConfig.from_seconds(mode, 0.32)
    rec = Recognizer.load(model_dir, lm=None, streaming=cfg, stream_files=True, two_pass=False)
    file_text = rec.transcribe(x).text
    _, finals = _run_stream(rec, x, piece)
    assert " ".join(f.text for f in finals) == file_text


def test_endpoints_split_utterances_with_ordered_times(model_dir):
    x = _signal(5.0, seed=1)
    rec = Recognizer.load(model_dir, lm=None, streaming=StreamingConfig.from_seconds("window", 0.32),
                          endpoint=EndpointConfig(max_utterance=1.5), two_pass=False)
    events, finals = _run_stream(rec, x, 4000)
    assert len(finals) >= 3
    for a, b in zip(finals, finals[1:]):
        assert a.start < a.end <= b.start + 1e-6
    for f in finals:
        assert all(f.start - 1e-6 <= w.start <= w.end <= f.end + 0.03 for w in f.words)
    assert finals[-1].end <= 5.0 + 1e-6
    assert any(isinstance(e, Partial) for e in events)


def test_two_pass_final_is_full_context_decode(model_dir):
    x = _signal(3.0, seed=2)
    rec = Recognizer.load(model_dir, lm=None, streaming=StreamingConfig.from_seconds("cached", 0.32), two_pass=True)
    _, finals = _run_stream(rec, x, 3000)
    assert len(finals) == 1
    with torch.no_grad():
        logits, _ = rec.model(torch.from_numpy(x)[None])
    assert finals[0].text == rec.decoder.decode(logits[0]).text


@pytest.mark.parametrize("seconds", [0.5, 2.0, 3.37])
def test_second_pass_bucket_padding_keeps_the_logits(model_dir, seconds):
    """The two-pass decode pads audio to SECOND_PASS_BUCKET_SECONDS with masked lengths (layer-norm
    models): the real frames' logits must equal the unpadded forward's."""
    from streamer.constants import SECOND_PASS_BUCKET_SECONDS

    rec = Recognizer.load(model_dir, lm=None, two_pass=True)
    assert rec.model.config.feat_extract_norm == "layer"
    x = torch.from_numpy(_signal(seconds, seed=4))[None]
    bucket = round(SECOND_PASS_BUCKET_SECONDS * 16000)
    padded = torch.nn.functional.pad(x, (0, -(-x.shape[1] // bucket) * bucket - x.shape[1]))
    with torch.no_grad():
        ref, _ = rec.model(x)
        got, _ = rec.model(padded, torch.tensor([x.shape[1]]))
    frames = rec.model.config.num_frames(x.shape[1])
    assert ref.shape[1] == frames
    assert (got[0, :frames] - ref[0]).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("seconds,piece", [(0.5, 99), (4.0, 99), (6.37, 99), (3.0, 7), (3.0, 1)])
def test_front_end_in_pieces_keeps_the_logits(model_dir, seconds, piece):
    """The two-pass forward runs the conv front-end in bucket-sized pieces (bounded peak memory):
    the logits must equal the whole-input front-end's."""
    rec = Recognizer.load(model_dir, lm=None)
    x = torch.from_numpy(_signal(seconds, seed=5))[None]
    with torch.no_grad():
        ref, _ = rec.model(x)
        got, _ = rec.model(x, piece_frames=piece)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_front_end_in_pieces_refuses_a_group_norm_front_end():
    from streamer.model import Wav2Vec2CTC
    from streamer.model.config import tiny_config

    model = Wav2Vec2CTC(tiny_config(feat_extract_norm="group")).eval()
    with pytest.raises(ValueError, match="layer-norm"):
        model(torch.zeros(1, 16000), piece_frames=10)


def test_committed_text_only_grows(model_dir):
    x = _signal(4.0, seed=3)
    rec = Recognizer.load(model_dir, lm=None, streaming=StreamingConfig.from_seconds("window", 0.32), two_pass=False)
    events, _ = _run_stream(rec, x, 2000)
    committed = [e.committed for e in events if isinstance(e, Partial)]
    for a, b in zip(committed, committed[1:]):
        if b:  # a new utterance starts empty
            assert b.startswith(a) or not a


def test_other_sample_rates_and_int16(model_dir):
    rec = Recognizer.load(model_dir, lm=None)
    x = _signal(2.0)
    pcm8k = (x[::2] * 32767).astype(np.int16)
    s = rec.create_stream()
    for i in range(0, len(pcm8k), 1000):
        rec.feed(s, pcm8k[i:i + 1000], 8000)
    rec.input_finished(s)
    assert abs(s.samples_received - 32000) <= 2  # 2 s at 16 kHz after streaming resampling
    s = rec.create_stream()
    rec.feed(s, pcm8k[:4000], 8000)
    with pytest.raises(ConfigError, match="sample rate changed"):
        s.accept_waveform(pcm8k[4000:], 16000)
    s.input_finished()
    with pytest.raises(ConfigError, match="after input_finished"):
        s.accept_waveform(pcm8k, 8000)


def test_transcript_times_and_duration(model_dir):
    rec = Recognizer.load(model_dir, lm=None)
    x = _signal(7.0, seed=4)
    t = rec.transcribe(x)
    assert abs(t.duration - 7.0) < 1e-6
    words = t.words
    assert all(w.start <= w.end for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    assert t.info.decoder == "greedy" and t.info.mode == "offline"


def test_lm_argument_must_exist(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="KenLM"):
        Recognizer.load(model_dir, lm=tmp_path / "missing.binary")


def test_channel_first_blocks_read_like_prepare_array(model_dir):
    rec = Recognizer.load(model_dir, lm=None, two_pass=False)
    x = _signal(2.0, seed=5)
    mono, stereo_cn, row = rec.create_stream(), rec.create_stream(), rec.create_stream()
    events: dict[int, list] = {id(s): [] for s in (mono, stereo_cn, row)}
    for i in range(0, len(x), 4000):
        block = x[i:i + 4000]
        events[id(mono)] += rec.feed(mono, block)
        events[id(stereo_cn)] += rec.feed(stereo_cn, np.stack([block, block]))  # (C, N)
        events[id(row)] += rec.feed(row, block[None])                             # (1, N)
    finals = [" ".join(e.text for e in events[id(s)] + rec.input_finished(s) if isinstance(e, Final))
              for s in (mono, stereo_cn, row)]
    assert stereo_cn.samples_received == row.samples_received == mono.samples_received == len(x)
    assert finals[1] == finals[2] == finals[0]


def test_api_misuse_raises_streamer_errors(model_dir):
    from streamer.errors import StreamerError

    rec = Recognizer.load(model_dir, lm=None)
    other = Recognizer.load(model_dir, lm=None)
    x = _signal(0.5)
    for rate in (0, -16000, "16000", 16000.5, None):
        with pytest.raises(StreamerError, match="sample_rate|sample rate"):
            rec.feed(rec.create_stream(), x, rate)
    foreign = other.create_stream()
    for call in (lambda: rec.feed(foreign, x), lambda: rec.decode_stream(foreign), lambda: rec.input_finished(foreign),
                 lambda: rec.decode_streams([rec.create_stream(), foreign]), lambda: rec.get_result(foreign)):
        with pytest.raises(ConfigError, match="another Recognizer"):
            call()
    with pytest.raises(ConfigError, match="RecognizerConfig fields"):
        Recognizer.load(model_dir, lm=None, beam_width=8)


def test_config_ranges_shared_by_cli_and_api():
    from streamer.recognizer import RecognizerConfig

    for bad in (1000.0, 0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="chunk"):
            StreamingConfig.from_seconds("window", bad)
    with pytest.raises(ConfigError, match="right"):
        StreamingConfig.from_seconds("window", 0.64, right=1e9)
    with pytest.raises(ConfigError, match="left"):
        StreamingConfig.from_seconds("cached", 0.64, left=-1.0)
    with pytest.raises(ConfigError, match="chunk"):
        StreamingConfig("window", 501, 0, 0)
    for threads in (-1, 0, 10**6, 2.5):
        with pytest.raises(ConfigError, match="threads"):
            RecognizerConfig(threads=threads)
    assert StreamingConfig.from_seconds("window", 10.0).chunk_frames == 500


def test_results_are_on_the_stream_clock_across_a_skip(model_dir):
    """Input gating: after skip_to, times continue on the input's clock and the gap ends the utterance."""
    rec = Recognizer.load(model_dir, lm=None, streaming=StreamingConfig.from_seconds("cached", 0.32),
                          endpoint=EndpointConfig(silence_after_speech=0.5, silence_before_speech=0.5), two_pass=True)
    x = _signal(1.5, seed=6)
    s = rec.create_stream()
    events = rec.feed(s, x)
    events += rec.skip_to(s, 16000 * 60 + 123)  # one minute held back by a gate
    assert abs(s.time - (60 + 123 / 16000)) < 1e-9
    events += rec.feed(s, x)
    events += rec.input_finished(s)
    finals = [e for e in events if isinstance(e, Final)]
    assert s.done and finals
    late = [f for f in finals if f.start >= 60.0]
    assert late, [(f.start, f.end) for f in finals]
    for f in late:
        assert 60.0 <= f.start < f.end <= 60.0 + 1.5 + 0.03
        assert all(60.0 <= w.start <= w.end <= f.end + 0.03 for w in f.words)
    assert all(f.end <= 1.5 + 1.0 for f in finals if f.start < 60.0)


def test_vad_flags_drive_the_one_endpointer(model_dir):
    """With speech flags, an utterance only ends after frames the VAD calls non-speech (rule 'both')."""
    rec = Recognizer.load(model_dir, lm=None, endpoint=EndpointConfig(silence_after_speech=0.2,
                                                                       silence_before_speech=0.2), two_pass=False)
    x = _signal(4.0, seed=8)
    plain, flagged = rec.create_stream(), rec.create_stream()
    flagged.accept_speech_flags(0, np.ones(rec.grid.num_frames(len(x)) + 10, dtype=bool))  # speech throughout
    finals = {}
    for name, s in (("plain", plain), ("flagged", flagged)):
        finals[name] = [e for e in rec.feed(s, x) + rec.input_finished(s) if isinstance(e, Final)]
    assert len(finals["flagged"]) <= 1 and len(finals["plain"]) >= len(finals["flagged"])
    assert " ".join(f.text for f in finals["flagged"]).replace(" ", "") == \
        " ".join(f.text for f in finals["plain"]).replace(" ", "")


def test_two_pass_audio_is_bounded_by_the_utterance(model_dir):
    rec = Recognizer.load(model_dir, lm=None, streaming=StreamingConfig.from_seconds("cached", 0.32),
                          endpoint=EndpointConfig(max_utterance=1.0), two_pass=True)
    s = rec.create_stream()
    x = _signal(1.0, seed=9)
    held, finals = [], []
    for _ in range(8):
        finals += [e for e in rec.feed(s, x) if isinstance(e, Final)]
        held.append(len(s._audio))
    assert len(finals) >= 4
    assert max(held) <= 16000 * (1.0 + 0.32 + 1.0) + 400  # utterance + a chunk + a block of look-ahead


def test_hotwords_per_stream(model_dir, rng):
    """A stream's own hotwords: a beam decoder of their own, shared by streams asking for the same
    ones, and the config's hotwords kept; without any, the recognizer's decoder."""
    from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig

    rec = Recognizer.load(model_dir, lm=None, decoder=DecoderConfig(hotwords=("base",)))
    plain, hot = rec.create_stream(), rec.create_stream(["Paris", "  new   york "])
    assert plain.decoder is rec.decoder and isinstance(hot.decoder, BeamSearchDecoder)
    assert hot.decoder.config.hotwords == ("base", "paris", "new york")
    assert rec.create_stream(("paris", "new york")).decoder is hot.decoder
    assert rec.create_stream(["base"]).decoder is rec.decoder
    audio = rng.standard_normal(16000).astype(np.float32) * 0.1
    events = rec.feed(hot, audio) + rec.input_finished(hot)
    assert hot.done and isinstance(events[-1], (Final, Partial))
    for bad in ("paris", [""], [3]):
        with pytest.raises(ConfigError, match="hotwords"):
            rec.create_stream(bad)
