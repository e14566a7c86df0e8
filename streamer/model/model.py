"""Assembly of the wav2vec2 / XLSR CTC model from the blocks in `components`, and factories.

The model does no I/O: checkpoints are read and written by `streamer.checkpoint`, converted by
`streamer.convert.huggingface`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from streamer.model.components import (
    EncoderLayer,
    make_dropout,
    FeatureExtractor,
    FeatureProjection,
    PositionalConv,
    init_weights,
)
from streamer.model.config import DropoutConfig, EncoderConfig
from streamer.model.masks import ChunkAttention, additive_bias, chunk_mask, padding_mask


class Encoder(nn.Module):
    """Positional conv + transformer layers (+ the LayerNorm that wav2vec2 places before or after them)."""

    def __init__(self, config: EncoderConfig, dropout: DropoutConfig) -> None:
        super().__init__()
        self.config = config
        self.pos_conv = PositionalConv(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = make_dropout(dropout.hidden)
        self.layerdrop = dropout.layerdrop
        self.layers = nn.ModuleList(EncoderLayer(config, dropout) for _ in range(config.num_layers))

    def embed(self, x: Tensor, pos: Tensor) -> Tensor:
        """Adds the positional embedding ``pos`` to ``x`` (and the post-LN model's input LayerNorm)."""
        x = x + pos
        if not self.config.stable_layer_norm:
            x = self.layer_norm(x)
        return self.dropout(x)

    def finish(self, x: Tensor) -> Tensor:
        """The final LayerNorm of pre-LN models (identity for post-LN models)."""
        return self.layer_norm(x) if self.config.stable_layer_norm else x

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """(B, T, D) projected features → (B, T, D) encoder output.

        Args:
            x: Projected features; padded frames must already be zero.
            bias: Additive attention bias broadcastable to (B, H, T, T), or None.
        """
        return self.forward_taps(x, bias)[0]

    def forward_taps(self, x: Tensor, bias: Tensor | None = None, taps: tuple[int, ...] = (),
                     grad_scale: tuple[int, float] | None = None) -> tuple[Tensor, list[Tensor]]:
        """`forward`, also returning the hidden states after some layers.

        Args:
            x: Projected features (B, T, D); padded frames must already be zero.
            bias: Additive attention bias broadcastable to (B, H, T, T), or None.
            taps: Layer counts k in 1..num_layers: the (B, T, D) states after the first k layers.
            grad_scale: (k, s): the gradient that flows from the layers above k into the first k
                layers is multiplied by s (0 = stopped), the forward values unchanged; the tapped
                states keep their whole gradient. None = no scaling.

        Returns:
            The encoder output and the tapped states, in the order of ``taps``.
        """
        x = self.embed(x, self.pos_conv(x))
        drop = None
        if self.training and self.layerdrop > 0:
            drop = torch.rand(len(self.layers)) < self.layerdrop
        tapped: dict[int, Tensor] = {}
        for i, layer in enumerate(self.layers):
            if not (drop is not None and bool(drop[i])):
                x, _, _ = layer(x, bias)
            if i + 1 in taps:
                tapped[i + 1] = x
            if grad_scale is not None and i + 1 == grad_scale[0]:
                s = grad_scale[1]
                x = x.detach() if s == 0 else x * s + x.detach() * (1.0 - s)
        return self.finish(x), [tapped[k] for k in taps]


class Wav2Vec2CTC(nn.Module):
    """A wav2vec2 / XLSR encoder with a CTC head.

    Args:
        config: The dimensions (saved with the weights).
        dropout: Training-time regularization (all zero by default, i.e. inference).
    """

    def __init__(self, config: EncoderConfig, dropout: DropoutConfig | None = None) -> None:
        super().__init__()
        dropout = dropout or DropoutConfig()
        self.config = config
        self.feature_extractor = FeatureExtractor(config)
        self.feature_projection = FeatureProjection(config, dropout.feat_proj)
        self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size))
        self.encoder = Encoder(config, dropout)
        self.final_dropout = make_dropout(dropout.final)
        self.ctc_head = nn.Linear(config.hidden_size, config.vocab_size)

    def reset_parameters(self) -> None:
        """Initializes every weight for training from scratch."""
        self.apply(init_weights)
        conv = self.encoder.pos_conv.conv
        std = math.sqrt(4.0 / (conv.kernel_size[0] * conv.in_channels))
        nn.init.normal_(conv.weight, mean=0.0, std=std)
        nn.init.zeros_(conv.bias)
        nn.init.uniform_(self.masked_spec_embed)

    def frame_lengths(self, sample_lengths: Tensor) -> Tensor:
        """(B,) valid samples → (B,) valid output frames (0 for inputs shorter than one frame)."""
        n = sample_lengths.to(torch.long)
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def forward(
        self,
        waveform: Tensor,
        lengths: Tensor | None = None,
        chunk: ChunkAttention | None = None,
        time_mask: Tensor | None = None,
        channel_mask: Tensor | None = None,
        piece_frames: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Computes CTC logits.

        Args:
            waveform: (B, N) float samples at 16 kHz, nominally in [-1, 1].
            lengths: (B,) valid samples per row for a padded batch, or None (all valid).
            chunk: Block-causal attention (streaming-trained models), or None for full attention.
            time_mask: (B, T) bool, frames replaced by the learned mask embedding (SpecAugment-style
                time masking while training), or None.
            channel_mask: (B, D) bool, hidden channels zeroed on every frame (SpecAugment-style
                channel masking while training), or None.
            piece_frames: Run the conv front-end this many frames at a time (same result, peak
                memory bounded by the piece instead of the input; layer-norm front-ends only), or None.

        Returns:
            Logits (B, T, V) and the (B,) valid frames per row (None when ``lengths`` is None).
        """
        features = (self.feature_extractor(waveform) if piece_frames is None
                    else self.feature_extractor.forward_in_pieces(waveform, piece_frames))
        hidden = self.feature_projection(features)
        num_frames = hidden.shape[1]
        if time_mask is not None:
            hidden = torch.where(time_mask[..., None], self.masked_spec_embed.to(hidden.dtype), hidden)
        if channel_mask is not None:
            hidden = hidden.masked_fill(channel_mask[:, None, :], 0.0)
        frame_lengths = None
        allowed = None
        if lengths is not None:
            frame_lengths = self.frame_lengths(lengths)
            valid = padding_mask(frame_lengths, num_frames)
            hidden = hidden * valid[..., None].to(hidden.dtype)
            allowed = valid[:, None, None, :]
        if chunk is not None:
            blocks = chunk_mask(num_frames, chunk, hidden.device)[None, None]
            allowed = blocks if allowed is None else allowed & blocks
        bias = None if allowed is None else additive_bias(allowed, hidden.dtype)
        encoded = self.encoder(hidden, bias)
        return self.ctc_head(self.final_dropout(encoded)), frame_lengths


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
