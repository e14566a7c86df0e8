"""`streamer batch`: worker processes and Ray write what the serial `streamer transcribe` writes.

The serial path is `streamer transcribe FILES --output-dir` (the same naming rules and renderers);
the batch's outputs must be byte-identical to it, a bad file must be reported without stopping the
batch, and a rerun must skip what is done. Both sides run with one CPU thread per process, so the
arithmetic is the same.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from streamer.batch import read_file_list
from streamer.cli import main
from streamer.errors import ConfigError


def _files(folder, rng) -> list:
    """Three short recordings (two share a name in different folders) and a file that is not audio."""
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "a.wav", folder / "sub" / "a.wav", folder / "b.flac"]
    for i, p in enumerate(paths):
        sf.write(p, (rng.standard_normal(16000 + 4000 * i) * 0.1).astype(np.float32), 16000)
    bad = folder / "broken.wav"
    bad.write_text("not audio")
    return paths + [bad]


def _manifest(folder, files) -> str:
    lines = ["path\ttext", "# a comment"] + [f"{p.relative_to(folder)}\tignored text" for p in files]
    (folder / "files.tsv").write_text("\n".join(lines) + "\n")
    return str(folder / "files.tsv")


def _outputs(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_manifest_reading(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("path\ttext\n\n# skip\nx.wav\thello\n/abs/y.flac\n")
    assert read_file_list(manifest) == [str(tmp_path / "x.wav"), "/abs/y.flac"]
    manifest.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="found none"):
        read_file_list(manifest)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_file_list(tmp_path / "missing.tsv")


@pytest.mark.slow  # two worker processes start (and import torch): seconds each on a busy machine
def test_local_workers_equal_the_serial_path_and_resume(model_dir, tmp_path, rng, capsys):
    files = _files(tmp_path / "audio", rng)
    manifest = _manifest(tmp_path / "audio", files)
    common = ["--format", "srt", "--model", str(model_dir), "--no-lm", "--threads", "1", "--quiet"]
    assert main(["transcribe", *map(str, files), "--output-dir", str(tmp_path / "serial"), *common]) == 1
    assert main(["batch", manifest, "--output-dir", str(tmp_path / "batch"), "--workers", "2", *common]) == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "3 transcribed, 0 already done, 1 failed of 4" in err
    serial, batch = _outputs(tmp_path / "serial"), _outputs(tmp_path / "batch")
    assert sorted(batch) == ["a.srt", "b.srt", "sub/a.srt"] and batch == serial
    assert any(batch.values())  # the tiny model writes some text
    # A rerun skips what is done (here without the broken file: nothing is left to do).
    manifest = _manifest(tmp_path / "audio", files[:3])
    assert main(["batch", manifest, "--output-dir", str(tmp_path / "batch"), "--workers", "2", *common]) == 0
    assert "0 transcribed, 3 already done, 0 failed of 3" in capsys.readouterr().err
    assert _outputs(tmp_path / "batch") == serial


@pytest.mark.slow
def test_ray_local_two_workers_equal_the_serial_path(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is the 'ray' extra")
    folder = tmp_path / "audio"
    folder.mkdir()
    audio, rate = sf.read(REPO / "examples" / "hello.wav", dtype="float32")
    files = []
    for i, gain in enumerate((1.0, 0.5, 0.8, 0.3)):  # the bundled model on four takes of the example
        files.append(folder / f"take{i}.wav")
        sf.write(files[-1], audio[: len(audio) - 1600 * i] * gain, rate)
    shutil.copy(REPO / "examples" / "hello.txt", folder / "broken.wav")
    files.append(folder / "broken.wav")
    manifest = _manifest(folder, files)
    common = ["--format", "srt", "--threads", "1", "--quiet"]
    assert main(["transcribe", *map(str, files), "--output-dir", str(tmp_path / "serial"), *common]) == 1
    assert main(["batch", manifest, "--output-dir", str(tmp_path / "ray"), "--ray", "--workers", "2", *common]) == 1
    err = capsys.readouterr().err
    assert "4 transcribed, 0 already done, 1 failed of 5" in err and "on 2 Ray worker(s)" in err
    ray_out = _outputs(tmp_path / "ray")
    assert len(ray_out) == 4 and all(ray_out.values()) and ray_out == _outputs(tmp_path / "serial")
    # Resumable: a rerun redoes only the missing output (and tries the broken file again).
    (tmp_path / "ray" / "take2.srt").unlink()
    assert main(["batch", manifest, "--output-dir", str(tmp_path / "ray"), "--ray", "--workers", "2", *common]) == 1
    assert "1 transcribed, 3 already done, 1 failed of 5" in capsys.readouterr().err
    assert _outputs(tmp_path / "ray") == ray_out
