"""Nothing written is lost: a batch's output names are planned and unique, no input is ever a target,
commands refuse what exists unless told to overwrite, writes are atomic, temporary names are short, and
an interrupt (Ctrl-C or SIGTERM) leaves the finished files and no temporary file.

Most cases run ``streamer.cli.main`` in this process (the tiny bundled model loads in well under a
second); each checks one error line per refused file, the rest of the batch written, and every file
that existed before left byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import soundfile as sf

from conftest import REPO

from streamer import cli
from streamer.errors import OutputError
from streamer.files import TEMP_PREFIX, atomic_files, check_target, is_temporary, write_atomic

MODEL = str(REPO / "models" / "demo-en")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> bytes:
    """1 s of the shipped held-out example as the bytes of a 16-kHz WAV file."""
    root = tmp_path_factory.mktemp("speech")
    x, rate = sf.read(REPO / "examples" / "hello.wav", dtype="float32")
    sf.write(root / "s.wav", x[:rate], rate)
    return (root / "s.wav").read_bytes()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def transcribe(capsys, *args: str) -> tuple[int, list[str], str]:
    """Runs ``streamer transcribe ARGS`` in this process: (exit code, error lines, stderr)."""
    code = cli.main(["transcribe", *args, "--model", MODEL, "--no-lm", "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return code, [line for line in err.splitlines() if line.startswith("error:")], err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.startswith(".")]


# --- names planned for the whole batch ------------------------------------------------------------------

def test_same_name_in_two_folders_keeps_every_transcript(speech, tmp_path, capsys, monkeypatch):
    """``d1/x.wav d2/x.wav x.wav-2.wav`` once gave three transcripts two names, even with --overwrite."""
    monkeypatch.chdir(tmp_path)
    for name in ("d1/x.wav", "d2/x.wav", "x.wav-2.wav"):
        put(tmp_path / name, speech)
    code, errors, err = transcribe(capsys, "d1/x.wav", "d2/x.wav", "x.wav-2.wav", "--output-dir", "out", "--overwrite")
    assert code == 0 and not errors, err
    written = snapshot(tmp_path / "out")
    assert sorted(written) == ["d1/x.txt", "d2/x.txt", "x.wav-2.txt"]
    assert all(text.strip() for text in written.values())
    assert "3/3" in err and "input folders' paths" in err


@pytest.mark.parametrize("inputs, fragment", [
    (["a.wav", "./a.wav"], "given twice"),
    (["A/x.wav", "a/x.wav"], "differ only in case"),
    (["a.txt/x.wav", "b/x.wav", "a.wav"], "needs a folder"),
])
def test_names_that_would_still_meet_are_refused_before_any_work(speech, tmp_path, capsys, monkeypatch,
                                                                inputs, fragment):
    monkeypatch.chdir(tmp_path)
    for name in inputs:
        put(tmp_path / name, speech)
    before = snapshot(tmp_path)
    code, errors, err = transcribe(capsys, *inputs, "--output-dir", "out")
    assert code == 1 and len(errors) == 1 and fragment in errors[0], err
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()  # refused before the folder is made


def test_an_input_is_never_its_own_target(speech, tmp_path, capsys):
    """An audio file named audio.txt, --output-dir its own folder, --overwrite: it is not replaced."""
    audio, other = put(tmp_path / "audio.txt", speech), put(tmp_path / "b.wav", speech)
    code, errors, err = transcribe(capsys, str(audio), str(other), "--output-dir", str(tmp_path), "--overwrite")
    assert code == 1 and len(errors) == 1 and "audio.txt" in errors[0] and "input" in errors[0], err
    assert audio.read_bytes() == speech
    assert (tmp_path / "b.txt").read_text().strip()  # the batch went on


def test_a_link_to_an_input_is_not_a_target(speech, tmp_path):
    from streamer.output import check_output, input_files

    audio = put(tmp_path / "in" / "talk.wav", speech)
    (tmp_path / "talk.txt").symlink_to(audio)
    with pytest.raises(OutputError, match="input"):
        check_output(tmp_path / "talk.txt", overwrite=True, inputs=input_files([audio]))


# --- long names -----------------------------------------------------------------------------------------

def test_a_250_byte_name_is_written(speech, tmp_path, capsys):
    """The temporary file's name once added 14 bytes to the final name, past the 255-byte limit."""
    audio = put(tmp_path / ("é" * 123 + ".wav"), speech)  # 250 bytes in UTF-8
    assert len(os.fsencode(audio.name)) == 250
    out = tmp_path / "out"
    code, errors, err = transcribe(capsys, str(audio), "--output-dir", str(out))
    assert code == 0 and not errors, err
    assert [len(os.fsencode(n)) for n in os.listdir(out)] == [250]


