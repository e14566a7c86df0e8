"""Whisper encoder weights from a CTranslate2 model: the reader, and the transplant into the student.

Whisper's encoder is a conv stem over an 80-band log-mel (two 3-tap convs, the second with stride 2,
each followed by GELU), absolute sinusoidal positions, pre-LN transformer layers and a final LayerNorm.
Its layers have the shape of the student's pre-LN layers (`streamer.model.components.EncoderLayer`)
when widths match, so they can start a student (`transplant_layers`); the conv stem and log-mel are
what the student's raw-waveform front-end learns to reproduce (`WhisperStem`).

CTranslate2's ``model.bin``: a little-endian header (format version, spec name, spec revision), then
each variable as name, rank, dims, dtype and raw bytes, then aliases. Only what a Whisper spec holds is
read; anything else is a `CheckpointError`.
"""

from __future__ import annotations

import math
import struct
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamer.errors import CheckpointError
from streamer.model.model import Wav2Vec2CTC

#: CTranslate2 dtype codes → numpy dtypes.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
#: Format versions of ``model.bin`` this reader knows.
_CT2_VERSIONS = range(3, 7)

#: Whisper's STFT: 25-ms Hann window and 10-ms hop at 16 kHz, in samples.
MEL_WINDOW = 400
MEL_HOP = 160
#: Log-mel dynamic range kept below each utterance's maximum, in log10 units (80 dB).
MEL_RANGE = 8.0
#: Positions averaged into the constant that stands in for Whisper's absolute positions (8 s).
STAND_IN_POSITIONS = 400


def parse_ctranslate2(data: bytes, path: str = "model.bin") -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin``, by name (aliases resolved).

    Args:
        data: The file's bytes.
        path: The file's name, for errors.

    Raises:
        CheckpointError: Not a CTranslate2 model, an unknown format version or dtype, or a cut file.
    """
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise CheckpointError(f"{path}: the CTranslate2 model ends early (at byte {pos} of {len(data)})")
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += size
        return value

    def text() -> str:
        nonlocal pos
        n = take("<H")
        raw = data[pos: pos + n]
        pos += n
        return raw.rstrip(b"\0").decode("utf-8", errors="replace")

    version = take("<I")
    if version not in _CT2_VERSIONS:
        raise CheckpointError(f"{path}: expected a CTranslate2 model.bin of format version 3-6, found version {version}")
    spec = text()
    take("<I")  # spec revision
    out: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = text()
        dims = [take("<I") for _ in range(take("<B"))]
        code = take("<B")
        nbytes = take("<I")
        if code not in _CT2_DTYPES:
            raise CheckpointError(f"{path}: variable {name!r} has dtype code {code}; expected one of {sorted(_CT2_DTYPES)}")
        dtype = np.dtype(_CT2_DTYPES[code])
        if pos + nbytes > len(data) or nbytes != dtype.itemsize * math.prod(dims):
            raise CheckpointError(f"{path}: variable {name!r} of shape {dims} does not fit the file")
        out[name] = np.frombuffer(data, dtype, nbytes // dtype.itemsize, pos).reshape(tuple(dims))
        pos += nbytes
    if pos < len(data):
        for _ in range(take("<I")):
            alias, target = text(), text()
            if target in out:
                out[alias] = out[target]
    if not spec.startswith("Whisper") and "encoder/conv1/weight" not in out:
        raise CheckpointError(f"{path}: expected a Whisper model, found spec {spec!r}")
    return out


def encoder_tensors(variables: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    """The encoder's variables as float32 tensors, keyed without the ``encoder/`` prefix.

    Raises:
        CheckpointError: No encoder, or one without its conv stem or positions.
    """
    out = {k[len("encoder/"):]: torch.from_numpy(np.asarray(v, dtype=np.float32).copy())
           for k, v in variables.items() if k.startswith("encoder/") and v.dtype != np.int16}
    for need in ("conv1/weight", "conv2/weight", "position_encodings/encodings", "layer_norm/gamma"):
        if need not in out:
            raise CheckpointError(f"Whisper encoder: expected a variable encoder/{need}, found none")
    return out


def num_layers(tensors: Mapping[str, Tensor]) -> int:
    """How many transformer layers the encoder has."""
    n = 0
    while f"layer_{n}/ffn/linear_0/weight" in tensors:
        n += 1
    return n


class WhisperStem(nn.Module):
    """Whisper's log-mel and conv stem, plus a constant in place of its absolute positions.

    What the student's raw-waveform front-end (conv feature encoder + projection) is taught to
    produce: frame ``i`` is centred on sample ``320 * i``. The constant is the mean of Whisper's
    first `STAND_IN_POSITIONS` position encodings; a streaming student has no absolute position,
    and the transplanted layers see this constant where Whisper saw the position.

    Args:
        tensors: `encoder_tensors` of a Whisper model.
        mel_filters: (80, 201) mel filter bank of Whisper's feature extractor.
    """

    def __init__(self, tensors: Mapping[str, Tensor], mel_filters: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mel_filters", torch.as_tensor(np.asarray(mel_filters, dtype=np.float32)))
        self.register_buffer("window", torch.hann_window(MEL_WINDOW))
        for name in ("conv1/weight", "conv1/bias", "conv2/weight", "conv2/bias"):
            self.register_buffer(name.replace("/", "_"), tensors[name])
        positions = tensors["position_encodings/encodings"]
        self.register_buffer("positions", positions)
        self.register_buffer("stand_in", positions[:STAND_IN_POSITIONS].mean(0))

    def log_mel(self, samples: Tensor) -> Tensor:
        """(B, N) samples → (B, 80, N // 160) Whisper log-mel (each row scaled by its own maximum)."""
        spec = torch.stft(samples, MEL_WINDOW, MEL_HOP, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)[..., :-1]
        mel = torch.log10((self.mel_filters @ spec.abs().pow(2)).clamp(min=1e-10))
        mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - MEL_RANGE)
        return (mel + 4.0) / 4.0

    def conv(self, mel: Tensor) -> Tensor:
        """(B, 80, M) log-mel → (B, ceil(M / 2), 384) conv stem output."""
        x = F.gelu(F.conv1d(mel, self.conv1_weight, self.conv1_bias, padding=1))
        return F.gelu(F.conv1d(x, self.conv2_weight, self.conv2_bias, stride=2, padding=1)).transpose(1, 2)

    def forward(self, samples: Tensor) -> Tensor:
        """(B, N) samples → (B, ceil((N // 160) / 2), 384): the stem output plus the stand-in constant."""
        return self.conv(self.log_mel(samples)) + self.stand_in


