"""The bundled demo-en model recognizes freshly synthesized speech of held-out voices and sentences.

The sentences (tests/fixtures/heldout_sentences.txt) come from the corpus's held-out test split; the
voices (flite rms, espeak-ng en-029+m4) are held out of training. Audio is synthesized anew here,
so the check covers the installed TTS engines as well as the model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.checkpoint import MODELS_DIR
from streamer.train.corpus.tts import Voice, held_out_voices, synthesize
from streamer.metrics import corpus_rates
from streamer.recognizer import Recognizer

SENTENCES = [s for s in (Path(__file__).parent / "fixtures" / "heldout_sentences.txt").read_text().splitlines() if s]
VOICES = [Voice("flite", "rms"), Voice("espeak", "en-029+m4")]

#: Largest WER / CER accepted on these utterances, greedy and with the bundled LM. Measured when the
#: model was shipped (models/demo-en/README.md): greedy WER 0.833 / CER 0.342, beam+LM WER 0.604 / CER 0.283;
#: the margin absorbs TTS-version drift.
LIMITS = {None: (0.90, 0.40), "auto": (0.68, 0.34)}


def test_voices_are_held_out():
    held = {v.base_id for v in held_out_voices()}
    assert {v.base_id for v in VOICES} <= held


@pytest.fixture(scope="module")
def utterances():
    return [(text, synthesize(VOICES[i % len(VOICES)], text)) for i, text in enumerate(SENTENCES)]


@pytest.mark.parametrize("lm", [None, "auto"])
def test_bundled_model_error_rates(utterances, lm):
    assert (MODELS_DIR / "demo-en" / "config.json").is_file(), "the bundled model models/demo-en is missing"
    rec = Recognizer.load("demo-en", lm=lm)
    if lm == "auto":
        assert rec.decoder_name == "beam+lm", "demo-en should ship its language model in models/demo-en/lm"
    wer, cer = corpus_rates((text, rec.transcribe(wave).text) for text, wave in utterances)
    print(f"{rec.decoder_name}: WER {wer:.3f}, CER {cer:.3f} on {len(utterances)} held-out utterances")
    max_wer, max_cer = LIMITS[lm]
    assert wer <= max_wer and cer <= max_cer