def test_names_over_the_limit_are_one_error_each_and_the_batch_goes_on(speech, tmp_path, capsys):
    good = put(tmp_path / "good.wav", speech)
    long_input = tmp_path / ("a" * 300 + ".wav")                    # cannot exist: one component > 255 bytes
    stem = "b" * 248
    twins = [put(tmp_path / f"{stem}.wav", speech), put(tmp_path / f"{stem}.au", speech)]  # outputs keep the
    out = tmp_path / "out"                                           # extension: 256 and 255 bytes
    code, errors, err = transcribe(capsys, str(long_input), *map(str, twins), str(good), "--output-dir", str(out))
    assert code == 1 and len(errors) == 2, err
    assert all("too long" in e for e in errors)
    assert sorted(len(os.fsencode(n)) for n in os.listdir(out)) == [8, 255]  # good.txt and the .au twin
    code, errors, err = transcribe(capsys, str(good), "--output-dir", str(tmp_path / ("c" * 300)))
    assert code == 1 and len(errors) == 1 and "too long" in errors[0], err


# --- commands that write one file refuse what exists ----------------------------------------------------

def test_lm_build_refuses_an_existing_model_word_list_or_folder(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\n")
    (tmp_path / "lm.binary").write_bytes(b"an older model")
    (tmp_path / "other.unigrams.txt").write_text("older words\n")
    (tmp_path / "folder.binary").mkdir()
    before = snapshot(tmp_path)
    for target in ("lm.binary", "other.binary", "folder.binary"):
        assert cli.main(["lm", "build", str(corpus), "-o", str(tmp_path / target)]) == 1
        err = capsys.readouterr().err
        assert "exists" in err or "is a folder" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(tmp_path) == before and not temporaries(tmp_path)


def test_lm_build_overwrite_replaces_model_and_word_list_together(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n")
    (tmp_path / "lm.arpa").write_text("an older model\n")
    (tmp_path / "lm.unigrams.txt").write_text("older\n")
    assert cli.main(["lm", "build", str(corpus), "-o", str(tmp_path / "lm.arpa"), "--overwrite"]) == 0, \
        capsys.readouterr().err
    assert "\\data\\" in (tmp_path / "lm.arpa").read_text()
    assert "dog" in (tmp_path / "lm.unigrams.txt").read_text().split()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "lm.arpa", "lm.unigrams.txt"]


def test_export_refuses_an_existing_program_or_sidecar_before_any_work(tmp_path, capsys):
    (tmp_path / "a.pte").write_bytes(b"an older program")
    (tmp_path / "b.json").write_text("{}\n")  # the sidecar b.pte would get
    before = snapshot(tmp_path)
    for target, fragment in (("a.pte", "a.pte"), ("b.pte", "b.json"), ("c.json", "sidecar")):
        assert cli.main(["export", "-o", str(tmp_path / target), "--model", MODEL]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and fragment in err and err.startswith("error:"), err
    assert snapshot(tmp_path) == before and not temporaries(tmp_path)


@pytest.mark.slow
def test_export_overwrite_replaces_program_and_sidecar(model_dir, tmp_path, capsys):
    pytest.importorskip("executorch", reason="the export extra is not installed")
    out = tmp_path / "s.pte"
    out.write_bytes(b"an older program")
    out.with_suffix(".json").write_text("{}\n")
    args = ["export", "-o", str(out), "--model", str(model_dir), "--quantize", "none"]
    assert cli.main(args) == 1 and "exists" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    assert json.loads(out.with_suffix(".json").read_text())["format"] == "streamer-pte"
    assert out.stat().st_size > 1000 and sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.pte"]


# --- the one writer ------------------------------------------------------------------------------------

def test_files_take_their_names_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    with pytest.raises(RuntimeError), atomic_files([a, b]) as (ta, tb):
        ta.write_bytes(b"1")
        raise RuntimeError("the work failed")
    assert not any(tmp_path.iterdir())
    with atomic_files([a, b]) as (ta, tb):
        ta.write_bytes(b"1")
        tb.write_bytes(b"2")
        assert not a.exists() and not b.exists()  # nothing under a final name until the end
    assert (a.read_bytes(), b.read_bytes()) == (b"1", b"2") and sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]


def test_a_name_taken_meanwhile_is_refused_and_the_other_given_back(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    with pytest.raises(OutputError, match="b.bin: exists"):
        with atomic_files([a, b]) as (ta, tb):
            ta.write_bytes(b"1")
            tb.write_bytes(b"2")
            b.write_bytes(b"made meanwhile")  # another writer takes b's name during the work
    assert not a.exists() and b.read_bytes() == b"made meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]


def test_folders_pipes_and_existing_files_are_never_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "old").write_text("keep\n")
    for name, overwrite, fragment in (("fifo", True, "pipe"), ("dir", True, "folder"), ("old", False, "exists")):
        with pytest.raises(OutputError, match=fragment):
            write_atomic(tmp_path / name, "new\n", overwrite=overwrite)
    assert fifo.is_fifo() and (tmp_path / "dir").is_dir() and (tmp_path / "old").read_text() == "keep\n"
    assert write_atomic(tmp_path / "old", "new\n", overwrite=True).read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "fifo", "old"]


