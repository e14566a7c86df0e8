#!/usr/bin/env python3
"""Beam-search decoding cost per second of audio, and how it changes with utterance length.

Streams utterances of several lengths through `BeamSearchDecoder` (KenLM 3-gram, beam 32 by
default) in fixed chunks, calling ``advance`` and ``partial`` per chunk and ``finalize`` at the
end, the way the recognizer does. The lengths are measured side by side in one run (interleaved,
repeated, median kept). Reported per length:

* ``ms/audio-s``  wall time per second of audio over the whole utterance;
* ``last 5 s``    wall time per second of audio over the utterance's last 5 s: the cost of a chunk
                  late in a long utterance (this is what would grow if the decoder re-decoded from
                  the start or carried the whole text through every step);
* ``work/audio-s`` the decoder's own work counter (beam extensions, scorings, tree steps) per
                  second: the same comparison without timing noise;
* ``chars/audio-s`` characters the input's best path writes per second (how much text the
                  utterance holds, which the cost follows);
* with ``--reference``: pyctcdecode's ``decode_beams`` on the whole utterance at once.

Then the ratio longest / shortest of each column. Input: random peaky CTC logits that spell random
sentences of a generated lexicon (the LM is trained on sentences from the same generator), or a
model's (T, V) logits from ``--logits file.npy`` tiled to each length.

One row per language and length (``--languages``, default ``en zh``):

* ``en``: the English character vocabulary (blank, unk, delimiter, a-z, '), pseudo-words of 1-3
  syllables, a word 3-gram. ``--lm`` and ``--logits`` replace its LM and its logits.
* ``zh``: a vocabulary of ``--zh-chars`` CJK characters and no delimiter (`Vocabulary.per_character`,
  a Chinese XLSR fine-tune has a few thousand), pseudo-words of 1-3 characters written without spaces,
  and a character 3-gram built by ``build_lm`` for that vocabulary: the per-character search, where
  the LM scores every emitted character. The spoken token's logit bonus is ``--peak`` + ln(V / 30),
  so that it gets the probability it has among the 30 English tokens.

    python tools/bench/decoder.py
    python tools/bench/decoder.py --lengths 5 20 60 --beam-width 32 --reps 3 --reference
    python tools/bench/decoder.py --languages en --lm lm.binary --logits utterance_logits.npy

Needs KenLM's lmplz/build_binary (``bash tools/build_kenlm.sh``) unless ``--lm`` is given (and
``--languages en``).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from streamer.grid import XLSR_GRID
from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig, log_softmax
from streamer.decoding.lm_bundle import LmBundle
from streamer.errors import StreamerError
from streamer.vocab import Vocabulary, english_characters

#: First code point of the generated Chinese vocabulary (CJK Unified Ideographs).
_CJK_FIRST = 0x4E00

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "br", "st", "th", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai"]
_CODAS = ["", "", "n", "t", "s", "r", "l", "d", "ng", "ck"]


def make_lexicon(rng: np.random.Generator, size: int) -> list[str]:
    """Distinct pseudo-words of 1-3 syllables."""
    words: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(1, 4))
        words.add("".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
                          + _CODAS[rng.integers(len(_CODAS))] for _ in range(n)))
    return sorted(words)


def chinese_characters(size: int) -> Vocabulary:
    """A per-character vocabulary: blank, unk and ``size`` CJK characters, no word delimiter."""
    chars = tuple(chr(_CJK_FIRST + i) for i in range(size))
    return Vocabulary(("<pad>", "<unk>") + chars, blank_id=0, word_delimiter=None, unk_id=1, language="zh")


def make_char_lexicon(rng: np.random.Generator, vocab: Vocabulary, size: int) -> list[str]:
    """Distinct pseudo-words of 1-3 characters, the characters drawn with Zipf-like frequencies."""
    chars = [t for i, t in enumerate(vocab.tokens) if i not in vocab.special_ids]
    weights = 1.0 / np.arange(1, len(chars) + 1)
    weights /= weights.sum()
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(chars[i] for i in rng.choice(len(chars), size=int(rng.integers(1, 4)), p=weights)))
    return sorted(words)


class Language:
    """One benchmark row's setup: vocabulary, lexicon, word frequencies and logit peak."""

    def __init__(self, name: str, vocab: Vocabulary, lexicon: list[str], peak: float) -> None:
        self.name, self.vocab, self.lexicon, self.peak = name, vocab, lexicon, peak
        self.ranks = 1.0 / np.arange(1, len(lexicon) + 1)
        self.ranks /= self.ranks.sum()
        self.sep = "" if vocab.per_character else " "


def sentence(rng: np.random.Generator, lexicon: list[str], ranks: np.ndarray) -> list[str]:
    """5-15 words drawn with Zipf-like frequencies."""
    return [lexicon[i] for i in rng.choice(len(lexicon), size=int(rng.integers(5, 16)), p=ranks)]