class WhisperEncoder(nn.Module):
    """Whisper's whole encoder in torch (for checking the transplant against the original).

    Args:
        tensors: `encoder_tensors` of a Whisper model.
        mel_filters: (80, 201) mel filter bank.
        num_heads: Attention heads (6 for tiny).
    """

    def __init__(self, tensors: Mapping[str, Tensor], mel_filters: np.ndarray, num_heads: int) -> None:
        super().__init__()
        self.stem = WhisperStem(tensors, mel_filters)
        # buffers, so that .to(device) moves the layers' weights too
        self._names = {k: "t_" + k.replace("/", "__") for k in tensors}
        for k, name in self._names.items():
            self.register_buffer(name, tensors[k], persistent=False)
        self.num_heads = num_heads

    @property
    def tensors(self) -> dict[str, Tensor]:
        """The encoder tensors by their `encoder_tensors` names (on the module's device)."""
        return {k: getattr(self, name) for k, name in self._names.items()}

    def forward(self, samples: Tensor, positions: bool = True) -> Tensor:
        """(B, N) → (B, T, 384) final states (``positions=False``: the stand-in constant instead)."""
        x = self.stem.conv(self.stem.log_mel(samples))
        return self.layers(x + (self.stem.positions[: x.shape[1]] if positions else self.stem.stand_in))

    def layers(self, x: Tensor) -> Tensor:
        """(B, T, D) stem output with positions → (B, T, D) after the layers and the final LayerNorm."""
        t = self.tensors
        for i in range(num_layers(t)):
            p = f"layer_{i}/"
            h = F.layer_norm(x, x.shape[-1:], t[p + "self_attention/layer_norm/gamma"], t[p + "self_attention/layer_norm/beta"])
            b, n, d = h.shape
            qkv = F.linear(h, t[p + "self_attention/linear_0/weight"], t[p + "self_attention/linear_0/bias"])
            q, k, v = qkv.view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
            x = x + F.linear(a, t[p + "self_attention/linear_1/weight"], t[p + "self_attention/linear_1/bias"])
            h = F.layer_norm(x, x.shape[-1:], t[p + "ffn/layer_norm/gamma"], t[p + "ffn/layer_norm/beta"])
            h = F.gelu(F.linear(h, t[p + "ffn/linear_0/weight"], t[p + "ffn/linear_0/bias"]))
            x = x + F.linear(h, t[p + "ffn/linear_1/weight"], t[p + "ffn/linear_1/bias"])
        return F.layer_norm(x, x.shape[-1:], t["layer_norm/gamma"], t["layer_norm/beta"])


