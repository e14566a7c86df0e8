"""Audio input: formats, rates, channels, dtypes, and one clear error for every bad input."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from streamer import audio
from streamer.audio import iter_audio, load_audio, prepare_array
from streamer.errors import AudioError


def _tone(rate: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.argmax(spec) * 16000 / len(x))


@pytest.mark.parametrize("ext, fmt, subtype", [
    ("wav", "WAV", "PCM_16"), ("wav", "WAV", "FLOAT"), ("flac", "FLAC", "PCM_24"),
    ("ogg", "OGG", "VORBIS"), ("opus", "OGG", "OPUS"), ("mp3", "MP3", "MPEG_LAYER_III"),
])
def test_formats_rates_channels(tmp_path, ext, fmt, subtype):
    rate = 48000 if subtype in ("OPUS", "MPEG_LAYER_III") else 44100
    path = tmp_path / f"tone.{ext}"
    sf.write(path, _tone(rate, 1.0, channels=2), rate, format=fmt, subtype=subtype)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) < 1200  # codecs may pad a few ms
    assert abs(_dominant_hz(x) - 440) < 5


def test_m4a_through_ffmpeg(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (tools/install.sh installs it)")
    wav = tmp_path / "t.wav"
    sf.write(wav, _tone(22050), 22050)
    m4a = tmp_path / "t.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    x = load_audio(m4a)
    assert abs(len(x) - 16000) < 2000
    assert abs(_dominant_hz(x) - 440) < 5


def test_m4a_without_ffmpeg_names_the_fix(tmp_path, monkeypatch):
    m4a = tmp_path / "t.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(64))
    monkeypatch.setattr(audio, "_ffmpeg", lambda: None)
    with pytest.raises(AudioError, match="apt-get install ffmpeg"):
        load_audio(m4a)


def test_blocks_equal_whole_and_resample_streaming(tmp_path):
    path = tmp_path / "long.flac"
    sig = np.random.default_rng(0).standard_normal(44100 * 7).astype(np.float32) * 0.1
    sf.write(path, sig, 44100)
    blocks = list(iter_audio(path, block_seconds=1.3))
    assert len(blocks) > 4
    whole = np.concatenate(blocks)
    assert abs(len(whole) - 16000 * 7) <= 2
    import soxr
    ref = soxr.resample(sig, 44100, 16000)
    n = min(len(ref), len(whole))
    assert np.max(np.abs(ref[1000:n - 1000] - whole[1000:n - 1000])) < 1e-3


def test_int16_and_uint8_and_channels_first_arrays():
    x16 = (np.sin(np.arange(16000) / 5) * 32767).astype(np.int16)
    assert np.max(np.abs(prepare_array(x16))) <= 1.0
    assert prepare_array(x16).dtype == np.float32
    u8 = np.full(100, 128, dtype=np.uint8)
    assert np.allclose(prepare_array(u8), 0.0)
    stereo_first = np.zeros((2, 8000), dtype=np.float32)
    assert prepare_array(stereo_first).shape == (8000,)
    assert prepare_array(np.zeros(8000, dtype=np.float32), sample_rate=8000).shape == (16000,)


def _write_nan(path, value):
    x = np.zeros(16000, dtype=np.float32)
    x[100] = value
    sf.write(path, x, 16000, subtype="FLOAT")


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("directory", "is a directory"),
    ("empty", "empty file"),
    ("zero_samples", "no audio samples"),
    ("corrupt_header", "not a readable audio file"),
    ("text_as_wav", "not a readable audio file"),
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
])
def test_bad_inputs_raise_one_clear_error(tmp_path, case, message):
    path = tmp_path / "x.wav"
    if case == "directory":
        path = tmp_path
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "zero_samples":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif case == "corrupt_header":
        path.write_bytes(b"RIFF\xff\xff\x00\x00WAVEfmt " + bytes(range(200)))
    elif case == "text_as_wav":
        path.write_text("this is not audio, just text\n" * 20)
    elif case == "nan":
        _write_nan(path, np.nan)
    elif case == "inf":
        _write_nan(path, np.inf)
    with pytest.raises(AudioError, match=message) as err:
        load_audio(path)
    assert "\n" not in str(err.value)


def test_bad_arrays():
    with pytest.raises(AudioError, match="no samples"):
        prepare_array(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="NaN or infinite"):
        prepare_array(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(AudioError, match="shape"):
        prepare_array(np.zeros((2, 2, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="dtype"):
        prepare_array(np.array(["a", "b"]))


@pytest.mark.parametrize("rate, ok", [(16000, True), (8000.0, True), (np.int64(44100), True), (0, False),
                                      (-16000, False), ("16000", False), (True, False), (16000.5, False),
                                      (float("nan"), False), (10**9, False)])
def test_sample_rate_checked(rate, ok):
    x = np.zeros(1600, dtype=np.float32)
    if ok:
        assert prepare_array(x, rate).dtype == np.float32
    else:
        with pytest.raises(AudioError, match="sample_rate: expected"):
            prepare_array(x, rate)


def test_wav_of_unknown_length_is_not_truncated(tmp_path):
    """A WAV streamed to a pipe carries a placeholder data size (0xFFFFFFFF); it reads, whole."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (tools/install.sh installs it)")
    src = tmp_path / "src.wav"
    sf.write(src, _tone(16000, 1.0), 16000)
    piped = subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-f", "wav", "-"], capture_output=True,
                           check=True).stdout
    (tmp_path / "piped.wav").write_bytes(piped)
    assert len(load_audio(tmp_path / "piped.wav")) == 16000


def test_truncated_wav_is_refused_before_decoding(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, _tone(16000, 1.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated: the header declares 32000 bytes"):
        audio.probe(path)


def test_cbr_mp3_without_xing_header_is_not_truncated(tmp_path):
    """Without a Xing header libsndfile only estimates the length (off by the encoder delay)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (tools/install.sh installs it)")
    src = tmp_path / "src.wav"
    sf.write(src, _tone(16000, 3.0), 16000)
    mp3 = tmp_path / "cbr.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-write_xing", "0", "-b:a", "32k", str(mp3)], check=True)
    assert abs(len(load_audio(mp3)) - 48000) < 1600
