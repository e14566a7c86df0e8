"""The shared `Recognizer` and per-stream `Stream` objects.

One `Recognizer` holds the model, the streaming setup and the decoder (with its language model); it is
shared by any number of `Stream` objects, each holding one audio stream's explicit state. A complete
live loop::

    import streamer
    rec = streamer.load()                                   # bundled model, its LM, window streaming
    stream = rec.create_stream()
    for block in microphone_blocks():                       # float32 16-kHz arrays of any length
        stream.accept_waveform(block)
        while stream.ready:
            for event in rec.decode_stream(stream):         # Partial after each step, Final at endpoints
                print(event)
    stream.input_finished()
    for event in rec.decode_stream(stream):                 # drains the look-ahead, last Final
        print(event)

Many streams at once: ``rec.decode_streams(streams)`` runs the ready streams' steps as one batched
encoder forward and returns each stream's events (the same events as decoding each alone).

How a block travels: `Stream.accept_waveform` reads its shape (`streamer.audio.read_block`) and queues
it in the stream's `streamer.pipeline.FramePipeline` (resampling, running normalization, chunking,
encoder state); `decode_stream(s)` runs the pipeline's steps, and the stream's
`streamer.utterances.UtteranceTracker` turns their frames into Partials and, at endpoints, Finals
(re-decoded with full context when ``two_pass`` is on, from a buffer of the current utterance only).

Offline files go through `Recognizer.transcribe` (overlapping windows, full context), or
`Recognizer.iter_segments` for a lazy generator of segments on long files.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from streamer.audio import iter_audio, prepare_array, read_block
from streamer.checkpoint import DEFAULT_MODEL, Checkpoint, load_checkpoint
from streamer.constants import MAX_THREADS, SAMPLE_RATE, SECOND_PASS_BUCKET_SECONDS
from streamer.decoding.base import word_separator
from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig
from streamer.decoding.greedy import GreedyDecoder
from streamer.decoding.lm_bundle import LmBundle
from streamer.endpoint import EndpointConfig
from streamer.errors import ConfigError
from streamer.grid import FrameGrid
from streamer.offline import WindowConfig, iter_window_logits
from streamer.pipeline import FramePipeline, Frames, SampleBuffer
from streamer.preprocess import normalize_utterance
from streamer.results import Event, Final, Partial, RunInfo, Segment, Transcript
from streamer.streaming import StreamingConfig, StreamingEncoder
from streamer.utterances import Utterance, UtteranceTracker

#: Endpointing used to cut offline transcripts into segments (pauses of 0.6 s, at most 30 s).
OFFLINE_SEGMENTS = EndpointConfig(silence_before_speech=30.0, silence_after_speech=0.6, max_utterance=30.0)

#: Decoder choices of `RecognizerConfig.search`.
SEARCHES = ("auto", "greedy", "beam")



@dataclass(frozen=True)
class RecognizerConfig:
    """How a recognizer runs: streaming setup, offline windows, decoding, endpointing.

    Build variants with ``dataclasses.replace`` (the command line does); the defaults live here and
    in the nested configs only.
    """

    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    """Setup of `Stream` objects (and of `transcribe` when ``stream_files`` is true); window mode,
    0.64-s chunks by default."""
    window: WindowConfig = field(default_factory=WindowConfig)
    """Offline windows of `transcribe`."""
    stream_files: bool = False
    """Run `transcribe` through the streaming path instead of offline windows."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """Beam-search settings (beam width, hotwords, LM weights; `Recognizer.load` fills in the LM)."""
    search: str = "auto"
    """``auto``: beam search when there is an LM or hotwords, else greedy; ``greedy``; ``beam``."""
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    """Endpoint rules of streams."""
    two_pass: bool = True
    """Re-decode each streamed utterance at its endpoint with full context."""
    threads: int | None = None
    """CPU threads for PyTorch (process-wide, set when the recognizer is built); None: PyTorch's choice."""

    def __post_init__(self) -> None:
        for name, cls in (("streaming", StreamingConfig), ("window", WindowConfig), ("decoder", DecoderConfig),
                          ("endpoint", EndpointConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"recognizer {name}: expected a {cls.__name__}, found {getattr(self, name)!r}")
        for name in ("stream_files", "two_pass"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"recognizer {name}: expected True or False, found {getattr(self, name)!r}")
        if self.search not in SEARCHES:
            raise ConfigError(f"recognizer search: expected one of {SEARCHES}, found {self.search!r}")
        t = self.threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= MAX_THREADS):
            raise ConfigError(f"threads: expected a whole number from 1 to {MAX_THREADS}, found {t!r}")

    def uses_beam(self, has_lm: bool) -> bool:
        """Whether the beam search decodes (see ``search``), given whether a language model is loaded."""
        if self.search == "auto":
            return has_lm or bool(self.decoder.hotwords)
        return self.search == "beam"


