"""Exported == eager: the ExecuTorch program of the streaming step against StreamingEncoder.step."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("executorch", reason="executorch is not installed (pip install 'streamer[export]')")

from streamer.checkpoint import load_checkpoint  # noqa: E402
from streamer.export.executorch import ExportConfig, export_streaming  # noqa: E402
from streamer.export.runtime import PteStreamingEncoder  # noqa: E402
from streamer.export.rewrite import delegate_friendly  # noqa: E402
from streamer.recognizer import Recognizer  # noqa: E402
from streamer.results import Final  # noqa: E402
from streamer.streaming import StreamingConfig, StreamingEncoder  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _compare(pte: PteStreamingEncoder, eager: StreamingEncoder, steps: int, seed: int = 0):
    c = pte.config.chunk_samples
    x = torch.randn(1, c * steps, generator=torch.Generator().manual_seed(seed)) * 0.2
    s1, s2 = pte.init_state(), eager.init_state(1)
    worst, ref_norm, diff_norm = 0.0, 0.0, 0.0
    for i in range(steps + pte.config.flush_steps + 1):
        piece = x[:, i * c:(i + 1) * c]
        real = piece.shape[1]
        piece = torch.nn.functional.pad(piece, (0, c - real))
        n = torch.tensor([real])
        l1, v1, s1 = pte.step(piece, s1, n)
        l2, v2, s2 = eager.step(piece, s2, n)
        assert torch.equal(v1, v2)
        assert [t.dtype for t in s1.tensors] == [getattr(torch, e["dtype"]) for e in pte.meta["state"]]
        if v2.any():
            worst = max(worst, (l1 - l2)[v2].abs().max().item())
            ref_norm += l2[v2].pow(2).sum().item()
            diff_norm += (l1 - l2)[v2].pow(2).sum().item()
    return worst, (diff_norm / ref_norm) ** 0.5


@pytest.mark.parametrize("mode", ["cached", pytest.param("window", marks=pytest.mark.slow)])
def test_fp32_program_equals_eager(model_dir, tmp_path, mode):
    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds(mode, 0.32)
    path = export_streaming(ck, ExportConfig(cfg, "none"), tmp_path / f"{mode}.pte")
    worst, _ = _compare(PteStreamingEncoder(path), StreamingEncoder(ck.model, cfg), steps=6)
    assert worst <= 1e-4


@pytest.mark.slow
def test_step_reads_its_inputs_in_place(model_dir, tmp_path):
    """The step's inputs have no arena space (the runtime reads the caller's buffers, no per-step copy
    of the cache), and every input the runner hands it keeps the sidecar's padding after its data."""
    from executorch.runtime import Runtime

    from streamer.export.executorch import INPUT_PADDING_BYTES

    cfg = StreamingConfig.from_seconds("cached", 0.32)
    path = export_streaming(load_checkpoint(model_dir), ExportConfig(cfg, "none"), tmp_path / "s.pte")
    meta = Runtime.get().load_program(path).metadata("forward")
    assert meta.num_inputs() > 2 and not any(meta.input_tensor_meta(i).is_memory_planned()
                                             for i in range(meta.num_inputs()))
    pte = PteStreamingEncoder(path)
    assert pte.meta["input_padding_bytes"] == INPUT_PADDING_BYTES
    state = pte.init_state()
    for _ in range(2):
        _, _, state = pte.step(torch.zeros(1, cfg.chunk_samples), state)
        for t in state.tensors:
            spare = t.untyped_storage().nbytes() - (t.storage_offset() + t.numel()) * t.element_size()
            assert t.is_contiguous() and spare >= INPUT_PADDING_BYTES


@pytest.mark.slow
def test_dynamic_int8_program_is_close(model_dir, tmp_path):
    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    path = export_streaming(ck, ExportConfig(cfg, "dynamic"), tmp_path / "q.pte")
    _, relative = _compare(PteStreamingEncoder(path), StreamingEncoder(ck.model, cfg), steps=6)
    print(f"dynamic int8: relative logit error {relative:.4f}")
    assert relative < 0.05


