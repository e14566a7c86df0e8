"""Constants with their units, in one place.

Every module that needs a sample rate, a hop or a frame duration imports it from here, so that the
numbers the model, the streaming code, the decoder and the tools agree on live in a single file.
"""

from __future__ import annotations

#: Sample rate the encoder consumes, in Hz. Every input is resampled to this rate.
SAMPLE_RATE: int = 16_000

#: Samples between two encoder frames (the product of the XLSR conv strides 5·2·2·2·2·2·2).
HOP_SAMPLES: int = 320

#: Samples one encoder frame sees (receptive field of the XLSR conv stack: kernels 10,3,3,3,3,2,2).
RECEPTIVE_FIELD_SAMPLES: int = 400

#: Duration of one encoder frame step, in seconds (20 ms).
FRAME_SECONDS: float = HOP_SAMPLES / SAMPLE_RATE

#: Encoder frames per second of audio (50).
FRAMES_PER_SECOND: float = SAMPLE_RATE / HOP_SAMPLES

#: Default length of one offline transcription window, in seconds.
OFFLINE_WINDOW_SECONDS: float = 20.0

#: Default context kept on each side of an offline window and then discarded, in seconds.
OFFLINE_CONTEXT_SECONDS: float = 2.0

#: Characters the bundled English models write (besides the word delimiter).
ENGLISH_ALPHABET: str = "abcdefghijklmnopqrstuvwxyz'"
