"""One master per data dir: an OS lock on ``master.lock``, held while the master lives.

A second master on the same data dir would expire the first's leases in the shared
ledger and delete its ``master.pid``. ``fcntl.flock`` lets the kernel arbitrate: the
lock belongs to the open file, so it goes when the holder exits, even by SIGKILL,
and a stale file never blocks a restart. The holder writes its PID in the file for
``voe status`` and for the refusal of the next master. Asking who holds the lock
takes a shared lock for an instant, so taking it retries briefly before giving up.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from voe import private

# The lock's file name in the data dir.
LOCK_FILE = "master.lock"
# Seconds a starting master retries a lock held only by someone asking who holds it.
ACQUIRE_PATIENCE = 0.5
# Seconds ``holder`` waits for a holder that has just taken the lock to write its PID.
PID_PATIENCE = 1.0
# Seconds between tries of either.
RETRY_INTERVAL = 0.02
# What ``holder`` returns for a lock held by a process that wrote no PID (not a voe master).
UNKNOWN_PID = 0


class MasterRunning(Exception):
    """Another master holds the data dir's lock; the message names its PID and the data dir."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"another master ({who}) already runs on the data dir "
                         f"{data_dir.resolve()}; stop it first, or set VOE_DATA_DIR to another "
                         "directory")
        self.data_dir = data_dir
        self.pid = pid


def lock_path(data_dir: Path) -> Path:
    """The lock file of the master of ``data_dir``."""
    return data_dir / LOCK_FILE


def _read_pid(fd: int) -> int | None:
    """The PID written in the lock file, or None while it holds none."""
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except ValueError:  # empty (the holder is writing it, or released it) or not a PID
        return None


def holder(data_dir: Path) -> int | None:
    """The PID of the master holding the lock of ``data_dir``, or None when it is free.

    ``UNKNOWN_PID`` when the lock is held but names no PID after ``PID_PATIENCE``.
    """
    try:
        fd = os.open(lock_path(data_dir), os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):  # no master ever ran here
        return None
    try:
        deadline = time.monotonic() + PID_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                if pid is not None:
                    return pid
                if time.monotonic() >= deadline:
                    return UNKNOWN_PID
                time.sleep(RETRY_INTERVAL)
            else:
                return None  # closing the file below lets our shared lock go
    finally:
        os.close(fd)


class MasterLock:
    """The lock of ``data_dir``'s master, held from ``acquire`` to ``release`` (a context too)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our PID in it; raise ``MasterRunning`` if a master holds it."""
        fd = os.open(lock_path(self.data_dir), os.O_RDWR | os.O_CREAT, private.FILE_MODE)
        deadline = time.monotonic() + ACQUIRE_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise MasterRunning(self.data_dir, holder(self.data_dir)) from None
                time.sleep(RETRY_INTERVAL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Clear our PID and let the lock go (the kernel does it too if we die first)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> MasterLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
