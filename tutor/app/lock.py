"""One writer per data folder: `tutor serve` and `tutor ingest` hold `<data_dir>/tutor.lock`.

Two apps on one folder would each answer from their own in-memory copy of the index while the other
repaired or rebuilt it on disk, and an ingest under a running app would change the vectors it is
searching. So the app holds the lock for its whole life and an ingest (or the app's own first-time
build or repair) while it is held is refused with a message that says who holds it. The lock is
fcntl.flock: the kernel drops it when the process ends, so a killed app leaves no stale lock.
It does not lock read-only commands (retrieve, ask without repair, gate, eval), and it is a no-op
where fcntl does not exist (Windows).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tutor.errors import TutorError

LOCK_FILE = "tutor.lock"
_held: dict[Path, int] = {}  # data folders this process holds -> the lock file's descriptor


class DataDirBusy(TutorError):
    """Another tutor process is serving from, or indexing into, the same data folder."""


def acquire(data_dir: Path, what: str) -> None:
    """Hold the folder's lock until release() or the end of the process; DataDirBusy if another holds it."""
    key = Path(data_dir).resolve()
    if key in _held:
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
        os.close(fd)
        who = f"proceso {holder[0]}, «tutor {' '.join(holder[1:])}»" if holder else "otro proceso"
        raise DataDirBusy(
            f"La carpeta de datos «{key}» está en uso por otro tutor ({who}). Ciérrelo antes de volver a "
            "intentarlo (el índice se lee al arrancar), o use otra carpeta con TUTOR_DATA_DIR o --data-dir."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
    _held[key] = fd


def release(data_dir: Path) -> None:
    fd = _held.pop(Path(data_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


@contextlib.contextmanager
def holding(data_dir: Path, what: str) -> Iterator[None]:
    """The lock for a block; a no-op when this process already holds it (the app repairing its index)."""
    already = Path(data_dir).resolve() in _held
    acquire(data_dir, what)
    try:
        yield
    finally:
        if not already:
            release(data_dir)
