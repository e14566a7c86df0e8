"""Hostile input (issue 10): every bad file, option, model and output target gets one clear error, the
batch goes on, and nothing is lost.

One test (or a few) per row of the issue's table; the fixtures are made here, small, from the shipped
example recording. Command-line tests run ``python -m streamer`` in a subprocess (with a timeout and an
address-space limit, so a regression hangs or allocates in vain instead of taking the machine) and
check: one ``error:`` line per bad input, no traceback, a non-zero exit, the good files of the batch
still written, and pre-existing files left as they were.
"""

from __future__ import annotations

import errno
import faulthandler
import json
import math
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO

import streamer
from streamer import audio
from streamer.audio import prepare_array
from streamer.checkpoint import load_checkpoint
from streamer.errors import AudioError, CheckpointError, ConfigError, StreamerError

MODEL = str(REPO / "models" / "demo-en")
#: Address-space cap of each command (bytes): a regression that allocates without bound fails here.
ADDRESS_SPACE = 6 << 30
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg is not installed (tools/install.sh installs it)")


@contextmanager
def deadline(seconds: int):
    """Fails an in-process call that hangs instead of hanging the suite: SIGALRM raises in Python code;
    a call stuck in C code (soxr given a NaN rate spins forever) ends the test process with a traceback."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(2 * seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_cli(*args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m streamer ARGS`` with a timeout and a memory cap (both fail the test, never hang it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "streamer", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limit_memory, env=env, cwd=cwd)


def error_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def assert_errors(res: subprocess.CompletedProcess, *expected: str) -> None:
    """One ``error:`` line per expected fragment (each naming it), no traceback, a non-zero exit."""
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = error_lines(res)
    assert len(errors) == len(expected), res.stderr[-3000:]
    for fragment in expected:
        assert sum(fragment in e for e in errors) == 1, (fragment, errors)
    assert res.returncode != 0


def transcribe(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return run_cli("transcribe", *args, "--model", MODEL, "--no-lm", "--quiet", timeout=timeout)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """2.5 s of the shipped held-out example (real speech, 16 kHz) as good.wav, in a fresh folder."""
    root = tmp_path_factory.mktemp("hostile")
    x, rate = sf.read(REPO / "examples" / "hello.wav", dtype="float32")
    sf.write(root / "good.wav", x[: int(2.5 * rate)], rate)
    return root / "good.wav"


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


# --- row 1: a corrupt ffmpeg-decoded file hangs; ffmpeg's exit code and stderr are ignored -------------

@needs_ffmpeg
def test_row1_corrupt_aac_is_one_error_not_a_hang(speech, tmp_path):
    x, rate = sf.read(speech, dtype="float32")
    sf.write(tmp_path / "long.wav", np.tile(x, 24), rate)  # 60 s: enough damage for > 64 KB of ffmpeg errors
    _ffmpeg("-i", str(tmp_path / "long.wav"), "-c:a", "aac", "-b:a", "64k", "-f", "adts", str(tmp_path / "long.aac"))
    data = bytearray((tmp_path / "long.aac").read_bytes())
    for i in range(2000, len(data), 100):
        data[i] ^= 0xFF
    (tmp_path / "garbled.aac").write_bytes(bytes(data))
    good = _copy(speech, tmp_path / "good.wav")
    res = transcribe(str(tmp_path / "garbled.aac"), str(good), "--output-dir", str(tmp_path / "out"), timeout=120)
    assert_errors(res, "garbled.aac")
    assert "ffmpeg" in error_lines(res)[0]
    assert (tmp_path / "out" / "good.txt").read_text().strip()


@needs_ffmpeg
def test_row1_stalled_decoder_is_killed(tmp_path, monkeypatch):
    fake = tmp_path / "ffmpeg"
    pid_file = tmp_path / "pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 600\n")
    fake.chmod(0o755)
    (tmp_path / "x.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(64))
    monkeypatch.setattr(audio, "_ffmpeg", lambda: str(fake))
    monkeypatch.setattr(audio, "FFMPEG_STALL_SECONDS", 1.0)
    with pytest.raises(AudioError, match="stalled"):
        audio.load_audio(tmp_path / "x.m4a")
    pid = int(pid_file.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(pid, 0)


# --- row 2: outputs with the same stem overwrite each other -------------------------------------------

@needs_ffmpeg
def test_row2_same_stem_outputs_do_not_overwrite_each_other(speech, tmp_path):
    flac = tmp_path / "hello.flac"
    sf.write(flac, *sf.read(speech))
    _ffmpeg("-i", str(speech), str(tmp_path / "hello.mp3"))
    out = tmp_path / "out"
    res = transcribe(str(flac), str(tmp_path / "hello.mp3"), "--format", "srt", "--output-dir", str(out))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and not error_lines(res)
    assert sorted(p.name for p in out.iterdir()) == ["hello.flac.srt", "hello.mp3.srt"]
    assert all(" --> " in p.read_text() for p in out.iterdir())


def test_row2_output_names_are_unique():
    from streamer.output import output_paths
    names = [str(p) for p in output_paths(["x.mp3", "a/y.wav", "b/Y.flac", "z.wav"], "txt")]
    assert names == ["x.txt", "y.wav.txt", "Y.flac.txt", "z.txt"]  # flat: no name in two folders
    names = [str(p) for p in output_paths(["a/x.wav", "b/x.wav", "x.mp3", "y.wav", "Y.flac", "z.wav"], "txt")]
    assert names == ["a/x.txt", "b/x.txt", "x.txt", "y.wav.txt", "Y.flac.txt", "z.txt"]  # x.wav twice: folders kept
    assert len({n.casefold() for n in names}) == len(names)


# --- row 3: output-write errors kill the batch with a traceback ----------------------------------------

def test_row3_output_dir_is_a_file_or_cannot_be_created(speech, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep\n")
    for target, fragment in ((blocker, "is a file"), (blocker / "sub", "cannot be created")):
        res = transcribe(str(speech), "--output-dir", str(target), timeout=60)
        assert_errors(res, str(target))
        assert fragment in error_lines(res)[0]
    assert blocker.read_text() == "keep\n"


def test_row3_target_is_a_directory_and_the_batch_goes_on(speech, tmp_path):
    a, b = _copy(speech, tmp_path / "a.wav"), _copy(speech, tmp_path / "b.wav")
    out = tmp_path / "out"
    (out / "a.txt").mkdir(parents=True)
    res = transcribe(str(a), str(b), "--output-dir", str(out))
    assert_errors(res, "a.txt")
    assert (out / "a.txt").is_dir() and not any((out / "a.txt").iterdir())
    assert (out / "b.txt").read_text().strip()
    assert "1/2" in res.stderr


@pytest.mark.parametrize("failure", ["disk full", "read-only"])
def test_row3_write_failures_are_per_file(speech, tmp_path, monkeypatch, capsys, failure):
    """A full disk or a read-only folder fails the file being written; the rest of the batch goes on.

    Neither can be made for real without privileges (a tiny file system to fill; root ignores a
    folder's permissions), so the operating system's error is raised where the write meets it.
    """
    from streamer import cli
    from streamer import output as output_module

    a, b = _copy(speech, tmp_path / "a.wav"), _copy(speech, tmp_path / "b.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep\n")
    calls = {"n": 0}
    real_fsync, real_mkstemp = os.fsync, output_module.tempfile.mkstemp

    def full_once(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    def read_only_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, **kwargs)

    if failure == "disk full":
        monkeypatch.setattr(os, "fsync", full_once)
    else:
        monkeypatch.setattr(output_module.tempfile, "mkstemp", read_only_once)
    code = cli.main(["transcribe", str(a), str(b), "--model", MODEL, "--no-lm", "--quiet", "--output-dir", str(out)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "a.txt" in errors[0], err
    assert os.strerror(errno.ENOSPC if failure == "disk full" else errno.EROFS) in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", "old.txt"]  # no partial a.txt, no temp file
    assert (out / "old.txt").read_text() == "keep\n"


# --- row 4: model dimensions are not bounded before allocating -----------------------------------------

def _edited_model(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "vocab.json"):
        os.symlink(Path(MODEL) / name, folder / name)
    config = json.loads((Path(MODEL) / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_row4_huge_num_layers_is_refused_before_allocating(speech, tmp_path):
    folder = _edited_model(tmp_path, lambda c: c["encoder"].update(num_layers=1_000_000))
    res = run_cli("transcribe", str(speech), "--model", str(folder), "--no-lm", timeout=60)
    assert_errors(res, "num_layers")


@pytest.mark.parametrize("section, field, value, fragment", [
    ("encoder", "hidden_size", 1e9, "hidden_size"),
    ("encoder", "hidden_size", "abc", "hidden_size"),
    ("encoder", "conv_dim", [32, "x", 128, 160, 192, 256, 256], "conv_dim[1]"),
    ("encoder", "stable_layer_norm", "yes", "stable_layer_norm"),
    ("vocabulary", "tokens", None, "vocabulary.tokens"),
    ("vocabulary", "blank_id", "0", "vocabulary.blank_id"),
])
def test_row4_mistyped_model_config_is_one_checkpoint_error(tmp_path, section, field, value, fragment):
    folder = _edited_model(tmp_path, lambda c: c[section].update({field: value}))
    with pytest.raises(CheckpointError, match=r"expected .*found") as err:
        load_checkpoint(folder)
    assert fragment in str(err.value)


def test_row4_config_larger_than_its_weights_is_refused():
    """Within every bound, but 12x the parameters its weight file can hold: refused before allocation."""
    from streamer.model.config import EncoderConfig
    ok = EncoderConfig.from_dict(json.loads((Path(MODEL) / "config.json").read_text())["encoder"])
    assert 0.9 < ok.approx_parameters() / 6.94e6 < 1.1  # the bundled model's size (models/demo-en/README.md)
    with pytest.raises(ConfigError, match="parameters"):
        EncoderConfig(hidden_size=16384, num_layers=256, num_heads=16, intermediate_size=65536)


def test_row4_weight_file_too_small_for_the_config(tmp_path):
    folder = _edited_model(tmp_path, lambda c: c["encoder"].update(num_layers=100))
    with pytest.raises(CheckpointError, match="does not belong to these weights"):
        load_checkpoint(folder)


# --- row 5: training resume unpickles arbitrary code ---------------------------------------------------

class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling creates the marker file


def _manifest(speech: Path, folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _copy(speech, folder / "good.wav")
    (folder / "train.tsv").write_text("".join(line + "\n" for line in lines))
    return folder / "train.tsv"


def test_row5_resume_does_not_run_a_planted_pickle(speech, tmp_path):
    manifest = _manifest(speech, tmp_path / "data", ["good.wav\tshe was wearing yellow"] * 2)
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "payload-ran"
    planted = pickle.dumps({"model": _Payload(str(marker)), "optimizer": {}, "state": {}})
    (out / "checkpoint.pt").write_bytes(planted)
    res = run_cli("train", "--train", str(manifest), "--out", str(out), "--preset", "tiny", "--max-steps", "1",
                  "--warmup-steps", "0", "--threads", "1", "--no-progress", "--no-augment", timeout=120)
    assert not marker.exists()
    assert_errors(res, "checkpoint.pt")
    assert (out / "checkpoint.pt").read_bytes() == planted


# --- row 6: huge but finite samples crash the decoder --------------------------------------------------

def test_row6_huge_samples_are_one_error_and_the_batch_goes_on(speech, tmp_path):
    x = np.zeros(16000, dtype=np.float32)
    x[4000:4100] = 1e30
    sf.write(tmp_path / "huge.wav", x, 16000, subtype="FLOAT")
    good = _copy(speech, tmp_path / "good.wav")
    res = transcribe(str(tmp_path / "huge.wav"), str(good), "--output-dir", str(tmp_path / "out"))
    assert_errors(res, "huge.wav")
    assert (tmp_path / "out" / "good.txt").read_text().strip()


@pytest.fixture(scope="module")
def rec():
    return streamer.load(MODEL, lm=None)


def test_row6_huge_samples_through_the_api(rec):
    x = np.zeros(16000, dtype=np.float32)
    x[4000:4100] = 1e30
    with pytest.raises(AudioError, match="1e\\+30"):
        prepare_array(x)
    with deadline(60), pytest.raises(StreamerError):
        rec.transcribe(x)
    loud = np.full(16000, 30000.0, dtype=np.float32)  # float samples at 16-bit integer scale still pass
    assert len(prepare_array(loud)) == 16000


# --- row 7: chunk and window options are not range-checked (fixed in streaming.py / cli.py) ------------

@pytest.mark.parametrize("options", [
    ["--streaming", "cached", "--chunk", "1000"],
    ["--streaming", "cached", "--chunk", "0"],
    ["--streaming", "cached", "--chunk", "-1"],
    ["--streaming", "cached", "--chunk", "nan"],
    ["--streaming", "window", "--right", "1e9"],
    ["--threads", "-1"],
], ids=lambda o: " ".join(o))
def test_row7_bad_streaming_options_are_refused_quickly(speech, options):
    res = transcribe(str(speech), *options, timeout=60)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.returncode in (1, 2), res.stderr[-3000:]
    assert len([line for line in res.stderr.splitlines() if "error:" in line]) == 1, res.stderr[-3000:]
    option = next(o for o in options if o in ("--chunk", "--right", "--threads")).lstrip("-")
    assert option in res.stderr
    assert not res.stdout.strip()  # refused, not transcribed


# --- row 8: export to a bad path fails after the export work -------------------------------------------

def test_row8_export_to_an_unwritable_path_fails_first(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep\n")
    for target in ("/proc/x.pte", str(blocker / "x.pte"), str(tmp_path)):
        res = run_cli("export", "-o", target, "--model", MODEL, timeout=60)
        assert_errors(res, target)
    assert blocker.read_text() == "keep\n"


# --- row 9: training manifests with a missing or non-audio file -----------------------------------------

def test_row9_manifest_naming_a_missing_or_non_audio_file(speech, tmp_path):
    from streamer.train.data import read_manifest

    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.wav").write_text("not audio\n")
    manifest = _manifest(speech, data, ["good.wav\tshe was", "missing.wav\tyellow"])
    with pytest.raises(ConfigError, match=r"train\.tsv:2: .*missing\.wav: no such file"):
        read_manifest(manifest)
    (data / "train.tsv").write_text("good.wav\tshe was\n\nnotes.wav\tyellow\n")
    with pytest.raises(ConfigError, match=r"train\.tsv:3: .*notes\.wav: not a readable audio file"):
        read_manifest(manifest)
    res = run_cli("train", "--train", str(manifest), "--out", str(tmp_path / "run"), "--preset", "tiny",
                  "--max-steps", "1", "--warmup-steps", "0", "--threads", "1", "--no-progress", timeout=120)
    assert_errors(res, "train.tsv:3")


# --- row 10: API misuse raises non-streamer exceptions or passes silently (fixed in recognizer.py) -----

@pytest.mark.parametrize("rate", [0, -16000, "16000", 1e12, math.nan])
def test_row10_bad_sample_rates_are_streamer_errors(rec, rate):
    x = np.zeros(3200, dtype=np.float32)
    with deadline(30), pytest.raises(StreamerError):
        rec.feed(rec.create_stream(), x, rate)
    with deadline(30), pytest.raises(StreamerError):
        rec.transcribe(x, sample_rate=rate)


def test_row10_stream_from_another_recognizer(rec):
    other = streamer.load(MODEL, lm=None)
    stream = other.create_stream()
    with deadline(30), pytest.raises(StreamerError):
        rec.feed(stream, np.zeros(3200, dtype=np.float32))


# --- row 11: truncated files are transcribed in part with exit 0 and no warning -------------------------

def _inside_adts_frame(data: bytes, at: int) -> int:
    """An offset inside the ADTS frame that holds offset ``at`` (a cut there leaves a partial frame)."""
    pos = 0
    while pos + 7 <= len(data):
        if data[pos] != 0xFF or data[pos + 1] & 0xF0 != 0xF0:
            raise AssertionError(f"no ADTS sync word at {pos}")
        length = ((data[pos + 3] & 3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        if pos + length > at:
            return pos + min(length - 1, 16)
        pos += length
    raise AssertionError("offset beyond the last ADTS frame")


@needs_ffmpeg
def test_row11_truncated_files_are_errors(speech, tmp_path):
    x, rate = sf.read(speech, dtype="float32")
    src = tmp_path / "src.wav"
    sf.write(src, x, rate, subtype="PCM_16")
    full = {"t.wav": src}
    _ffmpeg("-i", str(src), str(tmp_path / "src.mp3"))
    _ffmpeg("-i", str(src), "-c:a", "aac", "-movflags", "+faststart", str(tmp_path / "src.m4a"))
    _ffmpeg("-i", str(src), "-c:a", "aac", "-f", "adts", str(tmp_path / "src.aac"))
    full.update({"t.mp3": tmp_path / "src.mp3", "t.m4a": tmp_path / "src.m4a", "t.aac": tmp_path / "src.aac"})
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, path in full.items():
        data = path.read_bytes()
        cut = _inside_adts_frame(data, int(len(data) * 0.6)) if name.endswith(".aac") else int(len(data) * 0.6)
        (bad / name).write_bytes(data[:cut])
    good = _copy(speech, bad / "good.wav")
    out = tmp_path / "out"
    res = transcribe(*(str(bad / n) for n in full), str(good), "--output-dir", str(out))
    assert_errors(res, *full)
    assert all("truncated" in e for e in error_lines(res))
    assert sorted(p.name for p in out.iterdir()) == ["good.txt"]


# --- row 12: an existing output file is overwritten without a word -------------------------------------

def test_row12_existing_output_is_kept_unless_overwrite(speech, tmp_path):
    x, y = _copy(speech, tmp_path / "x.wav"), _copy(speech, tmp_path / "y.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.txt").write_text("keep\n")
    res = transcribe(str(x), str(y), "--output-dir", str(out))
    assert_errors(res, "x.txt")
    assert "--overwrite" in error_lines(res)[0]
    assert (out / "x.txt").read_text() == "keep\n"
    assert (out / "y.txt").read_text().strip()
    res = transcribe(str(x), "--output-dir", str(out), "--overwrite")
    assert res.returncode == 0, res.stderr
    assert (out / "x.txt").read_text() == (out / "y.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["x.txt", "y.txt"]  # no temporary files left


def test_row12_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from streamer import output as output_module
    dest = tmp_path / "x.txt"
    dest.write_text("keep\n")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        output_module.write_atomic(dest, "new text\n", overwrite=True)
    assert dest.read_text() == "keep\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


# === Files that lie about themselves ====================================================================

def _ogg_pages(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every Ogg page in ``data``."""
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS", pos
        count = data[pos + 26]
        end = pos + 27 + count + sum(data[pos + 27:pos + 27 + count])
        pages.append((pos, end))
        pos = end
    return pages


def _lying_audio(speech: Path, folder: Path) -> dict[str, Path]:
    """Truncated Ogg Vorbis / Opus (cut inside a page, and cut between pages) and a WAV claiming 1 Hz."""
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    x, rate = sf.read(speech, dtype="float32")
    made = {}
    for name, subtype in (("v.ogg", "VORBIS"), ("o.opus", "OPUS")):
        whole = folder / f"whole-{name}"
        sf.write(whole, x, rate, format="OGG", subtype=subtype)
        data = whole.read_bytes()
        made[f"cut-{name}"] = folder / f"cut-{name}"
        made[f"cut-{name}"].write_bytes(data[:int(len(data) * 0.6)])
        pages = _ogg_pages(data)
        made[f"paged-{name}"] = folder / f"paged-{name}"  # whole pages, the last ones (and the EOS flag) gone
        made[f"paged-{name}"].write_bytes(data[:pages[len(pages) * 6 // 10][1]])
    data = bytearray((speech.parent / "good.wav").read_bytes())
    fmt = data.find(b"fmt ")
    struct.pack_into("<II", data, fmt + 12, 1, 2)  # 1 Hz, 2 bytes per second
    made["one-hertz.wav"] = folder / "one-hertz.wav"
    made["one-hertz.wav"].write_bytes(bytes(data))
    return made


def test_truncated_ogg_and_lying_rates_are_errors_through_the_api(speech, tmp_path):
    made = _lying_audio(speech, tmp_path)
    for name in ("v.ogg", "o.opus"):
        assert len(audio.load_audio(tmp_path / f"whole-{name}")) > 30000  # the whole files still read
    for name, path in made.items():
        with deadline(30), pytest.raises(AudioError) as err:
            audio.load_audio(path)
        expected = "sample rate of 1 Hz" if name == "one-hertz.wav" else "truncated"
        assert expected in str(err.value) and name in str(err.value)
    assert "4000 to 384000 Hz" in str(err.value)


@pytest.mark.parametrize("rate", [1000, 2000, 3999, 384001, 768000])
def test_array_rates_share_the_file_range(rate):
    with pytest.raises(AudioError, match="4000 to 384000"):
        prepare_array(np.zeros(8000, dtype=np.float32), rate)


def test_decoded_audio_is_bounded_by_the_file_size(speech, tmp_path, monkeypatch):
    """Whatever a header claims, a file cannot decode to more audio than its size holds."""
    monkeypatch.setattr(audio, "MIN_BYTES_PER_SECOND", 1e6)  # the 2.5-s good.wav (80 KB) now "holds" < 1.1 s
    with pytest.raises(AudioError, match="more than a file of"):
        audio.load_audio(speech)


def test_lying_audio_in_a_batch_is_one_error_each(speech, tmp_path):
    made = _lying_audio(speech, tmp_path / "in")
    good = _copy(speech, tmp_path / "in" / "good.wav")
    res = transcribe(*(str(p) for p in made.values()), str(good), "--output-dir", str(tmp_path / "out"))
    assert_errors(res, *made)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.txt"]


def _hf_with_vocab(hf_folder: Path, tmp_path: Path, vocab_text: str, added: str | None = None) -> Path:
    folder = tmp_path / "hf"
    folder.mkdir()
    for p in hf_folder.iterdir():
        if p.name != "vocab.json":
            os.symlink(p, folder / p.name)
    (folder / "vocab.json").write_text(vocab_text)
    if added is not None:
        (folder / "added_tokens.json").write_text(added)
    return folder


def _vocab_items(hf_folder: Path) -> list[tuple[str, int]]:
    return sorted(json.loads((hf_folder / "vocab.json").read_text()).items(), key=lambda kv: kv[1])


def _as_json(items: list[tuple[str, object]]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items) + "}"


@pytest.mark.parametrize("case, fragment", [
    ("duplicate id", "share id 6"),
    ("duplicate token", "'a' appears twice"),
    ("gap", "no token has id [7]"),
    ("fewer than the head", "holds 11 tokens"),
    ("more than the head", "expected an id from 0 to 11"),
    ("string id", "expected an integer"),
])
def test_hf_vocab_that_lies_is_one_checkpoint_error(hf_folder, tmp_path, case, fragment):
    items = _vocab_items(hf_folder)
    assert [i for _, i in items] == list(range(12)) and items[5][0] == "a"
    if case == "duplicate id":
        items[5] = (items[5][0], 6)  # 'a' now shadows 'b' (or is shadowed by it)
    elif case == "duplicate token":
        items.append(("a", 12))
    elif case == "gap":
        items[7] = (items[7][0], 40)
        items = [(t, i) for t, i in items if i != 40]
    elif case == "fewer than the head":
        items = items[:-1]
    elif case == "more than the head":
        items.append(("zz", 12))
    elif case == "string id":
        items[5] = ("a", "5")
    folder = _hf_with_vocab(hf_folder, tmp_path, _as_json(items))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_hf_added_tokens_complete_the_head(hf_folder, tmp_path):
    """<s> and </s> often live in added_tokens.json: they count, and a clash with vocab.json is refused."""
    items = _vocab_items(hf_folder)
    ok = _hf_with_vocab(hf_folder, tmp_path, _as_json(items[:-2]), _as_json(items[-2:]))
    assert load_checkpoint(ok).vocab.tokens[-2:] == tuple(t for t, _ in items[-2:])
    clash = tmp_path / "clash"
    clash.mkdir()
    bad = _hf_with_vocab(hf_folder, clash, _as_json(items[:-2]), _as_json([(items[-2][0], 5), items[-1]]))
    with pytest.raises(CheckpointError, match="share id 5"):
        load_checkpoint(bad)


@pytest.mark.parametrize("architectures", [1.0, "Wav2Vec2ForCTC", [1], {"a": "Wav2Vec2ForCTC"}])
def test_hf_architectures_not_a_list_of_names_is_refused(hf_folder, tmp_path, architectures):
    folder = tmp_path / "hf"
    folder.mkdir()
    for p in hf_folder.iterdir():
        if p.name != "config.json":
            os.symlink(p, folder / p.name)
    config = json.loads((hf_folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": architectures}))
    with pytest.raises(CheckpointError, match="list of class names") as err:
        load_checkpoint(folder)
    assert "\n" not in str(err.value)


# --- exported programs: damaged, edited, or paired with another model ---------------------------------

def _program_bytes(body: int = 3000, segments: int = 1000, seed: int = 0) -> bytes:
    """A file laid out like an ExecuTorch program: root offset, identifier, extended header, program
    bytes, then segment bytes (random content: these tests must never reach the runtime)."""
    program_size = 40 + body
    header = ((60).to_bytes(4, "little") + b"ET12" + b"eh00" + (32).to_bytes(4, "little")
              + program_size.to_bytes(8, "little") + program_size.to_bytes(8, "little")
              + segments.to_bytes(8, "little"))
    return header + np.random.default_rng(seed).bytes(body + segments)


def _sidecar_dict(model_dir: Path, program: Path) -> dict:
    """A valid sidecar for ``program`` (its real size and checksum), built as the exporter builds it."""
    from streamer.export.executorch import step_module
    from streamer.export.sidecar import ProgramFile, Sidecar, StateEntry
    from streamer.streaming import StreamingConfig, StreamingEncoder

    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    layout = step_module(StreamingEncoder(ck.model, cfg, trim_invalid=False), rewritten=False).layout()
    state = tuple(StateEntry(e["name"], tuple(e["shape"]), e["dtype"], e["next"]) for e in layout)
    return Sidecar(program=ProgramFile.of(program), model=ck.identity, streaming=cfg, vocabulary=ck.vocab,
                   preprocess=ck.preprocess, encoder=ck.config, state=state, input_padding_bytes=128).to_dict()


def _write_program(folder: Path, data: bytes, sidecar: dict | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.pte").write_bytes(data)
    (folder / "s.json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    return folder / "s.pte"


@pytest.fixture
def no_runtime(monkeypatch):
    """Fails a test whose program reaches the ExecuTorch runtime (damage must be found before it)."""
    pytest.importorskip("executorch", reason="executorch is not installed (pip install 'streamer[export]')")
    from streamer.export import runtime

    def reached(path, etdump=False):
        raise AssertionError(f"the runtime was given {path}")

    monkeypatch.setattr(runtime, "load_program", reached)
    return runtime


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("damage, fragment", [
    ("flipped byte", "SHA-256 differs"),
    ("flipped program size", "is damaged: its segments start"),
    ("flipped segment size", "truncated: its header declares"),
    ("cut", "truncated: its header declares"),
    ("padded", "damaged: its header declares"),
    ("text", "found text"),
    ("short", "too short for its header"),
    ("another identifier", "found identifier b'ET99'"),
    ("no extended header", "extended header is missing"),
])
def test_damaged_program_is_refused_before_the_runtime(model_dir, tmp_path, no_runtime, damage, fragment):
    good = _program_bytes()
    sidecar = _sidecar_dict(model_dir, _write_program(tmp_path / "good", good, "{}"))
    data = {"flipped byte": _flip(good, 2000), "flipped program size": _flip(good, 23),
            "flipped segment size": _flip(good, 33), "cut": good[:len(good) * 6 // 10], "padded": good + b"\0" * 16,
            "text": b"this is not a program\n" * 20, "short": good[:30],
            "another identifier": good[:4] + b"ET99" + good[8:], "no extended header": good[:8] + b"xxxx" + good[12:],
            }[damage]
    path = _write_program(tmp_path / "bad", data, sidecar)
    with pytest.raises(CheckpointError) as err:
        no_runtime.PteStreamingEncoder(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def _edit(sidecar: dict, edit: str) -> dict | str:
    s = json.loads(json.dumps(sidecar))
    if edit == "bad JSON":
        return json.dumps(s)[:-20]
    if edit == "not an object":
        return "[1, 2]"
    if edit == "missing key":
        del s["encoder"]
    elif edit == "extra key":
        s["bogus"] = 1
    elif edit == "older version":
        s["format_version"] = 3
    elif edit == "vocabulary one token short":
        s["vocabulary"]["tokens"].pop()
    elif edit == "string chunk":
        s["streaming"]["chunk_frames"] = "16"
    elif edit == "state shape of text":
        s["state"][0]["shape"] = ["1", 320]
    elif edit == "huge state":
        s["state"][0]["shape"] = [1 << 20, 1 << 20]
    elif edit == "state moves from nowhere":
        s["state"][0]["next"] = {"state": 99}
    elif edit == "normalize yes":
        s["preprocess"]["normalize"] = "yes"
    elif edit == "checksum of another program":
        s["program"]["sha256"] = "0" * 64
    elif edit == "size of another program":
        s["program"]["bytes"] += 1
    elif edit == "no weights digest":
        s["model"]["weights_sha256"] = "abc"
    return s


@pytest.mark.parametrize("edit, fragment", [
    ("bad JSON", "not valid JSON"),
    ("not an object", "expected a JSON object"),
    ("missing key", "missing keys ['encoder']"),
    ("extra key", "unknown keys ['bogus']"),
    ("older version", "export the program again"),
    ("vocabulary one token short", "encoder.vocab_size"),
    ("string chunk", "streaming chunk"),
    ("state shape of text", "state[0].shape"),
    ("huge state", "state[0].shape"),
    ("state moves from nowhere", "state[0].next"),
    ("normalize yes", "preprocess.normalize"),
    ("checksum of another program", "SHA-256 differs"),
    ("size of another program", "its sidecar recorded"),
    ("no weights digest", "model.weights_sha256"),
])
def test_edited_sidecar_is_one_checkpoint_error(model_dir, tmp_path, no_runtime, edit, fragment):
    good = _program_bytes()
    path = _write_program(tmp_path, good, "{}")
    path = _write_program(tmp_path, good, _edit(_sidecar_dict(model_dir, path), edit))
    with pytest.raises(CheckpointError) as err:
        no_runtime.PteStreamingEncoder(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_damaged_program_on_the_command_line_is_one_error(model_dir, speech, tmp_path):
    pytest.importorskip("executorch", reason="executorch is not installed (pip install 'streamer[export]')")
    good = _program_bytes()
    sidecar = _sidecar_dict(model_dir, _write_program(tmp_path / "good", good, "{}"))
    path = _write_program(tmp_path / "bad", _flip(good, 20), sidecar)
    res = run_cli("transcribe", str(speech), "--pte", str(path), "--no-lm", "--quiet", timeout=120)
    assert_errors(res, "s.pte")
    assert res.returncode == 1


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory) -> Path:
    """A real program of the tiny test model (cached, 0.32 s, fp32) and its sidecar."""
    pytest.importorskip("executorch", reason="executorch is not installed (pip install 'streamer[export]')")
    from streamer.export.executorch import ExportConfig, export_streaming
    from streamer.streaming import StreamingConfig

    out = tmp_path_factory.mktemp("pte") / "s.pte"
    return export_streaming(load_checkpoint(model_dir), ExportConfig(StreamingConfig.from_seconds("cached", 0.32),
                                                                     "none"), out)


def _edited_copy(exported: Path, folder: Path, edit) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported, folder / "s.pte")
    sidecar = json.loads(exported.with_suffix(".json").read_text())
    edit(sidecar)
    (folder / "s.json").write_text(json.dumps(sidecar))
    return folder / "s.pte"


def _shorter_vocabulary(s: dict) -> None:
    s["vocabulary"]["tokens"].pop()
    s["encoder"]["vocab_size"] -= 1


@pytest.mark.slow
@pytest.mark.parametrize("edit, fragment", [
    (lambda s: s["streaming"].update(chunk_frames=32, left_frames=64), "chunk_samples"),
    (_shorter_vocabulary, "vocab_size"),
    (lambda s: s["state"][0].update(shape=[1, 99]), "forward input 2"),
    (lambda s: s["state"][1].update(dtype="float32"), "forward input 3"),
    (lambda s: s["vocabulary"].update(blank_id=1), "blank_id"),
    (lambda s: s["state"][0].update(next={"output": 99}), "state output 99"),
], ids=["chunk", "vocabulary size", "state shape", "state dtype", "blank", "next from nowhere"])
def test_sidecar_is_checked_against_its_program(exported, tmp_path, edit, fragment):
    from streamer.export.runtime import PteStreamingEncoder

    assert PteStreamingEncoder(exported).config.chunk_frames == 16
    with pytest.raises(CheckpointError, match="disagree") as err:
        PteStreamingEncoder(_edited_copy(exported, tmp_path, edit))
    assert fragment in str(err.value)


@pytest.mark.slow
def test_real_program_with_a_damaged_header_never_aborts(exported, tmp_path):
    """Each byte of the header flipped in turn: one error each, in a child process (the runtime's own
    checks abort the process on some of these)."""
    data = exported.read_bytes()
    paths = []
    for at in range(4, 40):
        folder = tmp_path / f"at{at}"
        folder.mkdir()
        (folder / "s.pte").write_bytes(_flip(data, at))
        shutil.copyfile(exported.with_suffix(".json"), folder / "s.json")
        paths.append(str(folder / "s.pte"))
    code = ("import sys\nfrom streamer.export.runtime import PteStreamingEncoder\nfrom streamer.errors import "
            "CheckpointError\nfor p in sys.argv[1:]:\n    try:\n        PteStreamingEncoder(p)\n        print('LOADED', p)\n"
            "    except CheckpointError as e:\n        print('ERROR', e)\n")
    res = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == len(paths) and all(line.startswith("ERROR pte: ") for line in lines), res.stdout


@pytest.mark.slow
def test_program_paired_with_another_model_is_refused(exported, model_dir, tmp_path, speech):
    import torch

    from streamer.checkpoint import save_checkpoint
    from streamer.model import Wav2Vec2CTC

    ck = load_checkpoint(model_dir)
    torch.manual_seed(1)
    twin = Wav2Vec2CTC(ck.config)  # same architecture and vocabulary, other weights
    twin.reset_parameters()
    twin_dir = save_checkpoint(tmp_path / "twin", twin.eval(), ck.vocab)
    x = np.zeros(16000, np.float32)
    paired = streamer.Recognizer.load(model_dir, lm=None, step_program=exported, stream_files=True)  # its own model
    eager = streamer.Recognizer.load(model_dir, lm=None, streaming=paired.config.streaming, stream_files=True)
    assert paired.transcribe(x).text == eager.transcribe(x).text
    with pytest.raises(ConfigError, match="the weights differ"):
        streamer.Recognizer.load(twin_dir, lm=None, step_program=exported)
    res = run_cli("transcribe", str(speech), "--pte", str(exported), "--model", MODEL, "--no-lm", "--quiet", timeout=120)
    assert_errors(res, "exported from another model")
    assert "configuration and weights differ" in error_lines(res)[0]


# === Encoding and parse errors ===========================================================================

def test_non_utf8_word_list_is_one_error(speech, tmp_path):
    from streamer.decoding.lm_bundle import LmBundle

    lm = tmp_path / "lm"
    lm.mkdir()
    shutil.copyfile(Path(MODEL) / "lm" / "lm.binary", lm / "lm.binary")
    words = (Path(MODEL) / "lm" / "lm.unigrams.txt").read_text(encoding="utf-8")
    (lm / "lm.unigrams.txt").write_bytes(words.encode("utf-8") + "café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"expected UTF-8 text in .*lm\.unigrams\.txt, found the byte 0xe9"):
        LmBundle.for_file(lm / "lm.binary").words()
    res = run_cli("transcribe", str(speech), "--model", MODEL, "--lm", str(lm / "lm.binary"), "--quiet", timeout=120)
    assert_errors(res, "lm.unigrams.txt")


def test_latin1_manifest_and_bad_lengths_name_their_line(speech, tmp_path):
    from streamer.train.data import read_manifest

    folder = tmp_path / "data"
    manifest = _manifest(speech, folder, ["good.wav\tshe was", "good.wav\tyellow"])
    manifest.write_bytes("good.wav\tshe was\ngood.wav\tcafé au lait\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"train\.tsv:2: expected UTF-8 text .* 0xe9"):
        read_manifest(manifest)
    manifest.write_text("good.wav\tshe was\ngood.wav\tyellow\n")
    lengths = folder / "train.lengths"
    for text, line in (("2.5\nabc\n", 2), ("nan\n2.5\n", 1), ("2.5\n-1\n", 2), ("inf\n2.5\n", 1), ("2.5\n1e9\n", 2)):
        lengths.write_text(text)
        with pytest.raises(ConfigError, match=rf"train\.lengths:{line}: expected a duration"):
            read_manifest(manifest)
    lengths.write_bytes(b"2.5\n\xff\n")
    with pytest.raises(ConfigError, match=r"train\.lengths:2: expected UTF-8"):
        read_manifest(manifest)


def test_missing_audio_names_its_manifest_line_also_with_lengths(speech, tmp_path):
    from streamer.train.data import read_manifest

    manifest = _manifest(speech, tmp_path / "data", ["good.wav\tshe was", "gone.wav\tyellow"])
    (tmp_path / "data" / "train.lengths").write_text("2.5\n2.5\n")
    with pytest.raises(ConfigError, match=r"train\.tsv:2: .*gone\.wav: no such file"):
        read_manifest(manifest)


def _lm_build(capsys, *args: str) -> tuple[int, list[str]]:
    """``streamer lm build ARGS`` in this process (the guard of `streamer.cli.main`): exit code and stderr lines."""
    from streamer import cli

    code = cli.main(["lm", "build", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return code, err.splitlines()


@pytest.mark.parametrize("case, fragment", [
    ("binary corpus", "expected UTF-8 text, found the byte"),
    ("latin-1 corpus", "found the byte 0xe9 on line 2"),
    ("NUL bytes", "found a NUL byte on line 1"),
    ("empty --vocab", "found an empty object"),
    ("--vocab of strings", "integer ids"),
    ("--model bad JSON", "config.json is not valid JSON"),
    ("--model without vocabulary", "section 'vocabulary'"),
    ("--model duplicate key", "appears twice"),
    ("-o under a file", "is a file, expected a folder"),
    ("-o in /proc", "/proc"),
    ("-o a folder", "is a folder"),
])
def test_lm_build_parse_errors_are_one_line(tmp_path, capsys, case, fragment):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("she was wearing yellow\nthe cat sat\n")
    out = tmp_path / "out" / "lm.binary"
    extra: list[str] = []
    if case == "binary corpus":
        corpus.write_bytes(np.random.default_rng(0).bytes(4000))
    elif case == "latin-1 corpus":
        corpus.write_bytes("the cat sat\ncafé au lait\n".encode("latin-1"))
    elif case == "NUL bytes":
        corpus.write_bytes(b"the cat\x00sat\n")
    elif "--vocab" in case:
        (tmp_path / "vocab.json").write_text("{}" if case == "empty --vocab" else '{"<pad>": "0", "a": "1"}')
        extra = ["--vocab", str(tmp_path / "vocab.json")]
    elif case.startswith("--model"):
        model = tmp_path / "model"
        model.mkdir()
        config = json.loads((Path(MODEL) / "config.json").read_text())
        if case == "--model bad JSON":
            text = json.dumps(config)[:-30]
        elif case == "--model without vocabulary":
            del config["vocabulary"]
            text = json.dumps(config)
        else:
            text = json.dumps(config)[:-1] + ', "vocabulary": {}}'
        (model / "config.json").write_text(text)
        extra = ["--model", str(model)]
    elif case == "-o under a file":
        (tmp_path / "blocker").write_text("keep\n")
        out = tmp_path / "blocker" / "lm.binary"
    elif case == "-o in /proc":
        out = Path("/proc/streamer-lm/lm.binary")
    elif case == "-o a folder":
        out = tmp_path / "folder.binary"
        out.mkdir()
    code, lines = _lm_build(capsys, str(corpus), "-o", str(out), *extra)
    errors = [line for line in lines if "error:" in line]
    assert code == 1 and len(errors) == 1 and fragment in errors[0], lines
    assert not (tmp_path / "out").exists()  # refused before anything was written
    if case == "-o under a file":
        assert (tmp_path / "blocker").read_text() == "keep\n"


def test_lm_help_exits_zero(capsys):
    from streamer import cli

    for argv in (["lm", "--help"], ["lm", "build", "--help"]):
        assert cli.main(argv) == 0
        assert "usage:" in capsys.readouterr().out


# === Boundaries of the API and options ===================================================================

@pytest.mark.parametrize("sample", [math.nan, math.inf, 1600.5, "1600", True, -1, 10**15])
def test_skip_to_refuses_what_is_not_a_sample(rec, sample):
    stream = rec.create_stream()
    rec.feed(stream, np.zeros(3200, dtype=np.float32))
    with deadline(30), pytest.raises(ConfigError, match="skip_to"):
        rec.skip_to(stream, sample)
    events = rec.feed(stream, np.zeros(16000, dtype=np.float32))  # the stream goes on
    assert stream.samples_received == 19200 and events


def test_skip_to_takes_integral_floats(rec):
    stream = rec.create_stream()
    rec.feed(stream, np.zeros(3200, dtype=np.float32))
    rec.skip_to(stream, 8000.0)
    assert stream.samples_received == 8000


@pytest.mark.parametrize("first, flags", [
    (10**12, [True]), (-1, [True]), (1.5, [True]), (math.nan, [True]), (0, [[True, False]]), (0, ["yes"]),
])
def test_speech_flags_are_checked(rec, first, flags):
    stream = rec.create_stream()
    with deadline(30), pytest.raises(ConfigError, match="accept_speech_flags"):
        stream.accept_speech_flags(first, np.asarray(flags))


@pytest.mark.parametrize("shape", [(10, 16000), (16000, 10), (4, 6), (8, 8)])
def test_ambiguous_array_layouts_are_refused(rec, shape):
    x = np.zeros(shape, dtype=np.float32)
    with pytest.raises(AudioError, match="ambiguous layout"):
        prepare_array(x)
    with pytest.raises(AudioError, match="ambiguous layout"):
        rec.feed(rec.create_stream(), x)


def test_unambiguous_layouts_still_read():
    x = np.arange(16000, dtype=np.float32) / 16000
    for layout in (x, x[None], x[:, None], np.stack([x, x], 1), np.stack([x, x])):
        assert np.allclose(prepare_array(layout), x)


def test_two_threads_feeding_one_stream_are_serialized(rec, speech):
    """Unserialized, the two feeders race on the stream's buffers (the failure is intermittent, so many
    small blocks make it likely); serialized, every sample is taken once and the stream ends cleanly."""
    import threading

    x, _ = sf.read(speech, dtype="float32")
    x = np.tile(x, 2)
    stream = rec.create_stream()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def feeder() -> None:
        barrier.wait()
        try:
            for i in range(0, len(x), 160):
                rec.feed(stream, x[i:i + 160])
        except BaseException as err:  # noqa: BLE001  (any failure fails the test below)
            errors.append(err)

    threads = [threading.Thread(target=feeder) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert stream.samples_received == 2 * len(x)
    rec.input_finished(stream)
    assert stream.done


@pytest.mark.parametrize("options, fragment", [
    (["--beam", "1000000"], "beam_width"),
    (["--alpha", "1e9"], "alpha"),
    (["--beta", "1e6"], "beta"),
    (["--hotword-weight", "1e6"], "hotword_weight"),
    (["--hotword", "x" * 500], "hotwords"),
], ids=lambda o: " ".join(o) if isinstance(o, list) else o)
def test_unbounded_decoder_options_are_refused(speech, capsys, options, fragment):
    from streamer import cli

    code = cli.main(["transcribe", str(speech), "--model", MODEL, "--quiet", *options])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and fragment in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("field, value", [
    ("max_utterance_seconds", 6000.0), ("max_batch_seconds", 1e9), ("grad_accum", 10**9), ("threads", 100000),
    ("peak_lr", 1e6), ("buckets", 10**6), ("max_steps", 10**12), ("seed", -1), ("clip_grad", math.nan),
])
def test_training_options_have_ranges(field, value):
    from streamer.train.config import TrainConfig

    with pytest.raises(ConfigError, match=field):
        TrainConfig(train_manifests=("x.tsv",), out_dir="run", **{field: value})


def test_training_never_builds_a_row_over_the_batch_budget():
    """A 600-s utterance (a .lengths file that lies, say) cannot make a 600-s batch row."""
    from streamer.train.bank import ShapeBuckets

    with pytest.raises(ConfigError, match="does not fit the batch budget"):
        ShapeBuckets.fit([16000 * 2, 16000 * 600], max_batch_seconds=10.0, count=2)
    fitted = ShapeBuckets.fit([16000 * 2, 16000 * 9], max_batch_seconds=10.0, count=2, pad_samples=4800)
    assert all(r * w <= 10 * 16000 + 4800 + 16000 for r, w in zip(fitted.rows, fitted.widths))


def test_training_leaves_out_audio_longer_than_its_lengths_file_says(speech, tmp_path):
    import torch

    from streamer.train.bank import load_source
    from streamer.vocab import english_characters

    x, rate = sf.read(speech, dtype="float32")
    folder = tmp_path / "data"
    folder.mkdir()
    sf.write(folder / "long.wav", np.tile(x, 8), rate)  # 20 s
    _copy(speech, folder / "good.wav")
    (folder / "train.tsv").write_text("good.wav\tshe was\nlong.wav\tshe was\n")
    (folder / "train.lengths").write_text("2.5\n2.5\n")  # the second line lies
    source, skipped = load_source([folder / "train.tsv"], english_characters(), torch.device("cpu"), max_seconds=10.0)
    assert skipped == 1 and len(source) == 1


def test_mic_seconds_are_bounded(rec):
    from streamer.frontend.live import run_mic

    for seconds in (math.nan, -1.0, 0.0, 1e12):
        with pytest.raises(ConfigError, match="mic seconds"):
            run_mic(rec, seconds=seconds)


# === Small ones ============================================================================================

def test_a_newline_in_a_file_name_stays_on_one_error_line(speech, tmp_path):
    odd = tmp_path / "two\nlines.wav"
    res = transcribe(str(odd), str(speech), timeout=120)
    assert_errors(res, "two\\nlines.wav")
    assert "no such file" in error_lines(res)[0]


def test_preprocess_normalize_must_be_a_boolean(tmp_path):
    folder = _edited_model(tmp_path, lambda c: c.update(preprocess={"normalize": "yes"}))
    with pytest.raises(CheckpointError, match="preprocess.normalize: expected true or false"):
        load_checkpoint(folder)
