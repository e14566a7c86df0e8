"""Export-time rewrite of a model into ops the XNNPACK delegate runs (numerically equivalent).

ExecuTorch 1.5.1's XNNPACK partitioner does not take ``aten.native_layer_norm`` nor the bool/scalar
ops that ``F.scaled_dot_product_attention`` decomposes into (``logical_not``, ``any``, ``where``,
``mul.Scalar``, ``expand``), nor 1-D convolutions. Each op it refuses runs in
a portable kernel and cuts the delegate graph into another segment. `delegate_friendly` returns a
deep copy of a model with those blocks replaced by equivalents written in ops the delegate takes:

* `DelegateLayerNorm` — the mean and the variance over the last dim as float32 Linears with one
  output (weights 1/D), then sub / mul / rsqrt (XNNPACK's mean averages the two innermost dims of a
  4-D tensor as a global average pooling in NHWC, which costs two transposes of the activations per
  mean);
* `DelegateSelfAttention` — the query projection pre-multiplied by 1/sqrt(D/H), scores by ``bmm``,
  the additive bias, ``softmax`` over keys, ``bmm`` with the values (a fully masked query row gets a
  uniform average, as `streamer.model.masks` documents, instead of SDPA's special case);
* `FramewiseFeatureExtractor` — a layer-norm conv front-end in (B, T, C) layout, each strided conv
  written as a gather of its input frames (reshapes, contiguous slices, one concat) and a Linear,
  so that int8 quantization applies to it: XNNPACK in executorch 1.5.1 runs quantized convs as
  float32 convolutions (measured with ETDump), and quantized Linears as int8 kernels;
* `DelegatePositionalConv` — the positional conv as a Conv2d over a (B, D, 1, N) concatenation of
  constant zeros (or, streaming, its history) with the frames, made for the conv alone, so that the
  XNNPACK lowering takes it dynamically quantized (an int8 convolution);
* `Conv1dAs2d` — any other Conv1d (group-norm front-ends) run as a Conv2d over a (B, C, 1, N) view,
  which the delegate takes (in float32).

`streamer.model` is untouched: the rewrite applies only to the copy that gets exported.
`DelegateSelfAttention` also reads the exported cached step's key/value cache as per-chunk blocks
(`streamer.export.executorch`), so that step needs no per-layer select, slice or stack.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamer.model.components import FeatureExtractor, PositionalConv, SelfAttention


class DelegateLayerNorm(nn.Module):
    """LayerNorm over the last dim in linear / sub / mul / rsqrt ops (same weights and epsilon).

    The two means (of the input and of the squared deviations) are Linears with one output whose
    weights are all 1/D. Written as ``mean`` over a (…, 1, D) view instead, XNNPACK (executorch
    1.5.1) runs each mean as a global average pooling in NHWC layout, between two transposes of the
    whole activation: 228 of the 328 transposes of the XLSR-53-large step (ETDump). The Linears are
    not quantized (only ``nn.Linear`` modules are, see `streamer.export.executorch`).

    Args:
        norm: The LayerNorm to replace (elementwise affine, one normalized dim).
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        if len(norm.normalized_shape) != 1 or not norm.elementwise_affine:
            raise ValueError(f"layer norm rewrite: expected one normalized dim with affine weights, found "
                             f"shape {tuple(norm.normalized_shape)}, affine={norm.elementwise_affine}")
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias if norm.bias is not None else nn.Parameter(torch.zeros_like(norm.weight),
                                                                         requires_grad=False)
        dim = norm.normalized_shape[0]
        self.register_buffer("average", torch.full((1, dim), 1.0 / dim, dtype=norm.weight.dtype,
                                                   device=norm.weight.device), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) → (..., D)."""
        centred = x - F.linear(x, self.average)
        var = F.linear(centred * centred, self.average)
        return centred * torch.rsqrt(var + self.eps) * self.weight + self.bias


class DelegateSelfAttention(nn.Module):
    """`SelfAttention` with explicit ``bmm`` / ``softmax`` and the 1/sqrt(D/H) scale folded into q.

    Args:
        attn: The attention to replace (its projections are copied; the query one is rescaled).
    """

    def __init__(self, attn: SelfAttention) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.head_dim = attn.head_dim
        scale = 1.0 / math.sqrt(self.head_dim)
        self.q_proj = copy.deepcopy(attn.q_proj)
        with torch.no_grad():
            self.q_proj.weight.mul_(scale)
            if self.q_proj.bias is not None:
                self.q_proj.bias.mul_(scale)
        self.k_proj, self.v_proj, self.out_proj = attn.k_proj, attn.v_proj, attn.out_proj

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, bias: Tensor | None = None, past_key: Tensor | Sequence[Tensor] | None = None,
                past_value: Tensor | Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Same contract as `SelfAttention.forward` (inference only: no attention dropout), or the block cache.

        With ``past_key`` / ``past_value`` given as sequences of blocks (the exported cached step's
        layout, oldest first), key blocks are (B H, D/H, n_j) — already transposed for the score
        product — and value blocks (B H, n_j, D/H); the returned new keys and values are one block
        each in the same layouts. No block is copied except by the one concatenation attention needs.
        """
        b, n, _ = x.shape
        h, dh = self.num_heads, self.head_dim
        q = self._heads(self.q_proj(x)).reshape(b * h, n, dh)
        if isinstance(past_key, (list, tuple)):
            k = self.k_proj(x).view(b, n, h, dh).permute(0, 2, 3, 1).reshape(b * h, dh, n)
            v = self._heads(self.v_proj(x)).reshape(b * h, n, dh)
            keys_t = torch.cat([*past_key, k], dim=2)
            values = torch.cat([*past_value, v], dim=1)
        else:
            k, v = self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
            keys = k if past_key is None else torch.cat([past_key, k], dim=2)
            vals = v if past_value is None else torch.cat([past_value, v], dim=2)
            keys_t = keys.reshape(b * h, keys.shape[2], dh).transpose(1, 2)
            values = vals.reshape(b * h, vals.shape[2], dh)
        total = keys_t.shape[2]
        scores = torch.bmm(q, keys_t).view(b, h, n, total)
        if bias is not None:
            scores = scores + bias
        weights = torch.softmax(scores, dim=-1).view(b * h, n, total)
        y = torch.bmm(weights, values).view(b, h, n, dh)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, h * dh)), k, v


