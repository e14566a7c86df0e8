"""The utterance tracker: a stream's frames -> utterances, and the only frame -> seconds clock of results.

An `UtteranceTracker` receives consecutive (first frame, logits) ranges from a stream's
`streamer.pipeline.FramePipeline`, feeds each frame's blank flag (and, when a VAD provides them,
its speech flag) to the stream's one `streamer.endpoint.EndpointDetector`, and advances the decoder
state of the current utterance. At an endpoint it finalizes that state into a `Final` and opens the
next one. Each decoder state is opened at its utterance's stream time
(``decoder.new_state(time_offset=grid.seconds(first_frame))``), so every word and result time is
right when the decoder produces it and is never shifted afterwards.

Speech flags (`add_speech_flags`) come from a voice activity detector run on the same session audio:
flag ``j`` covers samples ``[hop j, hop (j + 1))``, the start of encoder frame ``j``. A frame without
a flag yet counts as non-speech.

A jump in the frame numbers (input gating skipped audio, `FramePipeline.skip_to`) is silence: the
endpointer sees blank, non-speech frames, the decoder sees blank frames up to the endpoint the
silence causes, and the next utterance starts where decoding resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch import Tensor

from streamer.decoding.base import LOGP_FLOOR, Decoder
from streamer.endpoint import EndpointConfig, EndpointDetector
from streamer.grid import XLSR_GRID, FrameGrid
from streamer.results import Final, Partial


@dataclass(frozen=True)
class Utterance:
    """One ended utterance.

    Attributes:
        final: Its result from the streaming pass (times in seconds on the stream's clock).
        start_frame: Global index of its first frame.
        end_frame: Global index one past its last frame.
        speech: Whether the endpointer saw a speech frame in it (False: it was closed as silence,
            and holds nothing to say even if a second pass over its audio would read a letter
            into the next utterance's onset).
    """

    final: Final
    start_frame: int
    end_frame: int
    speech: bool = True


class SpeechFlags:
    """VAD speech flags per encoder frame, held until the tracker consumes them (bounded)."""

    def __init__(self) -> None:
        self._flags = np.zeros(0, dtype=bool)
        self._start = 0  # frame index of _flags[0]

    def add(self, first_frame: int, flags: np.ndarray) -> None:
        """Records flags for frames ``first_frame ...``; a later call may overwrite or extend."""
        flags = np.asarray(flags, dtype=bool)
        end = self._start + len(self._flags)
        if first_frame > end:
            flags = np.concatenate([np.zeros(first_frame - end, dtype=bool), flags])
            first_frame = end
        keep = max(0, first_frame - self._start)
        self._flags = np.concatenate([self._flags[:keep], flags])
        if keep == 0:
            self._start = first_frame

    def take(self, lo: int, hi: int) -> np.ndarray:
        """Flags of frames ``[lo, hi)`` (False where none was given); forgets frames before ``lo``."""
        out = np.zeros(hi - lo, dtype=bool)
        a, b = max(lo, self._start), min(hi, self._start + len(self._flags))
        if b > a:
            out[a - lo:b - lo] = self._flags[a - self._start:b - self._start]
        drop = min(max(0, lo - self._start), len(self._flags))
        self._flags, self._start = self._flags[drop:], self._start + drop
        return out


class UtteranceTracker:
    """Frames -> utterances with one endpointer (see the module docstring).

    Args:
        decoder: The recognizer's decoder (shared; the tracker holds the per-utterance state).
        endpoint: Endpoint rules.
        blank_id: Index of the CTC blank.
        grid: Frame grid of the stream.
    """

    def __init__(self, decoder: Decoder, endpoint: EndpointConfig, blank_id: int,
                 grid: FrameGrid = XLSR_GRID) -> None:
        self.decoder = decoder
        self.detector = EndpointDetector(endpoint)
        self.blank_id = blank_id
        self.grid = grid
        self._speech: SpeechFlags | None = None
        self._open(0)

    def _open(self, frame: int) -> None:
        self.start_frame = frame
        self.frames = 0
        self._ep = self.detector.new_state()
        self._dec = self.decoder.new_state(time_offset=self.grid.seconds(frame))

    @property
    def speech_seen(self) -> bool:
        """Whether the current (open) utterance has had a speech frame: the endpointer has not yet
        closed what was said."""
        return self._ep.speech_seen

    @property
    def next_frame(self) -> int:
        """Global index of the next frame expected."""
        return self.start_frame + self.frames

    def seconds(self, frame: int) -> float:
        """Stream time of a frame index (the start of the utterance's clock)."""
        return self.grid.seconds(frame)

    def add_speech_flags(self, first_frame: int, flags: np.ndarray) -> None:
        """VAD flags for frames ``first_frame ...``; from the first call on, endpoints use them."""
        if self._speech is None:
            self._speech = SpeechFlags()
        self._speech.add(first_frame, flags)

    def feed(self, first: int, logits: Tensor) -> list[Utterance]:
        """Consumes the frames ``first ...`` of (t, V) logits; returns the utterances that ended."""
        done = self._gap(first) if first > self.next_frame else []
        if first < self.next_frame:
            raise ValueError(f"UtteranceTracker.feed: expected frames from {self.next_frame}, found {first}")
        blank = (logits.argmax(-1) == self.blank_id).numpy()
        n = len(blank)
        vad = None if self._speech is None else self._speech.take(first, first + n)
        pos = 0
        while pos < n:
            seen = self._ep.frames
            self._ep, ep = self.detector.update(self._ep, blank[pos:], None if vad is None else vad[pos:])
            cut = n if ep is None else pos + (ep - seen) + 1
            self._advance(logits[pos:cut])
            if ep is not None:
                done.append(self._close())
            pos = cut
        return done

    def _advance(self, logits: Any) -> None:
        self.decoder.advance(self._dec, logits)
        self.frames += len(logits)

    def _close(self) -> Utterance:
        end = self.next_frame
        utt = Utterance(self.decoder.finalize(self._dec), self.start_frame, end, self._ep.speech_seen)
        self._open(end)
        return utt

    def _gap(self, first: int) -> list[Utterance]:
        """Frames ``next_frame .. first - 1`` were skipped: silence up to its endpoint, then resume at ``first``."""
        n = first - self.next_frame
        k = min(n, self.detector.config.max_frames + 1)  # some rule fires within max_frames frames
        seen = self._ep.frames
        self._ep, ep = self.detector.update(self._ep, np.ones(k, dtype=bool),
                                            None if self._speech is None else np.zeros(k, dtype=bool))
        cut = k if ep is None else ep - seen + 1
        silence = np.full((cut, len(self.decoder.vocab)), LOGP_FLOOR)
        silence[:, self.blank_id] = 0.0
        self._advance(silence)
        done = [] if ep is None else [self._close()]
        if self.next_frame < first:  # the rest of the gap holds no utterance
            self._open(first)
        return done

    def close_current(self) -> Utterance | None:
        """Ends the current utterance at the last frame seen (None when it holds no frames)."""
        return self._close() if self.frames else None

    def partial(self, now: float) -> Partial:
        """The current utterance's partial result, stamped with stream time ``now`` (seconds)."""
        return replace(self.decoder.partial(self._dec), time=round(now, 3))
