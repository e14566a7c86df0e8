"""The live front-end (`VadFrontEnd`): webrtcvad flags, when the Final arrives after speech ends, and
the gate that skips silence between utterances without moving result times."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from streamer.audio import load_audio
from streamer.endpoint import EndpointConfig
from streamer.errors import ConfigError
from streamer.frontend.frontend import FrontEndConfig, VadFrontEnd
from streamer.frontend.vad import VAD_FRAME_SAMPLES, Vad, VadConfig
from streamer.recognizer import Recognizer
from streamer.results import Final
from streamer.streaming import StreamingConfig
from streamer.train.corpus.tts import Voice, synthesize

SR = 16000
#: Capture block of the live loop (`streamer.frontend.live.BLOCK_SECONDS`), in samples.
BLOCK = 1600


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize(Voice("flite", "slt"), "the quick brown fox jumps over the lazy dog")


@pytest.fixture(scope="module")
def hello() -> np.ndarray:
    return load_audio(REPO / "examples" / "hello.wav")


def _speech_end(x: np.ndarray) -> float:
    """Seconds at the end of the last 20-ms frame webrtcvad calls speech."""
    return (int(np.flatnonzero(Vad().flags(x)).max()) + 1) * VAD_FRAME_SAMPLES / SR


def _replay(front: VadFrontEnd, x: np.ndarray, rate: int = SR) -> list[tuple[float, Final]]:
    """Feeds ``x`` in capture blocks, in real-time order; returns (input seconds when it arrived, Final)."""
    block = BLOCK * rate // SR
    got = []
    for i in range(0, len(x), block):
        now = min(len(x), i + block) / rate
        got += [(now, e) for e in front.accept(x[i:i + block], rate) if isinstance(e, Final)]
    got += [(len(x) / rate, e) for e in front.input_finished() if isinstance(e, Final)]
    return got


def test_vad_flags_silence_and_speech(speech):
    flags = Vad().flags(np.concatenate([np.zeros(SR, np.float32), speech]))
    assert flags[: int(0.9 * 50)].sum() == 0  # leading silence is not speech
    assert flags[50:].sum() > 0.4 * len(speech) / VAD_FRAME_SAMPLES  # most of the speech is


def test_config_errors():
    with pytest.raises(ConfigError, match="aggressiveness"):
        VadConfig(aggressiveness=5)
    with pytest.raises(ConfigError, match="preroll"):
        VadConfig(preroll=-1.0)
    with pytest.raises(ConfigError, match="gate needs the VAD"):
        FrontEndConfig(vad=None, gate=True)


@pytest.mark.parametrize("mode,chunk", [("window", 0.64), ("cached", 0.32), ("cached", 0.64)])
@pytest.mark.parametrize("preset", ["fast", "default", "slow"])
def test_the_final_arrives_within_the_silence_plus_a_chunk_and_its_look_ahead(hello, mode, chunk, preset):
    """The path `streamer mic` runs, fed in capture blocks: the last sentence's Final comes while
    the silence after it goes on, within the endpoint's silence plus one chunk and its look-ahead."""
    endpoint = EndpointConfig.preset(preset)
    rec = Recognizer.load("demo-en", lm=None, streaming=StreamingConfig.from_seconds(mode, chunk),
                          endpoint=endpoint, two_pass=False)
    x = np.concatenate([hello, np.zeros(8 * SR, np.float32)])
    got = _replay(VadFrontEnd(rec), x)
    assert got, "no Final"
    arrived, last = got[-1]
    streaming = rec.config.streaming
    budget = endpoint.silence_after_speech + rec.grid.seconds(streaming.chunk_frames + streaming.right_frames)
    late = arrived - _speech_end(hello)
    # One capture block of slack: a Final is seen when the block that completes its step arrives.
    assert late <= budget + BLOCK / SR + 0.02, (late, budget, [(t, f.text) for t, f in got])
    assert arrived < len(x) / SR - 1.0  # during the silence, not at the end of the input
    assert last.end <= arrived


def test_the_gate_skips_the_pause_and_keeps_session_times(speech):
    rec = Recognizer.load("demo-en", lm=None, streaming=StreamingConfig.from_seconds("cached", 0.32),
                          endpoint=EndpointConfig.preset("fast"), two_pass=False)
    pause = np.zeros(6 * SR, np.float32)
    x = np.concatenate([np.zeros(SR // 2, np.float32), speech, pause, speech, np.zeros(2 * SR, np.float32)])
    gated = VadFrontEnd(rec)
    fed = []
    for i in range(0, len(x), BLOCK):
        gated.accept(x[i:i + BLOCK])
        fed.append(gated.holding)
    finals = [f for f in gated.input_finished() if isinstance(f, Final)]
    assert any(fed), "the gate never skipped the pause"
    assert gated.stream.samples_received == len(x)  # the clock is the input's
    plain = _replay(VadFrontEnd(rec, FrontEndConfig(gate=False)), x)
    both = [f for _, f in _replay(VadFrontEnd(rec), x)]
    assert len(both) == len(plain) == 2
    onset = (SR // 2 + len(speech) + len(pause)) / SR
    assert onset - 0.4 <= both[1].start <= onset + 0.3  # the second sentence is timed on the session clock
    for (_, p), g in zip(plain, both):  # the words are where they are without the gate
        assert abs(p.words[0].start - g.words[0].start) < 0.1 and abs(p.words[-1].end - g.words[-1].end) < 0.1
    assert not finals or finals[-1].end <= len(x) / SR


def test_any_input_rate_is_resampled_once(hello):
    from streamer.audio import resample

    rec = Recognizer.load("demo-en", lm=None, streaming=StreamingConfig.from_seconds("cached", 0.32), two_pass=False)
    x = np.concatenate([hello, np.zeros(3 * SR, np.float32)])
    at_16k = [f.text for _, f in _replay(VadFrontEnd(rec), x)]
    at_48k = [f.text for _, f in _replay(VadFrontEnd(rec), resample(x, SR, 48000), rate=48000)]
    assert at_16k and len(at_48k) == len(at_16k)
    with pytest.raises(ConfigError, match="sample rate changed"):
        front = VadFrontEnd(rec)
        front.accept(x[:1600], 16000)
        front.accept(x[:1600], 48000)
