"""The ``streamer`` command line.

    streamer transcribe FILE... [--model M] [--format txt|json|srt|vtt] [--output-dir D]
                                [--streaming window|cached --chunk S] [--no-lm] [--lm FILE] ...
    streamer mic [--model M] [--device N] [--streaming window|cached --chunk S] [--vad 0-3]
    streamer train --train TSV... --out DIR ...          (see streamer/train/cli.py)
    streamer lm build corpus.txt -o lm.binary --order N
    streamer export -o demo.pte [--streaming cached --chunk 0.32 --quantize dynamic|none] [--overwrite]
    streamer serve [--host H --port P] [--token-file F] [--max-batch N] ...   (docs/protocol.md)
    streamer batch files.tsv --output-dir D [--format F] [--workers N] [--ray [ADDRESS]]
    streamer models                                      (bundled models)

Errors print as one line (``error: ...``) without a traceback; ``transcribe`` keeps going through a
batch when one file fails, and exits with 1 if any did.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from streamer.errors import StreamerError
from streamer.frontend.vad import VadConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Exit status of an unexpected failure (sysexits' EX_SOFTWARE), of Ctrl-C, and of SIGTERM.
EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 70, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it stops as Ctrl-C does (finished files kept)."""


def _terminate(signum: int, frame: object) -> None:  # noqa: ARG001
    raise Terminated()


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from streamer.decoding.beam import DecoderConfig
    from streamer.grid import XLSR_GRID
    from streamer.streaming import StreamingConfig

    decoder, streaming = DecoderConfig(), StreamingConfig()  # the help shows the library's defaults
    p.add_argument("--model", help="bundled model name, model folder, or hub id (default: demo-en; with --pte "
                                   "and no --model, the program and its sidecar run alone)")
    p.add_argument("--no-lm", action="store_true", help="greedy decoding even when the model ships a language model")
    p.add_argument("--lm", metavar="FILE", help="KenLM .binary/.arpa to decode with (unigrams.txt beside it is used)")
    p.add_argument("--beam", type=int, help=f"beam width, 1 to 1024 (default: {decoder.beam_width})")
    p.add_argument("--alpha", type=float, help="LM weight, 0 to 100 (default: the model's lm/attrs.json)")
    p.add_argument("--beta", type=float, help="word insertion bonus, -100 to 100 (default: the model's lm/attrs.json)")
    p.add_argument("--hotword", action="append", default=[], metavar="WORD", help="boost a word (repeatable)")
    p.add_argument("--hotword-weight", type=float, help=f"boost per hotword match, -100 to 100 (default: {decoder.hotword_weight:g})")
    p.add_argument("--streaming", choices=["window", "cached"],
                   help=f"run through the streaming encoder in this mode (default for mic: {streaming.mode})")
    p.add_argument("--chunk", type=float,
                   help=f"streaming chunk in seconds, 0.02 to 10 (default: {XLSR_GRID.seconds(streaming.chunk_frames):g})")
    p.add_argument("--left", type=float, help="streaming left context in seconds (window: re-encoded, cached: cache)")
    p.add_argument("--right", type=float, help="window-mode look-ahead in seconds (0 to 10)")
    p.add_argument("--threads", type=int, help="CPU threads, 1 to 1024 (default: PyTorch's choice)")
    p.add_argument("--pte", metavar="FILE", help="run the streaming step from this ExecuTorch program (streamer export); "
                                               "alone (no --model), two-pass finals are off")


def _config(args: argparse.Namespace):
    """The `RecognizerConfig` the options ask for: the library's defaults, replaced where the user gave a value.

    Cheap and validating (the config dataclasses check every range), so `main` calls it before any
    heavy work and reports a bad option as a usage error.
    """
    from dataclasses import replace

    from streamer.endpoint import EndpointConfig
    from streamer.grid import XLSR_GRID
    from streamer.recognizer import RecognizerConfig
    from streamer.streaming import StreamingConfig

    cfg = RecognizerConfig()
    over: dict = {}
    if args.streaming is not None or any(v is not None for v in (args.chunk, args.left, args.right)):
        mode = args.streaming or cfg.streaming.mode
        chunk = args.chunk if args.chunk is not None else XLSR_GRID.seconds(cfg.streaming.chunk_frames)
        over["streaming"] = StreamingConfig.from_seconds(mode, chunk, args.left, args.right)
    given = {"beam_width": args.beam, "alpha": args.alpha, "beta": args.beta, "hotword_weight": args.hotword_weight,
             "hotwords": tuple(args.hotword) or None}
    given = {k: v for k, v in given.items() if v is not None}
    if given:
        over["decoder"] = replace(cfg.decoder, **given)
    if args.threads is not None:
        over["threads"] = args.threads
    if getattr(args, "endpoint", None) is not None:
        over["endpoint"] = EndpointConfig.preset(args.endpoint)
    if args.command == "transcribe":
        over["stream_files"] = args.streaming is not None or bool(args.pte)
    if args.pte and args.model is None:  # the program alone: no PyTorch model for two-pass finals
        over["two_pass"] = False
    return replace(cfg, **over)