@torch.no_grad()
def transplant_layers(model: Wav2Vec2CTC, tensors: Mapping[str, Tensor]) -> int:
    """Copies Whisper's transformer layers into the first layers of a pre-LN student.

    Whisper's fused q/k/v projection is split (it has no key bias; a key bias would not change the
    attention anyway), its pre-attention and pre-feed-forward LayerNorms become ``attn_norm`` and
    ``ffn_norm``. The student's positional conv is zeroed (it adds nothing until trained, so the
    layers first see the front-end's output alone); its other layers and final LayerNorm are left alone.

    Returns:
        The number of layers copied.

    Raises:
        CheckpointError: The student is post-LN, narrower/wider than Whisper, has a different head
            count, feed-forward width or activation, or fewer layers than Whisper.
    """
    cfg = model.config
    n = num_layers(tensors)
    width = tensors["conv2/weight"].shape[0]
    inner = tensors["layer_0/ffn/linear_0/weight"].shape[0]
    found = (cfg.stable_layer_norm, cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, cfg.num_layers >= n)
    if found != (True, width, inner, "gelu", True):
        raise CheckpointError(
            f"transplant: expected a pre-LN student {width} wide with a {inner}-wide gelu feed-forward and at "
            f"least {n} layers, found stable_layer_norm={cfg.stable_layer_norm}, hidden_size={cfg.hidden_size}, "
            f"intermediate_size={cfg.intermediate_size}, hidden_act={cfg.hidden_act}, num_layers={cfg.num_layers}")
    for i in range(n):
        p, layer = f"layer_{i}/", model.encoder.layers[i]
        qkv_w = tensors[p + "self_attention/linear_0/weight"]
        qkv_b = tensors[p + "self_attention/linear_0/bias"]
        att = layer.attention
        for j, proj in enumerate((att.q_proj, att.k_proj, att.v_proj)):
            proj.weight.copy_(qkv_w[j * width: (j + 1) * width])
            proj.bias.copy_(qkv_b[j * width: (j + 1) * width])
        att.out_proj.weight.copy_(tensors[p + "self_attention/linear_1/weight"])
        att.out_proj.bias.copy_(tensors[p + "self_attention/linear_1/bias"])
        layer.attn_norm.weight.copy_(tensors[p + "self_attention/layer_norm/gamma"])
        layer.attn_norm.bias.copy_(tensors[p + "self_attention/layer_norm/beta"])
        layer.ffn_norm.weight.copy_(tensors[p + "ffn/layer_norm/gamma"])
        layer.ffn_norm.bias.copy_(tensors[p + "ffn/layer_norm/beta"])
        ff = layer.feed_forward
        ff.fc1.weight.copy_(tensors[p + "ffn/linear_0/weight"])
        ff.fc1.bias.copy_(tensors[p + "ffn/linear_0/bias"])
        ff.fc2.weight.copy_(tensors[p + "ffn/linear_1/weight"])
        ff.fc2.bias.copy_(tensors[p + "ffn/linear_1/bias"])
    model.encoder.pos_conv.conv.weight.zero_()
    model.encoder.pos_conv.conv.bias.zero_()
    return n
