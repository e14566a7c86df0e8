"""KenLM n-gram language models for beam-search decoding: building, and reading word lists.

``build_lm`` normalizes a text corpus for the model's vocabulary with `streamer.text.normalize_text`
(the same function that makes its training labels), trains an ARPA model with KenLM's ``lmplz``,
converts it with ``build_binary`` and writes the model's word list beside it::

    lm.binary              the KenLM model (or lm.arpa when the output name ends in .arpa)
    lm.unigrams.txt        its words, one per line, sorted (no <s>, </s>, <unk>)

pyctcdecode (and so `streamer.decoding.beam.BeamSearchDecoder`) needs that word list with a binary
model: it decides which words are known and which partial words may still become one.

Any script: the words are whatever the vocabulary writes (Cyrillic, letters with diacritics, ...).
For a vocabulary whose words are characters (Chinese, Japanese, Thai: `Vocabulary.per_character`)
every character is a word of the LM: the corpus lines are written as space-separated characters,
so the n-grams are character n-grams and the word list is the character list. `BuiltLM.unit` says
which (see `streamer.decoding.lm_bundle.lm_unit_for`).

Built for a model folder without ``-o``, the LM goes into the model's ``lm/`` folder with its unit
and build facts in ``lm/attrs.json`` (`streamer.decoding.lm_bundle.LmBundle.save`), so that
``streamer transcribe --model MODEL`` decodes with it and the decoder can check that it fits the
vocabulary.

``lmplz`` and ``build_binary`` are not on PyPI as programs; ``tools/build_kenlm.sh`` compiles them
from the kenlm source distribution into ``$STREAMER_CACHE/kenlm/bin`` (default
``~/.cache/streamer/kenlm/bin``). They are looked up there, then on ``PATH``.

Command line (wired as ``streamer lm``)::

    streamer lm build corpus.txt -o lm.binary --model MODEL --order 3 [--prune 0 1 1] [--memory 512M] [--overwrite]
    streamer lm build corpus.txt -o lm.binary --vocab vocab.json --language ru ...
    streamer lm build corpus.txt --model MODEL_FOLDER         # into MODEL_FOLDER/lm/, with attrs.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

from streamer.decoding.lm_bundle import ATTRS_FILE, LM_FOLDER, LmBundle, lm_unit_for, load_unigrams, unigrams_file_for
from streamer.errors import ConfigError, OutputError, StreamerError
from streamer.files import atomic_files, check_target
from streamer.output import prepare_output_dir
from streamer.text import decoder_words
from streamer.checkpoint import model_vocabulary
from streamer.vocab import Vocabulary, english_characters, load_vocab_json

#: The script that builds lmplz and build_binary.
BUILD_SCRIPT = "tools/build_kenlm.sh"
#: Largest n-gram order the KenLM build supports (its default KENLM_MAX_ORDER).
MAX_ORDER = 6


class KenLMToolsMissingError(StreamerError, FileNotFoundError):
    """lmplz / build_binary were not found (the message names tools/build_kenlm.sh)."""


class LMBuildError(StreamerError):
    """lmplz or build_binary failed (the message holds the end of its log)."""


@dataclass(frozen=True)
class KenLMTools:
    """Paths of the two KenLM programs."""

    lmplz: Path
    build_binary: Path


@dataclass(frozen=True)
class BuiltLM:
    """What `build_lm` wrote.

    Attributes:
        path: The model (.binary, or .arpa).
        unigrams_path: Its word list (see `streamer.decoding.lm_bundle.unigrams_file_for`).
        order: N-gram order.
        sentences: Non-empty corpus lines after normalization.
        tokens: Words in those lines (characters, for a character LM).
        vocabulary: Distinct words (lines of the word list).
        unit: What the LM's words are: ``"word"``, or ``"character"`` for a per-character vocabulary.
    """

    path: Path
    unigrams_path: Path
    order: int
    sentences: int
    tokens: int
    vocabulary: int
    unit: str = "word"


def cache_dir() -> Path:
    """streamer's cache folder: ``$STREAMER_CACHE``, else ``~/.cache/streamer``."""
    env = os.environ.get("STREAMER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "streamer"


def kenlm_bin_dir() -> Path:
    """Where tools/build_kenlm.sh installs lmplz and build_binary."""
    return cache_dir() / "kenlm" / "bin"


def find_kenlm_tools(bin_dir: str | Path | None = None) -> KenLMTools:
    """Locates lmplz and build_binary.

    Args:
        bin_dir: Folder to use; default: `kenlm_bin_dir()`, then ``PATH``.

    Raises:
        KenLMToolsMissingError: Not found; the message says how to build them.
    """
    folders = [Path(bin_dir)] if bin_dir is not None else [kenlm_bin_dir()]
    found = {}
    for name in ("lmplz", "build_binary"):
        for folder in folders:
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found[name] = candidate
                break
        else:
            on_path = shutil.which(name) if bin_dir is None else None
            if on_path is None:
                where = ", ".join(str(f) for f in folders) + ("" if bin_dir is not None else " or PATH")
                raise KenLMToolsMissingError(
                    f"KenLM's '{name}' program was expected in {where}, found none. "
                    f"Build it with: bash {BUILD_SCRIPT}  (about 1-2 minutes; needs cmake, g++ and Boost)"
                )
            found[name] = Path(on_path)
    return KenLMTools(lmplz=found["lmplz"], build_binary=found["build_binary"])


def build_lm(
    corpus_txt: str | Path,
    out_path: str | Path,
    order: int = 3,
    prune: Sequence[int] = (),
    *,
    vocab: Vocabulary | None = None,
    discount_fallback: bool = True,
    memory: str = "512M",
    bin_dir: str | Path | None = None,
    quantize_bits: int | None = None,
    overwrite: bool = False,
) -> BuiltLM:
    """Trains a KenLM model on a text corpus and writes its word list beside it.

    Each line of the corpus is one sentence; it is normalized for the model's vocabulary with
    `streamer.text.decoder_words` (English characters when ``vocab`` is None: lower case, a-z
    and apostrophe, digits spelled out) and empty results are skipped.

    Args:
        corpus_txt: UTF-8 text file, one sentence per line (other encodings and binary data are refused).
        out_path: Model to write; ``.arpa`` keeps the text format, anything else (e.g. ``.binary``)
            is converted with build_binary. Parent folders are created.
        order: N-gram order, 1 .. MAX_ORDER.
        prune: lmplz ``--prune`` count thresholds per order (first must be 0, non-decreasing,
            at most ``order`` values); empty keeps every n-gram.
        vocab: The vocabulary of the model the LM is for (labels and LM text normalized alike);
            None = the bundled English characters. A per-character vocabulary gets a character LM.
        discount_fallback: Pass ``--discount_fallback`` (needed for small or repetitive corpora,
            whose Kneser-Ney discounts cannot be estimated).
        memory: lmplz ``-S`` sorting memory (e.g. ``512M``, ``10%``); lmplz's own default, 80% of
            RAM, is too much on a shared machine.
        bin_dir: Folder of lmplz and build_binary (default: see `find_kenlm_tools`).
        quantize_bits: Write a compact ``trie`` binary with probabilities and backoffs quantized to
            this many bits (build_binary ``-q/-b``, 2 .. 25; 8 is ~4x smaller than the default
            ``probing`` structure at a negligible cost in accuracy). None keeps ``probing``.
        overwrite: Replace an existing model and word list; otherwise either existing is an error,
            raised before any work. Both are written atomically and take their names together.

    Returns:
        The paths and corpus counts.

    Raises:
        ConfigError: Bad arguments, or a corpus with no words.
        KenLMToolsMissingError: lmplz / build_binary not built yet.
        LMBuildError: lmplz or build_binary failed.
        OutputError: ``out_path`` or its word list exists (without ``overwrite``), is a folder, or
            cannot be written.
    """
    corpus_txt, out_path = Path(corpus_txt), Path(out_path)
    vocab = vocab if vocab is not None else english_characters()
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ConfigError(f"lm.order: expected an integer in [1, {MAX_ORDER}], found {order!r}")
    prune = [int(p) for p in prune]
    if prune and (len(prune) > order or prune[0] != 0 or any(b < a for a, b in zip(prune, prune[1:]))
                  or min(prune) < 0):
        raise ConfigError(f"lm.prune: expected at most {order} non-decreasing counts starting with 0 "
                          f"(e.g. 0 1 1), found {prune}")
    if quantize_bits is not None and (isinstance(quantize_bits, bool) or not isinstance(quantize_bits, int)
                                      or not 2 <= quantize_bits <= 25):
        raise ConfigError(f"lm.quantize_bits: expected an integer in [2, 25] or None, found {quantize_bits!r}")
    if quantize_bits is not None and out_path.suffix == ".arpa":
        raise ConfigError(f"lm.quantize_bits: only binary models are quantized, found output {out_path}")
    if not corpus_txt.is_file():
        raise ConfigError(f"lm.corpus: expected a text file, found no file at {corpus_txt}")
    unigrams_path = unigrams_file_for(out_path)
    for target in (out_path, unigrams_path):  # before the work; written together at the end
        check_target(target, overwrite)
    tools = find_kenlm_tools(bin_dir)
    with _work_folder(out_path.parent) as tmp_dir, \
            atomic_files([out_path, unigrams_path], overwrite) as (model_tmp, words_tmp):
        text_path = tmp_dir / "corpus.txt"
        sentences = tokens = 0
        vocabulary: set[str] = set()
        with open(corpus_txt, "rb") as src, open(text_path, "w", encoding="utf-8") as dst:
            for number, raw in enumerate(src, 1):
                line = _text_line(raw, corpus_txt, number)
                norm = decoder_words(line, vocab)
                if norm:
                    words = norm.split()
                    sentences += 1
                    tokens += len(words)
                    vocabulary.update(words)
                    dst.write(norm + "\n")
        if not sentences:
            raise ConfigError(f"lm.corpus: expected text with words after normalization, found none in {corpus_txt}")
        arpa_path = tmp_dir / "lm.arpa"
        command = [str(tools.lmplz), "-o", str(order), "-S", memory, "-T", str(tmp_dir)]
        if discount_fallback:
            command.append("--discount_fallback")
        if prune:
            command += ["--prune", *(str(p) for p in prune)]
        with open(text_path, "rb") as stdin, open(arpa_path, "wb") as stdout:
            _run(command, stdin=stdin, stdout=stdout)
        model_words = load_unigrams(arpa_path)
        if out_path.suffix == ".arpa":
            os.replace(arpa_path, model_tmp)
        else:
            structure = ["-q", str(quantize_bits), "-b", str(quantize_bits), "trie"] if quantize_bits else []
            _run([str(tools.build_binary), *structure, str(arpa_path), str(model_tmp)])
        words_tmp.write_text("".join(w + "\n" for w in sorted(set(model_words))), encoding="utf-8")
    return BuiltLM(path=out_path, unigrams_path=unigrams_path, order=order, sentences=sentences,
                   tokens=tokens, vocabulary=len(set(model_words)), unit=lm_unit_for(vocab))


@contextlib.contextmanager
def _work_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder inside ``folder``, created with its parents when missing.

    A file in the way, a read-only or special location fails here, before any work
    (`streamer.output.prepare_output_dir`). On failure the temporary folder and any folder made
    for the output are removed (only while empty): a refused build leaves nothing behind.
    """
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        prepare_output_dir(folder)
        with tempfile.TemporaryDirectory(prefix="streamer-lm-", dir=folder) as tmp:
            yield Path(tmp)
    except BaseException:
        for made in missing:  # deepest first
            try:
                made.rmdir()
            except OSError:
                break
        raise


def _text_line(raw: bytes, path: Path, number: int) -> str:
    """One corpus line as text.

    Raises:
        ConfigError: The line is not UTF-8, or holds a NUL byte (binary data, not text).
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"lm.corpus: expected UTF-8 text, found the byte {raw[err.start]:#04x} on line {number} of "
                          f"{path} (binary data, or another encoding: convert it with iconv -t UTF-8)") from None
    if "\0" in line:
        raise ConfigError(f"lm.corpus: expected text, found a NUL byte on line {number} of {path} (binary data)")
    return line


