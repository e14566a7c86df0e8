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
* with ``--reference``: pyctcdecode's ``decode_beams`` on the whole utterance at once.

Then the ratio longest / shortest of each column. Input: random peaky CTC logits that spell random
sentences of a generated lexicon (the LM is trained on sentences from the same generator), or a
model's (T, V) logits from ``--logits file.npy`` tiled to each length.

    python tools/bench/decoder.py
    python tools/bench/decoder.py --lengths 5 20 60 --beam-width 32 --reps 3 --reference
    python tools/bench/decoder.py --lm lm.binary --logits utterance_logits.npy

Needs KenLM's lmplz/build_binary (``bash tools/build_kenlm.sh``) unless ``--lm`` is given.
"""

from __future__ import annotations

import argparse
import logging
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


def sentence(rng: np.random.Generator, lexicon: list[str], ranks: np.ndarray) -> list[str]:
    """5-15 words drawn with Zipf-like frequencies."""
    return [lexicon[i] for i in rng.choice(len(lexicon), size=int(rng.integers(5, 16)), p=ranks)]


def peaky_logits(vocab: Vocabulary, words: list[str], rng: np.random.Generator, noise: float,
                 peak: float) -> np.ndarray:
    """(T, V) CTC-like logits: 1-3 frames per character, 0-3 blanks between, delimiters between words."""
    ids: list[int] = []
    for k, word in enumerate(words):
        if k:
            ids += [vocab.delimiter_id] + [vocab.blank_id] * int(rng.integers(0, 3))
        for ch in word:
            ids += [vocab.tokens.index(ch)] * int(rng.integers(1, 4)) + [vocab.blank_id] * int(rng.integers(0, 4))
    x = rng.normal(size=(len(ids), len(vocab))).astype(np.float32) * noise
    x[np.arange(len(ids)), ids] += peak
    return x


def utterance(vocab, seconds, rng, lexicon, ranks, noise, peak, model_logits) -> np.ndarray:
    """Logits of exactly ``seconds`` of audio."""
    frames = XLSR_GRID.frames_in(seconds)
    if model_logits is not None:
        reps = -(-frames // len(model_logits))
        return np.tile(model_logits, (reps, 1))[:frames]
    parts, total = [], 0
    while total < frames:
        parts.append(peaky_logits(vocab, sentence(rng, lexicon, ranks), rng, noise, peak))
        parts.append(np.tile(np.eye(len(vocab), dtype=np.float32)[vocab.delimiter_id] * peak, (1, 1)))
        total += len(parts[-2]) + 1
    return np.concatenate(parts)[:frames]


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


def build_bench_lm(folder: Path, lexicon, ranks, rng, sentences: int) -> Path:
    """A 3-gram KenLM model trained on generated sentences."""
    from streamer.decoding.build_lm import build_lm

    corpus = folder / "corpus.txt"
    corpus.write_text("".join(" ".join(sentence(rng, lexicon, ranks)) + "\n" for _ in range(sentences)))
    return build_lm(corpus, folder / "bench.binary", order=3).path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[5.0, 20.0, 60.0],
                        help="utterance lengths in seconds (default 5 20 60)")
    parser.add_argument("--beam-width", type=int, default=32)
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="audio per advance() call (default 1.0)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the median is reported (default 3)")
    parser.add_argument("--lm", type=Path, default=None,
                        help="KenLM model (default: build a 3-gram from generated sentences; needs lmplz)")
    parser.add_argument("--logits", type=Path, default=None, help="(T, V) .npy logits of a model, tiled to each length")
    parser.add_argument("--noise", type=float, default=1.5, help="std of the logit noise (default 1.5)")
    parser.add_argument("--peak", type=float, default=6.0, help="logit bonus of the spoken token (default 6)")
    parser.add_argument("--reference", action="store_true",
                        help="also time pyctcdecode's decode_beams on each whole utterance")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.lengths = sorted(args.lengths)
    logging.disable(logging.WARNING)  # pyctcdecode's notes about small unigram lists

    vocab = english_characters()
    rng = np.random.default_rng(args.seed)
    lexicon = make_lexicon(rng, 3000)
    ranks = 1.0 / np.arange(1, len(lexicon) + 1)
    ranks /= ranks.sum()
    model_logits = None
    if args.logits is not None:
        model_logits = np.load(args.logits)
        if model_logits.ndim != 2 or model_logits.shape[1] != len(vocab):
            print(f"bench_decoder: expected (T, {len(vocab)}) logits in {args.logits}, found {model_logits.shape}",
                  file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as tmp:
        try:
            lm_path = args.lm or build_bench_lm(Path(tmp), lexicon, ranks, rng, sentences=20000)
            decoder = BeamSearchDecoder(vocab, DecoderConfig(beam_width=args.beam_width), LmBundle.for_file(lm_path))
        except StreamerError as err:
            print(f"bench_decoder: {err}", file=sys.stderr)
            return 1
        reference = None
        if args.reference:
            from pyctcdecode import build_ctcdecoder
            unigrams = decoder.lm.words()
            reference = build_ctcdecoder(vocab.labels(), str(lm_path), unigrams=unigrams, alpha=decoder.config.alpha,
                                         beta=decoder.config.beta)
        inputs = {s: utterance(vocab, s, rng, lexicon, ranks, args.noise, args.peak, model_logits)
                  for s in args.lengths}
        chunk = max(1, XLSR_GRID.frames_in(args.chunk_seconds))
        tail_frames = XLSR_GRID.frames_in(5.0)
        rows: dict[float, dict[str, list[float]]] = {s: {"total": [], "tail": [], "work": [], "ref": []}
                                                     for s in args.lengths}
        stream(decoder, inputs[args.lengths[0]][:chunk * 2], chunk, chunk)  # warm-up
        for _ in range(args.reps):
            for s in args.lengths:  # interleaved: every length sees the same machine load
                total, tail, work, _ = stream(decoder, inputs[s], chunk, tail_frames)
                rows[s]["total"].append(total / s)
                rows[s]["tail"].append(tail / min(5.0, s))
                rows[s]["work"].append(work / s)
                if reference is not None:
                    t0 = time.perf_counter()
                    reference.decode_beams(log_softmax(inputs[s].astype(np.float64)), beam_width=args.beam_width)
                    rows[s]["ref"].append((time.perf_counter() - t0) / s)
        if reference is not None:
            reference.cleanup()

    cols = ["total", "tail", "work"] + (["ref"] if reference is not None else [])
    head = {"total": "ms/audio-s", "tail": "last 5 s ms/audio-s", "work": "work/audio-s",
            "ref": "pyctcdecode whole ms/audio-s"}
    med = {s: {c: statistics.median(rows[s][c]) for c in cols} for s in args.lengths}
    scale = {"total": 1000.0, "tail": 1000.0, "work": 1.0, "ref": 1000.0}
    print(f"beam {args.beam_width}, LM {Path(lm_path).name} (order {decoder.lm_order}), chunks of "
          f"{XLSR_GRID.seconds(chunk):g} s, median of {args.reps}, "
          f"{'model logits ' + str(args.logits) if model_logits is not None else 'random peaky logits'}")
    width = {c: max(12, len(head[c])) for c in cols}
    print(f"{'length s':>9}  " + "  ".join(f"{head[c]:>{width[c]}}" for c in cols))
    for s in args.lengths:
        print(f"{s:>9g}  " + "  ".join(f"{med[s][c] * scale[c]:>{width[c]}.1f}" for c in cols))
    lo, hi = args.lengths[0], args.lengths[-1]
    ratios = [f"{med[hi][c] / med[lo][c]:.2f}x" for c in cols]
    print(f"{f'{hi:g}/{lo:g}':>9}  " + "  ".join(f"{r:>{width[c]}}" for r, c in zip(ratios, cols)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
