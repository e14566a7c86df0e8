"""The wav2vec2 / XLSR CTC model: config, building blocks, assembly, masks."""

from streamer.model.config import DropoutConfig, EncoderConfig, wav2vec2_base_config, xlsr53_large_config
from streamer.model.masks import ChunkAttention
from streamer.model.model import Wav2Vec2CTC, count_parameters

__all__ = ["ChunkAttention", "DropoutConfig", "EncoderConfig", "Wav2Vec2CTC", "count_parameters",
           "wav2vec2_base_config", "xlsr53_large_config"]
