"""Strict JSON for the files a user hands streamer (model configs, vocabularies, sidecars, LM weights).

`json` accepts two things a hand-edited or damaged file should not get away with: a key given twice in
one object (the last value silently wins, so a token of a vocabulary can shadow another) and the
non-standard constants ``NaN``, ``Infinity`` and ``-Infinity``. `parse` refuses both.
"""

from __future__ import annotations

import json
from typing import Any


class JsonSyntaxError(ValueError):
    """The text is not strict JSON; the message says where and why."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise JsonSyntaxError(f"the key {key!r} appears twice in one object (the second would silently "
                                  "replace the first)")
        seen[key] = value
    return seen


def _constant(name: str) -> Any:
    raise JsonSyntaxError(f"{name} is not a JSON number")


def parse(text: str | bytes) -> Any:
    """Parses strict JSON.

    Raises:
        JsonSyntaxError: Invalid JSON, a duplicate key, ``NaN``/``Infinity``, bytes that are not
            UTF-8, or nesting too deep to parse.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_constant)
    except JsonSyntaxError:
        raise
    except UnicodeDecodeError as err:
        raise JsonSyntaxError(f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    except json.JSONDecodeError as err:
        raise JsonSyntaxError(f"{err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise JsonSyntaxError("nested too deeply") from None
