"""ExecuTorch export of the streaming step (XNNPACK), optionally int8-quantized, and its runtime.

The exported program has one method ``forward(chunk, num_samples, *state) -> (logits, valid, *state)``
— `streamer.streaming.StreamingEncoder.step` with B = 1 and fixed shapes — plus constant methods
with the runtime facts a C++ or mobile runner needs (``sample_rate``, ``chunk_samples``,
``chunk_frames``, ``left_frames``, ``right_frames``, ``vocab_size``, ``blank_id``). A JSON sidecar
(``<name>.json``) holds the vocabulary, the streaming setup and the state's names, shapes and dtypes.

Before export the model is rewritten into ops the XNNPACK delegate takes (`streamer.export.rewrite`:
layer norms as mean/rsqrt, attention as bmm/softmax with an additive bias, 1-D convs as 2-D convs,
per-layer cache selects as slices), so the whole encoder runs in one delegate segment; only the
step's integer frame bookkeeping stays in portable kernels. The sidecar records the segment count.

Quantization (PT2E with the XNNPACK quantizer, per-channel symmetric int8 weights, applied to the
weight-bearing layers only — every Linear and every conv with more than one input channel per group —
so the step's integer frame bookkeeping stays exact):

* ``dynamic`` — activations quantized on the fly per call, no calibration needed.
* ``static`` — activation scales calibrated on speech passed to `export_streaming`.

ExecuTorch is imported lazily (``pip install 'streamer[export]'``).
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from streamer.checkpoint import Checkpoint
from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, missing_dependency
from streamer.export.rewrite import delegate_friendly, slice_layer_selects
from streamer.model import EncoderConfig
from streamer.preprocess import PreprocessConfig
from streamer.streaming import CachedState, State, StreamingConfig, StreamingEncoder, WindowState, state_tensors
from streamer.vocab import Vocabulary

QUANTIZATIONS = ("none", "dynamic", "static")


@dataclass(frozen=True)
class ExportConfig:
    """What to export."""

    streaming: StreamingConfig
    """The step's streaming setup (fixed shapes follow from it)."""
    quantize: str = "none"
    """``none`` (fp32), ``dynamic`` or ``static`` int8."""
    rewrite: bool = True
    """Rewrite the model into delegate-friendly ops first (off only to measure what it gains)."""

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZATIONS:
            raise ConfigError(f"quantize: expected one of {QUANTIZATIONS}, found {self.quantize!r}")


