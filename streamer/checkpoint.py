"""Reading and writing model checkpoints (the only module that does model I/O).

Two folder formats load:

* streamer's own: ``config.json`` (``{"format": "streamer-ctc", "encoder": {...}, "vocabulary":
  {...}, "metadata": {...}}``), ``model.safetensors`` (streamer's tensor names) and ``vocab.json``.
* Hugging Face ``Wav2Vec2ForCTC``: ``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
  ``vocab.json``, and optionally ``tokenizer_config.json`` / ``special_tokens_map.json``.

A source is a bundled model name (a folder under the repository's ``models/``), a local folder, or a
Hugging Face hub id (``owner/name``), fetched with huggingface_hub into its usual cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from streamer.convert.huggingface import (
    convert_state_dict,
    encoder_config_from_hf,
    is_huggingface_config,
    vocabulary_from_hf,
)
from streamer import jsonfile
from streamer.errors import CheckpointError, ConfigError
from streamer.files import atomic_files
from streamer.model.config import EncoderConfig
from streamer.model.model import Wav2Vec2CTC
from streamer.preprocess import PreprocessConfig
from streamer.vocab import Vocabulary

#: Format tag written into streamer's own config.json.
FORMAT = "streamer-ctc"
#: Version of that format; bump on incompatible change.
FORMAT_VERSION = 1
#: Folder that holds the bundled models (``<repo>/models``).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: Name of the bundled default model.
DEFAULT_MODEL = "demo-en"
#: Files fetched for a hub id.
_HUB_FILES = ["config.json", "model.safetensors", "pytorch_model.bin", "vocab.json", "tokenizer_config.json",
              "preprocessor_config.json",
              "special_tokens_map.json", "added_tokens.json", "lm/*", "README.md"]
#: Fewest bytes a stored parameter takes (float16/bfloat16); a smaller weight file cannot hold the model.
MIN_BYTES_PER_PARAMETER = 2
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelIdentity:
    """What a model is, as two SHA-256 digests (hex): a program exported from it records this, so that
    pairing the program with another model is refused."""

    config_sha256: str
    """Of the model's configuration: encoder dimensions, vocabulary and preprocessing (canonical JSON)."""
    weights_sha256: str
    """Of its weights: every tensor's name, shape and float32 values, in name order."""

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"config_sha256": self.config_sha256, "weights_sha256": self.weights_sha256}

    def difference(self, other: "ModelIdentity") -> str | None:
        """What differs from ``other``, in words, or None when they are the same model."""
        parts = [what for what, a, b in (("configuration", self.config_sha256, other.config_sha256),
                                         ("weights", self.weights_sha256, other.weights_sha256)) if a != b]
        return " and ".join(parts) or None


def model_identity(model: Wav2Vec2CTC, vocab: Vocabulary, preprocess: PreprocessConfig) -> ModelIdentity:
    """The `ModelIdentity` of a model: digests of its configuration and of its weights.

    The weights are hashed as float32, so a checkpoint stored in float16 and the same one stored in
    float32 after loading are one model; about 1 s per GB of float32 weights.
    """
    config = {"encoder": model.config.to_dict(), "vocabulary": vocab.to_dict(), "preprocess": preprocess.to_dict()}
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    weights = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu()
            t = (t.float() if t.is_floating_point() else t).contiguous()
            weights.update(f"{name}:{list(t.shape)}:{str(t.dtype)}\n".encode())
            weights.update(t.numpy().view(np.uint8).reshape(-1).data if t.numel() else b"")
    return ModelIdentity(config_hash.hexdigest(), weights.hexdigest())


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with everything needed to use it."""

    model: Wav2Vec2CTC
    """The model, in eval mode."""
    vocab: Vocabulary
    """Its output vocabulary."""
    folder: Path
    """Local folder it was read from."""
    format: str
    """``streamer-ctc`` or ``huggingface``."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Free-form facts saved with the weights (training recipe, streaming setup, metrics)."""
    preprocess: PreprocessConfig = PreprocessConfig()
    """What the samples need before the encoder (e.g. per-utterance normalization)."""

    @property
    def config(self) -> EncoderConfig:
        """The encoder's dimensions."""
        return self.model.config

    @functools.cached_property
    def identity(self) -> ModelIdentity:
        """Digests of the configuration and weights (`model_identity`), computed once, when first asked."""
        return model_identity(self.model, self.vocab, self.preprocess)


