"""The sidecar of an exported program (``<name>.json`` beside ``<name>.pte``) and the checks that make a
damaged or mismatched program an error before the ExecuTorch runtime reads it.

A program is validated in four steps, each failing with one `CheckpointError` line:

1. **The sidecar** (`Sidecar.read`): valid JSON, exactly the keys of its format version, every value of
   the right type and range (the streaming setup, vocabulary, preprocessing and encoder are checked by
   their own config classes).
2. **The program's header** (`read_program_header`): the ExecuTorch identifier and extended header, and
   a file exactly as long as the header declares (a cut or padded file, or text, never reaches the
   runtime, whose checks abort the process on some damage).
3. **The program's checksum**: its size and SHA-256 against those the exporter wrote into the sidecar
   (`ProgramFile`), so a flipped byte anywhere is found.
4. **The sidecar against the program** (`check_against_program`, after loading): the program's own
   constant methods (sample rate, chunk, context, vocabulary size, blank) and its ``forward`` inputs and
   outputs (chunk, state shapes and dtypes) must agree with the sidecar.

The sidecar also records the identity of the model the program was exported from (`ModelIdentity`:
configuration and weight digests), checked when the program is paired with a model.

Sidecar format version 4 (the one this module reads and writes): ``format`` (``streamer-pte``),
``format_version``, ``program`` (``bytes``, ``sha256``), ``model`` (``config_sha256``,
``weights_sha256``), ``input_padding_bytes``, ``quantize``, ``delegate_segments``, ``portable_ops``,
``streaming``, ``vocabulary``, ``preprocess``, ``encoder``, ``state`` (per state tensor: ``name``,
``shape``, ``dtype``, ``next``). Versions 1 to 3 carried no checksum; such programs are exported again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from streamer import jsonfile
from streamer.checkpoint import ModelIdentity
from streamer.constants import SAMPLE_RATE
from streamer.errors import CheckpointError, ConfigError
from streamer.model.config import EncoderConfig
from streamer.preprocess import PreprocessConfig
from streamer.streaming import StreamingConfig
from streamer.vocab import Vocabulary

#: The sidecar's ``format`` tag and the version this streamer reads and writes.
SIDECAR_FORMAT, SIDECAR_VERSION = "streamer-pte", 4
#: Quantizations a program may have been exported with.
QUANTIZATIONS = ("none", "dynamic", "static")
#: State dtypes a sidecar may name, with the runtime's ScalarType code of each.
STATE_DTYPES = {"uint8": 0, "int8": 1, "int16": 2, "int32": 3, "int64": 4, "float16": 5, "float32": 6,
                "float64": 7, "bool": 11, "bfloat16": 15}
#: ScalarType codes of the step's chunk (float32) and sample count (int64).
_FLOAT32, _INT64 = STATE_DTYPES["float32"], STATE_DTYPES["int64"]
#: Largest state tensor a sidecar may declare, in elements (2^31: far beyond any model streamer loads),
#: so an edited shape cannot make the runner allocate without bound before the program is checked.
MAX_STATE_ELEMENTS = 1 << 31
#: Largest ``input_padding_bytes`` (the exporter writes 128).
MAX_INPUT_PADDING_BYTES = 1 << 16
#: File identifier of the ExecuTorch programs this runtime reads (bytes 4-8), and of their extended header.
PROGRAM_IDENTIFIER, EXTENDED_HEADER_MAGIC = b"ET12", b"eh00"
#: Bytes of the extended header (magic, length, program size, segment offset, segment size) and its offset.
_HEADER_OFFSET, _HEADER_BYTES = 8, 32
#: The constant methods an exported step carries (see `streamer.export.executorch`).
CONSTANT_METHODS = ("sample_rate", "chunk_samples", "chunk_frames", "left_frames", "right_frames", "vocab_size",
                    "blank_id")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = ("format", "format_version", "program", "model", "input_padding_bytes", "quantize", "delegate_segments",
         "portable_ops", "streaming", "vocabulary", "preprocess", "encoder", "state")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _brief(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _object(value: Any, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """``value`` as a JSON object with exactly ``keys`` (one error naming what is missing or extra)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected an object with the keys {list(keys)}, found {_brief(value)}")
    missing = [k for k in keys if k not in value]
    extra = sorted(str(k) for k in value if k not in keys)
    if missing or extra:
        found = "; ".join(part for part in (f"missing keys {missing}" if missing else "",
                                            f"unknown keys {extra}" if extra else "") if part)
        expected = f"the keys {list(keys)}" if len(keys) <= 6 else "exactly the keys streamer export writes"
        raise ConfigError(f"{where}: expected {expected}, found {found}")
    return value


