"""Property-based fuzzing of every loader that reads a user's file.

Valid files are mutated (bytes flipped, files cut short, random bytes spliced in; JSON keys dropped or
added, values retyped) and handed to the loader. The only outcomes allowed are success or streamer's
own error type (`StreamerError`), each within a time bound (a hang fails the test instead of stalling
the suite) and a memory bound (the peak of Python and numpy allocations during the call, traced by
`tracemalloc`; a header that makes a loader allocate what the file cannot hold fails). The default suite runs a short example count per loader (a few seconds in all); the
``long`` profile, marked slow, runs many more.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import tracemalloc
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO

from streamer.errors import StreamerError

MODEL = REPO / "models" / "demo-en"
#: Seconds one loader call may take before it counts as a hang.
CALL_SECONDS = 30
#: Bytes of Python and numpy memory one loader call may hold at its peak (the files are a few MB).
CALL_BYTES = 512 * 1024 * 1024
#: Examples per loader: a short profile in the default suite, a long one behind the slow marker.
PROFILES = [pytest.param(8, id="short"), pytest.param(300, id="long", marks=pytest.mark.slow)]


@contextmanager
def bounded(seconds: int = CALL_SECONDS):
    def expired(signum, frame):
        raise TimeoutError(f"loader still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def loads_or_refuses(call: Callable[[], Any]) -> None:
    """Runs a loader: success or a StreamerError pass; anything else (a hang, or a peak of traced memory
    over `CALL_BYTES`) fails the example."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        with bounded():
            try:
                call()
            except StreamerError as err:
                assert "\n" not in str(err), str(err)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not tracing:
            tracemalloc.stop()
    assert peak < CALL_BYTES, f"loader held {peak / 2**20:.0f} MiB at its peak"


def run(examples: int, strategy: st.SearchStrategy, check: Callable[[Any], None]) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=examples < 50,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def inner(value: Any) -> None:
        check(value)

    inner()


# --- mutations ------------------------------------------------------------------------------------------

class _Drawer:
    """``draw`` of a composite strategy as an object with a ``draw`` method (like ``st.data()``)."""

    def __init__(self, draw: Callable) -> None:
        self.draw = draw