def resolve_source(source: str | os.PathLike[str], revision: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Finds the local folder of a model source.

    Args:
        source: Bundled model name, local folder, or hub id ``owner/name``.
        revision: Hub revision (branch, tag or commit) for hub ids.
        cache_dir: Hub cache folder (default: huggingface_hub's, e.g. ~/.cache/huggingface/hub).

    Returns:
        A local folder.

    Raises:
        CheckpointError: Nothing matches; the message lists what was tried.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"model: expected a folder holding config.json, found a file: {path}")
    bundled = MODELS_DIR / text
    if "/" not in text and bundled.is_dir():
        return bundled
    if not _HUB_ID.match(text):
        names = sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir()) if MODELS_DIR.is_dir() else []
        raise CheckpointError(
            f"model: {text!r} is not a folder, not a bundled model ({names}) and not a hub id 'owner/name'")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub is a core dependency
        raise CheckpointError("model: loading a hub id needs huggingface_hub (pip install huggingface_hub)") from err
    try:
        return Path(snapshot_download(repo_id=text, revision=revision, allow_patterns=_HUB_FILES,
                                      cache_dir=None if cache_dir is None else os.fspath(cache_dir)))
    except Exception as err:  # huggingface_hub raises many types (offline, 404, auth, network)
        raise CheckpointError(
            f"model: hub id {text!r} could not be fetched and is not in the local cache "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a checkpoint file (strict: `streamer.jsonfile.parse`)."""
    try:
        data = jsonfile.parse(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"model: expected {path.name} in {path.parent}, found none") from None
    except jsonfile.JsonSyntaxError as err:
        raise CheckpointError(f"model: {path} is not valid JSON: {err}") from None
    except OSError as err:
        raise CheckpointError(f"model: cannot read {path} ({err.strerror or type(err).__name__})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"model: {path} should hold a JSON object, found {type(data).__name__}")
    return data


def read_weights(folder: Path) -> dict[str, Tensor]:
    """Reads ``model.safetensors`` (preferred) or ``pytorch_model.bin`` from a folder."""
    st, pt = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file
        try:
            return load_file(str(st))
        except Exception as err:
            raise CheckpointError(f"model: {st} is not a readable safetensors file ({err})") from None
    if pt.is_file():
        try:
            return torch.load(str(pt), map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"model: {pt} is not a readable PyTorch weight file ({err})") from None
    raise CheckpointError(f"model: expected model.safetensors or pytorch_model.bin in {folder}, found neither")


def load_checkpoint(source: str | os.PathLike[str] = DEFAULT_MODEL, revision: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None) -> Checkpoint:
    """Loads a model from a bundled name, a folder, or a hub id (see the module docstring and `resolve_source`)."""
    folder = resolve_source(source, revision, cache_dir)
    config = _read_json(folder / "config.json")
    if config.get("format") == FORMAT:
        return _load_streamer(folder, config)
    if is_huggingface_config(config):
        return _load_huggingface(folder, config)
    raise CheckpointError(
        f"model: {folder / 'config.json'} is neither a streamer checkpoint (format={FORMAT!r}) nor a "
        f"Hugging Face wav2vec2 config (model_type={config.get('model_type')!r}, "
        f"architectures={config.get('architectures')!r})")


def _section(config: Mapping[str, Any], name: str, folder: Path, required: bool = True) -> Mapping[str, Any]:
    """One object-valued section of a streamer config.json."""
    if name not in config and not required:
        return {}
    value = config.get(name)
    if not isinstance(value, Mapping):
        found = "no such section" if name not in config else f"{type(value).__name__} {str(value)[:40]!r}"
        raise CheckpointError(
            f"model: config.json in {folder}: expected section {name!r} to be a JSON object, found {found}")
    return value


def _check_weights_fit(folder: Path, enc: EncoderConfig) -> None:
    """Refuses a config whose model would not fit its weight file, before the model is allocated.

    Weights are stored at 2 bytes per parameter or more (float16/bfloat16/float32), so a weight
    file smaller than that means a config that describes another (larger) model.
    """
    files = [f for f in (folder / "model.safetensors", folder / "pytorch_model.bin") if f.is_file()]
    if not files:
        return  # read_weights names the missing file
    size = files[0].stat().st_size
    needed = int(enc.approx_parameters() * MIN_BYTES_PER_PARAMETER * 0.9)
    if size < needed:
        raise CheckpointError(
            f"model: config.json in {folder} describes about {enc.approx_parameters():.3g} parameters "
            f"(expected at least {needed / 1e6:.1f} MB of weights), found {files[0].name} of {size / 1e6:.1f} MB; "
            "the config does not belong to these weights")


def _load_streamer(folder: Path, config: Mapping[str, Any]) -> Checkpoint:
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"model: format_version {version!r} in {folder}, this streamer reads {FORMAT_VERSION}")
    encoder = _section(config, "encoder", folder)
    vocabulary = _section(config, "vocabulary", folder)
    try:
        enc = EncoderConfig.from_dict(encoder)
        vocab = Vocabulary.from_dict(vocabulary)
        pre = PreprocessConfig.from_dict(_section(config, "preprocess", folder, required=False))
    except ConfigError as err:
        raise CheckpointError(f"model: config.json in {folder}: {err}") from None
    if len(vocab) != enc.vocab_size:
        raise CheckpointError(f"model: vocabulary has {len(vocab)} tokens, encoder.vocab_size is {enc.vocab_size}")
    _check_weights_fit(folder, enc)
    model = Wav2Vec2CTC(enc)
    state = read_weights(folder)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"model: weights in {folder} do not match the config: missing {missing[:4]}, unexpected {extra[:4]}")
    bad = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(v.shape)}"
           for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        raise CheckpointError(f"model: shape mismatches in {folder}: {bad[:3]}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    metadata = config.get("metadata", {})
    return Checkpoint(model.eval(), vocab, folder, FORMAT, dict(metadata) if isinstance(metadata, Mapping) else {}, pre)


def _hf_vocabulary(folder: Path, config: Mapping[str, Any]) -> Vocabulary:
    """The vocabulary of a Hugging Face checkpoint: vocab.json, added_tokens.json and the tokenizer's
    special tokens (special_tokens_map.json, tokenizer_config.json), checked against the head's size."""
    def optional(name: str) -> dict[str, Any]:
        return _read_json(folder / name) if (folder / name).is_file() else {}

    tokenizer = {**optional("special_tokens_map.json"), **optional("tokenizer_config.json")}
    return vocabulary_from_hf(_read_json(folder / "vocab.json"), tokenizer, config, optional("added_tokens.json"))


def _load_huggingface(folder: Path, config: Mapping[str, Any]) -> Checkpoint:
    architectures = config.get("architectures") or ["Wav2Vec2ForCTC"]
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise CheckpointError(
            f"model: {folder / 'config.json'}: expected \"architectures\" to be a list of class names, "
            f"found {architectures!r}")
    if "Wav2Vec2ForCTC" not in architectures:
        raise CheckpointError(
            f"model: {folder} holds {architectures}, which has no CTC head; fine-tune it first "
            "(streamer train --init-from ...), then load the result")
    try:
        enc = encoder_config_from_hf(config)
        vocab = _hf_vocabulary(folder, config)
        pre_file = folder / "preprocessor_config.json"
        pre = PreprocessConfig.from_hf(_read_json(pre_file) if pre_file.is_file() else {})
    except (ConfigError, TypeError, ValueError) as err:  # int("abc") and friends in hand-edited configs
        raise CheckpointError(f"model: unsupported Hugging Face checkpoint in {folder}: {err}") from None
    _check_weights_fit(folder, enc)
    model = Wav2Vec2CTC(enc)
    state = convert_state_dict(read_weights(folder), model.state_dict(), require_head=True)
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys != ["masked_spec_embed"] and result.missing_keys:
        raise CheckpointError(f"model: tensors missing after conversion: {result.missing_keys[:5]}")
    return Checkpoint(model.eval(), vocab, folder, "huggingface", {"source_config": dict(config)}, pre)


def load_pretrained_encoder(source: str | os.PathLike[str], vocab: Vocabulary, revision: str | None = None,
                            pos_conv_causal: bool = False, keep_matching_head: bool = True) -> Wav2Vec2CTC:
    """Builds a model for fine-tuning (or continued training) from a wav2vec2/XLSR checkpoint.

    The checkpoint may be pre-trained only (``Wav2Vec2ForPreTraining``, ``Wav2Vec2Model``, such as
    facebook/wav2vec2-large-xlsr-53) or already fine-tuned. A fine-tuned CTC head is kept when its
    vocabulary equals ``vocab`` (a warm restart of the same task); otherwise the head is new and
    randomly initialized (the XLSR recipe for a new language).

    Args:
        source: Folder or hub id of a Hugging Face wav2vec2 checkpoint, or a streamer checkpoint.
        vocab: Output vocabulary of the CTC head.
        revision: Hub revision.
        pos_conv_causal: Use a causal positional conv (the pre-trained centred kernel is kept; its
            weights then see past frames only, and fine-tuning adapts them).
        keep_matching_head: Keep the source's CTC head when its vocabulary equals ``vocab``.
    """
    folder = resolve_source(source, revision)
    config = _read_json(folder / "config.json")
    source_vocab: Vocabulary | None = None
    if config.get("format") == FORMAT:
        loaded = _load_streamer(folder, config)
        enc, state, source_vocab = loaded.config, dict(loaded.model.state_dict()), loaded.vocab
    elif is_huggingface_config(config):
        try:
            enc = encoder_config_from_hf(config)
        except ConfigError as err:
            raise CheckpointError(f"model: unsupported Hugging Face checkpoint in {folder}: {err}") from None
        _check_weights_fit(folder, enc)
        probe = Wav2Vec2CTC(enc)
        state = convert_state_dict(read_weights(folder), probe.state_dict(), require_head=False)
        if "ctc_head.weight" in state and (folder / "vocab.json").is_file():
            try:
                source_vocab = _hf_vocabulary(folder, config)
            except ConfigError:
                source_vocab = None
    else:
        raise CheckpointError(f"model: {folder} is not a wav2vec2 checkpoint (config.json model_type={config.get('model_type')!r})")
    enc = EncoderConfig.from_dict({**enc.to_dict(), "vocab_size": len(vocab), "pos_conv_causal": pos_conv_causal})
    model = Wav2Vec2CTC(enc)
    model.reset_parameters()
    keep_head = keep_matching_head and source_vocab == vocab and "ctc_head.weight" in state
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith("ctc_head.")}
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model


