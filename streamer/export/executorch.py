"""ExecuTorch export of the streaming step (XNNPACK), optionally int8-quantized, and its runtime.

The exported program has one method ``forward(chunk, num_samples, *state) -> (logits, valid, *state)``
— `streamer.streaming.StreamingEncoder.step` with B = 1 and fixed shapes — plus constant methods
with the runtime facts a C++ or mobile runner needs (``sample_rate``, ``chunk_samples``,
``chunk_frames``, ``left_frames``, ``right_frames``, ``vocab_size``, ``blank_id``). A JSON sidecar
(``<name>.json``) holds the vocabulary, the streaming setup and the state's names, shapes, dtypes
and update rule. A cached-mode step keeps its key/value cache as a ring of per-layer, per-chunk
blocks that the runner moves along (`_BlockCachedStep`), so no cached frame is copied per step.

Before export the model is rewritten into ops the XNNPACK delegate takes (`streamer.export.rewrite`:
layer norms with their means as one-output Linears, attention as bmm/softmax with an additive bias,
the conv front-end as frame gathers and Linears, other 1-D convs as 2-D convs), so the whole encoder
runs in one delegate segment; only the step's integer frame bookkeeping stays in portable kernels.
The sidecar records the segment count.

Quantization (PT2E with the XNNPACK quantizer, per-channel symmetric int8 weights, applied to the
Linears — after the rewrite that includes the conv front-end — and, dynamic only, to the positional
conv; the step's integer frame bookkeeping is never annotated, so it stays exact):

* ``dynamic`` — activations quantized on the fly per call, no calibration needed. The positional
  conv runs as XNNPACK's int8 ``Convolution (NHWC, QDU8, F32, QC8W)`` (see `_quantizes_convs`).
* ``static`` — activation scales calibrated on speech passed to `export_streaming`; the positional
  conv stays float32 (statically quantized convs ran as float32 convolutions).

ExecuTorch is imported lazily (``pip install 'streamer[export]'``).
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from streamer.checkpoint import Checkpoint
from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, OutputError, missing_dependency
from streamer.export.rewrite import delegate_friendly
from streamer.files import atomic_files, check_target, reason
from streamer.export.runtime import advance_state
from streamer.export import selfcheck
from streamer.export.sidecar import QUANTIZATIONS, ProgramFile, Sidecar, StateEntry
from streamer.streaming import CachedState, StreamingConfig, StreamingEncoder, WindowState, state_tensors

INPUT_PADDING_BYTES = 128
"""Readable bytes a caller keeps after every input buffer of a streaming step (format version 3).

The step's inputs are not memory-planned: the runtime reads the caller's buffers in place instead
of copying every state tensor into its own arena each step (for the XLSR-53-large 0.96-s step, 38 MB
of key/value blocks). XNNPACK may read up to ``XNN_EXTRA_BYTES`` (16, 128 on Hexagon) past the end
of an input; the sidecar records this padding as ``input_padding_bytes``."""


@dataclass(frozen=True)
class ExportConfig:
    """What to export."""

    streaming: StreamingConfig = field(default_factory=lambda: StreamingConfig.from_seconds("cached", 0.32))
    """The step's streaming setup (fixed shapes follow from it); default: cached, 0.32-s chunks."""
    quantize: str = "dynamic"
    """``none`` (fp32), ``dynamic`` or ``static`` int8."""
    rewrite: bool = True
    """Rewrite the model into delegate-friendly ops first (off only to measure what it gains)."""

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZATIONS:
            raise ConfigError(f"quantize: expected one of {QUANTIZATIONS}, found {self.quantize!r}")


def _spec(name: str, t: Tensor, nxt: dict[str, int]) -> dict:
    return {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "next": nxt}


