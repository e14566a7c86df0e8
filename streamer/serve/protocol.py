"""The streaming server's wire protocol, version 1 (docs/protocol.md is its one-page description).

Pure data: parsing what a client sends, and turning results into what the server sends. No sockets
here, so the server, the clients and the tests share one definition::

    start = parse_start(text)                  # the client's first message (raises ProtocolError)
    samples = decode_pcm(frame, start.format)  # (N,) float32 from a binary frame
    message = event_message(event, start.word_times)   # Partial / Final -> JSON object
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.audio import to_int16
from streamer.constants import INT16_FULL_SCALE
from streamer.errors import ProtocolError
from streamer.results import Event, Final, Partial, Word

#: Version of this protocol: clients send it in ``start``, the server echoes it in ``ready``.
PROTOCOL_VERSION: int = 1

#: Sample formats of the binary frames (little-endian, mono).
FORMATS: tuple[str, ...] = ("int16", "float32")
_DTYPES = {"int16": np.dtype("<i2"), "float32": np.dtype("<f4")}

#: Sample rates a client may stream at, in Hz (the server resamples to 16 kHz).
MIN_RATE, MAX_RATE = 8_000, 96_000

#: Most hotwords in one ``start``, and the longest one, in characters.
MAX_HOTWORDS, MAX_HOTWORD_CHARS = 100, 100

# WebSocket close codes (RFC 6455 section 7.4.1 and the IANA registry) the server uses.
CLOSE_NORMAL = 1000          # the stream ended and its last final was sent
CLOSE_GOING_AWAY = 1001      # the server is shutting down (after the stream's last final)
CLOSE_UNSUPPORTED = 1003     # unsupported sample rate, format or protocol version
CLOSE_INVALID_DATA = 1007    # undecodable JSON or PCM
CLOSE_POLICY = 1008          # messages out of order, missing or wrong token, idle, audio limit
CLOSE_TOO_BIG = 1009         # a frame over the size limit
CLOSE_INTERNAL = 1011        # the server failed on this stream
CLOSE_BUSY = 1013            # too many connections: try again later

#: Longest close reason a WebSocket close frame carries, in UTF-8 bytes.
MAX_REASON_BYTES = 123

_START_FIELDS = {"type", "version", "sample_rate", "format", "hotwords", "word_times", "token"}


@dataclass(frozen=True)
class StartMessage:
    """A client's ``start``: how its audio is encoded and how it wants its results.

    Attributes:
        sample_rate: Rate of the PCM frames in Hz.
        format: ``int16`` or ``float32`` (little-endian, mono).
        hotwords: Words or phrases boosted in this stream.
        word_times: Whether partials carry words with times (finals always do).
        token: The shared secret, when the server asks for one and the header did not carry it.
    """

    sample_rate: int
    format: str = "int16"
    hotwords: tuple[str, ...] = ()
    word_times: bool = False
    token: str | None = None

    @property
    def bytes_per_sample(self) -> int:
        """2 for int16, 4 for float32."""
        return _DTYPES[self.format].itemsize


def _load(text: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(CLOSE_INVALID_DATA, f"expected a JSON message, found text that is not JSON ({err})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(CLOSE_INVALID_DATA, f"expected a JSON object with a 'type', found {str(message)[:60]!r}")
    return message


def parse_message(text: str | bytes) -> StartMessage | None:
    """Parses a client's text message: a `StartMessage` for ``start``, None for ``end``.

    Raises:
        ProtocolError: Not JSON, an unknown type, or a ``start`` with a missing or invalid field.
    """
    message = _load(text)
    kind = message["type"]
    if kind == "end":
        return None
    if kind != "start":
        raise ProtocolError(CLOSE_POLICY, f"expected a message of type 'start' or 'end', found {kind!r}")
    unknown = sorted(set(message) - _START_FIELDS)
    if unknown:
        raise ProtocolError(CLOSE_POLICY, f"start: unknown field(s) {unknown}; expected {sorted(_START_FIELDS)}")
    version = message.get("version")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(CLOSE_UNSUPPORTED, f"start: expected version {PROTOCOL_VERSION}, found {version!r}")
    rate = message.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(CLOSE_UNSUPPORTED, f"start: expected a sample_rate in Hz, an integer from {MIN_RATE} "
                                               f"to {MAX_RATE}, found {rate!r}")
    fmt = message.get("format", "int16")
    if fmt not in FORMATS:
        raise ProtocolError(CLOSE_UNSUPPORTED, f"start: expected a format among {list(FORMATS)}, found {fmt!r}")
    hotwords = message.get("hotwords", [])
    if not isinstance(hotwords, list) or len(hotwords) > MAX_HOTWORDS or not all(
            isinstance(h, str) and h.strip() and len(h) <= MAX_HOTWORD_CHARS for h in hotwords):
        raise ProtocolError(CLOSE_POLICY, f"start: expected hotwords as a list of at most {MAX_HOTWORDS} non-empty "
                                          f"strings of at most {MAX_HOTWORD_CHARS} characters, found {str(hotwords)[:60]}")
    word_times = message.get("word_times", False)
    if not isinstance(word_times, bool):
        raise ProtocolError(CLOSE_POLICY, f"start: expected word_times true or false, found {word_times!r}")
    token = message.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError(CLOSE_POLICY, f"start: expected the token as a string, found {type(token).__name__}")
    return StartMessage(rate, fmt, tuple(hotwords), word_times, token)


def decode_pcm(frame: bytes, fmt: str) -> np.ndarray:
    """A binary frame's samples as (N,) float32 (int16 scaled by 1/32768).

    Raises:
        ProtocolError: A length that is not a whole number of samples, or non-finite float samples.
    """
    dtype = _DTYPES[fmt]
    if len(frame) % dtype.itemsize:
        raise ProtocolError(CLOSE_INVALID_DATA, f"audio frame: expected whole {fmt} samples "
                                                f"({dtype.itemsize} bytes each), found {len(frame)} bytes")
    samples = np.frombuffer(frame, dtype=dtype)
    if fmt == "int16":
        return samples.astype(np.float32) / np.float32(INT16_FULL_SCALE)
    samples = samples.astype(np.float32)
    if not np.isfinite(samples).all():
        raise ProtocolError(CLOSE_INVALID_DATA, f"audio frame: expected finite float32 samples, found "
                                                f"{int((~np.isfinite(samples)).sum())} NaN or infinite")
    return samples


def encode_pcm(samples: np.ndarray, fmt: str = "int16") -> bytes:
    """(N,) float samples in [-1, 1] as a binary frame (the inverse of `decode_pcm`; used by clients)."""
    x = np.asarray(samples, dtype=np.float32)
    if fmt == "int16":
        return to_int16(x).astype("<i2").tobytes()
    return x.astype("<f4").tobytes()


def _word(w: Word) -> dict[str, Any]:
    out: dict[str, Any] = {"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
    out["confidence"] = None if w.confidence is None or not math.isfinite(w.confidence) else round(w.confidence, 4)
    return out


def event_message(event: Event, word_times: bool = False) -> dict[str, Any]:
    """A `Partial` or `Final` as the JSON object the server sends (the result type's fields).

    Args:
        event: The result.
        word_times: Give partials their words (finals always carry theirs).
    """
    if isinstance(event, Final):
        return {"type": "final", "text": event.text, "start": round(event.start, 3), "end": round(event.end, 3),
                "words": [_word(w) for w in event.words],
                "nbest": [[text, round(float(score), 4)] for text, score in event.nbest]}
    if isinstance(event, Partial):
        out: dict[str, Any] = {"type": "partial", "text": event.text, "committed": event.committed,
                               "tentative": event.tentative, "committed_words": event.committed_words,
                               "time": round(event.time, 3), "separator": event.separator}
        if word_times:
            out["words"] = [_word(w) for w in event.words]
        return out
    raise TypeError(f"event: expected a Partial or a Final, found {type(event).__name__}")


def message_event(message: dict[str, Any]) -> Event:
    """The inverse of `event_message`: a ``partial`` or ``final`` object back as a result (for clients)."""
    words = tuple(Word(w["text"], w["start"], w["end"], w.get("confidence")) for w in message.get("words", []))
    if message["type"] == "final":
        return Final(message["text"], words, message["start"], message["end"],
                     tuple((t, s) for t, s in message.get("nbest", [])))
    if message["type"] == "partial":
        return Partial(message["committed"], message["tentative"], words, message["committed_words"],
                       message["time"], message["separator"])
    raise ProtocolError(CLOSE_INVALID_DATA, f"expected a 'partial' or 'final' message, found {message['type']!r}")


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame carries (`MAX_REASON_BYTES` of UTF-8)."""
    data = text.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[:MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."
