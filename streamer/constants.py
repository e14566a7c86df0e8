"""Constants with their units, in one place.

Every module that needs a sample rate, a hop or a frame duration imports it from here, so that the
numbers the model, the streaming code, the decoder and the tools agree on live in a single file.
"""

from __future__ import annotations

#: Sample rate the encoder consumes, in Hz. Every input is resampled to this rate.
SAMPLE_RATE: int = 16_000

#: Full scale of 16-bit samples: float sample = int16 value / INT16_FULL_SCALE.
INT16_FULL_SCALE: float = 32768.0

#: Samples between two encoder frames (the product of the XLSR conv strides 5·2·2·2·2·2·2).
HOP_SAMPLES: int = 320

#: Samples one encoder frame sees (receptive field of the XLSR conv stack: kernels 10,3,3,3,3,2,2).
RECEPTIVE_FIELD_SAMPLES: int = 400

#: Default length of one offline transcription window, in seconds.
OFFLINE_WINDOW_SECONDS: float = 20.0

#: Default context kept on each side of an offline window and then discarded, in seconds.
OFFLINE_CONTEXT_SECONDS: float = 2.0

#: The two-pass re-decode pads an utterance's audio up to a multiple of this many seconds (models
#: with frame-local feature norms only), so a long-running stream meets a few input shapes instead
#: of one per utterance length (each new shape makes oneDNN cache new kernels: memory that grows).
SECOND_PASS_BUCKET_SECONDS: float = 2.0

#: Longest streaming chunk accepted, in seconds: a step's cost and memory grow with it, and beyond a
#: few seconds streaming no longer makes sense (use offline windows).
MAX_CHUNK_SECONDS: float = 10.0

#: Longest streaming left context accepted (window mode: re-encoded history; cached mode: cache), in s.
MAX_LEFT_SECONDS: float = 60.0

#: Longest window-mode look-ahead accepted, in seconds.
MAX_RIGHT_SECONDS: float = 10.0

#: Most CPU threads a recognizer may ask for.
MAX_THREADS: int = 1024

#: Characters the bundled English models write (besides the word delimiter).
ENGLISH_ALPHABET: str = "abcdefghijklmnopqrstuvwxyz'"
