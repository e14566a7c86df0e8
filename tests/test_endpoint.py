"""Endpoint rules: each fires at the right frame, independent of chunking; presets; errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.endpoint import PRESETS, EndpointConfig, EndpointDetector, EndpointState, blank_frames
from streamer.errors import ConfigError


def flags(*runs: tuple[bool, int]) -> np.ndarray:
    """Concatenated runs of (is_blank, length)."""
    return np.concatenate([np.full(n, value, dtype=bool) for value, n in runs])


def run(detector: EndpointDetector, blank: np.ndarray, vad: np.ndarray | None = None, cuts=()):
    state = detector.new_state()
    bounds = [0, *sorted(cuts), len(blank)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        state, end = detector.update(state, blank[a:b], None if vad is None else vad[a:b])
        if end is not None:
            return state, end
    return state, None


def test_config_defaults_in_frames():
    cfg = EndpointConfig()
    assert (cfg.before_frames, cfg.after_frames, cfg.max_frames) == (120, 60, 1000)


def test_silence_after_speech_fires_after_60_silent_frames():
    detector = EndpointDetector()
    blank = flags((True, 30), (False, 10), (True, 200))  # speech ends at frame 39
    state, end = run(detector, blank)
    assert end == 39 + 60
    assert (state.reason, state.frames, state.trailing_silence, state.speech_seen) == \
        ("silence_after_speech", 100, 60, True)
    # 59 silent frames are not enough; a speech frame resets the count.
    _, end = run(detector, flags((False, 5), (True, 59), (False, 1), (True, 60)))
    assert end == 5 + 59 + 1 + 60 - 1


def test_silence_before_speech_fires_at_frame_119():
    state, end = run(EndpointDetector(), flags((True, 300)))
    assert (end, state.reason, state.speech_seen) == (119, "silence_before_speech", False)


def test_max_utterance_fires_at_the_last_allowed_frame():
    detector = EndpointDetector(EndpointConfig(max_utterance=1.0))
    speech = np.tile(flags((False, 1), (True, 5)), 20)  # never 60 silent frames in a row
    state, end = run(detector, speech)
    assert (end, state.reason) == (49, "max_utterance")


@settings(max_examples=60, deadline=None)
@given(runs=st.lists(st.tuples(st.booleans(), st.integers(1, 90)), min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 1000), max_size=10), use_vad=st.booleans(),
       rule=st.sampled_from(["both", "either"]), seed=st.integers(0, 1000))
def test_endpoint_does_not_depend_on_chunking(runs, cuts, use_vad, rule, seed):
    blank = flags(*runs)
    vad = np.random.default_rng(seed).random(len(blank)) < 0.3 if use_vad else None
    detector = EndpointDetector(EndpointConfig(max_utterance=8.0, vad_rule=rule))
    whole = run(detector, blank, vad)
    assert run(detector, blank, vad, cuts=[c for c in cuts if c <= len(blank)]) == whole
    # The same answer from a plain frame-by-frame reading of the rules.
    silent = blank if vad is None else (blank & ~vad if rule == "both" else blank | ~vad)
    trailing, seen, expected = 0, False, None
    for i, s in enumerate(silent):
        trailing = trailing + 1 if s else 0
        seen = seen or not s
        if (seen and trailing >= 60) or (not seen and trailing >= 120) or i + 1 >= 400:
            expected = i
            break
    assert whole[1] == expected


def test_vad_rules():
    blank = flags((False, 10), (True, 100))
    vad_speech = flags((True, 10), (True, 30), (False, 70))  # VAD hears speech 30 frames longer
    both = EndpointDetector(EndpointConfig(vad_rule="both"))
    either = EndpointDetector(EndpointConfig(vad_rule="either"))
    assert run(both, blank, vad_speech)[1] == 40 + 60 - 1  # silence needs blank and VAD silence
    assert run(either, blank, vad_speech)[1] == 10 + 60 - 1  # blank alone is enough
    # "either": a VAD non-speech frame is silent even when the model emits a token.
    tokens = flags((False, 110))
    assert run(either, tokens, flags((True, 10), (False, 100)))[1] == 10 + 60 - 1
    assert run(both, tokens, flags((True, 10), (False, 100)))[1] is None


def test_presets_are_ordered_fast_default_slow():
    fast, default, slow = PRESETS["fast"], PRESETS["default"], PRESETS["slow"]
    assert default == EndpointConfig()
    for field in ("silence_before_speech", "silence_after_speech", "max_utterance"):
        assert getattr(fast, field) < getattr(default, field) < getattr(slow, field)
    blank = flags((False, 20), (True, 300))
    ends = [run(EndpointDetector(PRESETS[n]), blank)[1] for n in ("fast", "default", "slow")]
    assert ends == sorted(ends) and len(set(ends)) == 3
    assert EndpointConfig.preset("slow", max_utterance=60.0).max_frames == 3000


def test_errors():
    with pytest.raises(ConfigError, match="silence_after_speech"):
        EndpointConfig(silence_after_speech=0.0)
    with pytest.raises(ConfigError, match="vad_rule"):
        EndpointConfig(vad_rule="any")
    with pytest.raises(ConfigError, match="preset"):
        EndpointConfig.preset("medium")
    detector = EndpointDetector()
    with pytest.raises(ValueError, match="1-D bool"):
        detector.update(detector.new_state(), np.zeros(4))
    with pytest.raises(ValueError, match="vad_speech"):
        detector.update(detector.new_state(), np.zeros(4, bool), np.zeros(3, bool))
    state, end = run(detector, flags((True, 200)))
    with pytest.raises(ValueError, match="new_state"):
        detector.update(state, np.zeros(1, bool))
    assert detector.update(EndpointState(), np.zeros(0, bool)) == (EndpointState(), None)


def test_blank_frames_from_logits():
    logits = np.array([[3.0, 0.0, 1.0], [0.0, 2.0, 1.0], [5.0, 5.0, 0.0]])
    assert blank_frames(logits, 0).tolist() == [True, False, True]
