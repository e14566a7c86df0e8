"""Writing files without losing any: atomic, never over an existing file unless asked, safe to interrupt.

Every file streamer writes goes through this module: transcripts, language models and their word
lists, ExecuTorch programs and their sidecars, model folders and training checkpoints::

    write_atomic("talk.srt", text)                                  # refuses an existing talk.srt
    with atomic_files(["lm.binary", "lm.unigrams.txt"], overwrite=True) as (model_tmp, words_tmp):
        ...                                  # write both temporary files; they take their names together

Guarantees:

* **No silent overwrite.** A destination that exists is refused (`OutputError`) unless ``overwrite``
  is true, before any work (`check_target`) and again at the moment of writing (a hard link, which
  fails if the name was taken meanwhile). A folder, a device or a pipe is never replaced.
* **Atomic.** The data goes to a temporary file in the destination's folder, is flushed to disk,
  and then takes its final name in one step; the files of one `atomic_files` call take their names
  together, after all of them are written. A reader, a full disk, a failure or an interrupt never
  leaves a partial file under a final name.
* **Nothing left behind.** The temporary files are removed on any failure, Ctrl-C (SIGINT) and
  SIGTERM included. Those two signals are held while a temporary file is created, renamed or
  removed, and delivered at once afterwards, so an interrupt cannot fall between creating a
  temporary file and owning its removal; while the caller writes, an interrupt stops the write.
* **Short temporary names.** ``.streamer-XXXXXXXX.tmp`` (22 bytes) whatever the destination's
  name, so a temporary file fits wherever its final name fits. `is_temporary` recognizes them.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, Sequence

from streamer.errors import OutputError

TEMP_PREFIX, TEMP_SUFFIX = ".streamer-", ".tmp"
#: Longest file name, in bytes, where the file system does not say (Linux, macOS and Windows: 255).
DEFAULT_NAME_MAX = 255
#: The signals an interrupted write cleans up after.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of this module's temporary names (left only by a killed process)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def reason(err: OSError) -> str:
    """The operating system's words for an error (``No space left on device``)."""
    return err.strerror or type(err).__name__


def name_limit(folder: str | os.PathLike[str]) -> int:
    """The longest file name, in bytes, that ``folder`` takes (`DEFAULT_NAME_MAX` where unknown)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def check_target(dest: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuses a destination that cannot take a new file (called before the work, and when writing).

    Args:
        dest: The file to write.
        overwrite: Whether an existing regular file may be replaced.

    Returns:
        ``dest`` as a path.

    Raises:
        OutputError: ``dest``'s name is too long for its folder; ``dest`` is a folder, a device, a
            pipe or a socket; it exists and ``overwrite`` is false; or it cannot be looked up (a
            parent is a file, a permission is missing).
    """
    dest = Path(dest)
    if "\0" in str(dest):
        raise OutputError(f"{str(dest)!r}: expected a file name, found a NUL character in it")
    folder = dest.parent
    size, limit = len(os.fsencode(dest.name)), name_limit(folder if os.path.isdir(folder) else ".")
    if size > limit:
        raise OutputError(f"{dest}: name too long ({size} bytes; at most {limit} in {folder})")
    try:
        found = os.stat(dest)
    except FileNotFoundError:
        found = None
    except OSError as err:
        if err.errno == errno.ENOTDIR:
            raise OutputError(f"{dest}: cannot be written (a parent of it is a file, expected a folder)") from None
        raise OutputError(f"{dest}: cannot be written ({reason(err)})") from None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise OutputError(f"{dest}: is a folder, expected a file name to write")
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise OutputError(f"{dest}: is a device, pipe or socket, expected a file name to write; not replaced")
    if not overwrite and (found is not None or os.path.islink(dest)):
        raise OutputError(f"{dest}: exists; not overwritten (pass --overwrite to replace it)")
    return dest


