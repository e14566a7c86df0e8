"""The encoder's configuration: the single source of every dimension, saved with the weights."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from streamer.errors import ConfigError

#: Activations the encoder implements, by their Hugging Face names.
ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish")

#: Normalizations of the conv feature extractor: ``layer`` (XLSR-53, every conv layer has a
#: LayerNorm over channels) and ``group`` (wav2vec2-base: a GroupNorm over time on the first layer).
FEATURE_NORMS = ("layer", "group")

#: Inclusive bounds of every integer field of `EncoderConfig`, checked before any tensor is allocated.
#: Generous against released checkpoints (XLS-R 2B: width 1920, 48 layers, 7680-wide feed-forward).
BOUNDS: dict[str, tuple[int, int]] = {
    "conv_dim": (1, 8192),            # channels of one conv layer
    "conv_kernel": (1, 1024),         # input steps
    "conv_stride": (1, 64),           # input steps
    "hidden_size": (1, 16384),        # transformer width D
    "num_layers": (1, 256),
    "num_heads": (1, 1024),
    "intermediate_size": (1, 65536),  # feed-forward width
    "pos_conv_kernel": (1, 4096),     # frames
    "pos_conv_groups": (1, 16384),
    "vocab_size": (2, 1_000_000),     # blank + at least one token
}
#: Most conv feature-extractor layers accepted.
MAX_CONV_LAYERS = 32
#: Most parameters a config may describe (4e9 float32 parameters = 16 GB; XLS-R 2B has 2.2e9).
MAX_PARAMETERS = 4_000_000_000


def _integer(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi], or a `ConfigError` naming the field (JSON floats such as 1e9 and
    booleans are refused: a dimension is written as an integer)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}: expected an integer in [{lo}, {hi}], found {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: expected an integer in [{lo}, {hi}], found {value}")
    return int(value)


@dataclass(frozen=True)
class EncoderConfig:
    """Dimensions of a wav2vec2 / XLSR CTC encoder.

    The defaults are wav2vec2-large-xlsr-53 with a 32-token CTC head. Field names follow the
    architecture, not any one library; `streamer.convert.huggingface` maps Hugging Face configs here.
    """

    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    """Output channels of each conv feature-extractor layer."""
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    """Kernel size of each conv layer, in input steps."""
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    """Stride of each conv layer, in input steps (product = hop in samples)."""
    conv_bias: bool = True
    """Whether the conv layers have a bias."""
    feat_extract_norm: str = "layer"
    """``layer`` (LayerNorm in every conv layer) or ``group`` (GroupNorm over time in the first)."""
    feat_extract_activation: str = "gelu"
    """Activation after each conv layer."""
    hidden_size: int = 1024
    """Transformer width D."""
    num_layers: int = 24
    """Number of transformer layers."""
    num_heads: int = 16
    """Attention heads per layer (D must divide evenly)."""
    intermediate_size: int = 4096
    """Width of each feed-forward block."""
    hidden_act: str = "gelu"
    """Activation of the feed-forward blocks."""
    layer_norm_eps: float = 1e-5
    """Epsilon of the transformer's layer norms (the conv layer norms use 1e-5, as in wav2vec2)."""
    pos_conv_kernel: int = 128
    """Kernel of the convolutional positional embedding, in frames."""
    pos_conv_groups: int = 16
    """Groups of the convolutional positional embedding."""
    pos_conv_causal: bool = False
    """If true the positional conv sees only the current and past frames (needed for cached
    streaming); if false it is centred, as in every released wav2vec2/XLSR checkpoint."""
    stable_layer_norm: bool = True
    """Pre-LN transformer layers with a final LayerNorm (XLSR-53, large models); false = post-LN
    (wav2vec2-base)."""
    vocab_size: int = 32
    """Output classes of the CTC head, blank included."""

    def __post_init__(self) -> None:
        # Types and bounds first, so that no caller allocates tensors for an absurd or mistyped shape.
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
                raise ConfigError(f"{name}: expected a list of integers, found {type(values).__name__} {values!r}")
            object.__setattr__(self, name, tuple(_integer(f"{name}[{i}]", v, *BOUNDS[name])
                                                 for i, v in enumerate(values)))
        for name, (lo, hi) in BOUNDS.items():
            if not name.startswith("conv_"):
                _integer(name, getattr(self, name), lo, hi)
        for name in ("conv_bias", "pos_conv_causal", "stable_layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, found {getattr(self, name)!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ConfigError(f"layer_norm_eps: expected a number in (0, 1), found {eps!r}")
        n = len(self.conv_dim)
        if not 1 <= n <= MAX_CONV_LAYERS:
            raise ConfigError(f"conv_dim: expected 1 to {MAX_CONV_LAYERS} conv layers, found {n}")
        if len(self.conv_kernel) != n or len(self.conv_stride) != n:
            raise ConfigError(
                "conv_dim, conv_kernel and conv_stride: expected the same length, found "
                f"{n}, {len(self.conv_kernel)} and {len(self.conv_stride)}"
            )
        if self.feat_extract_norm not in FEATURE_NORMS:
            raise ConfigError(
                f"feat_extract_norm: expected one of {FEATURE_NORMS}, found {self.feat_extract_norm!r}"
            )
        for name in ("feat_extract_activation", "hidden_act"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ConfigError(f"{name}: expected one of {ACTIVATIONS}, found {getattr(self, name)!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size / num_heads: expected hidden_size divisible by num_heads, found "
                f"{self.hidden_size} / {self.num_heads}"
            )
        if self.hidden_size % self.pos_conv_groups:
            raise ConfigError(
                f"pos_conv_groups: expected a divisor of hidden_size={self.hidden_size}, "
                f"found {self.pos_conv_groups}"
            )
        if self.approx_parameters() > MAX_PARAMETERS:
            raise ConfigError(f"encoder config: expected at most {MAX_PARAMETERS:.2g} parameters, these dimensions "
                              f"make about {self.approx_parameters():.3g}")

    def approx_parameters(self) -> int:
        """Parameters of the model these dimensions describe (weights and biases of the convs, linear
        layers and CTC head; norm weights and a few bias vectors are left out: within 1 % for real model sizes)."""
        d, i = self.hidden_size, self.intermediate_size
        conv, prev = 0, 1
        for c, k in zip(self.conv_dim, self.conv_kernel):
            conv += c * prev * k + c
            prev = c
        pos = d * (d // self.pos_conv_groups) * self.pos_conv_kernel
        layer = 4 * d * d + 2 * d * i
        return conv + prev * d + pos + self.num_layers * layer + d * self.vocab_size

    @property
    def hop_samples(self) -> int:
        """Samples between two output frames (product of the conv strides)."""
        hop = 1
        for s in self.conv_stride:
            hop *= s
        return hop

    @property
    def receptive_field_samples(self) -> int:
        """Samples that one output frame depends on."""
        field, jump = 1, 1
        for k, s in zip(self.conv_kernel, self.conv_stride):
            field += (k - 1) * jump
            jump *= s
        return field

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    def num_frames(self, num_samples: int) -> int:
        """Output frames for an input of ``num_samples`` samples (0 if shorter than one frame)."""
        n = int(num_samples)
        for k, s in zip(self.conv_kernel, self.conv_stride):
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EncoderConfig":
        """Builds a config from `to_dict` output; unknown keys are an error (they mean a newer format)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"encoder config: expected an object, found {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise ConfigError(f"encoder config: unknown fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class DropoutConfig:
    """Regularization used only while training (every field is a probability in [0, 1))."""

    hidden: float = 0.0
    """Dropout on the residual branches and after the positional embedding."""
    attention: float = 0.0
    """Dropout on the attention probabilities."""
    activation: float = 0.0
    """Dropout inside the feed-forward blocks."""
    feat_proj: float = 0.0
    """Dropout after the feature projection."""
    final: float = 0.0
    """Dropout before the CTC head."""
    layerdrop: float = 0.0
    """Probability of skipping a whole transformer layer in a training step."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"dropout.{f.name}: expected a probability in [0, 1), found {v}")


def xlsr53_large_config(vocab_size: int = 32) -> EncoderConfig:
    """wav2vec2-large-xlsr-53 (315M parameters): 7 conv layers with LayerNorm, 24 pre-LN layers."""
    return EncoderConfig(vocab_size=vocab_size)


def wav2vec2_base_config(vocab_size: int = 32) -> EncoderConfig:
    """wav2vec2-base (95M parameters): GroupNorm conv front-end, no conv bias, 12 post-LN layers."""
    return EncoderConfig(
        conv_bias=False, feat_extract_norm="group", hidden_size=768, num_layers=12, num_heads=12,
        intermediate_size=3072, stable_layer_norm=False, vocab_size=vocab_size,
    )


def demo_small_config(vocab_size: int = 30) -> EncoderConfig:
    """The bundled demo model's shape (6.9M parameters): XLSR layout, narrow and shallow.

    A 32-channel first conv layer keeps the 3200-frames-per-second stage cheap to train on a CPU;
    pre-LN layers and a causal 32-frame positional conv make cached streaming exact.
    """
    return EncoderConfig(
        conv_dim=(32, 64, 128, 160, 192, 256, 256), hidden_size=256, num_layers=8, num_heads=4,
        intermediate_size=1024, pos_conv_kernel=32, pos_conv_groups=16, pos_conv_causal=True,
        stable_layer_norm=True, vocab_size=vocab_size,
    )


def student_384_config(vocab_size: int = 30) -> EncoderConfig:
    """A Whisper-tiny-sized student (13M parameters): 384 wide with 6 heads and a 1536-wide
    feed-forward, so its first four layers can be Whisper tiny.en's own; two more layers on top.

    The conv front-end's last two kernels are 5 wide, so a frame sees 1120 samples (70 ms), enough
    to reproduce Whisper's conv stem (log-mel frames of 25 ms, two 3-tap convs: 65 ms).
    """
    return EncoderConfig(
        conv_dim=(128, 128, 192, 256, 384, 384, 384), conv_kernel=(10, 3, 3, 3, 3, 5, 5), hidden_size=384,
        num_layers=6, num_heads=6, intermediate_size=1536, pos_conv_kernel=32, pos_conv_groups=16,
        pos_conv_causal=True, stable_layer_norm=True, vocab_size=vocab_size,
    )


def tiny_config(vocab_size: int = 30, **overrides: object) -> EncoderConfig:
    """A few-thousand-parameter model for tests."""
    base = dict(conv_dim=(8, 8, 8, 8, 8, 8, 16), hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                pos_conv_kernel=8, pos_conv_groups=2, vocab_size=vocab_size)
    base.update(overrides)
    return EncoderConfig(**base)  # type: ignore[arg-type]


#: Named model shapes for ``streamer train --preset``.
PRESETS = {
    "demo-small": demo_small_config,
    "xlsr53-large": xlsr53_large_config,
    "wav2vec2-base": wav2vec2_base_config,
    "student-384": student_384_config,
    "tiny": tiny_config,
}
