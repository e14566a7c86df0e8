"""Writers of transcripts: plain text, JSON (with word times), SubRip (.srt) and WebVTT (.vtt)."""

from __future__ import annotations

import json
from dataclasses import asdict

from streamer.errors import ConfigError
from streamer.results import Transcript

FORMATS = ("txt", "json", "srt", "vtt")


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_txt(t: Transcript) -> str:
    """The text, one segment a line."""
    return "\n".join(s.text for s in t.segments if s.text) + "\n" if t.segments else (t.text + "\n" if t.text else "")


def to_json(t: Transcript) -> str:
    """A JSON object: source, duration, text, segments with words (times in seconds), info."""
    data = {"source": t.source, "duration": round(t.duration, 3), "text": t.text,
            "segments": [asdict(s) for s in t.segments], "info": asdict(t.info)}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_srt(t: Transcript) -> str:
    """SubRip: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    cues = [s for s in t.segments if s.text]
    return "".join(f"{i}\n{_clock(s.start, ',')} --> {_clock(max(s.end, s.start + 0.001), ',')}\n{s.text}\n\n"
                   for i, s in enumerate(cues, 1))


def to_vtt(t: Transcript) -> str:
    """WebVTT: a ``WEBVTT`` header and cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    cues = [s for s in t.segments if s.text]
    return "WEBVTT\n\n" + "".join(
        f"{_clock(s.start, '.')} --> {_clock(max(s.end, s.start + 0.001), '.')}\n{s.text}\n\n" for s in cues)


def render(t: Transcript, fmt: str) -> str:
    """Renders a transcript in one of `FORMATS`."""
    writers = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt}
    if fmt not in writers:
        raise ConfigError(f"format: expected one of {FORMATS}, found {fmt!r}")
    return writers[fmt](t)