def peaky_logits(vocab: Vocabulary, words: list[str], rng: np.random.Generator, noise: float,
                 peak: float) -> np.ndarray:
    """(T, V) CTC-like logits: 1-3 frames per character, 0-3 blanks between, delimiters between words
    (a blank for a vocabulary without a delimiter)."""
    index = {t: i for i, t in enumerate(vocab.tokens)}
    gap = vocab.delimiter_id if vocab.delimiter_id is not None else vocab.blank_id
    ids: list[int] = []
    for k, word in enumerate(words):
        if k:
            ids += [gap] + [vocab.blank_id] * int(rng.integers(0, 3))
        for ch in word:
            ids += [index[ch]] * int(rng.integers(1, 4)) + [vocab.blank_id] * int(rng.integers(0, 4))
    x = rng.normal(size=(len(ids), len(vocab))).astype(np.float32) * noise
    x[np.arange(len(ids)), ids] += peak
    return x


def utterance(lang: Language, seconds, rng, noise, model_logits) -> np.ndarray:
    """Logits of exactly ``seconds`` of audio."""
    vocab = lang.vocab
    frames = XLSR_GRID.frames_in(seconds)
    if model_logits is not None:
        reps = -(-frames // len(model_logits))
        return np.tile(model_logits, (reps, 1))[:frames]
    gap = vocab.delimiter_id if vocab.delimiter_id is not None else vocab.blank_id
    parts, total = [], 0
    while total < frames:
        parts.append(peaky_logits(vocab, sentence(rng, lang.lexicon, lang.ranks), rng, noise, lang.peak))
        parts.append(np.tile(np.eye(len(vocab), dtype=np.float32)[gap] * lang.peak, (1, 1)))
        total += len(parts[-2]) + 1
    return np.concatenate(parts)[:frames]


def best_path_characters(vocab: Vocabulary, logits: np.ndarray) -> int:
    """Characters the best path of (T, V) logits writes (runs of one token, blanks and delimiters excluded)."""
    ids = logits.argmax(axis=1)
    new = np.r_[True, ids[1:] != ids[:-1]]
    quiet = np.isin(ids, [vocab.blank_id] + ([vocab.delimiter_id] if vocab.delimiter_id is not None else []))
    return int((new & ~quiet).sum())


def stream(decoder: BeamSearchDecoder, logits: np.ndarray, chunk: int, tail_frames: int):
    """Streams one utterance; returns (total s, s spent on the last ``tail_frames`` frames, work, text)."""
    state = decoder.new_state()
    tail_start = len(logits) - tail_frames
    total = tail = 0.0
    for i in range(0, len(logits), chunk):
        t0 = time.perf_counter()
        decoder.advance(state, logits[i:i + chunk])
        decoder.partial(state)
        dt = time.perf_counter() - t0
        total += dt
        if i >= tail_start:
            tail += dt
    t0 = time.perf_counter()
    final = decoder.finalize(state)
    total += time.perf_counter() - t0
    return total, tail, state.total_work, final.text


def build_bench_lm(folder: Path, lang: Language, rng, sentences: int) -> LmBundle:
    """A 3-gram KenLM model trained on generated sentences (characters, for a per-character vocabulary)."""
    from streamer.decoding.build_lm import build_lm

    corpus = folder / f"corpus-{lang.name}.txt"
    corpus.write_text("".join(lang.sep.join(sentence(rng, lang.lexicon, lang.ranks)) + "\n" for _ in range(sentences)),
                      encoding="utf-8")
    built = build_lm(corpus, folder / f"bench-{lang.name}.binary", order=3, vocab=lang.vocab)
    return LmBundle.for_file(built.path, unit=built.unit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", nargs="+", choices=["en", "zh"], default=["en", "zh"],
                        help="rows to measure (default en zh)")
    parser.add_argument("--lengths", type=float, nargs="+", default=[5.0, 20.0, 60.0],
                        help="utterance lengths in seconds (default 5 20 60)")
    parser.add_argument("--beam-width", type=int, default=32)
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="audio per advance() call (default 1.0)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the median is reported (default 3)")
    parser.add_argument("--lm", type=Path, default=None,
                        help="English KenLM model (default: build a 3-gram from generated sentences; needs lmplz)")
    parser.add_argument("--logits", type=Path, default=None,
                        help="(T, V) .npy logits of an English model, tiled to each length")
    parser.add_argument("--zh-chars", type=int, default=3500, help="characters of the zh vocabulary (default 3500)")
    parser.add_argument("--noise", type=float, default=1.5, help="std of the logit noise (default 1.5)")
    parser.add_argument("--peak", type=float, default=6.0,
                        help="logit bonus of the spoken token among 30 tokens (default 6)")
    parser.add_argument("--reference", action="store_true",
                        help="also time pyctcdecode's decode_beams on each whole English utterance")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.lengths = sorted(args.lengths)
    logging.disable(logging.WARNING)  # pyctcdecode's notes about small unigram lists

    rng = np.random.default_rng(args.seed)
    langs: list[Language] = []
    if "en" in args.languages:
        langs.append(Language("en", english_characters(), make_lexicon(rng, 3000), args.peak))
    if "zh" in args.languages:
        zh = chinese_characters(args.zh_chars)
        langs.append(Language("zh", zh, make_char_lexicon(rng, zh, 20000), args.peak + math.log(len(zh) / 30)))
    model_logits = None
    if args.logits is not None:
        model_logits = np.load(args.logits)
        width = len(english_characters())
        if model_logits.ndim != 2 or model_logits.shape[1] != width:
            print(f"bench_decoder: expected (T, {width}) logits in {args.logits}, found {model_logits.shape}",
                  file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as tmp:
        decoders, lm_names, references, inputs = {}, {}, {}, {}
        try:
            for lang in langs:
                lm = (LmBundle.for_file(args.lm) if lang.name == "en" and args.lm is not None
                      else build_bench_lm(Path(tmp), lang, rng, sentences=20000))
                decoders[lang.name] = BeamSearchDecoder(lang.vocab, DecoderConfig(beam_width=args.beam_width), lm)
                lm_names[lang.name] = f"{lm.kenlm.name} ({lm.unit or 'word'} {decoders[lang.name].lm_order}-gram)"
        except StreamerError as err:
            print(f"bench_decoder: {err}", file=sys.stderr)
            return 1
        for lang in langs:
            decoder = decoders[lang.name]
            if args.reference and lang.name == "en":
                from pyctcdecode import build_ctcdecoder
                references["en"] = build_ctcdecoder(lang.vocab.labels(), str(decoder.lm.kenlm), unigrams=decoder.lm.words(),
                                                    alpha=decoder.config.alpha, beta=decoder.config.beta)
            logits = model_logits if lang.name == "en" else None
            inputs[lang.name] = {s: utterance(lang, s, rng, args.noise, logits) for s in args.lengths}
        chunk = max(1, XLSR_GRID.frames_in(args.chunk_seconds))
        tail_frames = XLSR_GRID.frames_in(5.0)
        rows = {(lang.name, s): {"total": [], "tail": [], "work": [], "chars": [], "ref": []}
                for lang in langs for s in args.lengths}
        for lang in langs:
            for s in args.lengths:
                rows[(lang.name, s)]["chars"].append(best_path_characters(lang.vocab, inputs[lang.name][s]) / s)
        for lang in langs:  # warm-up
            stream(decoders[lang.name], inputs[lang.name][args.lengths[0]][:chunk * 2], chunk, chunk)
        for _ in range(args.reps):
            for lang in langs:
                for s in args.lengths:  # interleaved: every row sees the same machine load
                    x = inputs[lang.name][s]
                    total, tail, work, _ = stream(decoders[lang.name], x, chunk, tail_frames)
                    row = rows[(lang.name, s)]
                    row["total"].append(total / s)
                    row["tail"].append(tail / min(5.0, s))
                    row["work"].append(work / s)
                    if lang.name in references:
                        t0 = time.perf_counter()
                        references[lang.name].decode_beams(log_softmax(x.astype(np.float64)), beam_width=args.beam_width)
                        row["ref"].append((time.perf_counter() - t0) / s)
        for reference in references.values():
            reference.cleanup()

    cols = ["total", "tail", "work", "chars"] + (["ref"] if references else [])
    head = {"total": "ms/audio-s", "tail": "last 5 s ms/audio-s", "work": "work/audio-s",
            "chars": "chars/audio-s", "ref": "pyctcdecode whole ms/audio-s"}
    scale = {"total": 1000.0, "tail": 1000.0, "work": 1.0, "chars": 1.0, "ref": 1000.0}
    med = {k: {c: statistics.median(v[c]) if v[c] else None for c in cols} for k, v in rows.items()}
    print(f"beam {args.beam_width}, chunks of {XLSR_GRID.seconds(chunk):g} s, median of {args.reps}")
    for lang in langs:
        source = f"model logits {args.logits}" if lang.name == "en" and model_logits is not None else "random peaky logits"
        print(f"  {lang.name}: {len(lang.vocab)} tokens, LM {lm_names[lang.name]}, {source}")
    width = {c: max(12, len(head[c])) for c in cols}

    def cell(value: float | None, c: str) -> str:
        return f"{'-':>{width[c]}}" if value is None else f"{value * scale[c]:>{width[c]}.1f}"

    print(f"{'lang':>4}  {'length s':>9}  " + "  ".join(f"{head[c]:>{width[c]}}" for c in cols))
    lo, hi = args.lengths[0], args.lengths[-1]
    for lang in langs:
        for s in args.lengths:
            print(f"{lang.name:>4}  {s:>9g}  " + "  ".join(cell(med[(lang.name, s)][c], c) for c in cols))
        a, b = med[(lang.name, lo)], med[(lang.name, hi)]
        ratios = ["-" if a[c] is None else f"{b[c] / a[c]:.2f}x" for c in cols]
        print(f"{lang.name:>4}  {f'{hi:g}/{lo:g}':>9}  " + "  ".join(f"{r:>{width[c]}}" for r, c in zip(ratios, cols)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
