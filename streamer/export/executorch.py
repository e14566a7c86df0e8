"""ExecuTorch export of the streaming step (XNNPACK), optionally int8-quantized, and its runtime.

The exported program has one method ``forward(chunk, num_samples, *state) -> (logits, valid, *state)``
— `streamer.streaming.StreamingEncoder.step` with B = 1 and fixed shapes — plus constant methods
with the runtime facts a C++ or mobile runner needs (``sample_rate``, ``chunk_samples``,
``chunk_frames``, ``left_frames``, ``right_frames``, ``vocab_size``, ``blank_id``). A JSON sidecar
(``<name>.json``) holds the vocabulary, the streaming setup and the state's names, shapes and dtypes.

Quantization (PT2E with the XNNPACK quantizer, per-channel symmetric int8 weights, applied to the
weight-bearing layers only, so the step's integer frame bookkeeping stays exact):

* ``dynamic`` — int8 linear layers (the transformer: nearly all weights and compute of XLSR models),
  activations quantized on the fly per call, no calibration needed.

Static (calibrated) int8 is not offered: with ExecuTorch 1.5.1 the XNNPACK quantizer's shared
observers spread onto the step's bool/int state and its conv annotations leave conv inputs
unquantized, which XNNPACK refuses to lower.

ExecuTorch is imported lazily (``pip install 'streamer[export]'``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from streamer.checkpoint import Checkpoint
from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError, missing_dependency
from streamer.streaming import CachedState, State, StreamingConfig, StreamingEncoder, WindowState, state_tensors

QUANTIZATIONS = ("none", "dynamic")


@dataclass(frozen=True)
class ExportConfig:
    """What to export."""

    streaming: StreamingConfig
    """The step's streaming setup (fixed shapes follow from it)."""
    quantize: str = "none"
    """``none`` (fp32) or ``dynamic`` int8."""

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


def _quantize(module: nn.Module, example: tuple[Tensor, ...]) -> nn.Module:
    """Dynamic int8 (per-channel symmetric weights) of the Linear layers."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module, example, strict=False).module()
    # Annotate only the weight-bearing layers: a global config would also quantize the step's integer
    # bookkeeping (frame counters, validity), turning it into float.
    qconfig = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    prepared = prepare_pt2e(graph, XNNPACKQuantizer().set_module_type(nn.Linear, qconfig))
    with torch.no_grad():
        prepared(*example)
    return convert_pt2e(prepared)


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


def export_streaming(checkpoint: Checkpoint, config: ExportConfig, out: str | os.PathLike[str]) -> Path:
    """Exports the streaming step of a model to an ExecuTorch ``.pte`` (and its ``.json`` sidecar).

    Args:
        checkpoint: The model.
        config: Streaming setup and quantization.
        out: Path of the ``.pte`` file.

    Returns:
        The path of the written program.
    """
    _require_executorch()
    path = check_output_path(out)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    encoder = StreamingEncoder(checkpoint.model.eval(), config.streaming, trim_invalid=False)
    module = _Step(encoder).eval()
    example = _example_inputs(encoder)
    if config.quantize != "none":
        module = _quantize(module, example)
    program = torch.export.export(module, example, strict=False)
    sc, vocab = config.streaming, checkpoint.vocab
    constants = {"sample_rate": SAMPLE_RATE, "chunk_samples": sc.chunk_samples, "chunk_frames": sc.chunk_frames,
                 "left_frames": sc.left_frames, "right_frames": sc.right_frames, "vocab_size": len(vocab),
                 "blank_id": vocab.blank_id}
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods=constants)
    with open(path, "wb") as f:
        lowered.to_executorch().write_to_file(f)
    state = encoder.init_state(1)
    sidecar = {"format": "streamer-pte", "format_version": 1, "quantize": config.quantize,
               "streaming": dataclasses.asdict(sc), "vocabulary": vocab.to_dict(),
               "preprocess": checkpoint.preprocess.to_dict(), "encoder": checkpoint.config.to_dict(),
               "state": [{"name": f.name, "shape": list(getattr(state, f.name).shape),
                          "dtype": str(getattr(state, f.name).dtype).replace("torch.", "")}
                         for f in dataclasses.fields(state)]}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return path


class PteStreamingEncoder:
    """Runs an exported step with the ExecuTorch runtime, with `StreamingEncoder`'s interface.

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