class Conv1dAs2d(nn.Module):
    """A Conv1d computed as a Conv2d with a height-1 kernel (same weights, stride, groups, padding)."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"conv rewrite: expected numeric zero padding, found {conv.padding!r}/{conv.padding_mode}")
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                              stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
                              dilation=(1, conv.dilation[0]), groups=conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight[:, :, None, :])
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, N) → (B, C_out, N_out)."""
        b, c, n = x.shape
        y = self.conv(x.reshape(b, c, 1, n))  # views, not select/unsqueeze: XNNPACK takes views only
        return y.reshape(b, y.shape[1], y.shape[3])


class DelegatePositionalConv(nn.Module):
    """`PositionalConv` whose conv reads a (B, D, 1, N) concatenation made for it alone.

    Its padding (or, when streaming, its history) is concatenated with the frames as constant
    (1, D, 1, ·) zeros right before the conv, instead of ``F.pad`` or the step's shared (B, N, D)
    concatenation. This is what lets the conv run dynamically quantized: for such a conv,
    ExecuTorch 1.5.1's ``ChannelsLastTaggedReshapePass`` walks from the conv's input up the chain of
    first arguments to the first node whose first argument is not a node (a concatenation, a graph
    input) and switches every use of that node to an NHWC copy. In the streaming step that node was
    the concatenation whose tail is also the next state, and lowering failed (``KeyError: 'val'``).
    Here the walk ends at a concatenation only the conv reads.

    Args:
        pos: The positional conv to replace (its weights are copied).
    """

    def __init__(self, pos: PositionalConv) -> None:
        super().__init__()
        conv = pos.conv
        self.kernel, self.causal, self.act = pos.kernel, pos.causal, pos.act
        self.conv = Conv1dAs2d(conv).conv
        d, (left, right) = conv.in_channels, pos.padding
        self.register_buffer("left", torch.zeros(1, d, 1, left), persistent=False)
        self.register_buffer("right", torch.zeros(1, d, 1, right), persistent=False)

    @property
    def context_frames(self) -> int:
        """Past frames a causal positional conv keeps as streaming state (K - 1)."""
        return self.kernel - 1

    @staticmethod
    def _planar(x: Tensor) -> Tensor:
        """(B, N, D) → (B, D, 1, N)."""
        b, n, d = x.shape
        return x.transpose(1, 2).reshape(b, d, 1, n)

    def _embed(self, parts: list[Tensor]) -> Tensor:
        """The conv and activation over the concatenated (B, D, 1, ·) parts, as (B, N_out, D)."""
        y = self.act(self.conv(torch.cat(parts, dim=3)))
        return y.reshape(y.shape[0], y.shape[1], y.shape[3]).transpose(1, 2)

    def _zeros(self, pad: Tensor, batch: int) -> Tensor:
        return pad if batch == 1 else pad.expand(batch, -1, -1, -1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) → (B, T, D) positional embedding (to be added to ``x``)."""
        b = x.shape[0]
        parts = [self._zeros(self.left, b), self._planar(x)]
        if self.right.shape[3]:
            parts.append(self._zeros(self.right, b))
        return self._embed(parts)

    def step(self, x: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        """Causal streaming step, as `PositionalConv.step`: (B, n, D) frames and (B, K-1, D) history →
        (B, n, D) embedding and the next (B, K-1, D) history."""
        y = self._embed([self._planar(history), self._planar(x)])
        full = torch.cat([history, x], dim=1)
        return y, full[:, full.shape[1] - (self.kernel - 1):]


class ConvAsLinear(nn.Module):
    """A Conv1d (no padding, dilation or groups; kernel <= 2 x stride) on (B, N, C_in) frames.

    Output frame t reads input frames [s t, s t + k): the first s of them are row t of the input
    reshaped to (N / s, s C_in), the other k - s the start of row t + 1; their concatenation times
    the conv's weight laid out as (C_out, k C_in) is the conv.

    Args:
        conv: The Conv1d to replace (its weights are copied).
    """

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if not supports_conv_as_linear(conv):
            raise ValueError(f"conv-as-linear rewrite: expected no padding/dilation/groups and kernel <= 2 x stride, "
                             f"found {conv}")
        self.kernel, self.stride, self.in_channels = conv.kernel_size[0], conv.stride[0], conv.in_channels
        self.linear = nn.Linear(self.kernel * self.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1))
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C_in) → (B, (N - k) // s + 1, C_out)."""
        k, s = self.kernel, self.stride
        out = (x.shape[1] - k) // s + 1
        rows = self._frames(x, 0, min(k, s), out)
        if k > s:
            rows = torch.cat([rows, self._frames(x, s, k - s, out)], dim=-1)
        return self.linear(rows)

    def _frames(self, x: Tensor, start: int, width: int, out: int) -> Tensor:
        """Input frames [start + s t, start + s t + width) for t < out, as (B, out, width C_in) rows."""
        b, n, c = x.shape
        s = self.stride

        def rows(begin: int, count: int) -> Tensor:
            # Full-range slices are left out: they export as alias copies, which the delegate refuses.
            part = x if (begin == 0 and s * count == n) else x[:, begin: begin + s * count]
            part = part.reshape(b, count, s * c)
            return part if width == s else part[:, :, : width * c]

        if start + s * out <= n:
            return rows(start, out)
        # The input ends inside the last row: its frames are read on their own (no pad: XNNPACK
        # refuses a constant pad of int8 tensors).
        last = x[:, start + s * (out - 1): start + s * (out - 1) + width].reshape(b, 1, width * c)
        return torch.cat([rows(start, out - 1), last], dim=1)


