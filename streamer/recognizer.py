"""The shared `Recognizer` and per-utterance `Stream` objects.

One `Recognizer` holds the model, the streaming setup and the decoder (with its language model); it is
shared by any number of `Stream` objects, each holding one audio stream's explicit state. A complete
live loop::

    import streamer
    rec = streamer.load()                                   # bundled model, its LM, window streaming
    stream = rec.create_stream()
    for block in microphone_blocks():                       # float32 16-kHz arrays of any length
        stream.accept_waveform(block)
        while rec.is_ready(stream):
            for event in rec.decode_stream(stream):         # Partial after each step, Final at endpoints
                print(event)
    stream.input_finished()
    for event in rec.decode_stream(stream):                 # drains the look-ahead, last Final
        print(event)

Offline files go through `Recognizer.transcribe` (overlapping windows, full context), or
`Recognizer.iter_segments` for a lazy generator of segments on long files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from streamer.audio import iter_audio, prepare_array
from streamer.checkpoint import DEFAULT_MODEL, Checkpoint, load_checkpoint
from streamer.constants import FRAME_SECONDS, HOP_SAMPLES, SAMPLE_RATE
from streamer.decoding.beam import BeamSearchDecoder, DecoderConfig, GreedyDecoder
from streamer.endpoint import EndpointConfig, EndpointDetector
from streamer.errors import ConfigError
from streamer.offline import WindowConfig, iter_window_logits
from streamer.preprocess import NormState, normalize_running, normalize_utterance
from streamer.results import Final, Partial, RunInfo, Segment, Transcript, Word
from streamer.streaming import StreamingConfig, StreamingEncoder

#: Endpointing used to cut offline transcripts into segments (pauses of 0.6 s, at most 30 s).
OFFLINE_SEGMENTS = EndpointConfig(silence_before_speech=30.0, silence_after_speech=0.6, max_utterance=30.0)

Event = Partial | Final


@dataclass(frozen=True)
class LanguageModelFiles:
    """A KenLM model and the unigram list pyctcdecode needs (a model folder's ``lm/``)."""

    lm: Path
    unigrams: Path | None = None
    alpha: float | None = None
    beta: float | None = None

    @classmethod
    def for_model_file(cls, path: Path, alpha: float | None = None, beta: float | None = None) -> "LanguageModelFiles":
        """A KenLM file with its word list: ``<stem>.unigrams.txt`` or ``unigrams.txt`` beside it, if any."""
        for cand in (path.with_name(f"{path.stem}.unigrams.txt"), path.parent / "unigrams.txt"):
            if cand.is_file():
                return cls(path, cand, alpha, beta)
        return cls(path, None, alpha, beta)

    @classmethod
    def from_folder(cls, folder: Path) -> "LanguageModelFiles | None":
        """Finds ``lm/*.binary`` or ``lm/*.arpa`` (+ its word list and ``attrs.json``) in a model folder."""
        d = folder / "lm"
        if not d.is_dir():
            return None
        cands = sorted(d.glob("*.binary")) + sorted(d.glob("*.bin")) + sorted(d.glob("*.arpa"))
        if not cands:
            return None
        attrs = {}
        if (d / "attrs.json").is_file():
            import json
            attrs = json.loads((d / "attrs.json").read_text())
        return cls.for_model_file(cands[0], attrs.get("alpha"), attrs.get("beta"))


@dataclass(frozen=True)
class RecognizerConfig:
    """How a recognizer runs: streaming setup, offline windows, decoding, endpointing."""

    streaming: StreamingConfig = field(default_factory=lambda: StreamingConfig.from_seconds("window", 0.64))
    """Setup of `Stream` objects (and of `transcribe` when ``stream_files`` is true)."""
    window: WindowConfig = field(default_factory=WindowConfig)
    """Offline windows of `transcribe`."""
    stream_files: bool = False
    """Run `transcribe` through the streaming path instead of offline windows."""
    decoder: DecoderConfig | None = None
    """Beam search (with the LM it names); None = greedy best path."""
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    """Endpoint rules of streams."""
    two_pass: bool = True
    """Re-decode each streamed utterance at its endpoint with full context."""


class _Utterances:
    """Turns a frame sequence into utterances: decoder state + endpointing + segment bookkeeping."""

    def __init__(self, rec: "Recognizer", endpoint: EndpointConfig) -> None:
        self.rec = rec
        self.detector = EndpointDetector(endpoint)
        self.ep_state = self.detector.new_state()
        self.start_frame = 0
        self.dec_state = rec.decoder.new_state()
        self.frames_in_utt = 0

    def _shift(self, final: Final, offset: float, start: float, end: float) -> Final:
        words = tuple(Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3), w.confidence) for w in final.words)
        return replace(final, words=words, start=round(start, 3), end=round(end, 3))

    def feed(self, first_frame: int, logits: Tensor) -> list[tuple[Final, int, int]]:
        """Consumes consecutive frames; returns the utterances that ended: (final, first frame, end frame)."""
        done = []
        blank = (logits.argmax(-1) == self.rec.vocab.blank_id).numpy()
        pos = 0
        while pos < len(logits):
            seen = self.ep_state.frames
            self.ep_state, ep = self.detector.update(self.ep_state, blank[pos:])
            if ep is None:
                self.dec_state = self.rec.decoder.advance(self.dec_state, logits[pos:])
                self.frames_in_utt += len(logits) - pos
                break
            cut = pos + (ep - seen) + 1
            self.dec_state = self.rec.decoder.advance(self.dec_state, logits[pos:cut])
            self.frames_in_utt += cut - pos
            done.append(self._close(first_frame + cut))
            pos = cut
        return done

    def _close(self, end_frame: int) -> tuple[Final, int, int]:
        final = self.rec.decoder.finalize(self.dec_state)
        start = self.start_frame
        offset = start * FRAME_SECONDS
        out = self._shift(final, offset, offset, end_frame * FRAME_SECONDS)
        self.start_frame = end_frame
        self.dec_state = self.rec.decoder.new_state()
        self.ep_state = self.detector.new_state()
        self.frames_in_utt = 0
        return out, start, end_frame

    def flush(self, end_frame: int) -> tuple[Final, int, int] | None:
        """Ends the last utterance (None when it holds no frames)."""
        if self.frames_in_utt == 0:
            return None
        return self._close(end_frame)

    def partial(self, now: float) -> Partial:
        p = self.rec.decoder.partial(self.dec_state)
        offset = self.start_frame * FRAME_SECONDS
        words = tuple(Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3), w.confidence) for w in p.words)
        return replace(p, words=words, time=round(now, 3))


