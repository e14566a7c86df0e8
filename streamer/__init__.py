"""streamer: streaming, on-device speech recognition with XLSR-family CTC encoders.

    import streamer
    rec = streamer.load()                        # the bundled demo-en model (+ its language model)
    print(rec.transcribe("examples/hello.wav").text)

See `streamer.recognizer` for live streams (`Recognizer.create_stream`, `Recognizer.decode_streams`);
options live in `RecognizerConfig` (``streamer.load(model, streaming=..., two_pass=..., lm=...)`` fills one).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": "streamer.recognizer",
    "Recognizer": "streamer.recognizer",
    "RecognizerConfig": "streamer.recognizer",
    "Stream": "streamer.recognizer",
    "StreamingConfig": "streamer.streaming",
    "DecoderConfig": "streamer.decoding.beam",
    "EndpointConfig": "streamer.endpoint",
    "WindowConfig": "streamer.offline",
    "StreamingEncoder": "streamer.streaming",
    "Word": "streamer.results",
    "Segment": "streamer.results",
    "Partial": "streamer.results",
    "Final": "streamer.results",
    "Transcript": "streamer.results",
    "load_checkpoint": "streamer.checkpoint",
    "save_checkpoint": "streamer.checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Imports public names on first use, so ``import streamer`` stays cheap."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamer' has no attribute {name!r}")
