"""Synthetic-speech corpus tools: text sources, TTS engines, augmentation and the corpus builder.

Modules:
    text_sources: sentences from offline text, their train/dev/test split, language-model text.
    tts: espeak-ng, flite, festival and piper voices behind one ``synthesize(voice, text)``.
    augment: fast numpy augmentation applied online by the training loop.
    build: ``build_corpus`` (plan, synthesize, FLAC files, manifests) and manifest I/O.

The command line is ``tools/make_corpus.py``.
"""

from streamer.corpus.augment import AugmentConfig, Augmenter
from streamer.corpus.build import (
    CorpusSummary,
    ManifestEntry,
    build_corpus,
    read_manifest,
    write_manifest,
)
from streamer.corpus.text_sources import (
    Sentence,
    SentenceSplits,
    SplitConfig,
    load_splits,
    split_of,
    write_lm_text,
)
from streamer.corpus.tts import HELD_OUT_VOICES, Synthesizer, Voice, base_voices, synthesize

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "CorpusSummary",
    "HELD_OUT_VOICES",
    "ManifestEntry",
    "Sentence",
    "SentenceSplits",
    "SplitConfig",
    "Synthesizer",
    "Voice",
    "base_voices",
    "build_corpus",
    "load_splits",
    "read_manifest",
    "split_of",
    "synthesize",
    "write_lm_text",
    "write_manifest",
]