class Stream:
    """One audio stream's state. Create with `Recognizer.create_stream`; see the module docstring."""

    def __init__(self, rec: "Recognizer") -> None:
        self._rec = rec
        self._pending = np.zeros(0, dtype=np.float32)
        self._finished = False
        self._drained = False
        self.encoder_state = rec.streaming_encoder.init_state(1)
        self._utts = _Utterances(rec, rec.config.endpoint)
        self._audio = np.zeros(0, dtype=np.float32)  # current utterance's samples, for two-pass finals
        self._audio_start = 0  # global sample index of _audio[0]
        self.samples_received = 0
        self.finals: list[Final] = []
        self._resampler: Any = None
        self._rate: int | None = None
        self.norm_state = NormState()

    @property
    def time(self) -> float:
        """Seconds of audio received."""
        return self.samples_received / SAMPLE_RATE

    def accept_waveform(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Appends audio (any length; (N,) or (N, C); float or int samples; any rate)."""
        if self._finished:
            raise ConfigError("stream: accept_waveform after input_finished; create a new stream")
        x = np.asarray(samples)
        if x.size == 0:
            return
        from streamer.audio import to_mono_float
        x = to_mono_float(x)
        if not np.isfinite(x).all():
            raise ConfigError("stream: expected finite samples, found NaN or infinite values")
        if self._rate not in (None, sample_rate):
            raise ConfigError(f"stream: sample rate changed from {self._rate} to {sample_rate} Hz; use one rate per stream")
        self._rate = sample_rate
        if sample_rate != SAMPLE_RATE:
            if self._resampler is None:
                import soxr
                self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
            x = self._resampler.resample_chunk(x, last=False)
        self._pending = np.concatenate([self._pending, x])
        self._audio = np.concatenate([self._audio, x])
        self.samples_received += len(x)

    def input_finished(self) -> None:
        """Marks the end of the audio; the next `Recognizer.decode_stream` calls drain the stream."""
        if self._resampler is not None and not self._finished:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._pending = np.concatenate([self._pending, tail])
            self._audio = np.concatenate([self._audio, tail])
            self.samples_received += len(tail)
        self._finished = True

    @property
    def done(self) -> bool:
        """True once the audio is finished and every frame has been decoded."""
        return self._drained


class Recognizer:
    """Speech recognizer shared by any number of streams (see the module docstring).

    Args:
        checkpoint: A loaded model.
        config: Streaming, windows, decoding and endpointing.
        step_program: An ExecuTorch ``.pte`` of this model's streaming step (`streamer export`): streams
            then run on the ExecuTorch runtime (its streaming setup replaces ``config.streaming``);
            offline windows and two-pass finals still use the PyTorch model.
    """

    def __init__(self, checkpoint: Checkpoint, config: RecognizerConfig = RecognizerConfig(),
                 step_program: str | os.PathLike[str] | None = None) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.vocab = checkpoint.vocab
        self.decoder = BeamSearchDecoder(self.vocab, config.decoder) if config.decoder else GreedyDecoder(self.vocab)
        self.streaming_encoder: Any
        if step_program is not None:
            from streamer.export.executorch import PteStreamingEncoder
            self.streaming_encoder = PteStreamingEncoder(step_program)
            if self.streaming_encoder.meta["vocabulary"] != self.vocab.to_dict():
                raise ConfigError(f"pte: {step_program} was exported from another model (vocabularies differ)")
            config = replace(config, streaming=self.streaming_encoder.config)
        else:
            self.streaming_encoder = StreamingEncoder(self.model, config.streaming)
        self.config = config

    @classmethod
    def load(cls, model: str | os.PathLike[str] = DEFAULT_MODEL, *, lm: str | os.PathLike[str] | None = "auto",
             streaming: StreamingConfig | None = None, stream_files: bool = False, beam_width: int = 32,
             alpha: float | None = None, beta: float | None = None, hotwords: tuple[str, ...] = (),
             hotword_weight: float = 10.0, endpoint: EndpointConfig | None = None, two_pass: bool = True,
             window: WindowConfig | None = None, step_program: str | os.PathLike[str] | None = None) -> "Recognizer":
        """Loads a model and builds a recognizer.

        Args:
            model: Bundled model name, folder or hub id.
            lm: ``"auto"`` (the model folder's ``lm/`` when present, else greedy), a KenLM file, or
                None for greedy decoding.
            streaming: Setup of streams (default: window mode, 0.64-s chunks; cached mode for models
                trained block-causal needs ``StreamingConfig.from_seconds("cached", ...)``).
            stream_files: `transcribe` through the streaming path instead of offline windows.
            beam_width: Beams kept by the beam search.
            alpha: LM weight (default: the model's ``lm/attrs.json`` or the decoder's default).
            beta: Word insertion bonus (likewise).
            hotwords: Words to boost.
            hotword_weight: Boost per hotword match.
            endpoint: Endpoint rules of streams.
            two_pass: Full-context re-decoding at each streamed endpoint.
            window: Offline window sizes.
            step_program: ExecuTorch program of the streaming step (see `Recognizer`).
        """
        ck = load_checkpoint(model)
        decoder = None
        files: LanguageModelFiles | None = None
        if lm == "auto":
            files = LanguageModelFiles.from_folder(ck.folder)
        elif lm is not None:
            path = Path(lm)
            if not path.is_file():
                raise ConfigError(f"lm: expected a KenLM .binary/.arpa file, found nothing at {path}")
            files = LanguageModelFiles.for_model_file(path)
        if files is not None or hotwords:
            kw: dict[str, Any] = {"beam_width": beam_width, "hotwords": tuple(hotwords), "hotword_weight": hotword_weight}
            if files is not None:
                kw.update(lm_path=str(files.lm), unigrams_path=None if files.unigrams is None else str(files.unigrams))
                a = alpha if alpha is not None else files.alpha
                b = beta if beta is not None else files.beta
                if a is not None:
                    kw["alpha"] = a
                if b is not None:
                    kw["beta"] = b
            decoder = DecoderConfig(**kw)
        cfg = RecognizerConfig(
            streaming=streaming or StreamingConfig.from_seconds("window", 0.64), window=window or WindowConfig(),
            stream_files=stream_files, decoder=decoder, endpoint=endpoint or EndpointConfig(), two_pass=two_pass)
        return cls(ck, cfg, step_program)

    @property
    def decoder_name(self) -> str:
        """``greedy``, ``beam`` or ``beam+lm``."""
        if self.config.decoder is None:
            return "greedy"
        return "beam+lm" if self.config.decoder.lm_path else "beam"

    # ------------------------------------------------------------------ offline
    def _frames_offline(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[int, Tensor]]:
        if self.config.stream_files:
            yield from self._frames_streamed(blocks)
        else:
            yield from iter_window_logits(self.model, blocks, self.config.window,
                                          normalize=self.checkpoint.preprocess.normalize)

    @torch.no_grad()
    def _frames_streamed(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[int, Tensor]]:
        enc = self.streaming_encoder
        c = enc.config.chunk_samples
        state = enc.init_state(1)
        norm = NormState()
        buf = np.zeros(0, dtype=np.float32)
        steps = 0

        def run(piece: np.ndarray, real: int):
            nonlocal state, steps, norm
            if self.checkpoint.preprocess.normalize:
                norm, piece = normalize_running(norm, piece)
            x = torch.from_numpy(np.pad(piece, (0, c - len(piece))))[None]
            logits, valid, state = enc.step(x, state, torch.tensor([real]))
            first = enc.first_frame(steps)
            steps += 1
            v = valid[0]
            if v.any():
                idx = v.nonzero()[:, 0]
                return first + int(idx[0]), logits[0, idx[0]:idx[-1] + 1].float()
            return None

        for block in blocks:
            buf = np.concatenate([buf, block])
            while len(buf) >= c:
                out = run(buf[:c], c)
                buf = buf[c:]
                if out is not None:
                    yield out
        if len(buf):
            out = run(buf, len(buf))
            if out is not None:
                yield out
        for _ in range(enc.config.flush_steps):
            out = run(np.zeros(0, dtype=np.float32), 0)
            if out is not None:
                yield out

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
        utts = _Utterances(self, OFFLINE_SEGMENTS)
        end = 0
        for first, logits in self._frames_offline(blocks):
            end = first + len(logits)
            for final, _, _ in utts.feed(first, logits):
                if final.text:
                    yield Segment(final.text, final.start, final.end, final.words)
            if progress is not None:
                progress(end * FRAME_SECONDS)
        last = utts.flush(end)
        if last is not None and last[0].text:
            f = last[0]
            yield Segment(f.text, f.start, f.end, f.words)

    def transcribe(self, source: str | os.PathLike[str] | np.ndarray, sample_rate: int = SAMPLE_RATE,
                   progress: Callable[[float], None] | None = None) -> Transcript:
        """Transcribes a file or an array (see `iter_segments`) into a `Transcript`."""
        t0 = time.perf_counter()
        samples = [0]
        segments = tuple(self.iter_segments(source, sample_rate, progress, samples))
        duration = samples[0] / SAMPLE_RATE
        elapsed = time.perf_counter() - t0
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else ""
        info = RunInfo(str(self.checkpoint.folder), self.decoder_name,
                       "streaming-" + self.config.streaming.mode if self.config.stream_files else "offline",
                       round(elapsed, 3), round(elapsed / duration, 4) if duration else None)
        return Transcript(" ".join(s.text for s in segments), segments, round(duration, 3), name, info)

    # ------------------------------------------------------------------ streams
    def create_stream(self) -> Stream:
        """A new stream with its own state."""
        return Stream(self)

    def is_ready(self, stream: Stream) -> bool:
        """True when the stream holds a full chunk, or finished audio not yet decoded."""
        return len(stream._pending) >= self.streaming_encoder.config.chunk_samples or (
            stream._finished and not stream._drained)

    def _final_for(self, stream: Stream, final: Final, start_frame: int, end_frame: int) -> Final:
        """Two-pass final: re-decode the utterance's audio with full context."""
        if not self.config.two_pass:
            return final
        lo = start_frame * HOP_SAMPLES - stream._audio_start
        hi = end_frame * HOP_SAMPLES + 80 - stream._audio_start
        audio = stream._audio[max(0, lo):max(0, hi)]
        keep_from = max(0, end_frame * HOP_SAMPLES - stream._audio_start)
        stream._audio = stream._audio[keep_from:]
        stream._audio_start += keep_from
        if self.model.config.num_frames(len(audio)) == 0:
            return final
        if self.checkpoint.preprocess.normalize:
            audio = normalize_utterance(audio)
        with torch.no_grad():
            logits, _ = self.model(torch.from_numpy(np.ascontiguousarray(audio))[None])
        second = self.decoder.decode(logits[0].float())
        offset = start_frame * FRAME_SECONDS
        words = tuple(Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3), w.confidence) for w in second.words)
        return replace(second, words=words, start=final.start, end=final.end)

    @torch.no_grad()
    def decode_stream(self, stream: Stream) -> list[Event]:
        """Runs every step the stream is ready for; returns a Partial per step and a Final per endpoint."""
        events: list[Event] = []
        enc = self.streaming_encoder
        c = enc.config.chunk_samples
        while self.is_ready(stream):
            if len(stream._pending) >= c:
                piece, real = stream._pending[:c], c
                stream._pending = stream._pending[c:]
                steps = [(piece, real)]
            else:  # finished: last partial chunk, then the look-ahead drain
                steps = [(stream._pending, len(stream._pending))] if len(stream._pending) else []
                steps += [(np.zeros(0, dtype=np.float32), 0)] * enc.config.flush_steps
                stream._pending = np.zeros(0, dtype=np.float32)
                stream._drained = True
            for piece, real in steps:
                if self.checkpoint.preprocess.normalize:
                    stream.norm_state, piece = normalize_running(stream.norm_state, piece)
                x = torch.from_numpy(np.pad(piece, (0, c - len(piece))))[None]
                first = enc.first_frame(int(stream.encoder_state.steps[0]))
                logits, valid, stream.encoder_state = enc.step(x, stream.encoder_state, torch.tensor([real]))
                v = valid[0]
                if v.any():
                    idx = v.nonzero()[:, 0]
                    for final, s, e in stream._utts.feed(first + int(idx[0]), logits[0, idx[0]:idx[-1] + 1].float()):
                        final = self._final_for(stream, final, s, e)
                        if final.text:
                            stream.finals.append(final)
                            events.append(final)
                events.append(stream._utts.partial(stream.time))
            if stream._drained:
                end = self.model.config.num_frames(stream.samples_received)
                last = stream._utts.flush(end)
                if last is not None:
                    final = self._final_for(stream, *last)
                    if final.text:
                        stream.finals.append(final)
                        events.append(final)
        return events

    def get_result(self, stream: Stream) -> Partial:
        """The current utterance's partial result."""
        return stream._utts.partial(stream.time)

    def feed(self, stream: Stream, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[Event]:
        """`Stream.accept_waveform` then `decode_stream`: the events this audio produced."""
        stream.accept_waveform(samples, sample_rate)
        return self.decode_stream(stream)

    def finish(self, stream: Stream) -> list[Event]:
        """`Stream.input_finished` then `decode_stream`: the remaining events (ends with the last Final)."""
        stream.input_finished()
        return self.decode_stream(stream)


def load(model: str | os.PathLike[str] = DEFAULT_MODEL, **kwargs: Any) -> Recognizer:
    """Shorthand for `Recognizer.load` (see there for the options)."""
    return Recognizer.load(model, **kwargs)