class _Step(nn.Module):
    """The streaming step as a module over plain tensors (what torch.export traces)."""

    def __init__(self, encoder: StreamingEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.state_cls = WindowState if encoder.config.mode == "window" else CachedState

    def forward(self, chunk: Tensor, num_samples: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, valid, new = self.encoder.step(chunk, self.state_cls(*state), num_samples)
        return (logits, valid, *state_tensors(new))


def _require_executorch() -> None:
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        raise missing_dependency("executorch", "export", "ExecuTorch export")


def _example_inputs(encoder: StreamingEncoder) -> tuple[Tensor, ...]:
    c = encoder.config.chunk_samples
    return (torch.zeros(1, c), torch.tensor([c], dtype=torch.long), *state_tensors(encoder.init_state(1)))


def _quantizable(module: nn.Module) -> list[str]:
    """Names of the weight-bearing layers to quantize: Linears, and convs with > 1 input channel per group.

    Measured with ETDump (executorch 1.5.1): the Linears run as int8 XNNPACK kernels; the dynamic
    config leaves the convs unannotated, and statically annotated convs still run as float32
    convolutions between converts.
    """
    names = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) or (isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.in_channels // m.groups > 1):
            names.append(name)
    return names


def _calibration_steps(encoder: StreamingEncoder, normalize: bool,
                       waves: Sequence[np.ndarray]) -> Iterator[tuple[Tensor, ...]]:
    """The step inputs (chunk, num_samples, *state) of streaming ``waves`` through ``encoder``."""
    from streamer.preprocess import normalize_utterance

    c = encoder.config.chunk_samples
    for wave in waves:
        x = torch.from_numpy(normalize_utterance(wave) if normalize else np.asarray(wave, dtype=np.float32))
        state = encoder.init_state(1)
        for pos in range(0, len(x), c):
            piece = x[pos:pos + c]
            n = torch.tensor([len(piece)])
            piece = torch.nn.functional.pad(piece, (0, c - len(piece)))[None]
            yield (piece, n, *state_tensors(state))
            _, _, state = encoder.step(piece, state, n)


def _drop_non_float_observers(graph: torch.fx.GraphModule) -> int:
    """Removes observers the quantizer's shared-qparams propagation put on bool/int tensors (in place).

    Static int8 shares a linear's output qparams along ``cat``/``view`` chains; in the cached step such
    chains meet the bool validity masks, whose observers cannot compute a histogram.
    """
    removed = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_module" or "activation_post_process" not in str(node.target):
            continue
        src = node.args[0]
        val = src.meta.get("val") if isinstance(src, torch.fx.Node) else None
        if val is not None and not val.dtype.is_floating_point:
            node.replace_all_uses_with(src)
            graph.graph.erase_node(node)
            removed += 1
    graph.recompile()
    return removed


def _quantize(graph: torch.fx.GraphModule, example: tuple[Tensor, ...], mode: str, layers: list[str],
              calibration: Iterable[tuple[Tensor, ...]]) -> nn.Module:
    """int8 (per-channel symmetric weights) of the named layers, dynamic or calibrated static."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # Annotate only the weight-bearing layers: a global config would also quantize the step's integer
    # bookkeeping (frame counters, validity), turning it into float.
    qconfig = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=mode == "dynamic")
    quantizer = XNNPACKQuantizer()
    for name in layers:
        quantizer.set_module_name(name, qconfig)
    prepared = prepare_pt2e(graph, quantizer)
    _drop_non_float_observers(prepared)
    with torch.no_grad():
        for inputs in (calibration if mode == "static" else [example]):
            prepared(*inputs)
    return convert_pt2e(prepared)


def delegate_segments(program: Any) -> tuple[int, dict[str, int]]:
    """Delegate segments of a lowered program and the ops left to portable kernels (name -> count)."""
    segments, portable = 0, Counter()
    for node in program.exported_program().graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "call_delegate" in name:
            segments += 1
        else:
            portable[name] += 1
    return segments, dict(portable)


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """Checks that the program and its sidecar can be written, before any export work.

    Creates the parent folder if needed and a temporary file in it (removed at once), so a read-only,
    missing or special location fails in milliseconds instead of after the export.

    Returns:
        ``out`` as a path.

    Raises:
        ConfigError: The path or its sidecar is a folder, or the folder cannot be created or written.
    """
    import tempfile

    path = Path(out)
    for target in (path, path.with_suffix(".json")):
        if target.is_dir():
            raise ConfigError(f"output: expected a file path for the program, found a folder: {target}")
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"output: cannot write {path}: {folder} is a file, expected a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise ConfigError(f"output: cannot write {path} ({err.strerror or type(err).__name__} in "
                          f"{path.parent}); choose a writable folder") from None
    return path


def _check_calibration(quantize: str, calibration: Sequence[np.ndarray]) -> None:
    if quantize == "static" and not len(calibration):
        raise ConfigError("static int8: expected calibration speech (a few utterances), found none")


def _lower(module: nn.Module, example: tuple[Tensor, ...], config: ExportConfig,
           calibration: Iterable[tuple[Tensor, ...]], constants: dict[str, int], path: Path) -> tuple[int, dict[str, int]]:
    """Exports ``module`` (already rewritten when ``config.rewrite``), quantizes, lowers, writes ``path``.

    Returns:
        The delegate segment count and the ops left to portable kernels (see `delegate_segments`).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    graph = torch.export.export(module, example, strict=False).module()
    if config.rewrite:
        slice_layer_selects(graph)
    if config.quantize != "none":
        graph = _quantize(graph, example, config.quantize, _quantizable(module), calibration)
    program = torch.export.export(graph, example, strict=False)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods=constants)
    counts = delegate_segments(lowered)
    with open(path, "wb") as f:
        lowered.to_executorch().write_to_file(f)
    return counts


class _Window(nn.Module):
    """The offline forward over one fixed-length window (what `export_offline_window` traces)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: Tensor) -> Tensor:
        return self.model(waveform)[0]


def export_offline_window(checkpoint: Checkpoint, window_seconds: float, quantize: str,
                          out: str | os.PathLike[str], calibration: Sequence[np.ndarray] = (),
                          rewrite: bool = True) -> Path:
    """Exports the full-context forward over one fixed window, ``forward((1, N) samples) -> (1, T, V)``.

    The offline counterpart of `export_streaming` (same rewrite and quantization), for measuring
    windowed offline inference on the ExecuTorch runtime. No sidecar: the window length is the
    program's input shape.

    Args:
        checkpoint: The model.
        window_seconds: Window length in seconds.
        quantize: ``none``, ``dynamic`` or ``static``.
        out: Path of the ``.pte`` file.
        calibration: Static int8: speech waveforms, cut into windows for calibration.
        rewrite: Delegate-friendly rewrite first.

    Returns:
        The path of the written program.
    """
    _require_executorch()
    path = check_output_path(out)
    _check_calibration(quantize, calibration)
    n = round(window_seconds * SAMPLE_RATE)
    model = delegate_friendly(checkpoint.model) if rewrite else checkpoint.model.eval()
    config = ExportConfig(StreamingConfig(), quantize, rewrite)
    pieces = [np.pad(w[i:i + n], (0, max(0, n - len(w[i:i + n])))) for w in calibration for i in range(0, len(w), n)]
    windows = [(torch.from_numpy(p.astype(np.float32))[None],) for p in pieces]
    _lower(_Window(model).eval(), (torch.zeros(1, n),), config, windows, {"sample_rate": SAMPLE_RATE}, path)
    return path


def export_streaming(checkpoint: Checkpoint, config: ExportConfig, out: str | os.PathLike[str],
                     calibration: Sequence[np.ndarray] = ()) -> Path:
    """Exports the streaming step of a model to an ExecuTorch ``.pte`` (and its ``.json`` sidecar).

    Args:
        checkpoint: The model.
        config: Streaming setup and quantization.
        out: Path of the ``.pte`` file.
        calibration: Static int8 only: speech waveforms, (N,) float32 at 16 kHz, streamed through
            the step to set the activation scales (a few utterances, 10-30 s in all).

    Returns:
        The path of the written program.

    Raises:
        ConfigError: Static int8 without calibration audio.
    """
    _require_executorch()
    path = check_output_path(out)
    _check_calibration(config.quantize, calibration)
    model = delegate_friendly(checkpoint.model) if config.rewrite else checkpoint.model.eval()
    encoder = StreamingEncoder(model, config.streaming, trim_invalid=False)
    module = _Step(encoder).eval()
    sc, vocab = config.streaming, checkpoint.vocab
    constants = {"sample_rate": SAMPLE_RATE, "chunk_samples": sc.chunk_samples, "chunk_frames": sc.chunk_frames,
                 "left_frames": sc.left_frames, "right_frames": sc.right_frames, "vocab_size": len(vocab),
                 "blank_id": vocab.blank_id}
    steps = _calibration_steps(encoder, checkpoint.preprocess.normalize, calibration)
    segments, portable = _lower(module, _example_inputs(encoder), config, steps, constants, path)
    state = encoder.init_state(1)
    sidecar = {"format": "streamer-pte", "format_version": 1, "quantize": config.quantize,
               "delegate_segments": segments, "portable_ops": portable,
               "streaming": dataclasses.asdict(sc), "vocabulary": vocab.to_dict(),
               "preprocess": checkpoint.preprocess.to_dict(), "encoder": checkpoint.config.to_dict(),
               "state": [{"name": f.name, "shape": list(getattr(state, f.name).shape),
                          "dtype": str(getattr(state, f.name).dtype).replace("torch.", "")}
                         for f in dataclasses.fields(state)]}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return path


class PteStreamingEncoder:
    """Runs an exported step with the ExecuTorch runtime, with `StreamingEncoder`'s interface.

    Everything a stream needs comes from the program and its sidecar — no PyTorch checkpoint:

    Attributes:
        config: The streaming setup the program was exported with.
        vocab: The model's output vocabulary.
        preprocess: The input preprocessing (running normalization or none).
        encoder_config: The dimensions of the exported model.
        meta: The whole sidecar.

    Args:
        path: The ``.pte`` file (its ``.json`` sidecar beside it).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _require_executorch()
        from executorch.runtime import Runtime

        self.path = Path(path)
        side = self.path.with_suffix(".json")
        if not self.path.is_file() or not side.is_file():
            raise ConfigError(f"pte: expected {self.path} and its sidecar {side.name}, found "
                              f"{'neither' if not self.path.is_file() else 'no sidecar'}")
        self.meta = json.loads(side.read_text())
        self.config = StreamingConfig(**self.meta["streaming"])
        self.vocab = Vocabulary.from_dict(self.meta["vocabulary"])
        self.preprocess = PreprocessConfig.from_dict(self.meta["preprocess"])
        self.encoder_config = EncoderConfig.from_dict(self.meta["encoder"])
        program = Runtime.get().load_program(self.path)
        self._forward = program.load_method("forward")
        self._state_cls = WindowState if self.config.mode == "window" else CachedState

    def init_state(self, batch: int = 1) -> State:
        """Zero state (B must be 1: the program was exported for one stream)."""
        if batch != 1:
            raise ConfigError(f"pte: the program runs one stream, found batch={batch}")
        return self._state_cls(*(torch.zeros(s["shape"], dtype=getattr(torch, s["dtype"])) for s in self.meta["state"]))

    def step(self, chunk: Tensor, state: State, num_samples: Tensor | None = None) -> tuple[Tensor, Tensor, State]:
        """Same contract as `StreamingEncoder.step`."""
        c = self.config.chunk_samples
        if tuple(chunk.shape) != (1, c):
            raise ConfigError(f"pte step: expected a (1, {c}) chunk, found {tuple(chunk.shape)}")
        if num_samples is None:
            num_samples = torch.tensor([c], dtype=torch.long)
        out = [o.clone() for o in self._forward.execute(
            [chunk.float().contiguous(), num_samples.long(), *(t.contiguous() for t in state_tensors(state))])]
        return out[0], out[1], self._state_cls(*out[2:])

    def first_frame(self, steps_before: int) -> int:
        """Global index of the first frame a step emits (see `StreamingConfig.first_frame`)."""
        return self.config.first_frame(steps_before)
