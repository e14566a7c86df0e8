"""Live microphone transcription: sounddevice capture → `VadFrontEnd` → terminal.

    streamer mic                        # default input device, window streaming, bundled model
    streamer mic --device 3 --streaming cached --chunk 0.32 --seconds 30 --endpoint fast

One stream runs for the whole session, so its clock is the microphone's: result times are session
times as they come. Capture blocks go, at the device's rate, to a
`streamer.frontend.frontend.VadFrontEnd`: it resamples, gives webrtcvad's speech flags to the
stream's endpointer (the only authority on where utterances end; ``--endpoint`` picks its rules)
and skips the silence between utterances once the endpointer has closed the last one.

Partial results overwrite one terminal line (committed text, then the tentative tail in brackets);
each Final is printed on its own line with its start and end time in the session.
"""

from __future__ import annotations

import queue
import sys
import time
from typing import Any, TextIO

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, StreamerError, missing_dependency
from streamer.frontend.frontend import FrontEndConfig, VadFrontEnd
from streamer.results import Final, Partial

#: Longest ``--seconds`` of a microphone session (a week).
MAX_MIC_SECONDS = 604_800.0
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


def run_mic(rec: Any, *, device: int | str | None = None, seconds: float | None = None,
            front_end: FrontEndConfig = FrontEndConfig(), out: TextIO = sys.stdout) -> int:
    """Transcribes the microphone until Ctrl-C or ``seconds``; returns the exit code.

    Args:
        rec: The recognizer (`streamer.recognizer.Recognizer`).
        device: Input device index or name (None = the default input).
        seconds: Stop after this many seconds, above 0 and at most `MAX_MIC_SECONDS` (None = until Ctrl-C).
        front_end: VAD and gate settings.
        out: Where results are shown.

    Raises:
        ConfigError: ``seconds`` out of range.
    """
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                or not 0 < seconds <= MAX_MIC_SECONDS):
        raise ConfigError(f"mic seconds: expected a number above 0 and at most {MAX_MIC_SECONDS:g}, found {seconds!r}")
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

    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        stream_in, rate = _open_input(sd, device, callback)
    except (sd.PortAudioError, ValueError) as err:
        raise StreamerError(f"cannot open the input device {device if device is not None else '(default)'}: {err}") from None
    front = VadFrontEnd(rec, front_end)  # one stream for the session: its clock is the microphone's
    printer = LivePrinter(out)

    def show(events: list) -> None:
        for event in events:
            printer.show(event)

    t0 = time.monotonic()
    print(f"listening ({rec.decoder_name}, {rec.config.streaming.mode} mode, "
          f"{rec.grid.seconds(rec.config.streaming.chunk_frames):.2f}-s chunks); Ctrl-C to stop", file=sys.stderr)
    try:
        with stream_in:
            while seconds is None or time.monotonic() - t0 < seconds:
                try:
                    block = blocks.get(timeout=0.5)
                except queue.Empty:
                    continue
                show(front.accept(block, rate))
        # Capture has stopped; audio still queued (a busy machine falls behind) is recognized too.
        while not blocks.empty():
            show(front.accept(blocks.get_nowait(), rate))
    except KeyboardInterrupt:
        pass
    show([e for e in front.input_finished() if isinstance(e, Final)])
    if overflows[0]:
        print(f"warning: {overflows[0]} input overflow(s): audio was dropped (the machine is too busy)", file=sys.stderr)
    return 0
