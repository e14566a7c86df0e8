"""Whisper tiny.en as a starting point: the CTranslate2 reader, the layer transplant and the stem teacher."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamer.convert.whisper import WhisperEncoder, encoder_tensors, parse_ctranslate2, transplant_layers
from streamer.errors import CheckpointError, ConfigError
from streamer.model.config import tiny_config
from streamer.model.model import Wav2Vec2CTC

REPO = Path(__file__).resolve().parents[1]
D, HEADS, INNER, LAYERS = 16, 2, 32, 2


def _text(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _ct2_bytes(variables: dict[str, np.ndarray], version: int = 6) -> bytes:
    """A CTranslate2 model.bin holding ``variables`` (float32 or float16), written by the format's rules."""
    codes = {np.dtype(np.float32): 0, np.dtype(np.float16): 4, np.dtype(np.int16): 2}
    out = struct.pack("<I", version) + _text("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, a in variables.items():
        a = np.asarray(a).copy(order="C")
        out += _text(name) + struct.pack("<B", a.ndim) + b"".join(struct.pack("<I", d) for d in a.shape)
        out += struct.pack("<B", codes[a.dtype]) + struct.pack("<I", a.nbytes) + a.tobytes()
    return out + struct.pack("<I", 0)


def _random_whisper(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = lambda *shape: (rng.standard_normal(shape) * 0.3).astype(np.float32)  # noqa: E731
    v = {"encoder/conv1/weight": r(D, 80, 3), "encoder/conv1/bias": r(D), "encoder/conv2/weight": r(D, D, 3),
         "encoder/conv2/bias": r(D), "encoder/position_encodings/encodings": r(1500, D),
         "encoder/layer_norm/gamma": 1 + r(D), "encoder/layer_norm/beta": r(D),
         "encoder/num_heads": np.array(HEADS, np.int16)}
    for i in range(LAYERS):
        p = f"encoder/layer_{i}/"
        qkv_b = r(3 * D)
        qkv_b[D:2 * D] = 0.0  # Whisper has no key bias
        v.update({p + "self_attention/layer_norm/gamma": 1 + r(D), p + "self_attention/layer_norm/beta": r(D),
                  p + "self_attention/linear_0/weight": r(3 * D, D), p + "self_attention/linear_0/bias": qkv_b,
                  p + "self_attention/linear_1/weight": r(D, D), p + "self_attention/linear_1/bias": r(D),
                  p + "ffn/layer_norm/gamma": 1 + r(D), p + "ffn/layer_norm/beta": r(D),
                  p + "ffn/linear_0/weight": r(INNER, D), p + "ffn/linear_0/bias": r(INNER),
                  p + "ffn/linear_1/weight": r(D, INNER), p + "ffn/linear_1/bias": r(D)})
    return v


def test_ctranslate2_reader_round_trips_and_refuses_damage():
    variables = _random_whisper()
    variables["encoder/conv1/bias"] = variables["encoder/conv1/bias"].astype(np.float16)
    data = _ct2_bytes(variables)
    back = parse_ctranslate2(data)
    assert set(back) == set(variables)
    for k, a in variables.items():
        assert back[k].dtype == a.dtype and np.array_equal(back[k], a)
    with pytest.raises(CheckpointError, match="ends early|does not fit"):
        parse_ctranslate2(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="format version"):
        parse_ctranslate2(struct.pack("<I", 99) + data[4:])
    with pytest.raises(CheckpointError, match="encoder/conv1/weight"):
        encoder_tensors({k: a for k, a in variables.items() if "conv1/weight" not in k})


def test_transplanted_layers_compute_what_whisper_computes():
    """The student's first layers, after the transplant, equal Whisper's layers on the same input."""
    tensors = encoder_tensors(parse_ctranslate2(_ct2_bytes(_random_whisper(1))))
    student = Wav2Vec2CTC(tiny_config(hidden_size=D, num_heads=HEADS, intermediate_size=INNER, num_layers=LAYERS + 1,
                                      stable_layer_norm=True)).eval()
    student.reset_parameters()
    assert transplant_layers(student, tensors) == LAYERS
    whisper = WhisperEncoder(tensors, np.abs(np.random.default_rng(2).standard_normal((80, 201))), HEADS)
    x = torch.randn(2, 37, D)
    with torch.no_grad():
        y = x
        for layer in student.encoder.layers[:LAYERS]:
            y = layer(y)[0]
        mine = F.layer_norm(y, (D,), tensors["layer_norm/gamma"], tensors["layer_norm/beta"])
        assert torch.allclose(mine, whisper.layers(x), atol=1e-5)
        # the positional conv adds nothing until it is trained
        assert torch.count_nonzero(student.encoder.pos_conv(x)) == 0


def test_transplant_refuses_a_student_of_another_shape():
    tensors = encoder_tensors(parse_ctranslate2(_ct2_bytes(_random_whisper())))
    for shape in (dict(hidden_size=2 * D, num_heads=HEADS, intermediate_size=INNER, num_layers=LAYERS, stable_layer_norm=True),
                  dict(hidden_size=D, num_heads=HEADS, intermediate_size=INNER, num_layers=LAYERS, stable_layer_norm=False),
                  dict(hidden_size=D, num_heads=HEADS, intermediate_size=INNER, num_layers=LAYERS - 1, stable_layer_norm=True)):
        with pytest.raises(CheckpointError, match="transplant: expected"):
            transplant_layers(Wav2Vec2CTC(tiny_config(**shape)), tensors)


def test_a_direct_distill_target_is_parsed_and_needs_the_student_width():
    from streamer.train.cli import _distill_target
    from streamer.train.config import DistillTarget
    from streamer.train.step import DistillHeads
    from streamer.train.targets import StoreMeta

    t = _distill_target("data/targets/stem:1:0:direct")
    assert (t.store, t.weight, t.layer, t.direct) == ("data/targets/stem", 1.0, 0, True)
    assert _distill_target("s:0.5:4:256").head_hidden == 256 and not _distill_target("s:0.5:4").direct
    heads = DistillHeads(D, [t], [StoreMeta("stem", "states", D, 320)])
    x = torch.randn(1, 5, D)
    assert torch.equal(heads.heads[0](x), x)
    with pytest.raises(ConfigError, match="direct target needs the student's width"):
        DistillHeads(D, [t], [StoreMeta("stem", "states", D + 1, 320)])
    with pytest.raises(ConfigError, match="layer"):
        DistillTarget("s", layer=-1)


def test_the_torch_encoder_matches_the_packaged_whisper():
    """Converted == reference: the torch encoder on the CTranslate2 weights against CTranslate2 itself."""
    from streamer.audio import load_audio
    from streamer.train.teachers import load_teacher, load_whisper_encoder

    x = load_audio(REPO / "examples" / "hello.wav")
    reference = load_teacher("whisper-tiny.en")(x)
    tensors, filters = load_whisper_encoder()
    encoder = WhisperEncoder(tensors, filters, num_heads=6)
    pad = np.concatenate([x, np.zeros(5 * 16000, np.float32)])
    with torch.no_grad():
        mine = encoder(torch.from_numpy(pad[: len(pad) // 320 * 320])[None])[0, : len(reference)].numpy()
    cos = (mine * reference).sum(1) / np.linalg.norm(mine, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.mean() > 0.99, cos.mean()  # CTranslate2 runs int8; the torch copy float32
    stem = load_teacher("whisper-stem")
    assert stem.meta.dim == 384 and stem(x).shape == (-(-len(x) // 320), 384)
    # level-blind: the stem teacher scales each utterance to one RMS level first
    assert np.allclose(stem(x), stem(0.25 * x), atol=1e-3)


def test_whisper_weights_file_gives_the_torch_teacher_without_the_packages(tmp_path):
    """One float16 file carries the encoder to a machine without faster-whisper: the torch teacher
    from it writes what the packaged CTranslate2 teacher writes (cosine > 0.99, the same frames)."""
    from streamer.audio import load_audio
    from streamer.train.teachers import load_teacher, save_whisper_encoder

    size = save_whisper_encoder(tmp_path / "w.safetensors")
    assert 10e6 < size < 25e6
    x = load_audio(REPO / "examples" / "hello.wav")
    reference = load_teacher("whisper-tiny.en")(x)
    mine = load_teacher("whisper-tiny.en-torch", weights=tmp_path / "w.safetensors")(x)
    assert mine.shape == reference.shape == (-(-len(x) // 320), 384)
    cos = (mine * reference).sum(1) / np.linalg.norm(mine, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.mean() > 0.99, cos.mean()
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="save_whisper_encoder"):
        load_teacher("whisper-tiny.en-torch", weights=tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="whisper-tiny.en-torch"):
        load_teacher("whisper-stem", device="cuda")
