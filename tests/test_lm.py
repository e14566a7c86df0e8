"""KenLM tooling: word lists, finding lmplz/build_binary, building an LM and decoding with it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from streamer.decoding.build_lm import (
    KenLMToolsMissingError,
    build_lm,
    find_kenlm_tools,
    main,
)
from streamer.decoding.lm_bundle import LmBundle, load_unigrams, unigrams_file_for
from streamer.errors import ConfigError
from streamer.vocab import english_characters

REPO = Path(__file__).resolve().parent.parent
CORPUS = """The cat sat on the mat.
The dog sat on the log!
A cat and a dog ran home; the cat won't stop.
It's 42 degrees -- said the CAT.

"""


def test_load_unigrams_from_list_and_arpa(tmp_path):
    words = tmp_path / "lm.unigrams.txt"
    words.write_text("cat\n\n dog \n<unk>\n")
    assert load_unigrams(words) == ["cat", "dog"]
    arpa = tmp_path / "lm.arpa"
    arpa.write_text("\\data\\\nngram 1=4\n\n\\1-grams:\n-1.0\t<unk>\t0\n-99\t<s>\t0\n-0.5\tcat\n-0.5\thome\n\n"
                    "\\end\\\n")
    assert load_unigrams(arpa) == ["cat", "home"]
    with pytest.raises(ConfigError, match="no file"):
        load_unigrams(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n<s>\n")
    with pytest.raises(ConfigError, match="at least one word"):
        load_unigrams(tmp_path / "empty.txt")
    assert unigrams_file_for("out/lm.binary") == Path("out/lm.unigrams.txt")


def test_missing_tools_error_names_the_build_script(tmp_path):
    with pytest.raises(KenLMToolsMissingError, match="tools/build_kenlm.sh") as err:
        find_kenlm_tools(tmp_path)
    assert str(tmp_path) in str(err.value)
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n")
    assert main(["build", str(corpus), "-o", str(tmp_path / "lm.binary"), "--bin-dir", str(tmp_path)]) == 1


def test_build_lm_argument_errors(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n")
    with pytest.raises(ConfigError, match="order"):
        build_lm(corpus, tmp_path / "lm.binary", order=0)
    with pytest.raises(ConfigError, match="prune"):
        build_lm(corpus, tmp_path / "lm.binary", order=3, prune=[1, 1])
    with pytest.raises(ConfigError, match="no file"):
        build_lm(tmp_path / "missing.txt", tmp_path / "lm.binary")
    assert main(["build", str(corpus)]) == 2  # -o is required without a model folder
    with pytest.raises(ConfigError, match="quantize_bits"):
        build_lm(corpus, tmp_path / "lm.binary", quantize_bits=40)
    with pytest.raises(ConfigError, match="only binary"):
        build_lm(corpus, tmp_path / "lm.arpa", quantize_bits=8)


def test_build_lm_and_decode_with_it(kenlm_tools, tmp_path):
    from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    built = build_lm(corpus, tmp_path / "models" / "lm.binary", order=3)
    assert built.path.is_file() and built.path.read_bytes()[:4] != b"\\dat"  # binary, not ARPA
    assert built.unigrams_path == tmp_path / "models" / "lm.unigrams.txt"
    expected = {"the", "cat", "sat", "on", "mat", "dog", "log", "a", "and", "ran", "home", "won't", "stop",
                "it's", "four", "two", "degrees", "said"}
    assert set(load_unigrams(built.unigrams_path)) == expected  # normalized: lower case, digits spelled
    assert (built.sentences, built.vocabulary) == (4, len(expected))

    vocab = english_characters()
    rng = np.random.default_rng(0)
    ids = []
    for word in "the dog sat on the log".split():  # no delimiter after the last word, as in training labels
        ids += [vocab.delimiter_id, 0] if ids else []
        for ch in word:
            ids += [vocab.tokens.index(ch), 0]
    logits = rng.normal(size=(len(ids), len(vocab))) * 0.5
    logits[np.arange(len(ids)), ids] += 5.0
    # Make the last word sound more like 'lag' than 'log': the LM knows only 'log'.
    a_row = ids.index(vocab.tokens.index("o"), len(ids) - 6)
    logits[a_row, vocab.tokens.index("a")] = logits[a_row].max() + 0.5
    logging.disable(logging.WARNING)
    try:
        plain = BeamSearchDecoder(vocab, DecoderConfig(beam_width=16)).decode(logits)
        with_lm = BeamSearchDecoder(vocab, DecoderConfig(beam_width=16), LmBundle.for_file(built.path)).decode(logits)
    finally:
        logging.disable(logging.NOTSET)
    assert plain.text == "the dog sat on the lag"
    assert with_lm.text == "the dog sat on the log"


def test_main_builds_arpa(kenlm_tools, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "lm.arpa"
    assert main(["build", str(corpus), "-o", str(out), "--order", "2", "--prune", "0", "1"]) == 0
    assert out.read_text().startswith("\\data\\")
    assert "ngram 3=" not in out.read_text()
    assert (tmp_path / "lm.unigrams.txt").is_file()
    assert str(out) in capsys.readouterr().out
    empty = tmp_path / "empty.txt"
    empty.write_text("!!! ...\n\n")
    assert main(["build", str(empty), "-o", str(tmp_path / "x.binary")]) == 1
    assert "expected text with words" in capsys.readouterr().err


def test_quantized_trie_scores_like_probing(kenlm_tools, tmp_path):
    import kenlm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    probing = build_lm(corpus, tmp_path / "a" / "lm.binary", order=3)
    trie = build_lm(corpus, tmp_path / "b" / "lm.binary", order=3, quantize_bits=8)
    assert trie.path.read_bytes() != probing.path.read_bytes()
    a, b = kenlm.Model(str(probing.path)), kenlm.Model(str(trie.path))
    for sentence in ["the dog sat on the log", "the cat ran home", "four degrees said the mat"]:
        assert abs(a.score(sentence) - b.score(sentence)) < 0.05  # 8-bit quantization error, log10 units


def test_build_for_a_vocabulary_json_in_another_script(kenlm_tools, tmp_path, capsys):
    from streamer.vocab import save_vocab_json, vocabulary_from_text

    text = ["Мама мыла раму дома, 2 раза.", "Ёжик в тумане."]
    vocab = vocabulary_from_text(text)  # no language stored: digits are spelled only with --language
    save_vocab_json(vocab, tmp_path / "vocab.json")
    corpus = tmp_path / "ru.txt"
    corpus.write_text("\n".join(text) + "\n", encoding="utf-8")
    out = tmp_path / "lm.arpa"
    assert main(["build", str(corpus), "-o", str(out), "--vocab", str(tmp_path / "vocab.json"),
                 "--language", "ru", "--order", "2"]) == 0
    assert set(load_unigrams(out)) == {"мама", "мыла", "раму", "дома", "два", "раза", "ёжик", "в", "тумане"}
    assert main(["build", str(corpus), "-o", str(out), "--model", str(tmp_path / "missing")]) == 1
    assert "error" in capsys.readouterr().err