class _HeldSignals:
    """Holds SIGINT and SIGTERM in the main thread while it is entered, and delivers them on exit.

    While ``open`` is true a signal is delivered at once (through the handler that was there
    before) and ``open`` turns false, so the cleanup that the interrupt starts cannot itself be
    interrupted. Elsewhere the first signal waits and is raised again on exit, after the previous
    handlers are back. Outside the main thread (where Python runs no signal handler) it does nothing.
    """

    def __init__(self) -> None:
        self.open = False
        self.pending: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_HeldSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                if signal.getsignal(signum) is not None:  # None: installed outside Python; left alone
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.open:
            self.pending = self.pending or signum
            return
        self.open = False
        previous = self.previous.get(signum)
        if callable(previous):
            previous(signum, frame)  # KeyboardInterrupt, the CLI's SIGTERM exception, or a flag
        elif previous != signal.SIG_IGN:  # the default action: clean up, then let it end the process
            self.pending = signum
            raise _Stopped(signum)

    def __exit__(self, *exc: object) -> None:
        self.open = False
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        if self.pending is not None:
            signal.raise_signal(self.pending)


class _Stopped(BaseException):
    """A signal whose action is the default one arrived during a write (raised again after cleanup)."""


@contextmanager
def atomic_files(dests: Sequence[str | os.PathLike[str]], overwrite: bool = False) -> Iterator[list[Path]]:
    """Temporary files that take the names ``dests`` together when the block ends without an error.

    The block writes each temporary path (they exist, empty, in each destination's folder; a
    program may open them for writing or replace them). On success each is flushed to disk and
    renamed to its destination; on an error or an interrupt all are removed and no destination
    changes (with ``overwrite``, a failure between two renames can leave the first one done).

    Args:
        dests: The files to write; their folders must exist.
        overwrite: Replace existing regular files; otherwise an existing destination is refused,
            before the block and again when renaming (then the names already taken are given back).

    Yields:
        One temporary path per destination, in order.

    Raises:
        OutputError: A destination is refused (see `check_target`), or its folder cannot take
            the file (missing, read-only, full disk).
    """
    targets = [check_target(d, overwrite) for d in dests]
    temps: list[Path] = []
    with _HeldSignals() as held:
        try:
            for dest in targets:
                temps.append(_new_temp(dest))
                _usual_mode(temps[-1])
            held.open = True
            yield list(temps)
            for dest, tmp in zip(targets, temps):
                _sync(tmp, dest)
            held.open = False
            _rename_all(temps, targets, overwrite)
        finally:
            held.open = False
            for tmp in temps:
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:
                    pass


def write_atomic(dest: str | os.PathLike[str], data: str | bytes, overwrite: bool = False) -> Path:
    """Writes ``data`` (text as UTF-8) to ``dest`` atomically; see `atomic_files`.

    Returns:
        ``dest`` as a path.

    Raises:
        OutputError: ``dest`` is refused (see `check_target`) or cannot be written (missing or
            read-only folder, full disk).
    """
    dest = Path(dest)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_files([dest], overwrite) as (tmp,):
        try:
            with open(tmp, "wb") as f:
                f.write(raw)
        except OSError as err:
            raise OutputError(f"{dest}: cannot write ({reason(err)})") from None
    return dest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _new_temp(dest: Path) -> Path:
    try:
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    except OSError as err:
        raise OutputError(f"{dest}: cannot write in {dest.parent} ({reason(err)})") from None
    os.close(fd)
    return Path(name)


def _usual_mode(tmp: Path) -> None:
    """Gives a temporary file the mode any new file gets (``0o666`` less the umask), not mkstemp's 0600."""
    try:
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError:
        pass


def _sync(tmp: Path, dest: Path) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise OutputError(f"{dest}: cannot write ({reason(err)})") from None


def _rename_all(temps: list[Path], dests: list[Path], overwrite: bool) -> None:
    done: list[Path] = []
    try:
        for tmp, dest in zip(temps, dests):
            if overwrite:
                check_target(dest, overwrite=True)  # a folder or device made meanwhile is not replaced
                os.replace(tmp, dest)
            else:
                _link_new(tmp, dest)
            done.append(dest)
    except OSError as err:
        if not overwrite:
            _give_back(done)
        raise OutputError(f"{dest}: cannot write ({reason(err)})") from None
    except BaseException:
        if not overwrite:
            _give_back(done)
        raise


def _give_back(names: list[Path]) -> None:
    """Removes names this call has just created (never a file that was there before it)."""
    for name in names:
        try:
            name.unlink()
        except OSError:
            pass


def _link_new(tmp: Path, dest: Path) -> None:
    """Gives ``tmp`` the name ``dest`` only if no file has it (a hard link; where a file system has
    none, a rename after one more check)."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputError(f"{dest}: exists; not overwritten (pass --overwrite to replace it)") from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        check_target(dest, overwrite=False)
        os.replace(tmp, dest)