def _run(command: list[str], **kwargs) -> None:
    """Runs a KenLM program; raises LMBuildError with the end of its log if it fails."""
    log = subprocess.run(command, stderr=subprocess.PIPE, check=False, **kwargs)
    if log.returncode != 0:
        tail = log.stderr.decode("utf-8", "replace").strip().splitlines()[-8:]
        raise LMBuildError(f"{Path(command[0]).name} failed with exit code {log.returncode}: "
                           + " | ".join(tail))


def main(argv: Sequence[str] | None = None) -> int:
    """``streamer lm``: language-model commands.

    Args:
        argv: Arguments after ``lm``, e.g. ``["build", "corpus.txt", "-o", "lm.binary", "--order", "3"]``.

    Returns:
        Exit code: 0 on success, 1 on an error (printed as one line on stderr), 2 on bad usage.
    """
    parser = argparse.ArgumentParser(prog="streamer lm", description="KenLM language models for beam search.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="train an n-gram LM on a text corpus (needs tools/build_kenlm.sh)",
                           description="Normalizes the corpus, runs lmplz and build_binary, and writes "
                                       "<out stem>.unigrams.txt beside the model. Without -o, --model names "
                                       "a model folder and the LM goes into its lm/ folder (with attrs.json), "
                                       "where transcribe finds it.")
    build.add_argument("corpus", type=Path, help="UTF-8 text, one sentence per line")
    build.add_argument("-o", "--output", type=Path, help="model path (.binary, or .arpa); default with --model "
                                                         "FOLDER: FOLDER/lm/lm.binary")
    build.add_argument("--overwrite", action="store_true",
                       help="replace an existing model and word list (default: refuse them, before any work)")
    source = build.add_mutually_exclusive_group()
    source.add_argument("--model", help="the model the LM is for (folder or bundled name): its vocabulary "
                                        "normalizes the text like its training labels (default: English "
                                        "characters); a per-character vocabulary gets a character LM")
    source.add_argument("--vocab", type=Path, help="the model's vocab.json instead of --model")
    build.add_argument("--language", help="ISO 639-1 code of the text, for spelling digits (default: the vocabulary's)")
    build.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    build.add_argument("--prune", type=int, nargs="+", default=[], metavar="COUNT",
                       help="lmplz --prune thresholds per order, e.g. 0 1 1")
    build.add_argument("--memory", default="512M", help="lmplz sorting memory, e.g. 512M or 10%% (default 512M)")
    build.add_argument("--no-discount-fallback", action="store_true",
                       help="fail instead of using fallback discounts on small corpora")
    build.add_argument("--quantize", type=int, default=None, metavar="BITS",
                       help="compact trie binary with BITS-bit probabilities/backoffs (e.g. 8)")
    build.add_argument("--bin-dir", type=Path, default=None,
                       help=f"folder of lmplz and build_binary (default {kenlm_bin_dir()}, then PATH)")
    try:
        args = parser.parse_args(argv)
        if args.output is None and (args.model is None or not Path(args.model).is_dir()):
            parser.error(f"expected -o OUTPUT, or --model naming a model folder to build into, found "
                         f"{'no --model' if args.model is None else 'no folder at ' + repr(args.model)}")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    into_model = args.output is None
    output = Path(args.model) / LM_FOLDER / "lm.binary" if into_model else args.output
    try:
        vocab = (load_vocab_json(args.vocab) if args.vocab is not None
                 else model_vocabulary(args.model) if args.model is not None else None)
        if args.model is not None and vocab is None:
            raise ConfigError(f"lm.model: expected a model with a CTC head, found none in {args.model}")
        if vocab is not None and args.language:
            vocab = replace(vocab, language=args.language)
        built = build_lm(args.corpus, output, order=args.order, prune=args.prune, vocab=vocab,
                         discount_fallback=not args.no_discount_fallback, memory=args.memory,
                         bin_dir=args.bin_dir, quantize_bits=args.quantize, overwrite=args.overwrite)
        if into_model:  # tuned weights of an LM this one replaces do not carry over
            LmBundle.for_file(built.path, unit=built.unit).save(
                args.model, order=built.order, prune=list(args.prune), quantize_bits=args.quantize,
                text=str(args.corpus))
    except StreamerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    units = "characters" if built.unit == "character" else "words"
    print(f"wrote {built.path} ({built.unit} LM, order {built.order}, {built.sentences} sentences, "
          f"{built.tokens} {units}, {built.vocabulary} distinct) and {built.unigrams_path}"
          + (f" and {built.path.parent / ATTRS_FILE}" if into_model else ""))
    return 0