def save_checkpoint(folder: str | os.PathLike[str], model: Wav2Vec2CTC, vocab: Vocabulary,
                    metadata: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32,
                    preprocess: PreprocessConfig = PreprocessConfig()) -> Path:
    """Writes a model in streamer's format (config.json, model.safetensors, vocab.json), replacing the three
    files together and atomically (see `streamer.files.atomic_files`).

    Args:
        folder: Output folder (created if needed).
        model: The model.
        vocab: Its vocabulary (must have ``config.vocab_size`` tokens).
        metadata: JSON-serializable facts stored with the weights.
        dtype: Storage dtype of floating-point tensors (float32 or float16/bfloat16 to halve the size;
            the loader always computes in float32).
        preprocess: What the samples need before the encoder.
    """
    from safetensors.torch import save_file

    if len(vocab) != model.config.vocab_size:
        raise ConfigError(f"save: vocabulary has {len(vocab)} tokens, model.vocab_size is {model.config.vocab_size}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": model.config.to_dict(),
              "vocabulary": vocab.to_dict(), "preprocess": preprocess.to_dict(), "metadata": dict(metadata or {})}
    names = [out / "model.safetensors", out / "config.json", out / "vocab.json"]
    with atomic_files(names, overwrite=True) as (weights, config_file, vocab_file):  # replaced together
        save_file(state, str(weights))
        config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        vocab_file.write_text(json.dumps(vocab.to_hf_vocab(), indent=1) + "\n", encoding="utf-8")
    return out


def model_vocabulary(source: str | Path) -> Vocabulary | None:
    """The vocabulary of a model's CTC head, read without loading its weights.

    Args:
        source: A streamer or Hugging Face checkpoint (folder, bundled model name or hub id; see
            `resolve_source`).

    Returns:
        The vocabulary, or None when the checkpoint has no CTC head (pre-trained only).
    """
    folder = resolve_source(source)
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    try:
        if config.get("format") == FORMAT:
            return Vocabulary.from_dict(_section(config, "vocabulary", folder))
        architectures = config.get("architectures") or []
        if not isinstance(architectures, list) or "Wav2Vec2ForCTC" not in architectures \
                or not (folder / "vocab.json").is_file():
            return None
        return _hf_vocabulary(folder, config)
    except ConfigError as err:
        raise CheckpointError(f"model: vocabulary of {folder}: {err}") from None