def _recognizer(args: argparse.Namespace):
    """Loads the model with the config `_config` built (``args.config``)."""
    from streamer.recognizer import Recognizer

    lm = None if args.no_lm else (args.lm or "auto")
    if args.pte and args.model is None:
        return Recognizer.from_program(args.pte, args.config, lm=lm)
    from streamer.checkpoint import DEFAULT_MODEL
    return Recognizer.load(args.model or DEFAULT_MODEL, args.config, lm=lm, step_program=args.pte)


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribes files; one error line per failed file; a summary line at the end."""
    from tqdm import tqdm

    from streamer.audio import probe
    from streamer.formats import render
    from streamer.output import check_output, input_files, plan_outputs, prepare_output_dir, write_output

    # The whole batch's output names first (unique, or refused), then the folder: both fail before the model loads.
    targets = plan_outputs(args.files, args.output_dir, args.format) if args.output_dir else [None] * len(args.files)
    out_dir = prepare_output_dir(args.output_dir) if args.output_dir else None
    inputs = input_files(args.files) if out_dir else frozenset()
    rec = _recognizer(args)
    durations = {}
    for f in args.files:
        try:
            durations[f] = max(0.0, probe(f).duration)
        except StreamerError:
            durations[f] = 0.0
    total = sum(durations.values())
    show = not args.quiet and sys.stderr.isatty() or args.progress
    bar = tqdm(total=round(total, 1), unit="s", desc="transcribe", disable=not show, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    failed, audio_s, t0 = 0, 0.0, time.perf_counter()
    info = None  # how the transcripts were made (Transcript.info), for the summary
    for f, dest in zip(args.files, targets):
        done_before = bar.n
        if dest is not None:
            try:
                check_output(dest, args.overwrite, inputs)  # refused before the work, not after
            except StreamerError as err:
                failed += 1
                bar.write(f"error: {err}", file=sys.stderr)
                continue

        def progress(s: float, base: float = done_before) -> None:
            bar.n = round(min(base + s, bar.total), 1)
            bar.refresh()

        try:
            transcript = rec.transcribe(f, progress=progress)
        except StreamerError as err:
            failed += 1
            bar.write(f"error: {err}", file=sys.stderr)
            continue
        finally:
            bar.n = round(done_before + durations[f], 1)
            bar.refresh()
        audio_s += transcript.duration
        info = transcript.info
        text = render(transcript, args.format)
        if out_dir is None:
            if len(args.files) > 1 and args.format == "txt":
                bar.write(f"{f}: {transcript.text}")
            else:
                bar.write(text.rstrip("\n"))
        else:
            try:
                write_output(dest, text, args.overwrite, inputs)
            except StreamerError as err:
                failed += 1
                bar.write(f"error: {err}", file=sys.stderr)
    bar.close()
    sys.stdout.flush()  # results before the summary, also when stdout is a pipe
    elapsed = time.perf_counter() - t0
    ok = len(args.files) - failed
    rtf = f", RTF {elapsed / audio_s:.3f}" if audio_s else ""
    print(f"transcribed {ok}/{len(args.files)} file(s), {audio_s:.1f} s of audio in {elapsed:.1f} s{rtf} "
          f"[{info.decoder if info else rec.decoder_name}, {info.mode if info else rec.mode_name}]"
          + (f"; {failed} failed" if failed else "") + (f"; outputs in {out_dir}" if out_dir else "")
          + (" under their input folders' paths (one file name occurs in several folders)"
             if out_dir and any(t.parent != out_dir for t in targets) else ""),
          file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:  # noqa: ARG001
    """Lists the bundled models."""
    import json

    from streamer.checkpoint import MODELS_DIR
    found = False
    for d in sorted(MODELS_DIR.iterdir()) if MODELS_DIR.is_dir() else []:
        cfg = d / "config.json"
        if cfg.is_file():
            found = True
            meta = json.loads(cfg.read_text()).get("metadata", {})
            lm = "with LM" if (d / "lm").is_dir() else "no LM"
            print(f"{d.name}\t{lm}\t{meta.get('description', '')}")
    if not found:
        print(f"no bundled models in {MODELS_DIR}")
    return EXIT_OK


def cmd_lm(args: argparse.Namespace) -> int:
    """``streamer lm build ...``: delegates to streamer.decoding.build_lm."""
    from streamer.decoding.build_lm import main as lm_main
    return lm_main(args.rest)


def cmd_train(args: argparse.Namespace) -> int:
    """``streamer train ...``: delegates to streamer.train.cli (imported only for training)."""
    from streamer.train.cli import main as train_main
    return train_main(args.rest)


def cmd_export(args: argparse.Namespace) -> int:
    """``streamer export``: the streaming step as an ExecuTorch program."""
    import time

    from streamer.checkpoint import DEFAULT_MODEL, load_checkpoint
    from streamer.export.executorch import ExportConfig, check_output_path, export_streaming
    from streamer.grid import XLSR_GRID
    from streamer.streaming import StreamingConfig

    check_output_path(args.output, args.overwrite)  # before loading and exporting (tens of seconds)
    if args.check and not (0 <= args.check_margin <= 1 and args.check_limit >= 1):
        raise ConfigError(f"--check-margin: expected a WER from 0 to 1 and --check-limit >= 1, found "
                          f"{args.check_margin} and {args.check_limit}")
    ck = load_checkpoint(args.model or DEFAULT_MODEL)
    cfg = ExportConfig(StreamingConfig.from_seconds(args.streaming, args.chunk, args.left, args.right), args.quantize)
    t = time.perf_counter()
    path = export_streaming(ck, cfg, args.output, overwrite=args.overwrite)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.quantize}, {cfg.streaming.mode} mode, "
          f"{XLSR_GRID.seconds(cfg.streaming.chunk_frames):.2f}-s chunks) and {path.with_suffix('.json').name} "
          f"in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if args.check:
        from streamer.errors import CheckpointError
        from streamer.export.gate import score_program

        result = score_program(path, args.model or DEFAULT_MODEL, args.check, args.check_margin, args.check_limit)
        print(result.line(), file=sys.stderr)
        if not result.passed:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            raise CheckpointError(f"export refused: the program's WER on {args.check} is {result.program_wer:.3f}, "
                                  f"the model's {result.model_wer:.3f}; more than {result.margin:.3f} worse "
                                  f"(removed {path.name} and its sidecar)")
    return EXIT_OK


def cmd_mic(args: argparse.Namespace) -> int:
    """``streamer mic``: live transcription from a microphone."""
    from streamer.frontend.frontend import FrontEndConfig
    from streamer.frontend.live import run_mic

    front = FrontEndConfig(vad=None if args.no_vad else VadConfig(aggressiveness=args.vad),
                           gate=not (args.no_vad or args.no_gate))
    return run_mic(_recognizer(args), device=args.device, seconds=args.seconds, front_end=front)


def cmd_serve(args: argparse.Namespace) -> int:
    """``streamer serve``: live recognition for WebSocket clients (streamer/serve/server.py)."""
    import logging
    from dataclasses import replace

    from streamer.errors import ConfigError
    from streamer.serve.server import ServerConfig, StreamServer, check_installed, run_server

    given = {"host": args.host, "port": args.port, "max_connections": args.max_connections,
             "max_batch": args.max_batch, "max_frame_bytes": args.max_frame_bytes,
             "max_audio_seconds": args.max_audio_seconds, "idle_timeout": args.idle_timeout}
    config = replace(ServerConfig(), web=not args.no_web, **{k: v for k, v in given.items() if v is not None})
    if args.token_file:
        try:
            token = open(args.token_file, encoding="utf-8").read().strip()
        except OSError as err:
            raise ConfigError(f"--token-file {args.token_file}: cannot be read ({err.strerror})") from None
        config = replace(config, token=token)
    check_installed()  # before the model loads
    rec = _recognizer(args)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("streamer.serve").setLevel(logging.INFO)

    def ready(server: StreamServer) -> None:
        base = f"{config.host}:{server.port}"
        page = f", page http://{base}/" if config.web else ""
        health = server.health()
        print(f"serving {health['model']} ({rec.decoder_name}, {health['streaming']} streaming, "
              f"{health['chunk_seconds']:g}-s chunks) on ws://{base}{page}, health http://{base}/health"
              f"{'; token required' if config.token else ''}; Ctrl-C or SIGTERM stops", file=sys.stderr, flush=True)

    run_server(rec, config, ready)
    print("server stopped; open streams were finalized", file=sys.stderr)
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    """``streamer batch``: a manifest's files on local worker processes or Ray (streamer/batch.py)."""
    from streamer.batch import Recipe, read_file_list, run_batch

    from dataclasses import replace

    from streamer.checkpoint import DEFAULT_MODEL

    files = read_file_list(args.manifest)
    lm = None if args.no_lm else (args.lm or "auto")
    model = None if args.pte and args.model is None else (args.model or DEFAULT_MODEL)  # as _recognizer
    config = replace(args.config, stream_files=args.streaming is not None or bool(args.pte))  # as transcribe
    recipe = Recipe(model, config, lm, args.pte)
    show = not args.quiet and sys.stderr.isatty() or args.progress
    report = run_batch(files, args.output_dir, args.format, recipe, workers=args.workers, use_ray=args.ray is not None,
                       ray_address=args.ray or None, overwrite=args.overwrite, progress=show)
    rate = f", {report.audio_seconds / report.seconds:.1f} s of audio per second" if report.seconds else ""
    print(f"batch: {report.done} transcribed, {report.skipped} already done, {len(report.failed)} failed of "
          f"{report.total} file(s); {report.audio_seconds / 3600:.3f} h of audio in {report.seconds:.1f} s{rate} "
          f"on {report.workers} {'Ray' if args.ray is not None else 'local'} worker(s); outputs in {args.output_dir}",
          file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from streamer.export.executorch import ExportConfig
    from streamer.grid import XLSR_GRID

    export = ExportConfig()
    p = argparse.ArgumentParser(prog="streamer", description="Streaming on-device speech recognition.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("transcribe", help="transcribe audio files")
    t.add_argument("files", nargs="+", metavar="FILE")
    t.add_argument("--format", default="txt", choices=["txt", "json", "srt", "vtt"])
    t.add_argument("--output-dir", metavar="DIR",
                   help="write <name>.<format> files here (under each input's folder path when one file name "
                        "occurs in several folders; default: stdout)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace existing output files, never an input of the batch (default: report them as errors "
                        "and leave them as they are)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    _add_model_options(t)
    t.set_defaults(func=cmd_transcribe)

    m = sub.add_parser("mic", help="live transcription from a microphone")
    _add_model_options(m)
    m.add_argument("--device", help="input device index or name (default: the system's default input)")
    m.add_argument("--vad", type=int, default=VadConfig.aggressiveness, choices=[0, 1, 2, 3],
                   help="webrtcvad aggressiveness (default: %(default)s)")
    m.add_argument("--no-vad", action="store_true", help="no voice activity detection: endpoints from blanks only")
    m.add_argument("--no-gate", action="store_true",
                   help="decode the silence between utterances too (the VAD's speech flags still feed the endpointer)")
    m.add_argument("--seconds", type=float, help="stop after this many seconds, up to a week (default: until Ctrl-C)")
    m.add_argument("--endpoint", choices=["fast", "default", "slow"],
                   help="endpoint preset: how much silence ends an utterance (default: 'default', 1.2 s)")
    m.set_defaults(func=cmd_mic)

    from streamer.export.gate import DEFAULT_LIMIT, DEFAULT_MARGIN

    ex = sub.add_parser("export", help="export the streaming step to ExecuTorch (XNNPACK), fp32 or int8")
    ex.add_argument("--model", default="demo-en", help="model to export (default: demo-en)")
    ex.add_argument("-o", "--output", required=True, help="the .pte file to write (a .json sidecar goes beside it)")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace an existing program and sidecar (default: refuse them, before any work)")
    ex.add_argument("--streaming", choices=["window", "cached"], default=export.streaming.mode,
                    help="streaming mode of the step (default: %(default)s)")
    ex.add_argument("--chunk", type=float, default=XLSR_GRID.seconds(export.streaming.chunk_frames),
                    help="chunk in seconds (default: %(default)g)")
    ex.add_argument("--left", type=float, help="left context in seconds")
    ex.add_argument("--right", type=float, help="window-mode look-ahead in seconds")
    ex.add_argument("--quantize", choices=["none", "dynamic"], default=export.quantize,
                    help="int8 quantization (default: %(default)s)")
    ex.add_argument("--check", metavar="TSV",
                    help="held-out manifest (path<TAB>text): score the program against the model there and refuse "
                         "it (removed, exit 1) when its WER is worse by more than --check-margin")
    ex.add_argument("--check-margin", type=float, default=DEFAULT_MARGIN,
                    help="WER increase allowed by --check, absolute (default: %(default)s)")
    ex.add_argument("--check-limit", type=int, default=DEFAULT_LIMIT,
                    help="utterances --check scores (the first ones; default: %(default)s)")
    ex.set_defaults(func=cmd_export)

    from streamer.serve.server import ServerConfig

    server = ServerConfig()
    sv = sub.add_parser("serve", help="serve live recognition over WebSockets (docs/protocol.md)")
    _add_model_options(sv)
    sv.add_argument("--host", help=f"interface to listen on (default: {server.host}, this machine only)")
    sv.add_argument("--port", type=int, help=f"TCP port, 0 for any free one (default: {server.port})")
    sv.add_argument("--token-file", metavar="FILE",
                    help="require this file's text as a shared secret (Authorization: Bearer, or 'token' in start)")
    sv.add_argument("--max-connections", type=int, help=f"open connections at most (default: {server.max_connections})")
    sv.add_argument("--max-batch", type=int,
                    help=f"streams per batched encoder forward, 1 for none (default: {server.max_batch})")
    sv.add_argument("--max-frame-bytes", type=int, help=f"largest message in bytes (default: {server.max_frame_bytes})")
    sv.add_argument("--max-audio-seconds", type=float,
                    help=f"longest stream in seconds of audio (default: {server.max_audio_seconds:g})")
    sv.add_argument("--idle-timeout", type=float,
                    help=f"seconds without a message before a connection is closed (default: {server.idle_timeout:g})")
    sv.add_argument("--endpoint", choices=["fast", "default", "slow"],
                    help="endpoint preset: how much silence ends an utterance (default: 'default', 1.2 s)")
    sv.add_argument("--no-web", action="store_true", help="do not serve the browser page at /")
    sv.set_defaults(func=cmd_serve)

    b = sub.add_parser("batch", help="transcribe a manifest's files on worker processes or a Ray cluster")
    b.add_argument("manifest", metavar="FILES.tsv", help="audio paths in the first column (relative to the manifest)")
    b.add_argument("--output-dir", required=True, metavar="DIR", help="write one output per file here")
    b.add_argument("--format", default="txt", choices=["txt", "json", "srt", "vtt"])
    b.add_argument("--workers", type=int, help="worker processes or Ray actors (default: the CPUs, the cluster's with --ray)")
    b.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run on Ray: a running cluster's address (ray start --head prints it), or none for a local instance")
    b.add_argument("--overwrite", action="store_true", help="redo files whose output exists (default: skip them)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    _add_model_options(b)
    b.set_defaults(func=cmd_batch)

    tr = sub.add_parser("train", help="train, fine-tune or distil a CTC model (streamer train --help)", add_help=False)
    tr.add_argument("rest", nargs=argparse.REMAINDER)
    tr.set_defaults(func=cmd_train)

    lm = sub.add_parser("lm", help="language-model tools (streamer lm build --help)", add_help=False)
    lm.add_argument("rest", nargs=argparse.REMAINDER)
    lm.set_defaults(func=cmd_lm)

    md = sub.add_parser("models", help="list bundled models")
    md.set_defaults(func=cmd_models)
    return p


#: Commands whose own parser takes every argument after the command name (their modules load only then).
_DELEGATED = {"train": cmd_train, "lm": cmd_lm}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streamer`` command; returns the exit code.

    One guard covers every command: an expected failure prints one ``error:`` line (exit 1, or 2 for
    usage); anything else prints one ``internal error:`` line (exit 70), with the traceback only
    under ``--debug`` (anywhere on the line); SIGTERM stops like Ctrl-C (exit 143, Ctrl-C 130).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return _run(argv, debug)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv, debug)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str], debug: bool) -> int:
    """Parses ``argv`` and runs its command inside the guard (see `main`)."""
    if argv and argv[0] in _DELEGATED:  # argparse's REMAINDER would not pass a leading --help through
        args = argparse.Namespace(rest=argv[1:], func=_DELEGATED[argv[0]])
    else:
        args = build_parser().parse_args(argv)
    if hasattr(args, "no_lm"):  # commands with recognizer options: refuse bad values before any work
        try:
            args.config = _config(args)
        except StreamerError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except StreamerError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as stop:
        print("interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as err:  # noqa: BLE001  (the one place an unexpected failure becomes one line)
        if debug:
            raise
        print(f"internal error: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