#: Furthest a stream's speech flags may start past the frames of its audio received so far (60 s).
MAX_FLAGS_LEAD_FRAMES = 3000
#: Longest jump of `Recognizer.skip_to` past the audio received, in 16-kHz samples (a day).
MAX_SKIP_SAMPLES = 86_400 * SAMPLE_RATE


def _whole_number(value: Any, name: str) -> int:
    """``value`` as an int: an integer, or a float with no fractional part; else one ConfigError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name}: expected an integer, found {type(value).__name__} {value!r}")
    if isinstance(value, (float, np.floating)) and not (math.isfinite(value) and float(value).is_integer()):
        raise ConfigError(f"{name}: expected a whole number of samples or frames, found {value!r}")
    return int(value)


class Stream:
    """One audio stream's state. Create with `Recognizer.create_stream`; see the module docstring.

    A stream is its `FramePipeline` (audio side), its `UtteranceTracker` (frames to results, one
    endpointer) and, with two-pass decoding only, the audio of its current utterance. Its
    ``decoder`` is the recognizer's, or one with this stream's hotwords (`Recognizer.create_stream`).

    Threads: every call on a stream, here and through its `Recognizer`, holds the stream's ``lock``
    (a re-entrant lock), so two threads feeding one stream are served one after the other and the
    stream is never corrupted; the order of their audio is the order the calls get the lock.
    """

    def __init__(self, rec: "Recognizer", decoder: "BeamSearchDecoder | GreedyDecoder | None" = None) -> None:
        self.lock = threading.RLock()
        self.recognizer = rec
        self.decoder = decoder if decoder is not None else rec.decoder
        self.pipeline = FramePipeline(rec.streaming_encoder, rec.preprocess.normalize, rec.grid)
        self.tracker = UtteranceTracker(self.decoder, rec.config.endpoint, rec.vocab.blank_id, rec.grid)
        self._audio = SampleBuffer() if rec.config.two_pass else None
        self._closed = False

    @property
    def samples_received(self) -> int:
        """16-kHz samples on the stream's clock (received, plus any skipped with `Recognizer.skip_to`)."""
        return self.pipeline.samples_received

    @property
    def time(self) -> float:
        """Seconds of audio on the stream's clock."""
        return self.pipeline.grid.sample_seconds(self.pipeline.samples_received)

    def accept_waveform(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> None:
        """Appends audio: (N,), (N, C) or (C, N) with C <= 8 < N; float or int samples; any rate.

        Raises:
            AudioError: Unsupported dtype or shape, or non-finite samples.
            ConfigError: A bad or changed sample rate, or audio after `input_finished`.
        """
        x = read_block(samples, "stream")
        with self.lock:
            queued = self.pipeline.append(x, sample_rate)
            if self._audio is not None:
                self._audio.append(queued)

    def accept_speech_flags(self, first_frame: int, flags: Any) -> None:
        """Voice-activity flags per encoder frame (frame ``j`` = samples ``[hop j, hop (j + 1))``).

        From the first call on, this stream's endpointer uses them (`EndpointConfig.vad_rule`).

        Args:
            first_frame: Frame of ``flags[0]``: an integer from 0 to `MAX_FLAGS_LEAD_FRAMES` past the
                frames of the audio received so far.
            flags: (n,) booleans (or 0/1 numbers).

        Raises:
            ConfigError: A frame index that is not an integer, negative, or too far ahead, or flags
                that are not a 1-D array of booleans.
        """
        first = _whole_number(first_frame, "accept_speech_flags first_frame")
        x = np.asarray(flags)
        if x.ndim != 1 or not (x.dtype == bool or x.dtype.kind in "iu"):
            raise ConfigError(f"accept_speech_flags: expected (n,) booleans, found shape {x.shape} of {x.dtype}")
        with self.lock:
            ahead = -(-self.samples_received // self.pipeline.grid.hop_samples) + MAX_FLAGS_LEAD_FRAMES
            if not 0 <= first <= ahead:
                raise ConfigError(f"accept_speech_flags: expected first_frame from 0 to {ahead} (at most "
                                  f"{MAX_FLAGS_LEAD_FRAMES} frames past the audio received), found {first}")
            self.tracker.add_speech_flags(first, x.astype(bool))

    def input_finished(self) -> None:
        """Marks the end of the audio; the next `Recognizer.decode_stream` calls drain the stream."""
        with self.lock:
            tail = self.pipeline.input_finished()
            if self._audio is not None:
                self._audio.append(tail)

    @property
    def ready(self) -> bool:
        """A step can run, or the ended stream still owes its last Final."""
        return self.pipeline.ready or (self.pipeline.drained and not self._closed)

    @property
    def in_speech(self) -> bool:
        """True while the current utterance has speech its endpoint has not yet closed."""
        return self.tracker.speech_seen

    @property
    def done(self) -> bool:
        """True once the audio is finished and every frame has been decoded."""
        return self._closed

    # ------------------------------------------------------------------ results (called by the recognizer)
    def on_frames(self, frames: Frames | None, stepped: bool = True) -> list[Event]:
        """Events of one pipeline step (``frames``: what it emitted): a Final per endpoint, then a
        Partial; once the pipeline is drained, the last Final."""
        events: list[Event] = []
        if frames is not None:
            for utt in self.tracker.feed(*frames):
                events += self._final(utt)
        if stepped:
            events.append(self.tracker.partial(self.time))
        if self.pipeline.drained and not self._closed:
            self._closed = True
            last = self.tracker.close_current()
            if last is not None:
                events += self._final(last)
        return events

    def _final(self, utt: Utterance) -> list[Event]:
        final = utt.final
        if not utt.speech:  # closed as silence: nothing was said, whatever a second pass would read
            if self._audio is not None:
                self._audio.drop_until(self.pipeline.grid.samples(utt.end_frame))
            return []
        if self._audio is not None:
            grid = self.pipeline.grid
            audio = self._audio.view(grid.samples(utt.start_frame), grid.span_samples(utt.end_frame))
            final = self.recognizer.second_pass(audio, final, self.decoder)
            self._audio.drop_until(grid.samples(utt.end_frame))
        if not final.text:
            return []
        return [final]

    def skip_to(self, sample: int) -> list[Event]:
        """Drains the pipeline and jumps its clock to ``sample`` (see `Recognizer.skip_to`)."""
        sample = _whole_number(sample, "skip_to sample")
        events: list[Event] = []
        with self.lock:
            if not self.samples_received <= sample <= self.samples_received + MAX_SKIP_SAMPLES:
                raise ConfigError(f"skip_to: expected a sample from {self.samples_received} (the audio received) to "
                                  f"{self.samples_received + MAX_SKIP_SAMPLES} (a day later), found {sample}")
            for frames in self.pipeline.skip_to(sample):  # the segment's last frames; the stream goes on
                for utt in self.tracker.feed(*frames):
                    events += self._final(utt)
            if self._audio is not None:
                self._audio.restart(self.pipeline.queued_end)
        return events


class Recognizer:
    """Speech recognizer shared by any number of streams (see the module docstring).

    Args:
        checkpoint: A loaded model, or None to run from ``step_program`` alone (see `from_program`).
        config: Streaming, windows, decoding and endpointing.
        step_program: An ExecuTorch ``.pte`` of this model's streaming step (`streamer export`): streams
            then run on the ExecuTorch runtime (its streaming setup replaces ``config.streaming``).
            Offline windows and two-pass finals use the PyTorch model, so without a checkpoint
            ``config`` must ask for neither.
        lm: The language model for the beam search (`streamer.decoding.lm_bundle.LmBundle`), or None.

    Raises:
        CheckpointError: The program or its sidecar is damaged (`streamer.export.runtime.PteStreamingEncoder`).
        ConfigError: The program was exported from another model (its configuration or weights differ
            from the checkpoint's), or the config needs a PyTorch model that is absent.
    """

    def __init__(self, checkpoint: Checkpoint | None, config: RecognizerConfig | None = None,
                 step_program: str | os.PathLike[str] | None = None, lm: LmBundle | None = None) -> None:
        config = config if config is not None else RecognizerConfig()
        if checkpoint is None and step_program is None:
            raise ConfigError("recognizer: expected a model, an ExecuTorch step program, or both; found neither")
        program = None
        if step_program is not None:
            from streamer.export.runtime import PteStreamingEncoder
            program = PteStreamingEncoder(step_program)
            differs = checkpoint.identity.difference(program.sidecar.model) if checkpoint is not None else None
            if differs:
                raise ConfigError(f"pte: {step_program} was exported from another model than {checkpoint.folder}: "
                                  f"the {differs} differ (the sidecar's model digests)")
            config = replace(config, streaming=program.config)
        if checkpoint is None:
            for needs, what in ((config.two_pass, "two-pass finals (two_pass=True) re-decode each utterance"),
                                (not config.stream_files, "offline windows (stream_files=False) run")):
                if needs:
                    raise ConfigError(f"recognizer: {what} with the PyTorch model, and only the ExecuTorch "
                                      f"program {step_program} was given: pass the model too, or turn that off")
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval() if checkpoint is not None else None
        owner = checkpoint if checkpoint is not None else program  # both carry vocab and preprocess
        self.vocab, self.preprocess = owner.vocab, owner.preprocess
        self.grid = FrameGrid.of(checkpoint.config if checkpoint is not None else program.encoder_config)
        self.source = str(checkpoint.folder if checkpoint is not None else step_program)
        self.lm = lm
        self._hotword_decoders: dict[tuple[str, ...], BeamSearchDecoder] = {}
        self._hotword_lock = threading.Lock()
        self.decoder: BeamSearchDecoder | GreedyDecoder = (
            BeamSearchDecoder(self.vocab, config.decoder, lm) if config.uses_beam(lm is not None)
            else GreedyDecoder(self.vocab))
        self.streaming_encoder: Any
        if program is not None:
            self.streaming_encoder = program
            config = replace(config, stream_files=True)
        else:
            self.streaming_encoder = StreamingEncoder(self.model, config.streaming)
        self.config = config

    @classmethod
    def from_program(cls, step_program: str | os.PathLike[str], config: RecognizerConfig | None = None, *,
                     lm: str | os.PathLike[str] | None = "auto", **overrides: Any) -> "Recognizer":
        """A recognizer that streams with an ExecuTorch program and its sidecar only (no PyTorch model).

        The vocabulary, preprocessing and streaming setup come from the ``.json`` sidecar. Without a
        ``config``, two-pass finals are off (they need the PyTorch model) and files are streamed.

        Args:
            step_program: The ``.pte`` file (`streamer export`), its ``.json`` beside it.
            config: How to run (must not ask for two-pass finals or offline windows).
            lm: ``"auto"`` (an ``lm/`` folder beside the program, if any), a KenLM file, or None.
            **overrides: `RecognizerConfig` fields replacing ``config``'s.
        """
        config = config if config is not None else RecognizerConfig(two_pass=False, stream_files=True)
        config = _with_overrides(config, overrides)
        return cls(None, config, step_program, LmBundle.resolve(lm, Path(step_program).parent))

    @classmethod
    def load(cls, model: str | os.PathLike[str] = DEFAULT_MODEL, config: RecognizerConfig | None = None, *,
             lm: str | os.PathLike[str] | None = "auto", step_program: str | os.PathLike[str] | None = None,
             **overrides: Any) -> "Recognizer":
        """Loads a model and builds a recognizer.

        Args:
            model: Bundled model name, folder or hub id.
            config: How to run (default: `RecognizerConfig()`).
            lm: ``"auto"`` (the model folder's ``lm/`` when present), a KenLM file (its word list
                beside it), or None (no LM: greedy unless ``config.search`` asks for the beam).
            step_program: ExecuTorch program of the streaming step (see `Recognizer`).
            **overrides: `RecognizerConfig` fields replacing ``config``'s (``streaming=``,
                ``two_pass=``, ...), a shorthand for ``dataclasses.replace(config, ...)``.

        Raises:
            ConfigError: An unknown override, a missing LM file, an invalid setting.
        """
        config = _with_overrides(config if config is not None else RecognizerConfig(), overrides)
        ck = load_checkpoint(model)
        return cls(ck, config, step_program, LmBundle.resolve(lm, ck.folder))

    @property
    def decoder_name(self) -> str:
        """``greedy``, ``beam`` or ``beam+lm``."""
        if not isinstance(self.decoder, BeamSearchDecoder):
            return "greedy"
        return "beam+lm" if self.decoder.lm is not None else "beam"

    @property
    def mode_name(self) -> str:
        """How `transcribe` runs: ``offline`` or ``streaming-window`` / ``streaming-cached``."""
        return "streaming-" + self.config.streaming.mode if self.config.stream_files else "offline"

    # ------------------------------------------------------------------ offline
    def _frames_offline(self, blocks: Iterable[np.ndarray]) -> Iterator[Frames]:
        if self.config.stream_files:
            pipe = FramePipeline(self.streaming_encoder, self.preprocess.normalize, self.grid)
            for block in blocks:
                yield from pipe.push(block)
            yield from pipe.drain()
        else:
            yield from iter_window_logits(self.model, blocks, self.config.window,
                                          normalize=self.preprocess.normalize)

    @staticmethod
    def _count(blocks: Iterable[np.ndarray], counter: list[int]) -> Iterator[np.ndarray]:
        for b in blocks:
            counter[0] += len(b)
            yield b

    def iter_segments(self, source: str | os.PathLike[str] | np.ndarray, sample_rate: int = SAMPLE_RATE,
                      progress: Callable[[float], None] | None = None,
                      _samples: list[int] | None = None) -> Iterator[Segment]:
        """Transcribes lazily, yielding segments (cut at pauses) as the audio is processed.

        Args:
            source: Audio file or array.
            sample_rate: Rate of an array source.
            progress: Called with the seconds of audio processed so far.
        """
        if isinstance(source, (str, os.PathLike)):
            blocks: Iterable[np.ndarray] = iter_audio(source)
        else:
            blocks = [prepare_array(source, sample_rate)]
        blocks = self._count(blocks, _samples if _samples is not None else [0])
        utts = UtteranceTracker(self.decoder, OFFLINE_SEGMENTS, self.vocab.blank_id, self.grid)
        for first, logits in self._frames_offline(blocks):
            for u in utts.feed(first, logits):
                if u.final.text:
                    yield Segment(u.final.text, u.final.start, u.final.end, u.final.words)
            if progress is not None:
                progress(self.grid.seconds(first + len(logits)))
        last = utts.close_current()
        if last is not None and last.final.text:
            f = last.final
            yield Segment(f.text, f.start, f.end, f.words)

    def transcribe(self, source: str | os.PathLike[str] | np.ndarray, sample_rate: int = SAMPLE_RATE,
                   progress: Callable[[float], None] | None = None) -> Transcript:
        """Transcribes a file or an array (see `iter_segments`) into a `Transcript`."""
        t0 = time.perf_counter()
        samples = [0]
        segments = tuple(self.iter_segments(source, sample_rate, progress, samples))
        duration = self.grid.sample_seconds(samples[0])
        elapsed = time.perf_counter() - t0
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else ""
        info = RunInfo(self.source, self.decoder_name, self.mode_name,
                       round(elapsed, 3), round(elapsed / duration, 4) if duration else None)
        sep = word_separator(self.vocab)
        return Transcript(sep.join(s.text for s in segments), segments, round(duration, 3), name, info)

    # ------------------------------------------------------------------ streams
    def create_stream(self, hotwords: Iterable[str] = ()) -> Stream:
        """A new stream with its own state.

        Args:
            hotwords: Words or phrases to boost in this stream alone, on top of the config's
                (``decoder.hotwords``). A stream with hotwords is decoded by the beam search (with the
                recognizer's LM, if any), as `RecognizerConfig.search` ``auto`` does for hotwords.

        Raises:
            ConfigError: A hotword that is not a non-empty string.
        """
        return Stream(self, self.decoder_for(hotwords))

    #: Hotword decoders kept for reuse (each holds its own LM scorer); the oldest is dropped past this.
    HOTWORD_DECODERS = 8

    def decoder_for(self, hotwords: Iterable[str] = ()) -> BeamSearchDecoder | GreedyDecoder:
        """The decoder of a stream with these extra hotwords: the recognizer's own without any.

        Decoders for the same hotwords are built once (loading the LM scorer takes a moment) and
        shared by the streams that ask for them; the last `HOTWORD_DECODERS` sets are kept. Safe to
        call from several threads (a server builds them beside the thread that decodes).
        """
        if isinstance(hotwords, str):
            raise ConfigError(f"hotwords: expected a sequence of strings, found the string {hotwords!r}")
        extra = DecoderConfig(hotwords=tuple(hotwords)).hotwords  # validated and normalized
        key = tuple(dict.fromkeys(self.config.decoder.hotwords + extra))
        if not extra or key == self.config.decoder.hotwords:
            return self.decoder
        with self._hotword_lock:
            decoder = self._hotword_decoders.pop(key, None)
        if decoder is None:
            decoder = BeamSearchDecoder(self.vocab, replace(self.config.decoder, hotwords=key), self.lm)
        with self._hotword_lock:
            self._hotword_decoders[key] = decoder  # most recently used last
            while len(self._hotword_decoders) > self.HOTWORD_DECODERS:
                self._hotword_decoders.pop(next(iter(self._hotword_decoders)))
        return decoder

    def _check(self, stream: Any) -> Stream:
        if not isinstance(stream, Stream):
            raise ConfigError(f"stream: expected a Stream from rec.create_stream(), found {type(stream).__name__}")
        if stream.recognizer is not self:
            raise ConfigError("stream: expected a stream created by this recognizer's create_stream(), "
                              "found one created by another Recognizer")
        return stream

    def second_pass(self, audio: np.ndarray, final: Final,
                    decoder: BeamSearchDecoder | GreedyDecoder | None = None) -> Final:
        """Two-pass final: ``final``'s utterance re-decoded from its 16-kHz audio with full context.

        The decoder state opens at ``final.start`` (the utterance's stream time), so word times are
        on the stream's clock; the span stays the streaming pass's. ``decoder``: the stream's
        (default: the recognizer's).
        """
        if self.model is None:
            raise ConfigError(f"second pass: needs the PyTorch model, and only the ExecuTorch program "
                              f"{self.source} was given")
        frames = self.model.config.num_frames(len(audio))
        if frames == 0:
            return final
        if self.preprocess.normalize:
            audio = normalize_utterance(audio)
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        lengths, piece = None, None
        if self.model.config.feat_extract_norm == "layer":
            # Frame-local norms: padding with masked lengths leaves the real frames' logits unchanged
            # (tested), and bucketed shapes keep oneDNN's kernel cache from growing per utterance.
            # The conv front-end runs one bucket at a time, so its large activations (and the heap's
            # high-water mark) do not grow with the longest utterance met.
            bucket = round(SECOND_PASS_BUCKET_SECONDS * SAMPLE_RATE)
            padded = -(-x.shape[1] // bucket) * bucket
            lengths = torch.tensor([x.shape[1]])
            x = torch.nn.functional.pad(x, (0, padded - x.shape[1]))
            piece = self.model.config.num_frames(bucket)
        with torch.no_grad():
            logits, _ = self.model(x, lengths, piece_frames=piece)
        decoder = decoder if decoder is not None else self.decoder
        second = decoder.decode(logits[0, :frames].float(), time_offset=final.start)
        return replace(second, start=final.start, end=final.end)

    def decode_streams(self, streams: list[Stream]) -> list[list[Event]]:
        """Runs every step the streams are ready for, the ready ones batched into one encoder forward.

        Returns:
            Per stream, what `decode_stream` would return for it alone: a Partial per step and a
            Final per endpoint (the results equal decoding each stream alone, up to float rounding
            of the batched forward).
        """
        streams = [self._check(s) for s in streams]
        if len({id(s) for s in streams}) != len(streams):
            raise ConfigError("decode_streams: expected distinct streams, found one listed twice")
        with contextlib.ExitStack() as held:
            for s in sorted(streams, key=id):  # one order for every caller: no two calls wait on each other
                held.enter_context(s.lock)
            return self._decode_locked(streams)

    def _decode_locked(self, streams: list[Stream]) -> list[list[Event]]:
        """`decode_streams` with every stream's lock held."""
        events: list[list[Event]] = [[] for _ in streams]
        while True:
            ready = [i for i, s in enumerate(streams) if s.ready]
            if not ready:
                return events
            stepping = [i for i in ready if streams[i].pipeline.ready]
            outs = FramePipeline.step_many([streams[i].pipeline for i in stepping]) if stepping else []
            by_stream = dict(zip(stepping, outs))
            for i in ready:
                events[i] += streams[i].on_frames(by_stream.get(i), stepped=i in by_stream)

    def decode_stream(self, stream: Stream) -> list[Event]:
        """Runs every step the stream is ready for; returns a Partial per step and a Final per endpoint."""
        return self.decode_streams([stream])[0]

    def skip_to(self, stream: Stream, sample: int) -> list[Event]:
        """Input gating: decodes what the stream holds, then jumps its clock to 16-kHz sample ``sample``.

        The skipped audio is not decoded; for the endpointer it is silence (it may end the current
        utterance), and times after it stay on the input's clock.
        """
        s = self._check(stream)
        with s.lock:
            events = self.decode_stream(s)
            return events + s.skip_to(sample)

    def get_result(self, stream: Stream) -> Partial:
        """The current utterance's partial result."""
        s = self._check(stream)
        with s.lock:
            return s.tracker.partial(s.time)

    def feed(self, stream: Stream, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[Event]:
        """`Stream.accept_waveform` then `decode_stream`: the events this audio produced (one call at a
        time per stream, see `Stream`)."""
        s = self._check(stream)
        with s.lock:
            s.accept_waveform(samples, sample_rate)
            return self.decode_stream(s)

    def input_finished(self, stream: Stream) -> list[Event]:
        """`Stream.input_finished` then `decode_stream`: the remaining events (ends with the last Final)."""
        s = self._check(stream)
        with s.lock:
            s.input_finished()
            return self.decode_stream(s)


def _with_overrides(config: RecognizerConfig, overrides: dict[str, Any]) -> RecognizerConfig:
    """``dataclasses.replace(config, **overrides)``, with a clear error for a name that is not a field."""
    known = {f.name for f in fields(RecognizerConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"recognizer options: expected RecognizerConfig fields ({', '.join(sorted(known))}), "
                          f"found {', '.join(unknown)}")
    return replace(config, **overrides)


def load(model: str | os.PathLike[str] = DEFAULT_MODEL, config: RecognizerConfig | None = None, *,
         lm: str | os.PathLike[str] | None = "auto", **overrides: Any) -> Recognizer:
    """Shorthand for `Recognizer.load`: ``streamer.load(model, streaming=..., two_pass=..., lm=...)``."""
    return Recognizer.load(model, config, lm=lm, **overrides)