def test_temporary_names_are_short_whatever_the_final_name(tmp_path):
    dest = tmp_path / ("x" * 255)
    seen = []
    with atomic_files([dest]) as (tmp,):
        seen.append(tmp.name)
        tmp.write_text("ok\n")
    assert dest.read_text() == "ok\n"
    assert len(seen[0]) <= 22 and seen[0].startswith(TEMP_PREFIX) and is_temporary(seen[0])
    with pytest.raises(OutputError, match="too long"):
        check_target(tmp_path / ("x" * 256))
    with pytest.raises(OutputError, match="NUL"):
        check_target(tmp_path / "a\0b")


def test_a_model_folder_is_replaced_whole_or_not_at_all(model_dir, tmp_path, monkeypatch):
    """A failure while saving a model leaves the folder as it was (no new weights beside an old config)."""
    import streamer.checkpoint as checkpoint
    from streamer.checkpoint import load_checkpoint, save_checkpoint
    from streamer.model import Wav2Vec2CTC

    folder = tmp_path / "model"
    ck = load_checkpoint(model_dir)
    save_checkpoint(folder, ck.model, ck.vocab)
    before = snapshot(folder)
    other = Wav2Vec2CTC(ck.config)
    other.reset_parameters()

    def no_json(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.json, "dumps", no_json)
    with pytest.raises(OSError):
        save_checkpoint(folder, other, ck.vocab)
    monkeypatch.undo()
    assert snapshot(folder) == before and not temporaries(folder)


def test_a_killed_writes_temporary_file_does_not_make_a_run_folder_foreign(tmp_path):
    from streamer.train.run import _check_run_folder

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    (tmp_path / f"{TEMP_PREFIX}abcd1234.tmp").write_bytes(b"")
    _check_run_folder(tmp_path)  # no error


# --- interrupts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, cli.EXIT_TERMINATED), (signal.SIGINT, cli.EXIT_INTERRUPTED)])
@pytest.mark.parametrize("moment", ["creating", "writing"])
def test_an_interrupt_during_a_write_leaves_no_temporary_file(speech, tmp_path, capsys, monkeypatch,
                                                             signum, code, moment):
    """The signal arrives just after the temporary file is created, or while it is written; either
    way the batch stops with one 'interrupted' line, the files finished are kept whole, and no
    temporary file is left."""
    files = [str(put(tmp_path / f"f{i}.wav", speech)) for i in range(3)]
    out = tmp_path / "out"
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync
    calls = {"creating": 0, "writing": 0}

    def mkstemp(*args, **kwargs):
        made = real_mkstemp(*args, **kwargs)
        calls["creating"] += 1
        if moment == "creating" and calls["creating"] == 2:  # the second file's, before its removal is owned
            signal.raise_signal(signum)
        return made

    def fsync(fd):
        calls["writing"] += 1
        if moment == "writing" and calls["writing"] == 2:
            signal.raise_signal(signum)
        real_fsync(fd)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fsync", fsync)
    assert cli.main(["transcribe", *files, "--model", MODEL, "--no-lm", "--quiet", "--output-dir", str(out)]) == code
    err = capsys.readouterr().err
    assert err.count("interrupted") == 1 and "Traceback" not in err, err
    assert not temporaries(out), temporaries(out)
    written = snapshot(out)
    assert "f0.txt" in written and "f2.txt" not in written
    assert all(text.strip() for text in written.values())  # finished files are whole


def test_sigterm_with_the_default_action_still_cleans_up(tmp_path):
    """A program using the library without a SIGTERM handler: the write finishes or is removed, then
    the signal's default action ends the process."""
    script = f"""
import signal, tempfile
from streamer.files import write_atomic
real = tempfile.mkstemp
def mkstemp(*a, **k):
    made = real(*a, **k)
    signal.raise_signal(signal.SIGTERM)
    return made
tempfile.mkstemp = mkstemp
write_atomic({str(tmp_path / 'x.txt')!r}, "whole\\n")
print("not reached")
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == -signal.SIGTERM and "not reached" not in res.stdout, res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"] and (tmp_path / "x.txt").read_text() == "whole\n"
