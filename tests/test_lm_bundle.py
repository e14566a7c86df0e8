"""The LM bundle: a model's lm/ folder read and written in one place, and its weights' precedence."""

from __future__ import annotations

import json

import pytest

from streamer.decoding.beam import DecoderConfig
from streamer.decoding.lm_bundle import LmBundle
from streamer.errors import ConfigError


def test_save_then_load_round_trip(tmp_path):
    src = tmp_path / "build"
    src.mkdir()
    (src / "words.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\tcat\n\n\\end\\\n")
    (src / "words.unigrams.txt").write_text("cat\n")
    bundle = LmBundle.for_file(src / "words.arpa", alpha=0.7, beta=2.0)
    assert bundle.unigrams == src / "words.unigrams.txt"
    saved = bundle.save(tmp_path / "model", order=1)
    assert saved.kenlm == tmp_path / "model" / "lm" / "lm.arpa"
    attrs = json.loads((tmp_path / "model" / "lm" / "attrs.json").read_text())
    assert attrs == {"order": 1, "alpha": 0.7, "beta": 2.0}
    loaded = LmBundle.from_model_folder(tmp_path / "model")
    assert loaded == saved
    assert loaded.words() == ["cat"]
    assert LmBundle.resolve("auto", tmp_path / "model") == saved
    assert LmBundle.resolve(None, tmp_path / "model") is None
    assert LmBundle.resolve("auto", tmp_path / "no-lm-here") is None


def test_explicit_weights_win_over_tuned_ones(tmp_path):
    from streamer.decoding.beam import BeamSearchDecoder
    from streamer.vocab import english_characters

    (tmp_path / "lm.arpa").write_text("\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1.0\t<s>\t-0.3\n"
                                      "-1.0\t</s>\n-1.0\tcat\t-0.3\n\n\\2-grams:\n-0.5\t<s> cat\n\n\\end\\\n")
    bundle = LmBundle(tmp_path / "lm.arpa", None, alpha=0.9, beta=3.0)
    chosen = BeamSearchDecoder(english_characters(), DecoderConfig(alpha=0.1), bundle)
    assert (chosen.config.alpha, chosen.config.beta, chosen.lm) == (0.1, 3.0, bundle)
    assert BeamSearchDecoder(english_characters(), DecoderConfig(), bundle).config.alpha == 0.9


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="found nothing"):
        LmBundle.for_file(tmp_path / "missing.binary")
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "lm.binary").write_bytes(b"")
    (tmp_path / "lm" / "attrs.json").write_text("{not json")
    with pytest.raises(ConfigError, match="attrs.json"):
        LmBundle.from_model_folder(tmp_path)
    (tmp_path / "lm" / "attrs.json").write_text('{"alpha": "high"}')
    with pytest.raises(ConfigError, match="alpha"):
        LmBundle.from_model_folder(tmp_path)
    (tmp_path / "lm" / "attrs.json").write_text("{}")
    with pytest.raises(ConfigError, match="lm.unigrams.txt"):
        LmBundle.from_model_folder(tmp_path).words()
