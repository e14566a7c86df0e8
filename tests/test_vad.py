"""The webrtcvad gate: opens on speech with pre-roll, closes after the hangover, ends utterances."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.corpus.tts import Voice, synthesize
from streamer.errors import ConfigError
from streamer.frontend.vad import VadConfig, VadGate


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize(Voice("flite", "slt"), "the quick brown fox jumps over the lazy dog")


def _run(gate: VadGate, x: np.ndarray, block: int):
    state = gate.new_state()
    audio, ends, flags = [], [], []
    for i in range(0, len(x), block):
        state, out = gate.process(state, x[i:i + block])
        audio.append(out.audio)
        flags.append(out.speech)
        if out.utterance_end:
            ends.append(i + block)
    return np.concatenate(audio), ends, np.concatenate(flags)


@pytest.mark.parametrize("block", [160, 1600, 4801])
def test_gate_passes_speech_and_ends_the_utterance(speech, block):
    silence = np.zeros(16000 * 2, dtype=np.float32)
    x = np.concatenate([silence, speech, silence])
    cfg = VadConfig(aggressiveness=2, preroll=0.3, hangover=0.5, end_silence=1.0)
    audio, ends, flags = _run(VadGate(cfg), x, block)
    assert flags[: int(1.5 * 50)].sum() == 0  # leading silence is not speech
    assert flags.sum() > 0.4 * len(speech) / 320  # most of the speech is
    assert len(speech) <= len(audio) <= len(speech) + int((0.3 + 0.5 + 0.1) * 16000)
    assert len(ends) == 1
    assert 2 * 16000 + len(speech) + 16000 * 0.9 <= ends[0] <= len(x) + block


def test_silence_never_opens(speech):
    audio, ends, _ = _run(VadGate(VadConfig()), np.zeros(16000 * 3, dtype=np.float32), 1600)
    assert len(audio) == 0 and ends == []


def test_config_errors():
    with pytest.raises(ConfigError, match="aggressiveness"):
        VadConfig(aggressiveness=5)
    with pytest.raises(ConfigError, match="end_silence >= hangover"):
        VadConfig(hangover=1.0, end_silence=0.5)
