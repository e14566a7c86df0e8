"""The command line end to end, on a tiny random-weight model saved to a temporary folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from streamer.checkpoint import save_checkpoint
from streamer.model import Wav2Vec2CTC
from streamer.model.config import tiny_config
from streamer.vocab import english_characters

SRT_TIME = re.compile(r"^\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}$")
VTT_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}:\d{2}\.\d{3}$")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    m = Wav2Vec2CTC(tiny_config())
    m.reset_parameters()
    model = save_checkpoint(root / "model", m.eval(), english_characters())
    rng = np.random.default_rng(0)
    files = []
    for i, sec in enumerate([2.5, 6.0]):
        p = root / f"clip{i}.wav"
        sf.write(p, (rng.standard_normal(int(sec * 16000)) * 0.1).astype(np.float32), 16000)
        files.append(p)
    return root, model, files


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", *args], capture_output=True, text=True, timeout=300)


def test_formats_written_and_valid(setup):
    root, model, files = setup
    out = root / "out"
    for fmt in ("txt", "json", "srt", "vtt"):
        res = _run("transcribe", *map(str, files), "--model", str(model), "--no-lm", "--format", fmt, "--output-dir", str(out))
        assert res.returncode == 0, res.stderr
        assert "transcribed 2/2 file(s)" in res.stderr
    data = json.loads((out / "clip1.json").read_text())
    assert abs(data["duration"] - 6.0) < 1e-3
    assert data["info"]["decoder"] == "greedy"
    for seg in data["segments"]:
        assert 0 <= seg["start"] <= seg["end"] <= 6.0 + 1e-3
    srt = (out / "clip1.srt").read_text().strip().split("\n\n")
    for i, cue in enumerate(srt, 1):
        lines = cue.split("\n")
        assert lines[0] == str(i) and SRT_TIME.match(lines[1]) and lines[2].strip()
    vtt = (out / "clip1.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    for cue in vtt.strip().split("\n\n")[1:]:
        assert VTT_TIME.match(cue.split("\n")[0])
    clip0 = json.loads((out / "clip0.json").read_text())
    assert " ".join((out / "clip0.txt").read_text().split("\n")).strip() == clip0["text"]


def test_stdout_and_streaming_mode_same_format(setup):
    _, model, files = setup
    res = _run("transcribe", str(files[0]), "--model", str(model), "--no-lm", "--format", "json",
               "--streaming", "window", "--chunk", "0.32")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["info"]["mode"] == "streaming-window"
    assert abs(data["duration"] - 2.5) < 1e-3


def test_bad_file_in_a_batch(setup, tmp_path):
    _, model, files = setup
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    missing = tmp_path / "missing.flac"
    out = tmp_path / "out"
    res = _run("transcribe", str(files[0]), str(bad), str(missing), str(files[1]), "--model", str(model), "--no-lm",
               "--output-dir", str(out))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("notes.wav" in e and "not a readable audio file" in e for e in errors)
    assert any("missing.flac" in e and "no such file" in e for e in errors)
    assert (out / "clip0.txt").exists() and (out / "clip1.txt").exists()
    assert "transcribed 2/4 file(s)" in res.stderr and "2 failed" in res.stderr


def test_bad_model_is_one_line(tmp_path):
    res = _run("transcribe", str(tmp_path / "x.wav"), "--model", str(tmp_path))
    assert res.returncode == 1
    assert res.stderr.strip().startswith("error:") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_help_lists_commands():
    res = _run("--help")
    assert res.returncode == 0
    for cmd in ("transcribe", "mic", "train", "lm", "models"):
        assert cmd in res.stdout


@pytest.mark.parametrize("option", [["--chunk", "1000"], ["--chunk", "0"], ["--chunk", "-1"], ["--chunk", "nan"],
                                    ["--right", "1e9"], ["--threads", "-1"]])
def test_out_of_range_options_are_usage_errors(setup, option):
    """Refused by the config dataclasses before the model loads: one error line, exit 2."""
    _, model, files = setup
    res = _run("transcribe", str(files[0]), "--model", str(model), "--no-lm", "--streaming", "cached", *option)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option[0].strip("-") in lines[0]


def test_config_from_options_repeats_no_default():
    """Options the user did not give leave the library's defaults; given ones replace exactly their field."""
    from dataclasses import replace

    from streamer.cli import _config, build_parser
    from streamer.endpoint import PRESETS
    from streamer.recognizer import RecognizerConfig
    from streamer.streaming import StreamingConfig

    parse = build_parser().parse_args
    assert _config(parse(["transcribe", "x.wav"])) == RecognizerConfig()
    assert _config(parse(["mic"])) == RecognizerConfig()
    assert _config(parse(["mic", "--endpoint", "fast"])).endpoint == PRESETS["fast"]
    cfg = _config(parse(["transcribe", "x.wav", "--streaming", "cached", "--beam", "8", "--hotword", "paris"]))
    base = RecognizerConfig()
    assert cfg == replace(base, streaming=StreamingConfig.from_seconds("cached", 0.64), stream_files=True,
                          decoder=replace(base.decoder, beam_width=8, hotwords=("paris",)))


def test_an_unexpected_failure_is_one_line_with_exit_70(monkeypatch, capsys):
    import streamer.cli as cli

    def broken(args):
        raise RuntimeError("something nobody expected")

    monkeypatch.setitem(cli._DELEGATED, "lm", broken)
    assert cli.main(["lm", "build"]) == 70
    err = capsys.readouterr().err
    assert err.strip() == "internal error: RuntimeError: something nobody expected (run with --debug for the traceback)"
    with pytest.raises(RuntimeError):
        cli.main(["lm", "build", "--debug"])


def test_sigterm_stops_a_batch_like_ctrl_c(tmp_path):
    import signal

    rng = np.random.default_rng(0)
    for i in range(20):
        sf.write(tmp_path / f"noise{i}.wav", (rng.standard_normal(16000 * 30) * 0.05).astype(np.float32), 16000)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "transcribe", *sorted(map(str, tmp_path.glob("*.wav"))),
                             "--no-lm", "--output-dir", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and any(out.glob("*.txt"))):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    written = list(out.iterdir())
    assert written and all(p.suffix == ".txt" and not p.name.startswith(".") for p in written)  # no temporary file
    assert len(written) < 20
