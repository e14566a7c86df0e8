"""The live front-end: blocks of audio at any rate → VAD → one recognizer stream → events.

`VadFrontEnd` is what `streamer mic` runs, and what any other live source (a server connection, a
file replayed in real time) can reuse: it takes blocks as they arrive, resamples them once to 16
kHz (`streamer.audio.StreamResampler`), runs webrtcvad on every 20-ms frame and feeds the stream.

The endpointer is the only authority on silence. The VAD's per-frame speech flags go to it
(`Stream.accept_speech_flags`; the endpoint rules decide how they count), and the gate only skips
audio between utterances: it starts holding audio back once the stream's current utterance has no
speech (the endpointer has closed the last one) and the last chunk and look-ahead of audio were
non-speech, and opens again after ``start_frames`` voiced frames, releasing ``preroll`` of audio
from before the onset. While it holds, the stream's clock keeps moving (`Recognizer.skip_to`), so
result times stay session times and the skipped audio is silence to the endpointer.

    front = VadFrontEnd(rec)
    for block in blocks:                        # float32 arrays of any length, at the device's rate
        for event in front.accept(block, rate): # Partial after each step, Final at each endpoint
            ...
    events = front.input_finished()             # the last Final
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.audio import StreamResampler, read_block, resampler_for
from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError
from streamer.frontend.vad import VAD_FRAME_SAMPLES, Vad, VadConfig
from streamer.results import Event


@dataclass(frozen=True)
class FrontEndConfig:
    """What the front-end does besides feeding audio."""

    vad: VadConfig | None = field(default_factory=VadConfig)
    """webrtcvad settings (None = no VAD: no speech flags and no gate)."""
    gate: bool = True
    """Skip the audio between utterances (needs the VAD); False decodes everything."""

    def __post_init__(self) -> None:
        if self.gate and self.vad is None:
            raise ConfigError("front-end: the gate needs the VAD; turn the gate off too (gate=False)")


class VadFrontEnd:
    """Feeds one recognizer stream from live audio blocks (see the module docstring).

    Args:
        rec: The shared recognizer (a `streamer.recognizer.Recognizer`).
        config: VAD and gate settings.
        stream: The stream to feed (default: a new one, whose clock is the input's).

    Raises:
        ConfigError: The VAD's frame differs from the model's hop.
    """

    def __init__(self, rec: Any, config: FrontEndConfig = FrontEndConfig(), stream: Any = None) -> None:
        self.rec = rec
        self.config = config
        self.stream = stream if stream is not None else rec.create_stream()
        self._resampler: StreamResampler | None = None
        self._vad = Vad(config.vad) if config.vad is not None else None
        if self._vad is not None and VAD_FRAME_SAMPLES != rec.grid.hop_samples:
            raise ConfigError(f"front-end: expected the VAD frame ({VAD_FRAME_SAMPLES} samples) to equal the "
                              f"model's hop, found a hop of {rec.grid.hop_samples} samples; run without the VAD")
        self._remainder = np.zeros(0, dtype=np.float32)
        self._position = 0  # input samples cut into VAD frames so far
        self._voiced_run = 0
        self._silent_run = 0
        self._holding = False
        self._held = np.zeros(0, dtype=np.float32)  # the preroll kept while holding
        streaming = rec.config.streaming
        # Non-speech that must follow speech before holding: a chunk and its look-ahead, so every
        # frame the stream still owes is silence.
        self._quiet_frames = streaming.chunk_frames + streaming.right_frames + 1

    @property
    def holding(self) -> bool:
        """True while the gate holds audio back (between utterances)."""
        return self._holding

    def accept(self, block: Any, sample_rate: int = SAMPLE_RATE) -> list[Event]:
        """Takes one block of audio; returns the events it produced.

        Args:
            block: Samples as `streamer.audio.read_block` reads them (mono, or channels averaged).
            sample_rate: The block's rate in Hz (one rate per front-end).

        Raises:
            AudioError: Unsupported samples.
            ConfigError: A bad sample rate, or a rate different from earlier blocks.
        """
        self._resampler = resampler_for(self._resampler, sample_rate, "front-end")
        x = self._resampler(read_block(block, "front-end"))
        return self._consume(x)

    def input_finished(self) -> list[Event]:
        """Ends the input: decodes what is left; the events end with the last Final."""
        events: list[Event] = []
        if self._resampler is not None:
            events += self._consume(self._resampler(np.zeros(0, np.float32), last=True))
        if self._holding:  # the held audio was silence: the clock moves on to the last part-frame
            events += self.rec.skip_to(self.stream, self._position)
        if len(self._remainder):
            events += self.rec.feed(self.stream, self._remainder)
        return events + self.rec.input_finished(self.stream)

    # ------------------------------------------------------------------ internals
    def _consume(self, x: np.ndarray) -> list[Event]:
        if self._vad is None:
            return self.rec.feed(self.stream, x) if len(x) else []
        buf = np.concatenate([self._remainder, x])
        n = len(buf) // VAD_FRAME_SAMPLES
        self._remainder = buf[n * VAD_FRAME_SAMPLES:]
        if n == 0:
            return []
        frames = buf[: n * VAD_FRAME_SAMPLES].reshape(n, VAD_FRAME_SAMPLES)
        flags = self._vad.flags(buf)
        first = self._position // VAD_FRAME_SAMPLES
        self.stream.accept_speech_flags(first, flags)
        if not self.config.gate:
            self._position += n * VAD_FRAME_SAMPLES
            return self.rec.feed(self.stream, frames.reshape(-1))
        events: list[Event] = []
        to_feed: list[np.ndarray] = []
        preroll = round(self.config.vad.preroll * SAMPLE_RATE)
        for i, speech in enumerate(flags):
            self._voiced_run = self._voiced_run + 1 if speech else 0
            self._silent_run = 0 if speech else self._silent_run + 1
            if not self._holding:
                to_feed.append(frames[i])
                continue
            self._held = np.concatenate([self._held, frames[i]])[-preroll:] if preroll else self._held[:0]
            if self._voiced_run >= self.config.vad.start_frames:  # speech again: open from the preroll on
                end = self._position + (i + 1) * VAD_FRAME_SAMPLES
                events += self.rec.skip_to(self.stream, end - len(self._held))
                to_feed.append(self._held)
                self._held = self._held[:0]
                self._holding = False
        self._position += n * VAD_FRAME_SAMPLES
        if to_feed:
            events += self.rec.feed(self.stream, np.concatenate(to_feed))
        if self._holding:  # keep the clock moving: the skipped audio is silence to the endpointer
            events += self.rec.skip_to(self.stream, self._position - len(self._held))
        elif not self.stream.in_speech and self._silent_run >= self._quiet_frames:
            self._holding = True
        return events
