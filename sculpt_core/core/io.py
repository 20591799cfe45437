"""Every file the project writes goes through here.

A write goes to a temporary file in the target's folder, is flushed and fsync'ed, then renamed over the
target in one step (and the folder is fsync'ed so the rename survives a crash). A process killed mid-write
therefore leaves the previous file intact (never a truncated one), and a command that fails before or while
writing leaves an existing output untouched. Callers compute everything first and hand over either the
finished bytes or a ``write(fh)`` callback that only serialises.

:func:`locked_update_json` adds an exclusive lock for read-modify-write files such as the model manifest, so
concurrent updaters (two builders side by side) never lose each other's entries. Readers need no lock: they
always see one complete version.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from sculpt_core.errors import SculptError



def _umask() -> int:
    """The process umask (read once at import: ``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permission bits of a newly created file (0o666 less the umask, as ``open(path, "w")`` would give).
_NEW_FILE_MODE = 0o666 & ~_umask()

TEMP_SUFFIX = ".tmp"

#: A temporary file of the same target untouched this long belongs to a writer that died (a live writer keeps
#: writing to it); the next write of the target removes it.
STALE_TEMP_S = 3600.0


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temps(target: Path) -> None:
    """Delete leftovers of killed writers of ``target`` (best effort; never another live writer's file)."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            if entry.name.startswith(_temp_prefix(target)) and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_S:
                        os.unlink(entry.path)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform can open a folder)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, then rename it onto ``path``.

    Parent folders are created; a symlink at ``path`` is followed (the file it points to is replaced). An
    existing target keeps its permission bits. If ``write`` raises (or the process dies) the target is
    untouched and the temporary file is removed (a killed process may leave a ``.<name>.*.tmp`` behind, never
    a damaged target; a later write removes it once it is stale). Operating-system failures become a
    SculptError naming the file.
    """
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    if target.is_dir() or os.fspath(path).endswith(tuple(s for s in (os.sep, os.altsep) if s)):
        raise SculptError(f"cannot write {os.fspath(path)}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise SculptError(f"cannot write {given}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        mode = _NEW_FILE_MODE
        with contextlib.suppress(OSError):
            mode = target.stat().st_mode & 0o7777
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise SculptError(f"cannot write {given}: {_reason(exc)}") from None
        raise
    _fsync_dir(target.parent)
    _remove_stale_temps(target)
    return given


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    data = bytes(data)
    return atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path`` (newlines written as given)."""
    return write_bytes(path, text.encode("utf-8"))


def check_output_path(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse, before any work, an output path that cannot be written: empty, a folder (or a name ending in
    a path separator), below something that is not a folder, or in a folder where no file can be created
    (probed by creating and removing a temporary file in the nearest existing folder; nothing else is
    created). Returns the path."""
    text = os.fspath(path)
    if not str(text).strip():
        raise SculptError(f"{what} is empty")
    given = Path(text)
    if str(text).endswith(tuple(s for s in (os.sep, os.altsep) if s)) or given.is_dir():
        raise SculptError(f"cannot write {text}: it is a folder; give a file name")
    folder = given.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise SculptError(f"cannot write {text}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sculpt-write-check.", suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SculptError(f"cannot write {text}: cannot create a file in {folder} ({_reason(exc)})") from None
    return given


NPY_HINT = "Save one numeric array with numpy.save(path, array)."


def npy_from_bytes(data: bytes, what: str) -> np.ndarray:
    """The single numeric array in the bytes of a ``.npy`` file (never unpickles); SculptError saying what the
    bytes are instead: empty, an ``.npz`` archive (also when renamed to .npy), not NumPy at all (a text file
    named .npy), an object array, or a truncated file."""
    if not data:
        raise SculptError(f"{what}: the file is empty. {NPY_HINT}")
    if data[:4] == b"PK\x03\x04":
        raise SculptError(f"{what}: this is an .npz archive (a zip of arrays), not a single .npy array. {NPY_HINT}")
    if not data.startswith(b"\x93NUMPY"):
        raise SculptError(f"{what}: not a .npy file (it does not start with the NumPy header). {NPY_HINT}")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise SculptError(f"{what}: holds an array of Python objects, which is never loaded (it would need "
                              f"pickle). {NPY_HINT}") from None
        raise SculptError(f"{what}: not a readable .npy array ({str(exc).splitlines()[0]}). {NPY_HINT}") from None
    except Exception as exc:  # numpy raises OSError, EOFError, ... for truncated files
        raise SculptError(f"{what}: not a readable .npy array ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'truncated'}). {NPY_HINT}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise SculptError(f"{what}: expected a numeric array, got {getattr(arr, 'dtype', type(arr).__name__)}")
    return arr


def read_npy(path: str | os.PathLike, what: str | None = None, max_bytes: int | None = None) -> np.ndarray:
    """:func:`npy_from_bytes` of a file (SculptError if it is missing, unreadable or over ``max_bytes``)."""
    from sculpt_core.core.limits import MAX_INPUT_BYTES, check_size

    p = Path(path)
    what = what or str(p)
    if not p.is_file():
        raise SculptError(f"{what}: file not found")
    try:
        check_size(p.stat().st_size, what, MAX_INPUT_BYTES if max_bytes is None else max_bytes)
        data = p.read_bytes()
    except OSError as exc:
        raise SculptError(f"cannot read {what}: {_reason(exc)}") from None
    return npy_from_bytes(data, what)


def save_array(path: str | os.PathLike, arr: np.ndarray) -> Path:
    """A ``.csv`` (comma-separated rows, 1-D or 2-D) or else ``.npy`` array file at exactly ``path``, written
    atomically; the whole file is serialised in memory first, so a bad array never touches ``path``."""
    arr = np.asarray(arr)
    if Path(path).suffix.lower() == ".csv":
        if arr.ndim not in (1, 2):
            raise SculptError(f"a CSV holds a 1-D or 2-D array, got shape {arr.shape}")
        buf = io.StringIO()
        np.savetxt(buf, arr, delimiter=",")
        return write_text(path, buf.getvalue())
    if arr.dtype.hasobject:
        raise SculptError("refusing to write an object array (it would need pickle to load)")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def load_array(path: str | os.PathLike) -> np.ndarray:
    """A numeric array from a ``.npy`` (never pickles) or ``.csv`` (comma-separated rows) file, the counterpart of
    :func:`save_array`; SculptError for a missing, unreadable or non-numeric file."""
    p = Path(path)
    if not p.is_file():
        raise SculptError(f"input file not found: {p}")
    try:
        if p.suffix.lower() == ".csv":
            arr = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=1)
        else:
            arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for bad files
        raise SculptError(f"could not read {p} as a {'CSV' if p.suffix.lower() == '.csv' else '.npy'} array: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise SculptError(f"{p} does not hold a numeric array")
    return arr


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]], cell: Callable[[Any], str] = str,
             lineterminator: str = "\r\n") -> str:
    """A CSV document (header + rows, each value formatted by ``cell``) as text; rows end with
    ``lineterminator`` (the csv module's default CRLF unless told otherwise)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=lineterminator)
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]],
              cell: Callable[[Any], str] = str, lineterminator: str = "\r\n") -> Path:
    """Atomically write a CSV file; every row is formatted before anything touches ``path``."""
    return write_text(path, csv_text(header, rows, cell, lineterminator))


# ----- locking -------------------------------------------------------------------------------------
_LOCAL = threading.local()


def _held() -> dict[str, int]:
    if not hasattr(_LOCAL, "held"):
        _LOCAL.held = {}
    return _LOCAL.held


def _lock_fd(fh: IO[bytes], timeout: float | None, what: Path) -> None:
    """Exclusive lock on an open file: ``flock`` on POSIX, ``msvcrt.locking`` elsewhere."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise SculptError(f"timed out after {timeout:g} s waiting for the lock {what}") from None
                time.sleep(0.01)
    if timeout is None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise SculptError(f"timed out after {timeout:g} s waiting for the lock {what}") from None
            time.sleep(0.01)


def _unlock_fd(fh: IO[bytes]) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, timeout: float | None = None) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` for the duration of the block.

    Excludes other processes and other threads of this process; re-entrant within one thread (a nested
    block on the same path does not deadlock). The lock file is left in place on purpose: deleting it would
    let two processes lock two different files. The operating system releases the lock if the holder dies.
    ``timeout`` (seconds, None = wait forever) raises SculptError when the lock cannot be had in time.
    """
    lock = Path(f"{os.path.abspath(os.fspath(path))}.lock")
    key = os.fspath(lock)
    held = _held()
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a+b")
    except OSError as exc:
        raise SculptError(f"cannot create the lock file {lock}: {_reason(exc)}") from None
    with fh:
        _lock_fd(fh, timeout, lock)
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
            _unlock_fd(fh)


# ----- JSON ----------------------------------------------------------------------------------------
def read_json(path: str | os.PathLike, default: Callable[[], Any]) -> Any:
    """The JSON document at ``path`` (``default()`` if there is none); SculptError if it is not valid JSON
    or cannot be read."""
    p = Path(path)
    if not p.is_file():
        return default()
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SculptError(f"{p} is not valid JSON: {exc}") from None
    except FileNotFoundError:  # removed between the check and the read
        return default()
    except OSError as exc:
        raise SculptError(f"cannot read {p}: {_reason(exc)}") from None


def json_text(data: Any) -> str:
    """Indented, key-sorted JSON text (a trailing newline); SculptError for values JSON cannot hold."""
    try:
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    except (TypeError, ValueError) as exc:
        raise SculptError(f"cannot write as JSON: {exc}") from None


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented, key-sorted JSON (serialised before ``path`` is touched)."""
    return write_text(path, json_text(data))


def locked_update_json(path: str | os.PathLike, update: Callable[[Any], Any], default: Callable[[], Any],
                       timeout: float | None = None) -> Any:
    """Read-modify-write a JSON file under :func:`file_lock`: concurrent updaters never lose each other's
    changes. ``update(data)`` changes ``data`` in place (or returns a replacement); the result is written
    atomically and returned. If ``update`` raises, the file is left as it was."""
    with file_lock(path, timeout):
        data = read_json(path, default)
        new = update(data)
        data = data if new is None else new
        write_json(path, data)
        return data
