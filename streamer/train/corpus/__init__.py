"""Synthetic-speech corpus tools: text sources, TTS engines and the corpus builder.

Modules:
    text_sources: sentences from offline text, their train/dev/test split, language-model text.
    tts: espeak-ng, flite, festival and piper voices behind one ``synthesize(voice, text)``.
    build: ``build_corpus`` (plan, synthesize, FLAC files, manifests) and manifest I/O.

The command line is ``tools/data/make_corpus.py``.
"""

import importlib
from typing import Any

#: Where each re-exported name lives. Loaded on first use (PEP 562), so importing one submodule
#: (e.g. `text_sources` on a machine without the TTS engines) does not import the others.
_EXPORTS = {
    "CorpusSummary": "build", "ManifestEntry": "build", "build_corpus": "build", "read_manifest": "build",
    "write_manifest": "build",
    "Sentence": "text_sources", "SentenceSplits": "text_sources", "SplitConfig": "text_sources",
    "load_splits": "text_sources", "split_of": "text_sources", "write_lm_text": "text_sources",
    "HELD_OUT_VOICES": "tts", "Synthesizer": "tts", "Voice": "tts", "base_voices": "tts", "synthesize": "tts",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'streamer.train.corpus' has no attribute {name!r}")
    return getattr(importlib.import_module(f"streamer.train.corpus.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
