"""Writing transcripts to files: unique names, atomic writes, and no silent overwrite.

    targets = plan_outputs(["talk.flac", "talk.mp3", "notes.wav"], "subs", "srt")
    # subs/talk.flac.srt, subs/talk.mp3.srt, subs/notes.srt
    prepare_output_dir("subs")
    for source, dest in zip(sources, targets):
        check_target(dest, overwrite=False)     # before the work: refuse what could not be written
        ...
        write_atomic(dest, text, overwrite=False)

Guarantees:

* **Unique names.** A file's output is ``<stem>.<format>``; when several inputs of a batch share a
  stem (``hello.flac``, ``hello.mp3``) each keeps its extension (``hello.flac.srt``,
  ``hello.mp3.srt``), and inputs whose whole names collide (same name in two folders) get
  ``-2``, ``-3``, ... in the order given. Names are compared case-insensitively, so they also stay
  apart on case-insensitive file systems.
* **No overwrite unless asked.** An existing file is never replaced unless ``overwrite`` is true;
  the check is made again at the moment of writing (a hard link that fails if the name exists).
* **Atomic.** The text goes to a hidden temporary file in the same folder, is flushed to disk, and
  then takes its final name in one step: a reader, a full disk or an interrupt never leaves a
  partial transcript under the final name, and the temporary file is removed on failure.

Every failure raises `OutputError` naming the path and the reason.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Sequence

from streamer.errors import OutputError


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def output_names(sources: Sequence[str | os.PathLike[str]], fmt: str) -> list[str]:
    """File names of the outputs of a batch, one per source, all different (see the module docstring).

    Args:
        sources: Input paths, in batch order.
        fmt: The output format, used as the extension (``txt``, ``srt``, ...).
    """
    paths = [Path(s) for s in sources]
    stems = Counter(p.stem.casefold() for p in paths)
    bases = [p.stem if stems[p.stem.casefold()] == 1 else p.name for p in paths]
    seen: Counter[str] = Counter()
    names = []
    for base in bases:
        seen[base.casefold()] += 1
        n = seen[base.casefold()]
        names.append(f"{base}.{fmt}" if n == 1 else f"{base}-{n}.{fmt}")
    return names


def plan_outputs(sources: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], fmt: str) -> list[Path]:
    """Destinations in ``out_dir`` of a batch's outputs, one per source (see `output_names`)."""
    return [Path(out_dir) / name for name in output_names(sources, fmt)]


def prepare_output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Creates the output folder (and its parents) if needed.

    Raises:
        OutputError: The path is a file, or the folder cannot be created or written (a temporary file is
            created and removed to find out, so a read-only folder fails before any transcription).
    """
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output dir {path}: is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"output dir {path}: cannot be created ({_reason(err)})") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise OutputError(f"output dir {path}: cannot be written ({_reason(err)})") from None
    return path


def check_target(dest: Path, overwrite: bool) -> None:
    """Refuses a destination that cannot take a new transcript (called before the work).

    Raises:
        OutputError: ``dest`` is a folder, or an existing file and ``overwrite`` is false.
    """
    if dest.is_dir():
        raise OutputError(f"{dest}: is a folder, cannot write the transcript there")
    if not overwrite and (dest.exists() or dest.is_symlink()):
        raise OutputError(f"{dest}: exists; not overwritten (pass --overwrite to replace it)")


def write_atomic(dest: Path, text: str, overwrite: bool = False) -> Path:
    """Writes ``text`` (UTF-8) to ``dest`` atomically (see the module docstring).

    Args:
        dest: The file to write.
        text: Its contents.
        overwrite: Replace an existing file; otherwise an existing file is an error and stays as it was.

    Returns:
        ``dest``.

    Raises:
        OutputError: The folder is missing or not writable, the disk is full, ``dest`` is a folder, or
            it exists and ``overwrite`` is false.
    """
    check_target(dest, overwrite)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"{dest}: cannot write in {dest.parent} ({_reason(err)})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, dest)
        else:
            _link_new(tmp, dest)
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(f"{dest}: cannot write ({_reason(err)})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _link_new(tmp: Path, dest: Path) -> None:
    """Gives ``tmp`` the name ``dest`` only if no file has it (hard link; rename where links are not
    supported, after a last check)."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputError(f"{dest}: exists; not overwritten (pass --overwrite to replace it)") from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        check_target(dest, overwrite=False)
        os.replace(tmp, dest)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
