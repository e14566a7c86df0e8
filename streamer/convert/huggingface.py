"""Conversion of Hugging Face ``Wav2Vec2ForCTC`` checkpoints (config, weights, tokenizer files).

Pure functions over dicts and tensors: transformers is never imported, and reading files is left to
`streamer.checkpoint`. The key map is explicit; every tensor's shape is checked against the model.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from torch import Tensor

from streamer.errors import CheckpointError, ConfigError
from streamer.model.config import EncoderConfig
from streamer.vocab import Vocabulary

#: Hugging Face config fields → EncoderConfig fields.
_CONFIG_FIELDS = {
    "conv_dim": "conv_dim",
    "conv_kernel": "conv_kernel",
    "conv_stride": "conv_stride",
    "conv_bias": "conv_bias",
    "feat_extract_norm": "feat_extract_norm",
    "feat_extract_activation": "feat_extract_activation",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_act",
    "layer_norm_eps": "layer_norm_eps",
    "num_conv_pos_embeddings": "pos_conv_kernel",
    "num_conv_pos_embedding_groups": "pos_conv_groups",
    "do_stable_layer_norm": "stable_layer_norm",
    "vocab_size": "vocab_size",
}

#: Defaults of transformers' Wav2Vec2Config, used for fields a config.json leaves out.
_HF_DEFAULTS: dict[str, Any] = {
    "conv_dim": (512,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_bias": False, "feat_extract_norm": "group", "feat_extract_activation": "gelu",
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "layer_norm_eps": 1e-5, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "do_stable_layer_norm": False, "vocab_size": 32,
}

#: Architectures whose weights hold a wav2vec2 encoder (only ForCTC has the CTC head).
ENCODER_ARCHITECTURES = ("Wav2Vec2ForCTC", "Wav2Vec2Model", "Wav2Vec2ForPreTraining")

#: Weight prefixes of heads that are not used for recognition (pre-training quantizer and projections).
_IGNORED_PREFIXES = ("quantizer.", "project_hid.", "project_q.", "dropout_features.")

# (regex over the Hugging Face key without its "wav2vec2." prefix, replacement in streamer's model)
_KEY_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)$", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)$", r"feature_extractor.conv_layers.\1.norm.\2"),
    (r"^feature_projection\.(layer_norm|projection)\.(weight|bias)$", r"feature_projection.\1.\2"),
    (r"^masked_spec_embed$", r"masked_spec_embed"),
    (r"^encoder\.pos_conv_embed\.conv\.bias$", r"encoder.pos_conv.conv.bias"),
    (r"^encoder\.layer_norm\.(weight|bias)$", r"encoder.layer_norm.\1"),
    (r"^encoder\.layers\.(\d+)\.attention\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)$",
     r"encoder.layers.\1.attention.\2.\3"),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)$", r"encoder.layers.\1.attn_norm.\2"),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)$", r"encoder.layers.\1.feed_forward.fc1.\2"),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)$", r"encoder.layers.\1.feed_forward.fc2.\2"),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$", r"encoder.layers.\1.ffn_norm.\2"),
    (r"^lm_head\.(weight|bias)$", r"ctc_head.\1"),
))

#: The positional conv's weight, in its three stored forms (plain, old weight norm, parametrized).
_POS_CONV = "encoder.pos_conv_embed.conv."


def is_huggingface_config(config: Mapping[str, Any]) -> bool:
    """True when a config.json looks like a Hugging Face wav2vec2 config."""
    architectures = config.get("architectures")
    return config.get("model_type") == "wav2vec2" or (isinstance(architectures, list) and any(
        a in ENCODER_ARCHITECTURES for a in architectures if isinstance(a, str)))


def encoder_config_from_hf(config: Mapping[str, Any]) -> EncoderConfig:
    """Maps a Hugging Face ``Wav2Vec2Config`` dict to an `EncoderConfig`.

    Raises:
        ConfigError: The config uses a feature streamer does not implement; the message names the
            field and its value.
    """
    model_type = config.get("model_type", "wav2vec2")
    if model_type != "wav2vec2":
        raise ConfigError(f"config.json model_type: expected 'wav2vec2', found {model_type!r}")
    if config.get("add_adapter"):
        raise ConfigError(f"config.json add_adapter: streamer supports only false, found {config['add_adapter']!r}")
    for name in ("adapter_attn_dim", "position_embeddings_type"):
        if config.get(name) is not None:
            raise ConfigError(f"config.json {name}: streamer supports only null, found {config[name]!r}")
    n_layers = config.get("num_feat_extract_layers")
    conv_dim = config.get("conv_dim", _HF_DEFAULTS["conv_dim"])
    if n_layers is not None and n_layers != len(conv_dim):
        raise ConfigError(
            f"config.json num_feat_extract_layers: expected len(conv_dim)={len(conv_dim)}, found {n_layers}")
    values = {ours: config.get(theirs, _HF_DEFAULTS[theirs]) for theirs, ours in _CONFIG_FIELDS.items()}
    return EncoderConfig(pos_conv_causal=False, **values)


def vocabulary_from_hf(vocab: Mapping[str, Any], tokenizer_config: Mapping[str, Any],
                       model_config: Mapping[str, Any], added_tokens: Mapping[str, Any] | None = None) -> Vocabulary:
    """Builds the `Vocabulary` of a Hugging Face CTC tokenizer.

    The tokens must name every output of the CTC head exactly once: ids are integers, no two tokens
    share one, and together they run from 0 to ``vocab_size - 1`` without a gap.

    Args:
        vocab: Contents of vocab.json (token → id).
        tokenizer_config: Merged tokenizer_config.json and special_tokens_map.json (may be empty).
        model_config: config.json (for ``pad_token_id``, the CTC blank, and ``vocab_size``, the head's size).
        added_tokens: Contents of added_tokens.json (token → id, often ``<s>`` and ``</s>``), if any.

    Raises:
        ConfigError: A non-integer id, two tokens with one id, an id outside the head, or an id of the
            head no token names (one error each, naming the tokens or ids).
    """
    if vocab and all(isinstance(v, Mapping) for v in vocab.values()):
        raise ConfigError(
            f"vocab.json: expected one token→id map, found one per language ({sorted(vocab)[:8]}...); "
            "multi-language (MMS adapter) vocabularies are not supported")
    by_id: dict[int, str] = {}
    for source, mapping in (("vocab.json", vocab), ("added_tokens.json", added_tokens or {})):
        for tok, idx in mapping.items():
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise ConfigError(f"{source}: token {tok!r} has id {idx!r}, expected an integer")
            if source == "added_tokens.json" and vocab.get(tok) == idx:
                continue  # the same token listed in both files
            if idx in by_id:
                raise ConfigError(f"{source}: tokens {by_id[idx]!r} and {tok!r} share id {idx}; each id names one token")
            by_id[idx] = tok
    head = model_config.get("vocab_size")
    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 1):
        raise ConfigError(f"config.json vocab_size: expected a positive integer, found {head!r}")
    size = head if head is not None else max(by_id, default=-1) + 1
    where = "the head's size (config.json vocab_size)" if head is not None else "the largest id + 1"
    outside = sorted(i for i in by_id if not 0 <= i < size)
    if outside:
        raise ConfigError(f"vocab.json: token {by_id[outside[0]]!r} has id {outside[0]}, expected an id from 0 to "
                          f"{size - 1} ({where} is {size})")
    if len(by_id) != size:
        missing = [i for i in range(size) if i not in by_id]
        raise ConfigError(f"vocab.json: holds {len(by_id)} tokens, {where} is {size}: no token has "
                          f"id{'s' if len(missing) > 1 else ''} {missing[:8]}{'...' if len(missing) > 8 else ''}")
    tokens = [by_id[i] for i in range(size)]
    ids = {tok: i for i, tok in enumerate(tokens)}

    def special(name: str, default: str | None) -> str | None:
        value = tokenizer_config.get(name, default)
        if isinstance(value, Mapping):  # AddedToken serialized as a dict
            value = value.get("content")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"tokenizer_config.json {name}: expected a token (a string), found {value!r}")
        return value

    delimiter = special("word_delimiter_token", "|") or "|"
    pad, unk = special("pad_token", "<pad>"), special("unk_token", "<unk>")
    bos, eos = special("bos_token", "<s>"), special("eos_token", "</s>")
    blank = model_config.get("pad_token_id")
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < size:
        if pad not in ids:
            raise ConfigError(f"tokenizer: cannot find the CTC blank: config pad_token_id={blank!r}, pad token {pad!r} not in vocab.json")
        blank = ids[pad]
    specials = tuple(ids[t] for t in (pad, bos, eos) if isinstance(t, str) and t in ids)
    return Vocabulary(tokens=tuple(tokens), blank_id=blank, word_delimiter=delimiter,
                      unk_id=ids.get(unk) if isinstance(unk, str) else None, special_ids=specials)


def fold_weight_norm(g: Tensor, v: Tensor, dim: int) -> Tensor:
    """Folds a weight-norm pair into one weight: ``w = g * v / ||v||`` (norm over every dim but ``dim``)."""
    dims = [d for d in range(v.dim()) if d != dim]
    return v * (g / v.norm(dim=dims, keepdim=True))


def convert_state_dict(state: Mapping[str, Tensor], expected: Mapping[str, Tensor],
                       require_head: bool = True) -> dict[str, Tensor]:
    """Renames and checks a Hugging Face state dict for `streamer.model.Wav2Vec2CTC`.

    Args:
        state: The checkpoint's tensors (keys with or without the ``wav2vec2.`` prefix).
        expected: The target model's ``state_dict()`` (names and shapes to match).
        require_head: Whether the CTC head must be present (False to initialize an encoder-only
            checkpoint, such as pre-trained XLSR-53, for fine-tuning).

    Returns:
        A state dict with streamer's names. Tensors absent from the checkpoint are absent here
        (only ``masked_spec_embed`` and, with ``require_head=False``, the CTC head may be).

    Raises:
        CheckpointError: Unknown keys, missing keys or shape mismatches (listed in the message).
    """
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    pos: dict[str, Tensor] = {}
    for key, tensor in state.items():
        bare = key[len("wav2vec2."):] if key.startswith("wav2vec2.") else key
        if bare.startswith(_IGNORED_PREFIXES):
            continue
        if bare.startswith(_POS_CONV) and not bare.endswith(".bias"):
            pos[bare[len(_POS_CONV):]] = tensor
            continue
        for pattern, repl in _KEY_RULES:
            if pattern.match(bare):
                out[pattern.sub(repl, bare)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"weights: {len(unknown)} keys streamer does not map, e.g. {unknown[:5]}")
    if "weight" in pos:
        out["encoder.pos_conv.conv.weight"] = pos["weight"]
    elif {"weight_g", "weight_v"} <= pos.keys():
        out["encoder.pos_conv.conv.weight"] = fold_weight_norm(pos["weight_g"], pos["weight_v"], dim=2)
    elif {"parametrizations.weight.original0", "parametrizations.weight.original1"} <= pos.keys():
        out["encoder.pos_conv.conv.weight"] = fold_weight_norm(
            pos["parametrizations.weight.original0"], pos["parametrizations.weight.original1"], dim=2)
    elif pos:
        raise CheckpointError(f"weights: positional conv weight in an unknown form: {sorted(pos)}")

    optional = {"masked_spec_embed"} | ({"ctc_head.weight", "ctc_head.bias"} if not require_head else set())
    missing = [k for k in expected if k not in out and k not in optional]
    if missing:
        raise CheckpointError(f"weights: {len(missing)} tensors missing from the checkpoint, e.g. {missing[:5]}")
    extra = [k for k in out if k not in expected]
    if extra:
        raise CheckpointError(f"weights: tensors the model has no place for, e.g. {extra[:5]}")
    bad = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(t.shape)}"
           for k, t in out.items() if tuple(t.shape) != tuple(expected[k].shape)]
    if bad:
        raise CheckpointError(f"weights: {len(bad)} shape mismatches, e.g. {bad[:3]}")
    return out
