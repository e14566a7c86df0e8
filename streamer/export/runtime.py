"""Running exported programs: the ExecuTorch runtime's bindings, and `PteStreamingEncoder`.

Nothing here imports the exporter (`streamer.export.executorch`).

``executorch.runtime`` and ``executorch.extension.pybindings.portable_lib`` import
``executorch.exir`` (for one warning class), and with it ``torch._dynamo``, ``torch._inductor`` and
torchao: about 135 MB of resident memory and 4 s of start-up that running a ``.pte`` never uses.
The compiled extension they wrap (``executorch.extension.pybindings._C``) needs only libtorch, so a
streaming process imports torch and then that extension directly, and falls back to
``portable_lib`` where a wheel lays the extension out differently.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Sequence

import torch
from torch import Tensor

from streamer.errors import CheckpointError, ConfigError, missing_dependency
from streamer.export import selfcheck
from streamer.export.sidecar import Sidecar, check_against_program, verify_program_file


@functools.lru_cache(maxsize=1)
def bindings() -> ModuleType:
    """The runtime's bindings module (``_load_program``, ``ExecuTorchMethod``, ``Verification``, ...).

    Raises:
        MissingDependencyError: executorch is not installed (with the install hint).
    """
    import torch  # noqa: F401  (loads libtorch, which the extension links against)

    try:
        from executorch.extension.pybindings import _C
    except ImportError:
        try:
            from executorch.extension.pybindings import portable_lib as _C
        except ImportError as e:
            raise missing_dependency("executorch", "export", "running an ExecuTorch program") from e
    return _C


def load_program(path: str, etdump: bool = False) -> object:
    """Loads the program at ``path`` (memory-mapped), fully verified.

    Returns:
        The bindings' ``ExecuTorchProgram``: ``load_method(name)`` gives an ``ExecuTorchMethod``,
        called as ``m(inputs, clone_outputs=...)``; ``method_meta(name)`` describes its inputs. Keep
        the program referenced while its methods run.
    """
    b = bindings()
    return b._load_program(str(path), enable_etdump=etdump, program_verification=b.Verification.InternalConsistency)


def advance_state(layout: Sequence[dict], state: Sequence[Tensor], produced: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """The next state of an exported step: per the sidecar's ``state`` entries, a step output or a state tensor.

    Args:
        layout: The sidecar's ``state`` list; entry i's ``next`` is ``{"output": j}`` (the step's j-th
            state output) or ``{"state": k}`` (this step's k-th state input, moved along a block ring).
            Entries without ``next`` (format version 1) take output i.
        state: This step's state inputs.
        produced: The step's outputs after the logits and the validity mask.
    """
    out = []
    for i, entry in enumerate(layout):
        nxt = entry.get("next", {"output": i})
        out.append(produced[nxt["output"]] if "output" in nxt else state[nxt["state"]])
    return tuple(out)


@dataclass(frozen=True)
class ProgramState:
    """State of a stream run by an exported program: its tensors in the sidecar's ``state`` order."""

    tensors: tuple[Tensor, ...]


class PteStreamingEncoder:
    """Runs an exported step with the ExecuTorch runtime, with `StreamingEncoder`'s interface.

    Everything a stream needs comes from the program and its sidecar — no PyTorch checkpoint. Both are
    validated before the runtime reads the program (`streamer.export.sidecar`): a damaged, cut or
    foreign program, or a sidecar that was edited or belongs to another program, is one
    `CheckpointError`.

    Attributes:
        config: The streaming setup the program was exported with.
        vocab: The model's output vocabulary.
        preprocess: The input preprocessing (running normalization or none).
        encoder_config: The dimensions of the exported model.
        sidecar: The validated sidecar (with the identity of the model the program came from).
        meta: The sidecar as JSON (its ``state`` list drives `advance_state`).

    Args:
        path: The ``.pte`` file (its ``.json`` sidecar beside it).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        bindings()  # the runtime is installed, or one error with the install hint
        self.path = Path(path)
        if not self.path.is_file():
            what = "a folder" if self.path.is_dir() else "nothing"
            raise CheckpointError(f"pte: expected an ExecuTorch program at {self.path}, found {what}")
        self.sidecar = Sidecar.read(self.path)
        verify_program_file(self.path, self.sidecar)
        self.meta = self.sidecar.to_dict()
        self.config = self.sidecar.streaming
        self.vocab = self.sidecar.vocabulary
        self.preprocess = self.sidecar.preprocess
        self.encoder_config = self.sidecar.encoder
        self._padding = self.sidecar.input_padding_bytes
        try:
            self._program = load_program(str(self.path))
            check_against_program(self._program, self.sidecar, self.path)
            self._forward = self._program.load_method("forward")
        except RuntimeError as err:  # the runtime refused a program that passed the checks above
            raise CheckpointError(f"pte: the ExecuTorch runtime cannot load {self.path} "
                                  f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
        self.self_check_cosine: float | None = None
        """Cosine of this CPU's logits of the self-check signal to the exporter's (None: no self-check)."""
        if self.sidecar.self_check is not None:
            logits = selfcheck.stream_logits(self.step, self.init_state(), self.config.chunk_samples)
            self.self_check_cosine = selfcheck.run_check(self.sidecar.self_check, logits, f"pte {self.path.name}")

    def init_state(self, batch: int = 1) -> ProgramState:
        """Zero state (B must be 1: the program was exported for one stream)."""
        if batch != 1:
            raise ConfigError(f"pte: the program runs one stream, found batch={batch}")
        return ProgramState(tuple(self._empty(s["shape"], getattr(torch, s["dtype"])).zero_()
                                  for s in self.meta["state"]))

    def _empty(self, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
        """An uninitialized contiguous tensor followed by the sidecar's ``input_padding_bytes`` of spare
        storage (format version 3 programs read their inputs in place, and XNNPACK reads a little past
        their end)."""
        numel = math.prod(shape)
        extra = -(-self._padding // dtype.itemsize)
        return torch.empty(numel + extra, dtype=dtype)[:numel].view(tuple(shape))

    def _input(self, t: Tensor) -> Tensor:
        """``t`` as a step input: itself when its storage already holds the padding after its data (a
        tensor `_empty` made), else a padded copy."""
        size = t.numel() * t.element_size()
        if t.is_contiguous() and t.untyped_storage().nbytes() - t.storage_offset() * t.element_size() \
                >= size + self._padding:
            return t
        return self._empty(t.shape, t.dtype).copy_(t)

    def step(self, chunk: Tensor, state: ProgramState, num_samples: Tensor | None = None
             ) -> tuple[Tensor, Tensor, ProgramState]:
        """Same contract as `StreamingEncoder.step` (the state is the program's own, see `ProgramState`)."""
        c = self.config.chunk_samples
        if tuple(chunk.shape) != (1, c):
            raise ConfigError(f"pte step: expected a (1, {c}) chunk, found {tuple(chunk.shape)}")
        if num_samples is None:
            num_samples = torch.tensor([c], dtype=torch.long)
        # Outputs live in the method's memory until the next call: copy them out once, into padded
        # storage, as they become the next step's inputs.
        inputs = [self._input(chunk.float()), self._input(num_samples.long()), *map(self._input, state.tensors)]
        out = [self._empty(o.shape, o.dtype).copy_(o) for o in self._forward(inputs, clone_outputs=False)]
        return out[0], out[1], ProgramState(advance_state(self.meta["state"], state.tensors, out[2:]))

    def first_frame(self, steps_before: int) -> int:
        """Global index of the first frame a step emits (see `StreamingConfig.first_frame`)."""
        return self.config.first_frame(steps_before)

    def batch_states(self, states: list[ProgramState]) -> None:  # noqa: ARG002
        """None: a program runs one stream per call (`streamer.pipeline.StepEncoder`)."""
        return None

    def unstack_state(self, state: ProgramState) -> list[ProgramState]:
        """The state of the one stream a program runs."""
        return [state]