def test_convs_are_quantized_only_when_all_are_the_positional_conv():
    """Dynamic int8 takes the rewritten positional conv; a group-norm front-end's convs (which the
    lowering cannot take quantized) keep every conv float32, and static int8 never quantizes convs."""
    from streamer.export.executorch import _quantizes_convs
    from streamer.model import Wav2Vec2CTC
    from streamer.model.config import tiny_config

    layer_norm = delegate_friendly(Wav2Vec2CTC(tiny_config(pos_conv_causal=True)))
    group_norm = delegate_friendly(Wav2Vec2CTC(tiny_config(feat_extract_norm="group", stable_layer_norm=False)))
    assert _quantizes_convs(layer_norm, "dynamic")
    assert not _quantizes_convs(layer_norm, "static")
    assert not _quantizes_convs(group_norm, "dynamic")


@pytest.mark.slow
def test_recognizer_runs_the_program(model_dir, tmp_path):
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    path = export_streaming(load_checkpoint(model_dir), ExportConfig(cfg, "none"), tmp_path / "s.pte")
    x = (np.random.default_rng(3).standard_normal(16000 * 3) * 0.1).astype(np.float32)
    eager = Recognizer.load(model_dir, lm=None, streaming=cfg, stream_files=True)
    program = Recognizer.load(model_dir, lm=None, stream_files=True, step_program=path)
    assert program.config.streaming == cfg
    assert program.transcribe(x).text == eager.transcribe(x).text


