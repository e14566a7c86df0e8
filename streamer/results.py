"""Frozen result types returned by the recognizer and the decoders."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    """One recognized word with its time span.

    Attributes:
        text: The word.
        start: Start time in seconds from the beginning of the audio (or stream).
        end: End time in seconds.
        confidence: Mean per-frame probability of the word's tokens, in [0, 1], when known.
    """

    text: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True)
class Segment:
    """A stretch of text (an utterance or an offline window's words) with its time span."""

    text: str
    start: float
    end: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Partial:
    """An interim streaming result.

    Attributes:
        committed: Text that can no longer change.
        tentative: The tail that may still be rewritten by later audio.
        words: Committed words followed by tentative words, with times.
        committed_words: How many of ``words`` are committed.
        time: Stream time in seconds at which this result was produced.
        separator: What joins words: a space, or '' for scripts written without spaces.
    """

    committed: str
    tentative: str
    words: tuple[Word, ...] = ()
    committed_words: int = 0
    time: float = 0.0
    separator: str = " "

    @property
    def text(self) -> str:
        """Committed and tentative text joined."""
        return self.separator.join(t for t in (self.committed, self.tentative) if t)


@dataclass(frozen=True)
class Final:
    """The result of one utterance, emitted at an endpoint or at the end of the stream.

    Attributes:
        text: The utterance's text.
        words: Its words with times (seconds from the start of the stream).
        start: Utterance start in seconds from the start of the stream.
        end: Utterance end in seconds.
        nbest: Alternative texts with their scores, best first (beam search only).
    """

    text: str
    words: tuple[Word, ...] = ()
    start: float = 0.0
    end: float = 0.0
    nbest: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class RunInfo:
    """How a transcript was produced."""

    model: str = ""
    """Model folder."""
    decoder: str = ""
    """``greedy``, ``beam`` or ``beam+lm``."""
    mode: str = ""
    """``offline`` or ``streaming-window`` / ``streaming-cached``."""
    seconds: float = 0.0
    """Wall-clock seconds spent."""
    rtf: float | None = None
    """Real-time factor: seconds spent per second of audio."""


@dataclass(frozen=True)
class Transcript:
    """The result of transcribing one file or array."""

    text: str
    """The whole text."""
    segments: tuple[Segment, ...] = ()
    """Consecutive pieces of the text with times."""
    duration: float = 0.0
    """Audio duration in seconds."""
    source: str = ""
    """Path of the audio, or '' for an array."""
    info: RunInfo = field(default_factory=RunInfo, compare=False)
    """How it was produced."""

    @property
    def words(self) -> tuple[Word, ...]:
        """Every word of every segment."""
        return tuple(w for s in self.segments for w in s.words)


#: What a stream's decoding returns: a Partial after each step, a Final at each endpoint.
Event = Partial | Final
