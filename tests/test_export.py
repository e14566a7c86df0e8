"""Exported == eager: the ExecuTorch program of the streaming step against StreamingEncoder.step."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("executorch", reason="executorch is not installed (pip install 'streamer[export]')")

from streamer.checkpoint import load_checkpoint  # noqa: E402
from streamer.export.executorch import ExportConfig, PteStreamingEncoder, export_streaming  # noqa: E402
from streamer.recognizer import Recognizer  # noqa: E402
from streamer.streaming import StreamingConfig, StreamingEncoder, state_tensors  # noqa: E402


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
        assert [t.dtype for t in state_tensors(s1)] == [t.dtype for t in state_tensors(s2)]
        if v2.any():
            worst = max(worst, (l1 - l2)[v2].abs().max().item())
            ref_norm += l2[v2].pow(2).sum().item()
            diff_norm += (l1 - l2)[v2].pow(2).sum().item()
    return worst, (diff_norm / ref_norm) ** 0.5


@pytest.mark.parametrize("mode", ["cached", "window"])
def test_fp32_program_equals_eager(model_dir, tmp_path, mode):
    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds(mode, 0.32)
    path = export_streaming(ck, ExportConfig(cfg, "none"), tmp_path / f"{mode}.pte")
    worst, _ = _compare(PteStreamingEncoder(path), StreamingEncoder(ck.model, cfg), steps=6)
    assert worst <= 1e-4


def test_dynamic_int8_program_is_close(model_dir, tmp_path):
    ck = load_checkpoint(model_dir)
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    path = export_streaming(ck, ExportConfig(cfg, "dynamic"), tmp_path / "q.pte")
    _, relative = _compare(PteStreamingEncoder(path), StreamingEncoder(ck.model, cfg), steps=6)
    print(f"dynamic int8: relative logit error {relative:.4f}")
    assert relative < 0.05


def test_recognizer_runs_the_program(model_dir, tmp_path):
    cfg = StreamingConfig.from_seconds("cached", 0.32)
    path = export_streaming(load_checkpoint(model_dir), ExportConfig(cfg, "none"), tmp_path / "s.pte")
    x = (np.random.default_rng(3).standard_normal(16000 * 3) * 0.1).astype(np.float32)
    eager = Recognizer.load(model_dir, lm=None, streaming=cfg, stream_files=True)
    program = Recognizer.load(model_dir, lm=None, stream_files=True, step_program=path)
    assert program.config.streaming == cfg
    assert program.transcribe(x).text == eager.transcribe(x).text


def test_export_command(model_dir, tmp_path):
    out = tmp_path / "cli.pte"
    res = subprocess.run([sys.executable, "-m", "streamer", "export", "--model", str(model_dir), "-o", str(out),
                          "--streaming", "window", "--chunk", "0.64", "--quantize", "none"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert PteStreamingEncoder(out).config == StreamingConfig.from_seconds("window", 0.64)