@pytest.mark.slow
def test_program_alone_streams_like_the_model(model_dir, tmp_path):
    """The .pte and its sidecar, moved away from the checkpoint, stream by themselves: vocabulary and
    preprocessing from the sidecar, the same text and finals as the model with the program; the paths
    that need the PyTorch model say so."""
    from streamer.errors import ConfigError

    cfg = StreamingConfig.from_seconds("window", 0.32)
    made = export_streaming(load_checkpoint(model_dir), ExportConfig(cfg, "none"), tmp_path / "made" / "s.pte")
    alone_dir = tmp_path / "alone"
    alone_dir.mkdir()
    path = Path(shutil.copy(made, alone_dir / "s.pte"))
    shutil.copy(made.with_suffix(".json"), alone_dir / "s.json")
    x = (np.random.default_rng(4).standard_normal(16000 * 4) * 0.1).astype(np.float32)
    with_model = Recognizer.load(model_dir, lm=None, two_pass=False, step_program=path)
    alone = Recognizer.from_program(path, lm=None)
    assert alone.model is None and alone.vocab == with_model.vocab and alone.config.streaming == cfg
    assert alone.transcribe(x).text and alone.transcribe(x).text == with_model.transcribe(x).text
    assert alone.transcribe(x).info.mode == "streaming-window"

    def finals(rec: Recognizer) -> list[str]:
        s = rec.create_stream()
        events = []
        for i in range(0, len(x), 3000):
            events += rec.feed(s, x[i:i + 3000])
        events += rec.input_finished(s)
        return [e.text for e in events if isinstance(e, Final)]

    assert finals(alone) == finals(with_model)
    for override in ({"two_pass": True}, {"two_pass": False, "stream_files": False}):
        with pytest.raises(ConfigError, match="PyTorch model"):
            Recognizer.from_program(path, lm=None, **override)

    import soundfile as sf
    wav = tmp_path / "x.wav"
    sf.write(wav, x, 16000)
    res = subprocess.run([sys.executable, "-m", "streamer", "transcribe", str(wav), "--pte", str(path), "--no-lm"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == alone.transcribe(x).text.strip()

    # Running a program loads the runtime's bindings only, not the exporter behind
    # `executorch.runtime` (executorch.exir, torch._dynamo, torchao: ~135 MB and seconds of start-up).
    code = ("import sys; import numpy as np; from streamer.recognizer import Recognizer; "
            f"Recognizer.from_program({str(path)!r}, lm=None).transcribe(np.zeros(16000, np.float32)); "
            "print(sorted(m for m in ('executorch.exir', 'torch._dynamo', 'torchao') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_export_command(model_dir, tmp_path):
    out = tmp_path / "cli.pte"
    res = subprocess.run([sys.executable, "-m", "streamer", "export", "--model", str(model_dir), "-o", str(out),
                          "--streaming", "window", "--chunk", "0.64", "--quantize", "none"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert PteStreamingEncoder(out).config == StreamingConfig.from_seconds("window", 0.64)


@pytest.mark.parametrize("stable", [True, False])
def test_rewrite_keeps_the_numbers(stable):
    """The delegate-friendly copy (linear-mean norms, bmm attention, 2-D convs) equals the model."""
    from streamer.model import Wav2Vec2CTC
    from streamer.model.config import tiny_config
    from streamer.model.masks import ChunkAttention

    torch.manual_seed(1)
    model = Wav2Vec2CTC(tiny_config(pos_conv_causal=True, stable_layer_norm=stable)).eval()
    model.reset_parameters()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.add_(torch.randn_like(m.weight) * 0.1)
                m.bias.add_(torch.randn_like(m.bias) * 0.1)
    copy = delegate_friendly(model)
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.Conv1d)) for m in copy.modules())
    x = torch.randn(2, 16000) * 0.2
    lengths = torch.tensor([16000, 11000])
    with torch.no_grad():
        for chunk in (None, ChunkAttention(8, 2, offset=1)):
            ref, _ = model(x, lengths, chunk=chunk)
            got, _ = copy(x, lengths, chunk=chunk)
            assert (got - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())
    assert model.encoder.layers[0].attention.q_proj.weight.data_ptr() != copy.encoder.layers[0].attention.q_proj.weight.data_ptr()


def test_block_cache_step_equals_the_cached_step(model_dir):
    """The exported cached step's ring of per-chunk key/value blocks (moved along by the sidecar's
    ``next`` entries) gives the cached step's logits, on the bundled model (eager, before export)."""
    from streamer.export.executorch import _BlockCachedStep, step_module
    from streamer.export.runtime import advance_state

    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds("cached", 0.32, left=0.96)
    eager = StreamingEncoder(ck.model, cfg)
    block = step_module(StreamingEncoder(delegate_friendly(ck.model), cfg, trim_invalid=False), rewritten=True)
    assert isinstance(block, _BlockCachedStep)
    layout = block.layout()
    assert sum("state" in e["next"] for e in layout) == 2 * ck.config.num_layers * (cfg.left_chunks - 1)
    c, steps = cfg.chunk_samples, 9  # more steps than the ring has blocks: every block gets recycled
    x = torch.randn(1, c * steps - 1234, generator=torch.Generator().manual_seed(2)) * 0.2
    s1, s2 = block.initial(), eager.init_state(1)
    with torch.no_grad():
        for i in range(steps):
            piece = x[:, i * c:(i + 1) * c]
            n = torch.tensor([piece.shape[1]])
            piece = torch.nn.functional.pad(piece, (0, c - piece.shape[1]))
            out = block(piece, n, *s1)
            s1 = advance_state(layout, s1, out[2:])
            l2, v2, s2 = eager.step(piece, s2, n)
            assert torch.equal(out[1], v2)
            assert (out[0] - l2)[v2].abs().max().item() < 1e-4
    assert torch.equal(s1[4], s2.cache_valid)  # the ring saw the same frames as the stacked cache


@pytest.mark.parametrize("causal,kernel", [(True, 8), (False, 8), (False, 7)])
def test_positional_conv_rewrite_equals_the_conv(causal, kernel):
    """The export rewrite's positional conv (constant zeros concatenated as (B, D, 1, N) instead of a
    pad) equals the model's, offline for batches of one and two, and step by step when causal."""
    from streamer.export.rewrite import DelegatePositionalConv
    from streamer.model.components import PositionalConv
    from streamer.model.config import tiny_config

    torch.manual_seed(kernel)
    pos = PositionalConv(tiny_config(pos_conv_causal=causal, pos_conv_kernel=kernel)).eval()
    rewritten = DelegatePositionalConv(pos)
    d = pos.conv.in_channels
    with torch.no_grad():
        for b, n in ((1, 1), (1, 13), (2, 20)):
            x = torch.randn(b, n, d)
            assert torch.allclose(rewritten(x), pos(x), atol=1e-5)
        if causal:
            h1 = h2 = torch.randn(1, pos.context_frames, d)
            for n in (3, 12):
                x = torch.randn(1, n, d)
                (y1, h1), (y2, h2) = pos.step(x, h1), rewritten.step(x, h2)
                assert torch.allclose(y2, y1, atol=1e-5) and torch.equal(h2, h1)


@pytest.mark.parametrize("k,s,c", [(10, 5, 1), (3, 2, 4), (2, 2, 4), (1, 3, 2), (4, 2, 3)])
def test_conv_as_linear_equals_the_conv(k, s, c):
    """The export rewrite's strided conv as frame gather + Linear, on every input length from one
    frame up (both sides of the 'input ends inside the last row' case)."""
    from streamer.export.rewrite import ConvAsLinear

    torch.manual_seed(k * 10 + s)
    conv = torch.nn.Conv1d(c, 5, k, stride=s)
    rewritten = ConvAsLinear(conv)
    for n in range(k, k + 4 * s + 2):
        x = torch.randn(2, c, n)
        with torch.no_grad():
            ref = conv(x)
            got = rewritten(x.transpose(1, 2)).transpose(1, 2)
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-5), (n, got.shape, ref.shape)


@pytest.mark.slow
def test_rewrite_leaves_one_delegate_segment_for_the_encoder(model_dir, tmp_path):
    """Without the rewrite every layer norm and attention splits the graph; with it only the step's
    integer bookkeeping stays outside XNNPACK."""
    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    counts = {}
    for rewrite in (False, True):
        path = export_streaming(ck, ExportConfig(cfg, "none", rewrite=rewrite), tmp_path / f"r{rewrite}.pte")
        side = json.loads(path.with_suffix(".json").read_text())
        counts[rewrite] = side["delegate_segments"], side["portable_ops"]
    print(f"delegate segments: {counts[False][0]} without the rewrite, {counts[True][0]} with it")
    assert counts[True][0] <= 2 < counts[False][0]
    assert not any(k in op for op in counts[True][1] for k in ("layer_norm", "select", "logical_not", "any", "alias"))


@pytest.mark.slow
def test_static_int8_program_is_close(model_dir, tmp_path):
    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    rng = np.random.default_rng(5)
    calibration = [(rng.standard_normal(16000 * 2) * 0.2).astype(np.float32) for _ in range(2)]
    path = export_streaming(ck, ExportConfig(cfg, "static"), tmp_path / "s.pte", calibration)
    _, relative = _compare(PteStreamingEncoder(path), StreamingEncoder(ck.model, cfg), steps=6)
    print(f"static int8: relative logit error {relative:.4f}")
    assert relative < 0.1


@pytest.mark.slow
def test_static_int8_offline_window_loads_and_is_close(model_dir, tmp_path):
    """The full-context window program in static int8 loads (its causal positional conv pads float32,
    not int8, which XNNPACK refuses at load time) and stays close to the model."""
    from executorch.runtime import Runtime

    from streamer.export.executorch import export_offline_window

    ck = load_checkpoint(model_dir)
    rng = np.random.default_rng(6)
    calibration = [(rng.standard_normal(16000 * 2) * 0.2).astype(np.float32) for _ in range(2)]
    path = export_offline_window(ck, 1.0, "static", tmp_path / "w.pte", calibration)
    method = Runtime.get().load_program(path).load_method("forward")
    x = torch.from_numpy((rng.standard_normal((1, 16000)) * 0.2).astype(np.float32))
    got = method.execute([x])[0]
    with torch.no_grad():
        ref = ck.model(x)[0]
    relative = ((got - ref).norm() / ref.norm()).item()
    print(f"static int8 offline window: relative logit error {relative:.4f}")
    assert got.shape == ref.shape and relative < 0.1


def test_static_int8_needs_calibration(model_dir, tmp_path):
    from streamer.errors import ConfigError

    with pytest.raises(ConfigError, match="calibration"):
        export_streaming(load_checkpoint(model_dir), ExportConfig(StreamingConfig.from_seconds("cached", 0.32), "static"),
                         tmp_path / "x.pte")


@pytest.mark.slow
def test_cpp_runner_text_equals_python(tmp_path):
    """examples/cpp builds against the installed wheel and prints the Python --pte path's greedy text."""
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.fail("cmake and a C++ compiler are needed to build examples/cpp (apt-get install cmake g++)")
    build = subprocess.run(["bash", str(REPO / "examples" / "cpp" / "build.sh"), sys.executable],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    runner = REPO / "examples" / "cpp" / "build" / "streamer_runner"
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    path = export_streaming(load_checkpoint("demo-en"), ExportConfig(cfg, "dynamic"), tmp_path / "demo.pte")
    wav = REPO / "examples" / "hello.wav"
    res = subprocess.run([str(runner), str(path), str(wav), "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "partial:" in res.stderr
    rec = Recognizer.load("demo-en", lm=None, stream_files=True, two_pass=False, step_program=path)
    python_text = " ".join(rec.transcribe(wav).text.split())
    print(f"C++: {res.stdout.strip()!r}\nPython: {python_text!r}")
    assert python_text
    assert res.stdout.strip() == python_text


def _char_error_rate(ref: str, hyp: str) -> float:
    from streamer.metrics import edit_distance

    return edit_distance(list(ref), list(hyp)) / max(1, len(ref))


#: Most characters (as a share of the x86-64 text) an int8 program's text may differ by on another
#: CPU: int8 kernels round differently per CPU (one character in 79 seen on Cortex-A72).
ARM_CER_BOUND = 0.05


@pytest.mark.slow
def test_aarch64_bundle_under_emulation(tmp_path):
    """examples/cpp/build.sh --target aarch64 cross-builds a relocatable bundle that, under qemu, prints
    the Python recognizer's text within ARM_CER_BOUND on a Raspberry Pi 5 core (Cortex-A76) and a
    Pi 4 core (Cortex-A72); where the emulated CPU reports SME (qemu 7.2's -cpu max), the program's
    int8 kernels compute garbage, and the self-check makes the runner refuse (exit 3) instead."""
    for tool in ("aarch64-linux-gnu-g++", "qemu-aarch64"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed (apt-get install g++-aarch64-linux-gnu qemu-user; tools/install.sh does)")
    build = subprocess.run(["bash", str(REPO / "examples" / "cpp" / "build.sh"), "--target", "aarch64", sys.executable],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    bundle = REPO / "examples" / "cpp" / "build-aarch64" / "bundle"
    moved = tmp_path / "device"
    shutil.copytree(bundle, moved)  # relocatable: the libraries are found beside the runner
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    path = export_streaming(load_checkpoint("demo-en"), ExportConfig(cfg, "dynamic"), tmp_path / "demo.pte")
    wav = REPO / "examples" / "hello.wav"
    rec = Recognizer.load("demo-en", lm=None, stream_files=True, two_pass=False, step_program=path)
    python_text = " ".join(rec.transcribe(wav).text.split())
    assert python_text

    def run(cpu: str) -> subprocess.CompletedProcess:
        return subprocess.run(["qemu-aarch64", "-cpu", cpu, "-L", "/usr/aarch64-linux-gnu", str(moved / "streamer_runner"),
                               str(path), str(wav), "--threads", "1", "--quiet"], capture_output=True, text=True, timeout=600)

    for cpu in ("cortex-a76", "cortex-a72"):
        res = run(cpu)
        assert res.returncode == 0, res.stderr[-2000:]
        cer = _char_error_rate(python_text, res.stdout.strip())
        print(f"{cpu}: {res.stdout.strip()!r} (CER {cer:.3f} to Python's {python_text!r})")
        assert cer <= ARM_CER_BOUND, (cpu, res.stdout, python_text)
    refused = run("max")
    assert refused.returncode == 3, (refused.returncode, refused.stdout[:300], refused.stderr[-1000:])
    assert "self-check failed on this CPU" in refused.stderr and refused.stdout == ""
    assert run("max,sme=off").returncode == 0


def test_a_program_whose_kernels_compute_garbage_is_refused():
    """The Python runtime runs the same self-check when it loads a program: logits far from the
    exporter's (here, the stored ones negated) are one CheckpointError, not garbage text."""
    from streamer.errors import CheckpointError
    from streamer.export import selfcheck

    check = selfcheck.reference(np.random.default_rng(0).normal(size=(5, 4)))
    with pytest.raises(CheckpointError, match="self-check failed on this CPU"):
        selfcheck.run_check(check, -np.asarray(check["logits"]), "pte x")
    assert selfcheck.run_check(check, np.asarray(check["logits"]) + 1e-3, "pte x") > 0.999
    with pytest.raises(CheckpointError):
        selfcheck.run_check(check, np.zeros((4, 4)), "pte x")  # another shape
    with pytest.raises(Exception, match="self_check"):
        selfcheck.validate({**json.loads(json.dumps(check)), "signal": "other"})


@pytest.mark.slow
def test_export_check_passes_demo_en_and_refuses_a_broken_program(tmp_path, monkeypatch, capsys):
    """`streamer export --check` scores the int8 program against the model on held-out speech: demo-en
    passes; a program whose CTC head was scrambled after export (another model's head) is refused with
    one error line, exit 1, and neither it nor its sidecar is left."""
    import soundfile as sf

    from streamer.checkpoint import save_checkpoint
    from streamer.train.corpus.tts import Voice, synthesize

    lines = []
    for i, text in enumerate(["open the door please", "what time is it now", "turn on the kitchen light",
                              "good morning to you", "play some quiet music", "close the window"]):
        sf.write(tmp_path / f"u{i}.flac", synthesize(Voice("espeak", "en-us+m1" if i % 2 else "en-us+f2"), text), 16000)
        lines.append(f"u{i}.flac\t{text}\n")
    (tmp_path / "heldout.tsv").write_text("".join(lines))
    good = tmp_path / "demo.pte"
    res = subprocess.run([sys.executable, "-m", "streamer", "export", "--model", "demo-en", "-o", str(good),
                          "--check", str(tmp_path / "heldout.tsv")], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "export check on 6 utterances" in res.stderr and good.is_file()
    print(res.stderr.strip().splitlines()[-1])
    # a broken program: the CTC head's rows rolled by one, so every frame's letters are the wrong ones;
    # the export is made to write it in place of demo-en's (a quantizer bug would do the same)
    import streamer.export.executorch as executorch_module
    from streamer.cli import main

    ck = load_checkpoint("demo-en")
    with torch.no_grad():
        ck.model.ctc_head.weight.copy_(ck.model.ctc_head.weight.roll(1, 0))
        ck.model.ctc_head.bias.copy_(ck.model.ctc_head.bias.roll(1, 0))
    broken = load_checkpoint(save_checkpoint(tmp_path / "broken", ck.model, ck.vocab))
    real_export = executorch_module.export_streaming
    monkeypatch.setattr(executorch_module, "export_streaming",
                        lambda _ck, cfg, out, overwrite=False: real_export(broken, cfg, out, overwrite=overwrite))
    bad = tmp_path / "bad.pte"
    code = main(["export", "--model", "demo-en", "-o", str(bad), "--check", str(tmp_path / "heldout.tsv")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("error: export refused: the program's WER"), err
    assert not bad.exists() and not bad.with_suffix(".json").exists()