def supports_conv_as_linear(conv: nn.Module) -> bool:
    """Whether `ConvAsLinear` can replace ``conv``."""
    return (isinstance(conv, nn.Conv1d) and conv.groups == 1 and conv.dilation[0] == 1 and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str) and conv.padding[0] == 0 and conv.kernel_size[0] <= 2 * conv.stride[0])


class FramewiseFeatureExtractor(nn.Module):
    """`FeatureExtractor` (layer-norm kind) in (B, T, C) layout: per layer `ConvAsLinear` → layer norm
    over channels → activation; the same (B, T, C_last) features.

    Args:
        extractor: The front-end to replace (layer norms, every conv `supports_conv_as_linear`).
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        super().__init__()
        if not framewise_applies(extractor):
            raise ValueError("framewise front-end rewrite: expected a layer-norm front-end of plain strided convs")
        self.convs = nn.ModuleList(ConvAsLinear(layer.conv) for layer in extractor.conv_layers)
        self.norms = nn.ModuleList(DelegateLayerNorm(layer.norm) for layer in extractor.conv_layers)
        self.acts = [layer.act for layer in extractor.conv_layers]

    def forward(self, waveform: Tensor) -> Tensor:
        """(B, N) float samples → (B, T, C_last) features."""
        x = waveform.reshape(waveform.shape[0], waveform.shape[1], 1)
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            x = act(norm(conv(x)))
        return x


def framewise_applies(extractor: nn.Module) -> bool:
    """Whether `FramewiseFeatureExtractor` can replace ``extractor``."""
    return (isinstance(extractor, FeatureExtractor)
            and all(supports_conv_as_linear(layer.conv) and isinstance(layer.norm, nn.LayerNorm)
                    for layer in extractor.conv_layers))


def _swap(module: nn.Module) -> int:
    swapped = 0
    for name, child in list(module.named_children()):
        if framewise_applies(child):
            setattr(module, name, FramewiseFeatureExtractor(child))
        elif isinstance(child, nn.LayerNorm):
            setattr(module, name, DelegateLayerNorm(child))
        elif isinstance(child, SelfAttention):
            setattr(module, name, DelegateSelfAttention(child))
        elif isinstance(child, PositionalConv):
            setattr(module, name, DelegatePositionalConv(child))
        elif isinstance(child, nn.Conv1d):
            setattr(module, name, Conv1dAs2d(child))
        else:
            swapped += _swap(child)
            continue
        swapped += 1
    return swapped


def delegate_friendly(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with every LayerNorm, `SelfAttention` and Conv1d rewritten.

    Args:
        model: Any module built from streamer's blocks (not modified).

    Returns:
        The rewritten copy; its outputs equal the original's up to float rounding.
    """
    out = copy.deepcopy(model).eval()
    _swap(out)
    return out
