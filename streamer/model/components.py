"""Building blocks of the wav2vec2 / XLSR encoder.

Each block is a plain `torch.nn.Module` with no I/O and no data-dependent Python control flow in
``forward``, so the same blocks serve training, offline inference, both streaming modes and export.
Shapes: B = batch, N = samples, T = frames, C = conv channels, D = hidden size, H = heads.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamer.model.config import DropoutConfig, EncoderConfig

#: Epsilon of the LayerNorm/GroupNorm inside the conv feature extractor (fixed in wav2vec2).
CONV_NORM_EPS = 1e-5


def make_dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or an identity when p is 0 (no random numbers drawn on the CPU)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """Returns the activation function for a Hugging Face activation name."""
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    raise ValueError(f"activation: expected one of gelu, gelu_new, gelu_pytorch_tanh, relu, silu, swish; found {name!r}")


class ConvLayer(nn.Module):
    """One conv layer of the feature extractor: Conv1d → optional norm → activation.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel: Kernel size in input steps.
        stride: Stride in input steps.
        bias: Whether the conv has a bias.
        norm: ``"layer"`` (LayerNorm over channels, per frame), ``"group"`` (GroupNorm with one
            group per channel: normalizes each channel over time) or ``"none"``.
        act: Activation name.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool,
                 norm: str, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "layer":
            self.norm: nn.Module | None = nn.LayerNorm(out_channels, eps=CONV_NORM_EPS)
        elif norm == "group":
            self.norm = nn.GroupNorm(out_channels, out_channels, eps=CONV_NORM_EPS, affine=True)
        else:
            self.norm = None
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, N) → (B, C_out, (N - kernel) // stride + 1)."""
        x = self.conv(x)
        if self.norm_kind == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.norm is not None:
            x = self.norm(x)
        return self.act(x)


class FeatureExtractor(nn.Module):
    """The conv stack that turns 16-kHz samples into frames (hop 320, receptive field 400 for XLSR)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        layers = []
        in_ch = 1
        for i, (ch, k, s) in enumerate(zip(config.conv_dim, config.conv_kernel, config.conv_stride)):
            if config.feat_extract_norm == "layer":
                norm = "layer"
            else:
                norm = "group" if i == 0 else "none"
            layers.append(ConvLayer(in_ch, ch, k, s, config.conv_bias, norm, config.feat_extract_activation))
            in_ch = ch
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, waveform: Tensor) -> Tensor:
        """(B, N) float samples in [-1, 1] → (B, T, C_last) features."""
        x = waveform[:, None, :]
        for layer in self.conv_layers:
            x = layer(x)
        return x.transpose(1, 2)

    def forward_in_pieces(self, waveform: Tensor, piece_frames: int) -> Tensor:
        """`forward` computed ``piece_frames`` output frames at a time: the same (B, T, C_last) features.

        The conv stack's activations are the largest tensors of a long forward (C channels at 1/5 of
        the sample rate); in pieces they stay the size of one piece, whatever the input length. Exact
        only for frame-local norms (``feat_extract_norm == "layer"``): a group norm normalizes each
        channel over the whole input. Eager inference only (shape-dependent loop; not for export).
        """
        if self.config.feat_extract_norm != "layer":
            raise ValueError("forward_in_pieces: expected a layer-norm front-end, found a group-norm one")
        total = self.config.num_frames(waveform.shape[-1])
        if piece_frames < 1 or total <= piece_frames:
            return self.forward(waveform)
        hop, field = self.config.hop_samples, self.config.receptive_field_samples
        pieces = [self.forward(waveform[:, a * hop:(min(a + piece_frames, total) - 1) * hop + field])
                  for a in range(0, total, piece_frames)]
        return torch.cat(pieces, dim=1)


class FeatureProjection(nn.Module):
    """LayerNorm then a linear projection from conv channels to the transformer width."""

    def __init__(self, config: EncoderConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = make_dropout(dropout)

    def forward(self, features: Tensor) -> Tensor:
        """(B, T, C) → (B, T, D)."""
        return self.dropout(self.projection(self.layer_norm(features)))


class PositionalConv(nn.Module):
    """Convolutional relative positional embedding: grouped Conv1d over time, then the activation.

    Centred (released checkpoints): padding K//2 on both sides, the last output dropped when K is
    even, so output frame t sees input frames t-K//2 .. t+K//2-1. Causal: K-1 frames of left
    padding, so frame t sees t-K+1 .. t. The weight norm of the original is folded into ``conv.weight``.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        k = config.pos_conv_kernel
        self.kernel = k
        self.causal = config.pos_conv_causal
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, k, groups=config.pos_conv_groups)
        self.act = activation(config.feat_extract_activation)

    @property
    def context_frames(self) -> int:
        """Past frames a causal positional conv keeps as streaming state (K - 1)."""
        return self.kernel - 1

    @property
    def padding(self) -> tuple[int, int]:
        """Zero frames (left, right) around the input of an offline forward: (K-1, 0) causal, else
        (K//2, K//2) with the right one one frame shorter when K is even."""
        k = self.kernel
        return (k - 1, 0) if self.causal else (k // 2, k // 2 - (1 if k % 2 == 0 else 0))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) → (B, T, D) positional embedding (to be added to ``x``)."""
        return self.act(self.conv(F.pad(x.transpose(1, 2), self.padding))).transpose(1, 2)

    def step(self, x: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        """Causal streaming step.

        Args:
            x: (B, n, D) new frames.
            history: (B, K-1, D) the previous K-1 input frames (zeros before the stream starts).

        Returns:
            The (B, n, D) embedding of the new frames and the (B, K-1, D) history for the next step.
        """
        full = torch.cat([history, x], dim=1)
        y = self.act(self.conv(full.transpose(1, 2))).transpose(1, 2)
        return y, full[:, full.shape[1] - (self.kernel - 1):]


class SelfAttention(nn.Module):
    """Multi-head self-attention with an additive bias and an optional key/value prefix (cache)."""

    def __init__(self, config: EncoderConfig, dropout: float = 0.0) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.dropout = dropout
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, bias: Tensor | None = None, past_key: Tensor | None = None,
                past_value: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Attends from ``x`` to the cached keys followed by ``x`` itself.

        Args:
            x: (B, n, D) queries (and new keys/values).
            bias: Additive bias broadcastable to (B, H, n, L + n), or None for full attention.
            past_key: (B, H, L, D/H) cached keys, or None.
            past_value: (B, H, L, D/H) cached values, or None.

        Returns:
            The (B, n, D) output, and this call's new keys and values, each (B, H, n, D/H).
        """
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        keys = k if past_key is None else torch.cat([past_key, k], dim=2)
        values = v if past_value is None else torch.cat([past_value, v], dim=2)
        y = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        b, _, n, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, n, -1)), k, v


class FeedForward(nn.Module):
    """Linear → activation → dropout → linear → dropout."""

    def __init__(self, config: EncoderConfig, dropout: DropoutConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.inner_dropout = make_dropout(dropout.activation)
        self.out_dropout = make_dropout(dropout.hidden)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) → (B, T, D)."""
        return self.out_dropout(self.fc2(self.inner_dropout(self.act(self.fc1(x)))))


class EncoderLayer(nn.Module):
    """One transformer layer, pre-LN (``stable_layer_norm``, XLSR-53) or post-LN (wav2vec2-base)."""

    def __init__(self, config: EncoderConfig, dropout: DropoutConfig) -> None:
        super().__init__()
        self.pre_ln = config.stable_layer_norm
        self.attention = SelfAttention(config, dropout.attention)
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config, dropout)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = make_dropout(dropout.hidden)

    def forward(self, x: Tensor, bias: Tensor | None = None, past_key: Tensor | None = None,
                past_value: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, n, D) → (B, n, D), plus the layer's new keys and values (see `SelfAttention`)."""
        if self.pre_ln:
            a, k, v = self.attention(self.attn_norm(x), bias, past_key, past_value)
            x = x + self.dropout(a)
            x = x + self.feed_forward(self.ffn_norm(x))
        else:
            a, k, v = self.attention(x, bias, past_key, past_value)
            x = self.attn_norm(x + self.dropout(a))
            x = self.ffn_norm(x + self.feed_forward(x))
        return x, k, v


def init_weights(module: nn.Module) -> None:
    """wav2vec2-style initialization for training from scratch (normal(0, 0.02) linears, Kaiming convs)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv1d):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            fan_in = module.in_channels // module.groups * module.kernel_size[0]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(module.bias, -bound, bound)
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
