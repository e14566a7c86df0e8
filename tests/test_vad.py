"""The webrtcvad gate: opens on speech with pre-roll, passes the utterance whole, ends it after silence."""

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
        chunk = x[i:i + block]
        while True:
            state, out = gate.process(state, chunk)
            chunk = chunk[:0]
            audio.append(out.audio)
            flags.append(out.speech)
            if out.utterance_end:
                ends.append(i + block)
            if not gate.pending(state):
                break
    return np.concatenate(audio), ends, np.concatenate(flags)


def _utterances(gate: VadGate, x: np.ndarray, block: int) -> list[tuple[int, np.ndarray]]:
    """(session start sample, audio) of each utterance the gate passes."""
    state, found = gate.new_state(), []
    for i in range(0, len(x), block):
        chunk = x[i:i + block]
        while True:
            state, out = gate.process(state, chunk)
            chunk = chunk[:0]
            if out.start is not None:
                found.append((out.start, [out.audio]))
            elif len(out.audio):
                found[-1][1].append(out.audio)
            if not gate.pending(state):
                break
    return [(start, np.concatenate(parts)) for start, parts in found]


@pytest.mark.parametrize("block", [160, 1600, 4801])
def test_gate_passes_speech_and_ends_the_utterance(speech, block):
    silence = np.zeros(16000 * 2, dtype=np.float32)
    x = np.concatenate([silence, speech, silence])
    cfg = VadConfig(aggressiveness=2, preroll=0.3, end_silence=1.0)
    audio, ends, flags = _run(VadGate(cfg), x, block)
    assert flags[: int(1.5 * 50)].sum() == 0  # leading silence is not speech
    assert flags.sum() > 0.4 * len(speech) / 320  # most of the speech is
    assert len(speech) <= len(audio) <= len(speech) + int((0.3 + 1.0 + 0.1) * 16000)
    assert len(ends) == 1
    assert 2 * 16000 + len(speech) + 16000 * 0.9 <= ends[0] <= len(x) + block


def test_silence_never_opens(speech):
    audio, ends, _ = _run(VadGate(VadConfig()), np.zeros(16000 * 3, dtype=np.float32), 1600)
    assert len(audio) == 0 and ends == []


def test_config_errors():
    with pytest.raises(ConfigError, match="aggressiveness"):
        VadConfig(aggressiveness=5)
    with pytest.raises(ConfigError, match="end_silence"):
        VadConfig(end_silence=0.0)
    with pytest.raises(ConfigError, match="preroll"):
        VadConfig(preroll=-1.0)


@pytest.mark.parametrize("block", [320, 1600, 16000 * 10])
def test_utterances_are_contiguous_session_audio(speech, block):
    """Each passed utterance is the session's audio from its reported start, with no gap or repeat,
    also when one block spans two utterances."""
    silence = np.zeros(int(16000 * 1.5), dtype=np.float32)
    x = np.concatenate([silence, speech, silence, silence, 0.5 * speech, silence])
    found = _utterances(VadGate(VadConfig(preroll=0.3, end_silence=1.0)), x, block)
    assert len(found) == 2
    for start, audio in found:
        np.testing.assert_array_equal(audio, x[start:start + len(audio)])
    onsets = [len(silence), 3 * len(silence) + len(speech)]
    for (start, _), onset in zip(found, onsets):
        assert onset - int(0.3 * 16000) - 3 * 320 <= start <= onset + int(0.3 * 16000)
    assert found[0][0] + len(found[0][1]) <= found[1][0]
