"""Exceptions raised at streamer's public boundaries.

Every message says what was expected and what was found, so that the command line can print it as
one line and a user can act on it without a traceback.
"""

from __future__ import annotations

import re


#: Control characters (a newline or tab in a file name, an escape sequence), shown escaped in messages.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class StreamerError(Exception):
    """Base class of every error streamer raises on purpose.

    Its text is always one line: control characters in it (a newline in a file name, for example)
    are shown escaped, as ``\\n``, so a message can never split or forge an error line.
    """

    def __str__(self) -> str:
        return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), super().__str__())


class ConfigError(StreamerError, ValueError):
    """A configuration value is out of range or unsupported (names the field and the value)."""


class CheckpointError(StreamerError):
    """A checkpoint folder, hub id or weight file cannot be loaded."""


class AudioError(StreamerError):
    """An audio input cannot be read or holds no usable samples."""


class OutputError(StreamerError):
    """A transcript cannot be written: its folder or file is unusable, or it would overwrite a file."""


class MissingDependencyError(StreamerError, ImportError):
    """An optional dependency is not installed; the message holds the install command."""


def missing_dependency(module: str, extra: str, purpose: str) -> MissingDependencyError:
    """Builds the error for a missing optional import, with an install hint.

    Args:
        module: The module that failed to import (e.g. ``"kenlm"``).
        extra: The streamer extra that installs it (e.g. ``"lm"``).
        purpose: What the module is needed for, as a short phrase.

    Returns:
        An exception to raise (``raise missing_dependency(...) from err``).
    """
    return MissingDependencyError(
        f"{purpose} needs the Python module '{module}', which is not installed. "
        f"Install it with: pip install 'streamer[{extra}]'  (see README.md, 'Set up')"
    )


class ProtocolError(StreamerError):
    """A streaming-server client broke the protocol or a limit (docs/protocol.md).

    Attributes:
        code: The WebSocket close code the server answers with (1003, 1007, 1008, 1009, ...).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
