"""Live microphone transcription: sounddevice capture → VAD → one recognizer stream → terminal.

    streamer mic                        # default input device, window streaming, bundled model
    streamer mic --device 3 --streaming cached --chunk 0.32 --seconds 30 --endpoint fast

One stream runs for the whole session, so its clock is the microphone's: result times are session
times as they come. The VAD (webrtcvad, `streamer.frontend.vad`) does two things: its per-frame
speech flags go to the stream's endpointer (`Stream.accept_speech_flags`; `--endpoint` picks the
rules), and its gate keeps long silences from being decoded (`Recognizer.skip_to`: the clock jumps,
the endpointer counts the skipped audio as silence). The gate never ends an utterance itself.

Partial results overwrite one terminal line (committed text, then the tentative tail in brackets);
each Final is printed on its own line with its start and end time in the session.
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from typing import Any, TextIO

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, StreamerError, missing_dependency
from streamer.frontend.vad import VAD_FRAME_SAMPLES, VadConfig, VadGate
from streamer.results import Final, Partial

#: Capture block length, in seconds.
BLOCK_SECONDS = 0.1


class LivePrinter:
    """Shows partials on one rewritten line and finals on their own lines."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.width = 0
        self.tty = out.isatty()

    def show(self, event: Partial | Final) -> None:
        """Prints one recognizer event."""
        if isinstance(event, Final):
            line = f"[{event.start:7.2f}-{event.end:7.2f}] {event.text}"
            self.out.write("\r" + line.ljust(self.width) + "\n" if self.tty else line + "\n")
            self.width = 0
        elif self.tty:
            line = event.committed + (f" [{event.tentative}]" if event.tentative else "")
            self.out.write("\r" + line[-200:].ljust(self.width))
            self.width = min(200, len(line))
        self.out.flush()


def _open_input(sd: Any, device: Any, callback: Any) -> tuple[Any, int]:
    """Opens the input at 16 kHz, or at the device's own rate when it refuses 16 kHz."""
    block = int(BLOCK_SECONDS * SAMPLE_RATE)
    try:
        stream = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=block,
                                device=device, callback=callback)
        return stream, SAMPLE_RATE
    except sd.PortAudioError:
        rate = int(sd.query_devices(device, "input")["default_samplerate"])
        stream = sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=int(BLOCK_SECONDS * rate),
                                device=device, callback=callback)
        return stream, rate


def run_mic(args: argparse.Namespace, rec: Any, out: TextIO = sys.stdout) -> int:
    """Runs the live loop until Ctrl-C or ``args.seconds``; returns the exit code."""
    try:
        import sounddevice as sd
    except ImportError as err:
        raise missing_dependency("sounddevice", "mic", "microphone capture") from err
    except OSError as err:  # PortAudio library missing
        raise StreamerError(f"microphone capture needs PortAudio ({err}); install it: apt-get install libportaudio2") from None
    blocks: queue.Queue[np.ndarray] = queue.Queue()
    overflows = [0]

    def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:  # noqa: ARG001
        if status:
            overflows[0] += 1
        blocks.put(indata[:, 0].copy())

    device: Any = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        stream_in, rate = _open_input(sd, device, callback)
    except (sd.PortAudioError, ValueError) as err:
        raise StreamerError(f"cannot open the input device {args.device or '(default)'}: {err}") from None
    resampler = None
    if rate != SAMPLE_RATE:
        import soxr
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
    gate = None if args.no_vad else VadGate(VadConfig(aggressiveness=args.vad))
    if gate is not None and VAD_FRAME_SAMPLES != rec.grid.hop_samples:
        raise ConfigError(f"mic: expected the VAD frame ({VAD_FRAME_SAMPLES} samples) to equal the model's hop, "
                          f"found a hop of {rec.grid.hop_samples} samples; use --no-vad")
    vstate = gate.new_state() if gate else None
    gating = not getattr(args, "no_gate", False)
    printer = LivePrinter(out)
    stream = rec.create_stream()  # the whole session: its clock is the microphone's

    def show(events: list) -> None:
        for event in events:
            printer.show(event)

    def consume(block: np.ndarray) -> None:
        """Runs one captured block through the VAD (flags + gate) into the session's stream."""
        nonlocal vstate
        if resampler is not None:
            block = resampler.resample_chunk(block)
        if gate is None:
            show(rec.feed(stream, block))
            return
        captured = block
        while True:
            first_frame = vstate.position // VAD_FRAME_SAMPLES
            vstate, passed = gate.process(vstate, block)
            block = block[:0]
            stream.accept_speech_flags(first_frame, passed.speech)
            if gating:
                if passed.start is not None and passed.start > stream.samples_received:
                    show(rec.skip_to(stream, passed.start))  # the silence the gate held back
                if len(passed.audio):
                    show(rec.feed(stream, passed.audio))
            if not gate.pending(vstate):
                break
        if not gating:  # everything is decoded; the VAD only informs the endpointer
            show(rec.feed(stream, captured))

    t0 = time.monotonic()
    print(f"listening ({rec.decoder_name}, {rec.config.streaming.mode} mode, "
          f"{rec.grid.seconds(rec.config.streaming.chunk_frames):.2f}-s chunks); Ctrl-C to stop", file=sys.stderr)
    try:
        with stream_in:
            while args.seconds is None or time.monotonic() - t0 < args.seconds:
                try:
                    block = blocks.get(timeout=0.5)
                except queue.Empty:
                    continue
                consume(block)
        # Capture has stopped; audio still queued (a busy machine falls behind) is recognized too.
        while not blocks.empty():
            consume(blocks.get_nowait())
    except KeyboardInterrupt:
        pass
    show([e for e in rec.finish(stream) if isinstance(e, Final)])
    if overflows[0]:
        print(f"warning: {overflows[0]} input overflow(s): audio was dropped (the machine is too busy)", file=sys.stderr)
    return 0
