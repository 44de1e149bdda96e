"""Errors that speak to a learner.

Every error the package raises on purpose derives from :class:`EnergyFlowsError`
and says what went wrong, what state things are in, and the one thing to do next.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class EnergyFlowsError(Exception):
    """Base class of every error this package raises on purpose."""


class HomeNotWritableError(EnergyFlowsError, PermissionError):
    """The home folder (``ENERGY_FLOWS_HOME``) cannot be created or written."""


class DataError(EnergyFlowsError, ValueError):
    """Meter data that cannot be used: empty, wrong columns, wrong types."""


class ServiceError(EnergyFlowsError, RuntimeError):
    """A server or worker that could not start, or stopped unexpectedly."""


class PortTakenError(ServiceError):
    """A service could not listen: another program took its port after it was checked free.

    Starting again on another free port fixes it; the services retry by themselves.
    """

    def __init__(self, message: str, port: int | None = None) -> None:
        super().__init__(message)
        self.port = port


class OrchestrationError(EnergyFlowsError, ValueError):
    """Invalid deployment, schedule, pool or queue input, checked before Prefect sees it."""


class WaitTimeout(EnergyFlowsError, TimeoutError):
    """A condition was not met in time; the message says what is still missing."""


class DiskFullError(EnergyFlowsError, OSError):
    """A write failed because the disk is full (ENOSPC, or a server's "database or disk is full").

    An ``OSError`` still (``errno`` is ``ENOSPC``), so code that handles a failed
    write handles this one; its message names the folder, the disk and what to do.
    """

    def __str__(self) -> str:
        return str(self.strerror)  # the sentence alone, without "[Errno 28]" and the path


#: What SQLite (so a Prefect server on it) says when a write finds its disk full.
SERVER_DISK_FULL = "database or disk is full"


def is_disk_full(exc: BaseException | str) -> bool:
    """Whether an error (or a server's error text) says the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return SERVER_DISK_FULL in text or "no space left on device" in text


#: Below this many free bytes a disk counts as full (a log line, a record, a database
#: page no longer fits).
FULL_DISK_BYTES = 1 << 20


def disk_is_full(path: str | os.PathLike[str]) -> bool:
    """Whether the disk that holds ``path`` is full (less than a MiB free for this user)."""
    try:
        usage = os.statvfs(path)
    except OSError:
        return False
    return usage.f_bavail * usage.f_frsize < FULL_DISK_BYTES


def mount_point(path: str | os.PathLike[str]) -> Path:
    """The mount point of the filesystem that holds ``path`` (or would, once it exists)."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return here


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def disk_full(path: str | os.PathLike[str], what: str) -> DiskFullError:
    """The one message for a full disk: ``what`` could not be written to ``path``'s folder.

    It names the folder, the disk (its mount point and free space) and the two ways
    out: make room there, or move the home (``ENERGY_FLOWS_HOME``) to another disk.
    """
    target = Path(os.path.abspath(path))
    folder = target if target.is_dir() else target.parent
    disk = mount_point(folder)
    try:
        usage = shutil.disk_usage(disk)
        space = f"{_size(usage.free)} free of {_size(usage.total)}"
    except OSError:
        space = "its free space unknown"
    message = (
        f"The disk is full: {what} could not be written to {folder} (the disk mounted at "
        f"{disk}, {space}). Make room on that disk (delete files you no longer need there; "
        "`energy-flows reset --yes` deletes this home's runs, logs and results), or set "
        "ENERGY_FLOWS_HOME to a folder on another disk; then run the cell again."
    )
    return DiskFullError(errno.ENOSPC, message, str(target))
