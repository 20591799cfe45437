"""Every file the project writes goes through here: written to a temporary file in the same folder, flushed
to disk, then renamed over the target in one step. A process killed mid-write leaves the previous file
intact (never a truncated one), and a command that fails before writing leaves an existing output untouched.
:func:`locked_update_json` adds an exclusive lock for read-modify-write files such as the model manifest."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from sculpt_core.errors import SculptError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, then rename it onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def save_array(path: str | os.PathLike, arr: np.ndarray) -> Path:
    """A ``.csv`` (comma-separated rows) or ``.npy`` array file, written atomically."""
    arr = np.asarray(arr)
    if Path(path).suffix == ".csv":
        buf = io.StringIO()
        np.savetxt(buf, arr, delimiter=",")
        return write_text(path, buf.getvalue())
    return atomic_write(path, lambda fh: np.save(fh, arr))


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]], cell: Callable[[Any], str] = str) -> str:
    """A CSV document (header + rows, each value formatted by ``cell``) as text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]],
              cell: Callable[[Any], str] = str) -> Path:
    """Atomically write a CSV file (the rows are formatted before anything touches ``path``)."""
    return write_text(path, csv_text(header, rows, cell))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` for the duration of the block (POSIX ``flock``)."""
    import fcntl

    lock = Path(f"{os.fspath(path)}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_json(path: str | os.PathLike, default: Callable[[], Any]) -> Any:
    """The JSON document at ``path`` (``default()`` if there is none); SculptError if it is not valid JSON."""
    p = Path(path)
    if not p.is_file():
        return default()
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SculptError(f"{p} is not valid JSON: {exc}") from None


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented, key-sorted JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def locked_update_json(path: str | os.PathLike, update: Callable[[Any], Any], default: Callable[[], Any]) -> Any:
    """Read-modify-write a JSON file under :func:`file_lock`: concurrent updaters never lose each other's
    changes. ``update(data)`` changes ``data`` in place (or returns a replacement); the result is returned."""
    with file_lock(path):
        data = read_json(path, default)
        new = update(data)
        data = data if new is None else new
        write_json(path, data)
        return data