def _count(value: Any, where: str, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(f"{where}: expected an integer from {low} to {high}, found {_brief(value)}")
    return value


def _digest(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ConfigError(f"{where}: expected a SHA-256 digest (64 lower-case hex digits), found {_brief(value)}")
    return value


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1-MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ProgramFile:
    """What the exporter wrote: the program's size and checksum."""

    bytes: int
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> "ProgramFile":
        """Describes the program at ``path`` (after it is written)."""
        return cls(Path(path).stat().st_size, file_sha256(path))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class StateEntry:
    """One state tensor of the step: its name, shape and dtype, and where its next value comes from."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    next: Mapping[str, int]
    """``{"output": j}`` (the step's j-th state output) or ``{"state": k}`` (this step's k-th state input)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what `streamer.export.runtime.advance_state` reads)."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "next": dict(self.next)}


@dataclass(frozen=True)
class Sidecar:
    """A program's sidecar, validated (see the module docstring for the checks)."""

    program: ProgramFile
    model: ModelIdentity
    streaming: StreamingConfig
    vocabulary: Vocabulary
    preprocess: PreprocessConfig
    encoder: EncoderConfig
    state: tuple[StateEntry, ...]
    quantize: str = "none"
    input_padding_bytes: int = 0
    """Readable bytes the runner keeps after every input buffer."""
    delegate_segments: int = 0
    portable_ops: Mapping[str, int] = field(default_factory=dict)
    self_check: Mapping[str, Any] | None = None
    """The exporter's logits of a fixed signal (`streamer.export.selfcheck`), or None (older exports)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written beside the program."""
        extra = {} if self.self_check is None else {"self_check": dict(self.self_check)}
        return {**extra, "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, "program": self.program.to_dict(),
                "model": self.model.to_dict(), "input_padding_bytes": self.input_padding_bytes,
                "quantize": self.quantize, "delegate_segments": self.delegate_segments,
                "portable_ops": dict(self.portable_ops), "streaming": dataclasses.asdict(self.streaming),
                "vocabulary": self.vocabulary.to_dict(), "preprocess": self.preprocess.to_dict(),
                "encoder": self.encoder.to_dict(), "state": [s.to_dict() for s in self.state]}

    @classmethod
    def from_dict(cls, data: Any) -> "Sidecar":
        """Validates a parsed sidecar.

        Raises:
            ConfigError: The first problem found, naming the key (``state[3].shape``, ...).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a JSON object, found {_brief(data)}")
        if data.get("format") != SIDECAR_FORMAT:
            raise ConfigError(f"format: expected {SIDECAR_FORMAT!r}, found {_brief(data.get('format'))}")
        version = data.get("format_version")
        if _is_int(version) and 1 <= version < SIDECAR_VERSION:
            raise ConfigError(f"format_version {version} was written by an older streamer and holds no checksum of "
                              f"its program; export the program again (streamer export)")
        if version != SIDECAR_VERSION:
            raise ConfigError(f"format_version: expected {SIDECAR_VERSION}, found {_brief(version)}")
        check = None
        if "self_check" in data:  # optional: exports before it have none
            from streamer.export.selfcheck import validate

            check = validate(data["self_check"])
            data = {k: v for k, v in data.items() if k != "self_check"}
        _object(data, "top level", _KEYS)
        prog = _object(data["program"], "program", ("bytes", "sha256"))
        program = ProgramFile(_count(prog["bytes"], "program.bytes", 1, 1 << 40),
                              _digest(prog["sha256"], "program.sha256"))
        ident = _object(data["model"], "model", ("config_sha256", "weights_sha256"))
        model = ModelIdentity(_digest(ident["config_sha256"], "model.config_sha256"),
                              _digest(ident["weights_sha256"], "model.weights_sha256"))
        quantize = data["quantize"]
        if not isinstance(quantize, str) or quantize not in QUANTIZATIONS:
            raise ConfigError(f"quantize: expected one of {QUANTIZATIONS}, found {_brief(quantize)}")
        ops = data["portable_ops"]
        if not isinstance(ops, Mapping) or not all(_is_int(n) and n >= 0 for n in ops.values()):
            raise ConfigError(f"portable_ops: expected an object of operator counts, found {_brief(ops)}")
        streaming = _object(data["streaming"], "streaming", tuple(f.name for f in dataclasses.fields(StreamingConfig)))
        try:
            parts = {"streaming": StreamingConfig(**streaming),
                     "vocabulary": Vocabulary.from_dict(data["vocabulary"]),
                     "preprocess": PreprocessConfig.from_dict(data["preprocess"]),
                     "encoder": EncoderConfig.from_dict(data["encoder"])}
        except TypeError as err:  # a config class given a value it cannot compare
            raise ConfigError(f"a value of the wrong type ({err})") from None
        if len(parts["vocabulary"]) != parts["encoder"].vocab_size:
            raise ConfigError(f"vocabulary: holds {len(parts['vocabulary'])} tokens, encoder.vocab_size is "
                              f"{parts['encoder'].vocab_size}")
        return cls(program=program, model=model, state=_state(data["state"]), quantize=quantize,
                   input_padding_bytes=_count(data["input_padding_bytes"], "input_padding_bytes", 0,
                                              MAX_INPUT_PADDING_BYTES),
                   delegate_segments=_count(data["delegate_segments"], "delegate_segments", 0, 1 << 20),
                   portable_ops=dict(ops), self_check=check, **parts)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> "Sidecar":
        """Reads and validates the sidecar of the program at ``path`` (``<name>.json`` beside it).

        Raises:
            CheckpointError: No sidecar, not JSON, or not a valid sidecar (one line naming the problem).
        """
        side = Path(path).with_suffix(".json")
        try:
            data = jsonfile.parse(side.read_bytes())
        except FileNotFoundError:
            raise CheckpointError(f"pte: expected the sidecar {side.name} beside {Path(path).name}, found none "
                                  "(streamer export writes both)") from None
        except OSError as err:
            raise CheckpointError(f"pte: cannot read the sidecar {side} ({err.strerror or type(err).__name__})") from None
        except jsonfile.JsonSyntaxError as err:
            raise CheckpointError(f"pte: the sidecar {side} is not valid JSON: {err}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise CheckpointError(f"pte: the sidecar {side} is damaged: {err}") from None


def _state(value: Any) -> tuple[StateEntry, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"state: expected a non-empty list of state tensors, found {_brief(value)}")
    entries = []
    for i, item in enumerate(value):
        where = f"state[{i}]"
        item = _object(item, where, ("name", "shape", "dtype", "next"))
        name, shape, dtype, nxt = item["name"], item["shape"], item["dtype"], item["next"]
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: expected a name, found {_brief(name)}")
        if not isinstance(shape, list) or not 1 <= len(shape) <= 8 or not all(_is_int(n) and n >= 1 for n in shape):
            raise ConfigError(f"{where}.shape: expected 1 to 8 positive integers, found {_brief(shape)}")
        if math.prod(shape) > MAX_STATE_ELEMENTS:
            raise ConfigError(f"{where}.shape: expected at most {MAX_STATE_ELEMENTS} elements, found {shape}")
        if not isinstance(dtype, str) or dtype not in STATE_DTYPES:
            raise ConfigError(f"{where}.dtype: expected one of {sorted(STATE_DTYPES)}, found {_brief(dtype)}")
        if not isinstance(nxt, Mapping) or len(nxt) != 1 or next(iter(nxt)) not in ("output", "state") \
                or not _is_int(next(iter(nxt.values()))) or next(iter(nxt.values())) < 0:
            raise ConfigError(f"{where}.next: expected {{\"output\": j}} or {{\"state\": k}} with an index, "
                              f"found {_brief(nxt)}")
        entries.append(StateEntry(name, tuple(shape), dtype, dict(nxt)))
    for i, entry in enumerate(entries):
        k = entry.next.get("state")
        if k is not None and (k >= len(entries) or (entries[k].shape, entries[k].dtype) != (entry.shape, entry.dtype)):
            raise ConfigError(f"state[{i}].next: moves from state {k}, which "
                              + ("does not exist" if k >= len(entries) else "differs in shape or dtype"))
    return tuple(entries)


@dataclass(frozen=True)
class ProgramHeader:
    """An ExecuTorch program's extended header: where its flatbuffer and segments lie, in bytes."""

    program_size: int
    segment_base_offset: int
    segment_data_size: int

    @property
    def file_size(self) -> int:
        """The length of the file the header describes."""
        return self.segment_base_offset + self.segment_data_size if self.segment_base_offset else self.program_size


def read_program_header(path: str | os.PathLike[str]) -> ProgramHeader:
    """Reads and checks an ExecuTorch program's header against the file's real size.

    Raises:
        CheckpointError: Not an ExecuTorch program (too short, text, another identifier, no extended
            header), or a file cut short of, or longer than, what its header declares.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(_HEADER_OFFSET + _HEADER_BYTES)
    if len(head) < _HEADER_OFFSET + _HEADER_BYTES:
        raise CheckpointError(f"pte: {p} is not an ExecuTorch program: {size} bytes, too short for its header")
    ident = head[4:8]
    if ident != PROGRAM_IDENTIFIER:
        kind = "text" if all(32 <= b < 127 or b in b"\t\r\n" for b in head) else f"identifier {ident!r}"
        raise CheckpointError(f"pte: {p} is not an ExecuTorch program: expected the identifier "
                              f"{PROGRAM_IDENTIFIER.decode()}, found {kind}")
    magic, length = head[8:12], int.from_bytes(head[12:16], "little")
    if magic != EXTENDED_HEADER_MAGIC or length < _HEADER_BYTES:
        raise CheckpointError(f"pte: {p} is damaged: its extended header is missing or malformed "
                              f"(magic {magic!r}, length {length})")
    header = ProgramHeader(*(int.from_bytes(head[i:i + 8], "little") for i in (16, 24, 32)))
    if header.segment_base_offset and header.segment_base_offset < header.program_size:
        raise CheckpointError(f"pte: {p} is damaged: its segments start at byte {header.segment_base_offset}, "
                              f"inside its {header.program_size}-byte program")
    if header.file_size != size:
        what = "truncated" if header.file_size > size else "damaged"
        raise CheckpointError(f"pte: {p} is {what}: its header declares {header.file_size} bytes, the file holds {size}")
    return header


def verify_program_file(path: str | os.PathLike[str], sidecar: Sidecar) -> None:
    """Steps 2 and 3 of the module docstring: the header, then the size and checksum the sidecar recorded.

    Raises:
        CheckpointError: The program is not one, is damaged, or is not the one the sidecar describes.
    """
    p = Path(path)
    read_program_header(p)
    size = p.stat().st_size
    if size != sidecar.program.bytes:
        raise CheckpointError(f"pte: {p} holds {size} bytes, its sidecar recorded {sidecar.program.bytes} at export; "
                              "the program is damaged or belongs to another sidecar")
    if file_sha256(p) != sidecar.program.sha256:
        raise CheckpointError(f"pte: {p} is damaged: its SHA-256 differs from the one its sidecar recorded at export")


def check_against_program(program: Any, sidecar: Sidecar, path: str | os.PathLike[str]) -> None:
    """Step 4 of the module docstring: the sidecar against the loaded program's own facts.

    Args:
        program: The runtime's loaded program (`streamer.export.runtime.load_program`).
        sidecar: Its sidecar.
        path: The program's path, for messages.

    Raises:
        CheckpointError: A constant method or a ``forward`` input or output that disagrees with the
            sidecar (one line naming it).
    """
    def fail(what: str) -> CheckpointError:
        return CheckpointError(f"pte: {path} and its sidecar disagree: {what}")

    names = {program.get_method_name(i) for i in range(program.num_methods())}
    missing = [m for m in ("forward", *CONSTANT_METHODS) if m not in names]
    if missing:
        raise fail(f"the program has no method {missing}; expected a streaming step from streamer export")
    sc, vocab = sidecar.streaming, sidecar.vocabulary
    expected = {"sample_rate": SAMPLE_RATE, "chunk_samples": sc.chunk_samples, "chunk_frames": sc.chunk_frames,
                "left_frames": sc.left_frames, "right_frames": sc.right_frames, "vocab_size": len(vocab),
                "blank_id": vocab.blank_id}
    for name, value in expected.items():
        out = program.load_method(name)([])
        found = out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out
        if not _is_int(found) or found != value:
            raise fail(f"the program's {name} is {found!r}, the sidecar's {value}")
    meta = program.method_meta("forward")
    want = [((1, sc.chunk_samples), _FLOAT32), ((1,), _INT64)]
    want += [(s.shape, STATE_DTYPES[s.dtype]) for s in sidecar.state]
    if meta.num_inputs() != len(want):
        raise fail(f"forward takes {meta.num_inputs()} inputs, the sidecar describes {len(want)} "
                   f"(chunk, sample count and {len(sidecar.state)} state tensors)")
    labels = ["chunk", "num_samples", *(f"state {s.name!r}" for s in sidecar.state)]
    for i, ((shape, dtype), label) in enumerate(zip(want, labels)):
        info = meta.input_tensor_meta(i)
        found_shape, found_dtype = tuple(info.sizes()), int(info.dtype())
        if found_shape != tuple(shape) or found_dtype != dtype:
            raise fail(f"forward input {i} ({label}) is {list(found_shape)} of dtype code {found_dtype}, "
                       f"the sidecar's {list(shape)} of code {dtype}")
    outputs = meta.num_outputs()
    logits = meta.output_tensor_meta(0).sizes() if outputs else ()
    if outputs < 2 or len(logits) != 3 or logits[-1] != len(vocab):
        raise fail(f"forward's logits are {list(logits)}, expected (1, frames, {len(vocab)})")
    for i, entry in enumerate(sidecar.state):
        j = entry.next.get("output")
        if j is None:
            continue
        if 2 + j >= outputs:
            raise fail(f"state[{i}] takes forward's state output {j}, the program has {outputs - 2}")
        info = meta.output_tensor_meta(2 + j)
        if tuple(info.sizes()) != entry.shape or int(info.dtype()) != STATE_DTYPES[entry.dtype]:
            raise fail(f"state[{i}] ({entry.name!r}) is {list(entry.shape)} {entry.dtype}, forward's state output "
                       f"{j} is {list(info.sizes())} of dtype code {int(info.dtype())}")