class _Step(nn.Module):
    """The streaming step over plain tensors (what torch.export traces): the whole state in and out."""

    def __init__(self, encoder: StreamingEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.state_cls = WindowState if encoder.config.mode == "window" else CachedState

    def initial(self) -> tuple[Tensor, ...]:
        """The state before any audio (B = 1)."""
        return state_tensors(self.encoder.init_state(1))

    def layout(self) -> list[dict]:
        """The sidecar's ``state`` entries: name, shape, dtype, and where the next value comes from."""
        names = [f.name for f in dataclasses.fields(self.state_cls)]
        return [_spec(n, t, {"output": i}) for i, (n, t) in enumerate(zip(names, self.initial()))]

    def forward(self, chunk: Tensor, num_samples: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, valid, new = self.encoder.step(chunk, self.state_cls(*state), num_samples)
        return (logits, valid, *state_tensors(new))


class _BlockCachedStep(nn.Module):
    """The cached step with its key/value cache as a ring of per-layer, per-chunk blocks.

    State inputs: ``samples, samples_seen, steps, pos_history, cache_valid`` (as `CachedState`), then
    for every layer its ``left_chunks`` key blocks (H, D/H, n), then likewise the value blocks
    (H, n, D/H), oldest first. Outputs: logits, validity, the five small tensors, one new key block per
    layer, one new value block per layer. The runner moves every other block one place along the ring
    (the layout's ``next``), so no cached frame is copied into a new cache inside the program: only
    the attention's concatenation reads the blocks. `CachedState`'s stacked (layers, B, H, left, D/H)
    cache costs a select, two concatenations, a slice and a stack per layer and step.

    Args:
        encoder: A cached-mode encoder over a `delegate_friendly` model (its attention reads blocks).
    """

    SMALL = ("samples", "samples_seen", "steps", "pos_history", "cache_valid")

    def __init__(self, encoder: StreamingEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        mc, sc = encoder.model.config, encoder.config
        self.layers, self.blocks = mc.num_layers, sc.left_chunks
        n, h, dh = sc.chunk_frames, mc.num_heads, mc.head_dim
        self._key_block, self._value_block = (h, dh, n), (h, n, dh)

    def initial(self) -> tuple[Tensor, ...]:
        """The state before any audio (B = 1)."""
        st = self.encoder.init_state(1)
        count = self.layers * self.blocks
        return (*(getattr(st, name) for name in self.SMALL), *(torch.zeros(self._key_block) for _ in range(count)),
                *(torch.zeros(self._value_block) for _ in range(count)))

    def layout(self) -> list[dict]:
        """The sidecar's ``state`` entries: name, shape, dtype, and where the next value comes from."""
        init, s, ell, c = self.initial(), len(self.SMALL), self.layers, self.blocks
        entries = [_spec(name, t, {"output": i}) for i, (name, t) in enumerate(zip(self.SMALL, init))]
        for kind, first_out in (("keys", s), ("values", s + ell)):
            for layer in range(ell):
                for j in range(c):
                    at = len(entries)
                    nxt = {"state": at + 1} if j + 1 < c else {"output": first_out + layer}
                    entries.append(_spec(f"{kind}.{layer}.{j}", init[at], nxt))
        return entries

    def forward(self, chunk: Tensor, num_samples: Tensor, samples: Tensor, samples_seen: Tensor, steps: Tensor,
                pos_history: Tensor, cache_valid: Tensor, *blocks: Tensor) -> tuple[Tensor, ...]:
        enc, c, per = self.encoder, self.blocks, self.layers * self.blocks
        x, bias, valid, small = enc.cached_begin(chunk, samples, samples_seen, steps, pos_history, cache_valid,
                                                 num_samples)
        new_keys, new_values = [], []
        for i, layer in enumerate(enc.model.encoder.layers):
            x, k, v = layer(x, bias, blocks[i * c:(i + 1) * c], blocks[per + i * c:per + (i + 1) * c])
            new_keys.append(k)
            new_values.append(v)
        return (enc.cached_end(x), valid, *small, *new_keys, *new_values)


def step_module(encoder: StreamingEncoder, rewritten: bool) -> _Step | _BlockCachedStep:
    """What gets exported: the block-cache step for cached mode over a rewritten model, else `_Step`."""
    return _BlockCachedStep(encoder) if rewritten and encoder.config.mode == "cached" else _Step(encoder)


def _require_executorch() -> None:
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        raise missing_dependency("executorch", "export", "ExecuTorch export")


def _example_inputs(step: "_Step | _BlockCachedStep") -> tuple[Tensor, ...]:
    c = step.encoder.config.chunk_samples
    return (torch.zeros(1, c), torch.tensor([c], dtype=torch.long), *step.initial())


def _quantizable(module: nn.Module) -> list[str]:
    """Names of the Linears to quantize (after the rewrite, the conv front-end's too).

    Measured with ETDump (executorch 1.5.1): quantized Linears run as int8 XNNPACK kernels, while
    statically annotated convs still ran as float32 convolutions, between converts that only add time
    and error (the causal positional conv's quantized pad was even refused at load time, int8
    ``StaticConstantPad``). Convs are quantized only dynamically, see `_quantizes_convs`.
    """
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def _quantizes_convs(module: nn.Module, mode: str) -> bool:
    """Whether to quantize the convs (dynamic int8): only when every conv is the rewritten positional
    conv (`DelegatePositionalConv`, whose input the XNNPACK lowering can take dynamically quantized).

    Convs are annotated by operator type, all or none: the quantizer's module-name filter never
    matches a conv, as it also checks the weight node, which has no module stack.
    """
    from streamer.export.rewrite import DelegatePositionalConv

    convs = {id(m) for m in module.modules() if isinstance(m, nn.Conv2d)}
    positional = {id(m.conv) for m in module.modules() if isinstance(m, DelegatePositionalConv)}
    return mode == "dynamic" and bool(convs) and convs == positional


def _calibration_steps(step: "_Step | _BlockCachedStep", normalize: bool,
                       waves: Sequence[np.ndarray]) -> Iterator[tuple[Tensor, ...]]:
    """The step inputs (chunk, num_samples, *state) of streaming ``waves`` through ``step`` (eager)."""
    from streamer.preprocess import normalize_utterance

    c, layout = step.encoder.config.chunk_samples, step.layout()
    for wave in waves:
        x = torch.from_numpy(normalize_utterance(wave) if normalize else np.asarray(wave, dtype=np.float32))
        state = step.initial()
        for pos in range(0, len(x), c):
            piece = x[pos:pos + c]
            n = torch.tensor([len(piece)])
            piece = torch.nn.functional.pad(piece, (0, c - len(piece)))[None]
            yield (piece, n, *state)
            with torch.no_grad():
                state = advance_state(layout, state, step(piece, n, *state)[2:])


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
              calibration: Iterable[tuple[Tensor, ...]], convs: bool = False) -> nn.Module:
    """int8 (per-channel symmetric weights) of the named layers, and of every conv when ``convs``;
    dynamic or calibrated static."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # Annotate only the Linears: a global config would also quantize the step's integer
    # bookkeeping (frame counters, validity), turning it into float.
    qconfig = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=mode == "dynamic")
    quantizer = XNNPACKQuantizer()
    for name in layers:
        quantizer.set_module_name(name, qconfig)
    if convs:
        quantizer.set_operator_type(torch.ops.aten.conv2d.default, qconfig)
    prepared = prepare_pt2e(graph, quantizer)
    _drop_non_float_observers(prepared)
    with torch.no_grad():
        for inputs in (calibration if mode == "static" else [example]):
            prepared(*inputs)
    converted = convert_pt2e(prepared)
    _float_pads(converted)
    return converted


def _float_pads(graph: torch.fx.GraphModule) -> int:
    """Makes every pad read the float tensor its quantize / dequantize pair stands for (in place).

    Static int8 shares a Linear's output qparams along views and transposes, so the causal positional
    conv's pad of an offline window got a dequantized int8 input; XNNPACK lowered it as an int8
    ``StaticConstantPad`` and then refused that node when the program loaded. The positional conv is
    float32 (see `_quantizable`), so its pad reads float32 and the pair's rounding goes with it.

    Returns:
        Number of pads rewired.
    """
    ops = torch.ops.quantized_decomposed
    count = 0
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in (torch.ops.aten.pad.default,
                                                                torch.ops.aten.constant_pad_nd.default):
            continue
        dq = node.args[0]
        if (isinstance(dq, torch.fx.Node) and dq.target == ops.dequantize_per_tensor.default
                and isinstance(dq.args[0], torch.fx.Node) and dq.args[0].target == ops.quantize_per_tensor.default):
            node.replace_input_with(dq, dq.args[0].args[0])
            count += 1
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return count


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


def check_output_path(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Checks that the program and its sidecar can be written, before any export work.

    Creates the parent folder if needed and a temporary file in it (removed at once), so a read-only,
    missing or special location fails in milliseconds instead of after the export.

    Args:
        out: The ``.pte`` path (the sidecar is the same path with ``.json``).
        overwrite: Whether an existing program and sidecar may be replaced.

    Returns:
        ``out`` as a path.

    Raises:
        OutputError: The program or its sidecar exists (without ``overwrite``), is a folder, or has a
            name too long; the program's name ends in ``.json`` (its own sidecar's name); or the folder
            cannot be created or written.
    """
    import tempfile

    path = Path(out)
    if path.suffix == ".json":
        raise OutputError(f"output: expected a program name (e.g. {path.with_suffix('.pte').name}), found {path}, "
                          "which is its own sidecar's name")
    for target in (path, path.with_suffix(".json")):
        check_target(target, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise OutputError(f"output: cannot write {path} ({reason(err)} in {path.parent}); choose a writable folder") from None
    return path


def _check_calibration(quantize: str, calibration: Sequence[np.ndarray]) -> None:
    if quantize == "static" and not len(calibration):
        raise ConfigError("static int8: expected calibration speech (a few utterances), found none")


def _lower(module: nn.Module, example: tuple[Tensor, ...], config: ExportConfig,
           calibration: Iterable[tuple[Tensor, ...]], constants: dict[str, int], path: Path,
           planned_inputs: bool = True) -> tuple[int, dict[str, int]]:
    """Exports ``module`` (already rewritten when ``config.rewrite``), quantizes, lowers, writes ``path``.

    With ``planned_inputs=False`` the program gets no arena space for its inputs: the runtime reads
    the caller's buffers in place (which need `INPUT_PADDING_BYTES` after their end).

    Returns:
        The delegate segment count and the ops left to portable kernels (see `delegate_segments`).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass

    graph = torch.export.export(module, example, strict=False).module()
    if config.quantize != "none":
        graph = _quantize(graph, example, config.quantize, _quantizable(module), calibration,
                          _quantizes_convs(module, config.quantize))
    program = torch.export.export(graph, example, strict=False)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods=constants)
    counts = delegate_segments(lowered)
    with open(path, "wb") as f:
        planning = MemoryPlanningPass(alloc_graph_input=planned_inputs)
        lowered.to_executorch(ExecutorchBackendConfig(memory_planning_pass=planning)).write_to_file(f)
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
                          rewrite: bool = True, overwrite: bool = False) -> Path:
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
        overwrite: Replace an existing program (otherwise refused before the work).

    Returns:
        The path of the written program (written atomically).
    """
    _require_executorch()
    path = check_output_path(out, overwrite)
    _check_calibration(quantize, calibration)
    n = round(window_seconds * SAMPLE_RATE)
    model = delegate_friendly(checkpoint.model) if rewrite else checkpoint.model.eval()
    config = ExportConfig(StreamingConfig(), quantize, rewrite)
    pieces = [np.pad(w[i:i + n], (0, max(0, n - len(w[i:i + n])))) for w in calibration for i in range(0, len(w), n)]
    windows = [(torch.from_numpy(p.astype(np.float32))[None],) for p in pieces]
    with atomic_files([path], overwrite) as (program_file,):
        _lower(_Window(model).eval(), (torch.zeros(1, n),), config, windows, {"sample_rate": SAMPLE_RATE}, program_file)
    return path


def export_streaming(checkpoint: Checkpoint, config: ExportConfig, out: str | os.PathLike[str],
                     calibration: Sequence[np.ndarray] = (), overwrite: bool = False) -> Path:
    """Exports the streaming step of a model to an ExecuTorch ``.pte`` (and its ``.json`` sidecar).

    Args:
        checkpoint: The model.
        config: Streaming setup and quantization.
        out: Path of the ``.pte`` file.
        calibration: Static int8 only: speech waveforms, (N,) float32 at 16 kHz, streamed through
            the step to set the activation scales (a few utterances, 10-30 s in all).
        overwrite: Replace an existing program and sidecar (otherwise refused before the work).

    Returns:
        The path of the written program. It and its sidecar are written atomically and take their
        names together.

    Raises:
        ConfigError: Static int8 without calibration audio.
        OutputError: See `check_output_path`.
    """
    _require_executorch()
    path = check_output_path(out, overwrite)
    _check_calibration(config.quantize, calibration)
    identity = checkpoint.identity  # of the weights as loaded, before the rewrite
    model = delegate_friendly(checkpoint.model) if config.rewrite else checkpoint.model.eval()
    encoder = StreamingEncoder(model, config.streaming, trim_invalid=False)
    module = step_module(encoder, config.rewrite).eval()
    sc, vocab = config.streaming, checkpoint.vocab
    constants = {"sample_rate": SAMPLE_RATE, "chunk_samples": sc.chunk_samples, "chunk_frames": sc.chunk_frames,
                 "left_frames": sc.left_frames, "right_frames": sc.right_frames, "vocab_size": len(vocab),
                 "blank_id": vocab.blank_id}
    steps = _calibration_steps(module, checkpoint.preprocess.normalize, calibration)
    with atomic_files([path, path.with_suffix(".json")], overwrite) as (program_file, sidecar_file):
        segments, portable = _lower(module, _example_inputs(module), config, steps, constants, program_file,
                                    planned_inputs=False)
        state = tuple(StateEntry(e["name"], tuple(e["shape"]), e["dtype"], e["next"]) for e in module.layout())
        check = selfcheck.reference(selfcheck.stream_logits(encoder.step, encoder.init_state(), sc.chunk_samples))
        sidecar = Sidecar(program=ProgramFile.of(program_file), model=identity, streaming=sc, vocabulary=vocab,
                          preprocess=checkpoint.preprocess, encoder=checkpoint.config, state=state,
                          quantize=config.quantize, input_padding_bytes=INPUT_PADDING_BYTES,
                          delegate_segments=segments, portable_ops=portable, self_check=check)
        sidecar_file.write_text(json.dumps(sidecar.to_dict(), indent=1) + "\n")
    return path
