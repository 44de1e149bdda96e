"""A home's Prefect SQLite database: a copy of a migrated template, checked before use.

The template (:func:`ensure_template`) and the check (:func:`check_home`):
docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from energy_flows import errors, settings
from energy_flows.errors import EnergyFlowsError, ServiceError, disk_full, is_disk_full
from energy_flows.services import launch, process

#: Variables that point Prefect at another database (e.g. PostgreSQL): no template then.
DATABASE_URL_VARIABLES = (
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)


CANNOT_BUILD = (
    "... could not build it in {cache}. Nothing is lost: each new home builds its own "
    "database, as Prefect does, only slower. To fix this, set ENERGY_FLOWS_CACHE to a "
    "folder you can write, e.g. `export ENERGY_FLOWS_CACHE=/tmp/energy-flows-cache`."
)


def template_path() -> Path:
    """The template for the installed Prefect version (it may not exist yet)."""
    version = importlib.metadata.version("prefect")
    return settings.cache_dir() / f"prefect-{version}-empty.db"


def home_database(home: str | os.PathLike[str] | None = None) -> Path:
    """The SQLite file a server for ``home`` uses (Prefect's default under ``PREFECT_HOME``)."""
    return settings.home_dir(home) / "prefect" / "prefect.db"


def revision(path: Path) -> str | None:
    """The Alembic revision stored in a Prefect database, or None if it has none."""
    try:
        # Read-only and immutable: reading never creates -wal or -shm files beside it.
        uri = f"file:{path}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def build_template(timeout: float = 300.0) -> Path | None:
    """Build the template with ``prefect server database upgrade`` in a scratch folder, and
    move it into place in one step (two kernels at once both get a whole file); its path,
    or None, and nothing left, on failure."""
    target = template_path()
    scratch = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_builds(target.parent)
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        (scratch / "prefect").mkdir()
        argv = launch.prefect_argv("server", "database", "upgrade", "-y")
        env = settings.classroom_env(scratch)
        code = process.run(argv, env, scratch / "build.log", timeout=timeout, cwd=scratch)
        built = scratch / "prefect" / "prefect.db"
        if code != 0:
            return None
        # One self-contained file (Prefect's WAL folded in), so a plain copy is a whole database.
        with contextlib.closing(sqlite3.connect(built)) as db:
            db.execute("PRAGMA journal_mode=DELETE")
        if revision(built) is None:
            return None
        os.replace(built, target)
        return target
    except (OSError, sqlite3.Error, subprocess.SubprocessError, EnergyFlowsError):
        return None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def ensure_template(say: Callable[[str], None] | None = None) -> Path | None:
    """The template, built first if it is missing or damaged; None if it cannot be built."""
    template = template_path()
    if revision(template) is not None:
        return template
    with contextlib.suppress(OSError):
        template.unlink()
    if say is not None:
        say("Preparing an empty Prefect database for new homes (once per Prefect version) ...")
    started = time.monotonic()
    built = build_template()
    if say is not None:
        if built is not None:
            say(f"... ready in {time.monotonic() - started:.1f} s; new homes now start from it.")
        else:
            say(CANNOT_BUILD.format(cache=settings.cache_dir()))
    return built


def _remove_abandoned_builds(folder: Path, older_than: float = 900.0) -> None:
    """Scratch folders of builds whose process was killed."""
    for scratch in folder.glob(".build-*"):
        with contextlib.suppress(OSError):
            if time.time() - scratch.stat().st_mtime > older_than:
                shutil.rmtree(scratch, ignore_errors=True)


def seed_home(
    home: str | os.PathLike[str] | None = None, say: Callable[[str], None] | None = None
) -> bool:
    """Give a new home a copy of the template (built first if there is none, ``say`` tells);
    True when it did. Not for a home that has a database, nor for another database."""
    target = home_database(home)
    if target.exists() or any(os.environ.get(name) for name in DATABASE_URL_VARIABLES):
        return False
    template = ensure_template(say)
    if template is None:
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The template never changes once in place: its bytes are a whole database.
        process.write_private(target, template.read_bytes(), "this home's new Prefect database")
    except errors.DiskFullError:
        raise
    except OSError:
        return False  # the server migrates a database of its own, only slower
    _note_seen(home, target)  # from now on, its loss is noticed (check_home)
    return True


# --------------------------------------------------------------------------- damage

#: The SQLite files of one database: the file, its write-ahead log and its shared memory.
_COMPANIONS = ("", "-wal", "-shm", "-journal")

START_CLEAN = (
    "To start clean, run `energy-flows reset --yes` in a terminal (it stops everything and "
    "deletes this home's runs, deployments, state, logs and results; the folder {aside} "
    "stays), then run the cell again."
)


def seen_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The home's record that a server has used its database (``state/``, gone with a reset).

    Not a ``.json`` file: the state folder's ``*.json`` are the services' records.
    """
    return settings.home_dir(home) / "state" / "database.seen"


def damaged_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where a damaged database is kept (outside ``prefect/``: a reset leaves it)."""
    return settings.home_dir(home) / "damaged"


def quick_check(path: Path) -> str | None:
    """What is wrong with a SQLite file (``pragma quick_check``), or None when it is whole.

    Opened read-write without creating anything (a write-ahead log left by a
    killed server is read as the server would read it); no server may use it now.
    """
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
            rows = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if rows == ["ok"]:
        return None
    return "; ".join(str(row) for row in rows) or "pragma quick_check gave no answer"


def flow_run_count(path: Path) -> int | None:
    """How many flow runs a Prefect database holds (None: it has no such table)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM flow_run").fetchone()[0])
    except sqlite3.Error:
        return None


def _read_seen(home: str | os.PathLike[str] | None) -> dict[str, object] | None:
    try:
        data = json.loads(seen_path(home).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # a record cut short still says a server used the database
    return data if isinstance(data, dict) else {}


def _note_seen(home: str | os.PathLike[str] | None, path: Path) -> None:
    """Remember that a server starts on this database, and how many runs it held."""
    record = {"database": str(path), "flow_runs": flow_run_count(path), "checked_at": time.time()}
    seen = seen_path(home)
    # Only a safeguard for later starts: a disk too full for it fails the start elsewhere.
    with contextlib.suppress(OSError):
        seen.parent.mkdir(parents=True, exist_ok=True)
        process.write_private(seen, json.dumps(record))


def move_aside(path: Path, home: str | os.PathLike[str] | None = None) -> Path:
    """Move a database (and its -wal/-shm files) to ``damaged/<name>.<time>``; return the copy."""
    folder = damaged_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    target = process.timestamped_path(folder, path.name)
    for suffix in _COMPANIONS:
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, target.with_name(target.name + suffix))
    return target


#: Words of a server's log that say its database could not be used (a traceback's lines).
TROUBLE_WORDS = ("sqlalchemy.exc.", "sqlite3.", "alembic.", "Can't locate revision")


def remedy(log_text: str, home: str | os.PathLike[str] | None = None) -> str | None:
    """What to do when a server's last log lines show its database failed it, else None: damage
    the quick check cannot see (another Prefect version's database, a table gone) ends in a
    SQLAlchemy or Alembic traceback, whose last line this names with the file and the way out."""
    causes = [
        line.strip() for line in log_text.splitlines() if any(w in line for w in TROUBLE_WORDS)
    ]
    if not causes:
        return None
    if is_disk_full(log_text):
        return str(disk_full(home_database(home), "the server's database"))
    return (
        f"The server could not use its database {home_database(home)} "
        f"({causes[-1][:300]}). If it comes from another Prefect version or was changed by "
        "hand, start clean with `energy-flows reset --yes` in a terminal (it deletes this "
        "home's runs and deployments: copy the file elsewhere first to keep it), then run "
        "the cell again."
    )


def check_home(home: str | os.PathLike[str] | None = None) -> None:
    """Refuse to serve a damaged home database (moved to ``damaged/``, never deleted), or an
    empty or missing one that held runs, with a :class:`ServiceError` that names the remedy.
    A database that passes is noted (``state/database.seen``) for the next start."""
    path = home_database(home)
    seen = _read_seen(home)
    size = path.stat().st_size if path.exists() else None
    if not size:
        if seen is None:
            return  # a new home: the server (or seed_home) makes its database
        runs = seen.get("flow_runs")
        held = f" ({runs} flow run(s) at its last start)" if isinstance(runs, int) else ""
        what = "is missing" if size is None else "is empty (0 bytes)"
        raise ServiceError(
            f"The Prefect database {path} {what}, but a server of this home used it "
            f"before{held}. Starting on it would look like a fresh home with every pool, "
            "deployment and run gone, so the server was not started. If you have a copy, "
            f"put it back at {path}. " + START_CLEAN.format(aside=damaged_dir(home))
        )
    problem = quick_check(path)
    if problem is not None:
        aside = move_aside(path, home)
        raise ServiceError(
            f"The Prefect database {path} is damaged (SQLite's quick_check: {problem}), so the "
            "server was not started on it: it would serve it as if pools and deployments were "
            f"gone. The file is kept: it was moved to {aside}. "
            + START_CLEAN.format(aside=damaged_dir(home))
        )
    _note_seen(home, path)


def main() -> int:
    """``python -m energy_flows.services.database`` (``make setup``): build SQLite's template,
    then PostgreSQL's when it is installed; only SQLite's, which the lessons need, decides the
    exit code."""
    from energy_flows.services import pgdata, postgres

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    built = ensure_template(say=say)
    if built is None:
        return 1
    print(f"Prefect database template: {built}")
    try:
        pgdata.binaries()
    except EnergyFlowsError as exc:
        say(f"No PostgreSQL template: {exc}")
        return 0
    pg_template = postgres.ensure_template(say=say)
    if pg_template is not None:
        print(f"PostgreSQL template: {pg_template}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
