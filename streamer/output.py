"""Where a batch's transcripts go: names planned for the whole batch, unique by construction, never an input.

    sources = ["a/talk.flac", "b/talk.flac", "notes.wav", "notes.mp3"]
    targets = plan_outputs(sources, "subs", "srt")     # before any work; refuses what would collide
    # subs/a/talk.srt, subs/b/talk.srt, subs/notes.wav.srt, subs/notes.mp3.srt
    prepare_output_dir("subs")
    inputs = input_files(sources)
    for source, dest in zip(sources, targets):
        check_output(dest, overwrite=False, inputs=inputs)    # before the file's work
        ...
        write_output(dest, text, overwrite=False, inputs=inputs)

Rules:

* **Names.** A file's output is ``<stem>.<format>``. Inputs that share a stem (``hello.flac``,
  ``hello.mp3``) keep their extension (``hello.flac.srt``, ``hello.mp3.srt``), and so does an input
  whose stem is the whole name of another input.
* **Folders.** Outputs are written flat into the output folder, unless one file name occurs in
  several input folders: then every output goes under its input's folder path, relative to the
  folder the inputs share (``a/x.wav`` and ``b/x.wav`` write ``out/a/x.txt`` and ``out/b/x.txt``),
  with the name rule applied per folder.
* **Unique.** The two rules give every input its own name. What could still meet (the same file
  given twice; names that differ only in case, which a case-insensitive output folder merges; an
  output file where another output needs a folder) is refused by `plan_outputs`, before any work.
* **Never an input.** A destination that is one of the batch's inputs (the same file, or a link to
  it) is refused, even with ``overwrite``.
* **No overwrite unless asked, atomic, nothing left behind:** see `streamer.files`.

Every failure raises `OutputError` naming the path and the reason.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path, PurePath
from typing import Sequence

from streamer.errors import OutputError
from streamer.files import check_target, reason, write_atomic

#: How a file is known whatever path names it: (device, inode).
FileId = tuple[int, int]


def output_paths(sources: Sequence[str | os.PathLike[str]], fmt: str) -> list[PurePath]:
    """Paths, relative to the output folder, of a batch's outputs: one per source, all different.

    Args:
        sources: Input paths, in batch order.
        fmt: The output format, used as the extension (``txt``, ``srt``, ...).

    Raises:
        OutputError: Two outputs would still meet (see the module docstring), naming the inputs.
    """
    absolute = [Path(os.path.abspath(s)) for s in sources]
    if not absolute:
        return []
    _refuse_repeats([str(s) for s in sources], absolute)
    flat = [PurePath(name) for name in _names(absolute, fmt)]
    if len({str(p).casefold() for p in flat}) == len(flat):
        paths = flat
    else:  # one name in several folders: every input goes under its folder's path, from the folder they share
        root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
        by_folder: dict[Path, list[int]] = defaultdict(list)
        for i, p in enumerate(absolute):
            by_folder[p.parent].append(i)
        paths = [PurePath()] * len(absolute)
        for folder, members in by_folder.items():
            under = PurePath(folder.relative_to(root))
            for i, name in zip(members, _names([absolute[i] for i in members], fmt)):
                paths[i] = under / name
    _refuse_meetings([str(s) for s in sources], paths)
    return paths


def _names(paths: list[Path], fmt: str) -> list[str]:
    """``<stem>.<fmt>``, or ``<name>.<fmt>`` for a stem that another path shares or that is another's name."""
    stems = Counter(p.stem.casefold() for p in paths)
    names = Counter(p.name.casefold() for p in paths)
    out = []
    for p in paths:
        stem = p.stem.casefold()
        named_like_stem = names[stem] - (p.name.casefold() == stem)  # other paths whose whole name it is
        out.append(f"{p.stem if stems[stem] == 1 and not named_like_stem else p.name}.{fmt}")
    return out


def _refuse_repeats(sources: list[str], absolute: list[Path]) -> None:
    problems: list[str] = []
    first: dict[str, int] = {}
    for i, p in enumerate(absolute):
        j = first.setdefault(str(p), i)
        if j != i:
            problems.append(f"{sources[j]} is given twice (also as {sources[i]})")
    if problems:
        raise OutputError("batch: " + "; ".join(problems[:5]) + "; give each input once")


def _refuse_meetings(sources: list[str], paths: list[PurePath]) -> None:
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(paths):
        j = seen.setdefault(str(p).casefold(), i)
        if j != i:
            problems.append(f"{sources[j]} and {sources[i]} would both write {p} (names differ only in case)")
    folders = {str(f).casefold(): i for i, p in enumerate(paths) for f in p.parents if f != PurePath()}
    for i, p in enumerate(paths):
        if str(p).casefold() in folders:
            problems.append(f"{sources[i]} would write {p}, where {sources[folders[str(p).casefold()]]} needs a folder")
    if problems:
        raise OutputError("output names: " + "; ".join(problems[:5]) + "; rename an input or transcribe them apart")


def plan_outputs(sources: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], fmt: str) -> list[Path]:
    """Destinations in ``out_dir`` of a batch's outputs, one per source (see `output_paths`)."""
    return [Path(out_dir) / p for p in output_paths(sources, fmt)]


def prepare_output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Creates the output folder (and its parents) if needed.

    Raises:
        OutputError: The path is a file, or the folder cannot be created or written (a temporary file is
            created and removed to find out, so a read-only folder fails before any transcription).
    """
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"output dir {path}: is a file, expected a folder") from None
    except OSError as err:
        raise OutputError(f"output dir {path}: cannot be created ({reason(err)})") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise OutputError(f"output dir {path}: cannot be written ({reason(err)})") from None
    return path


def input_files(sources: Sequence[str | os.PathLike[str]]) -> frozenset[FileId]:
    """The identities of a batch's inputs that exist (for `check_output`)."""
    found = set()
    for s in sources:
        try:
            st = os.stat(s)
        except (OSError, ValueError):
            continue
        found.add((st.st_dev, st.st_ino))
    return frozenset(found)


def check_output(dest: Path, overwrite: bool, inputs: frozenset[FileId] = frozenset()) -> None:
    """Refuses a destination that cannot take a new transcript (called before the file's work).

    Raises:
        OutputError: ``dest`` is one of ``inputs`` (even with ``overwrite``), or is refused by
            `streamer.files.check_target` (exists, a folder, a name too long, ...).
    """
    try:
        st = os.stat(dest)
    except (OSError, ValueError):
        st = None
    if st is not None and (st.st_dev, st.st_ino) in inputs:
        raise OutputError(f"{dest}: is an input of this batch; never overwritten, even with --overwrite")
    check_target(dest, overwrite)


def write_output(dest: Path, text: str, overwrite: bool = False, inputs: frozenset[FileId] = frozenset()) -> Path:
    """Writes one transcript atomically, making its folder under the output folder if needed.

    Raises:
        OutputError: See `check_output` and `streamer.files.write_atomic`.
    """
    check_output(dest, overwrite, inputs)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{dest}: cannot create its folder {dest.parent} ({reason(err)})") from None
    return write_atomic(dest, text, overwrite)