def byte_mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with bytes flipped, cut short, or random bytes spliced in (one to three edits)."""
    n = len(data)

    def flip(d: _Drawer) -> bytes:
        out = bytearray(data)
        for _ in range(d.draw(st.integers(1, 8))):
            i = d.draw(st.integers(0, n - 1))
            out[i] ^= d.draw(st.integers(1, 255))
        return bytes(out)

    def cut(d: _Drawer) -> bytes:
        return data[:d.draw(st.integers(0, n - 1))]

    def splice(d: _Drawer) -> bytes:
        i = d.draw(st.integers(0, n))
        j = d.draw(st.integers(i, min(n, i + 64)))
        return data[:i] + d.draw(st.binary(max_size=64)) + data[j:]

    def header(d: _Drawer) -> bytes:  # the first bytes are where formats keep sizes and rates
        out = bytearray(data)
        for _ in range(d.draw(st.integers(1, 4))):
            out[d.draw(st.integers(0, min(n, 64) - 1))] = d.draw(st.integers(0, 255))
        return bytes(out)

    @st.composite
    def mutated(draw: Callable) -> bytes:
        d = _Drawer(draw)
        return d.draw(st.sampled_from([flip, cut, splice, header]))(d)

    return mutated()


_ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=False),
                        st.text(max_size=8), st.builds(list), st.builds(dict),
                        st.lists(st.integers(-5, 5), max_size=4))
# (``st.builds`` makes a new empty list or dict each time: an edit may add to it, and a shared one from
# ``st.just`` would carry that edit into later examples, which hypothesis refuses as flaky generation.)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out += _paths(v, prefix + (i,))
    return out


def json_mutations(obj: Any) -> st.SearchStrategy[str]:
    """The JSON text of ``obj`` with one to three structural edits: a key dropped or added, a value
    retyped; sometimes then byte-mutated (invalid JSON)."""
    paths = _paths(obj)

    def edit(d: _Drawer) -> str:
        value = json.loads(json.dumps(obj))
        for _ in range(d.draw(st.integers(1, 3))):
            path = d.draw(st.sampled_from(paths))
            parent = value
            try:
                for k in path[:-1]:
                    parent = parent[k]
            except (KeyError, IndexError, TypeError):
                continue
            kind = d.draw(st.sampled_from(["retype", "drop", "add"]))
            if not path:
                if kind == "retype":
                    value = d.draw(_ODD_VALUES)
                continue
            key = path[-1]
            try:
                if kind == "retype":
                    parent[key] = d.draw(_ODD_VALUES)
                elif kind == "drop":
                    del parent[key]
                elif isinstance(parent, dict):
                    parent[d.draw(st.text(max_size=6))] = d.draw(_ODD_VALUES)
                elif isinstance(parent, list):
                    parent.append(d.draw(_ODD_VALUES))
            except (KeyError, IndexError, TypeError):
                continue
        text = json.dumps(value)
        if d.draw(st.integers(0, 4)) == 0:
            text = d.draw(byte_mutations(text.encode())).decode("utf-8", "replace")
        return text

    @st.composite
    def mutated(draw: Callable) -> str:
        return edit(_Drawer(draw))

    return mutated()


# --- loaders --------------------------------------------------------------------------------------------

def _model_folder(tmp: Path) -> Path:
    folder = tmp / "model"
    folder.mkdir(exist_ok=True)
    for name in ("model.safetensors",):
        if not (folder / name).exists():
            os.symlink(MODEL / name, folder / name)
    return folder


@pytest.mark.parametrize("examples", PROFILES)
def test_streamer_config_json(tmp_path, examples):
    from streamer.checkpoint import load_checkpoint

    folder = _model_folder(tmp_path)
    config = json.loads((MODEL / "config.json").read_text())

    def check(text: str) -> None:
        (folder / "config.json").write_text(text)
        loads_or_refuses(lambda: load_checkpoint(folder))

    run(examples, json_mutations(config), check)


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "tokenizer_config.json"])
@pytest.mark.parametrize("examples", PROFILES)
def test_hugging_face_files(hf_folder, tmp_path, examples, name):
    from streamer.checkpoint import load_checkpoint, model_vocabulary

    folder = tmp_path / "hf"
    folder.mkdir()
    for p in hf_folder.iterdir():
        if p.name != name:
            os.symlink(p, folder / p.name)
    original = json.loads((hf_folder / name).read_text())

    def check(text: str) -> None:
        (folder / name).write_text(text)
        loads_or_refuses(lambda: model_vocabulary(folder))
        loads_or_refuses(lambda: load_checkpoint(folder))

    run(examples, json_mutations(original), check)


@pytest.mark.parametrize("examples", PROFILES)
def test_program_sidecar(model_dir, tmp_path, examples):
    from streamer.checkpoint import load_checkpoint
    from streamer.export.executorch import step_module
    from streamer.export.sidecar import ProgramFile, Sidecar, StateEntry, verify_program_file
    from streamer.streaming import StreamingConfig, StreamingEncoder

    program = tmp_path / "s.pte"
    program.write_bytes(b"\0" * 4 + b"ET12" + bytes(200))
    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    layout = step_module(StreamingEncoder(ck.model, cfg, trim_invalid=False), rewritten=False).layout()
    sidecar = Sidecar(program=ProgramFile.of(program), model=ck.identity, streaming=cfg, vocabulary=ck.vocab,
                      preprocess=ck.preprocess, encoder=ck.config,
                      state=tuple(StateEntry(e["name"], tuple(e["shape"]), e["dtype"], e["next"]) for e in layout))
    assert Sidecar.from_dict(sidecar.to_dict()) == sidecar

    def check(text: str) -> None:
        program.with_suffix(".json").write_text(text)

        def read_and_verify() -> None:
            verify_program_file(program, Sidecar.read(program))

        loads_or_refuses(read_and_verify)

    run(examples, json_mutations(sidecar.to_dict()), check)


@pytest.mark.parametrize("examples", PROFILES)
def test_program_bytes(tmp_path, examples):
    from streamer.export.sidecar import read_program_header

    size = 4096
    good = ((60).to_bytes(4, "little") + b"ET12eh00" + (32).to_bytes(4, "little") + (1000).to_bytes(8, "little")
            + (1024).to_bytes(8, "little") + (size - 1024).to_bytes(8, "little"))
    good += bytes(size - len(good))
    path = tmp_path / "p.pte"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        loads_or_refuses(lambda: read_program_header(path))

    run(examples, byte_mutations(good), check)


@pytest.mark.parametrize("name", ["attrs.json", "lm.unigrams.txt"])
@pytest.mark.parametrize("examples", PROFILES)
def test_lm_folder(tmp_path, examples, name):
    from streamer.decoding.lm_bundle import LmBundle

    lm = tmp_path / "m" / "lm"
    lm.mkdir(parents=True)
    for p in (MODEL / "lm").iterdir():
        if p.name != name:
            os.symlink(p, lm / p.name)
    original = (MODEL / "lm" / name).read_bytes()
    if name == "lm.unigrams.txt":
        original = b"".join(original.splitlines(keepends=True)[:200])
    strategy = json_mutations(json.loads(original)) if name.endswith(".json") else byte_mutations(original)

    def check(data: str | bytes) -> None:
        (lm / name).write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)

        def read() -> None:
            bundle = LmBundle.from_model_folder(tmp_path / "m")
            if bundle is not None:
                bundle.words()

        loads_or_refuses(read)

    run(examples, strategy, check)


@pytest.mark.parametrize("lengths", [False, True], ids=["headers", "lengths-file"])
@pytest.mark.parametrize("examples", PROFILES)
def test_manifests(tmp_path, examples, lengths):
    from streamer.train.data import read_manifest

    x, rate = sf.read(REPO / "examples" / "hello.wav", dtype="float32")
    sf.write(tmp_path / "a.wav", x[:8000], rate)
    manifest = tmp_path / "train.tsv"
    good = b"a.wav\tshe was wearing\na.wav\tyellow\n"
    if lengths:
        (tmp_path / "train.lengths").write_bytes(b"0.5\n0.5\n")
        target, original = tmp_path / "train.lengths", b"0.5\n0.5\n"
        manifest.write_bytes(good)
    else:
        target, original = manifest, good

    def check(data: bytes) -> None:
        target.write_bytes(data)
        loads_or_refuses(lambda: read_manifest(manifest))

    run(examples, byte_mutations(original), check)


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> dict[str, bytes]:
    """Short (0.3 s) files of every container libsndfile reads here."""
    folder = tmp_path_factory.mktemp("audio")
    x, rate = sf.read(REPO / "examples" / "hello.wav", dtype="float32")
    x = x[rate:rate + int(0.3 * rate)]
    out = {}
    for name, kwargs in (("a.wav", {"subtype": "PCM_16"}), ("f.wav", {"subtype": "FLOAT"}), ("a.flac", {}),
                         ("a.ogg", {"format": "OGG", "subtype": "VORBIS"}), ("a.opus", {"format": "OGG", "subtype": "OPUS"})):
        sf.write(folder / name, x, rate, **kwargs)
        out[name] = (folder / name).read_bytes()
    return out


@pytest.mark.parametrize("name", ["a.wav", "f.wav", "a.flac", "a.ogg", "a.opus"])
@pytest.mark.parametrize("examples", PROFILES)
def test_audio_headers(audio_files, tmp_path, examples, name):
    from streamer.audio import load_audio

    path = tmp_path / name

    def check(data: bytes) -> None:
        path.write_bytes(data)

        def read() -> None:
            samples = load_audio(path)
            assert samples.dtype == np.float32 and samples.ndim == 1 and np.isfinite(samples).all()

        loads_or_refuses(read)

    run(examples, byte_mutations(audio_files[name]), check)
