"""New homes start from a migrated empty database: real migrations, real servers.

Each test gets its own template cache (``ENERGY_FLOWS_CACHE``), so the
template is really built here, not found from an earlier run.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from energy_flows.errors import ServiceError
from energy_flows.services import api, database, registry
from energy_flows.services.server import PrefectServer

pytestmark = pytest.mark.server


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ENERGY_FLOWS_CACHE", str(folder))
    return folder


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_new_home_gets_a_copy_of_the_migrated_template(fresh_home, cache):
    said: list[str] = []
    assert database.seed_home(fresh_home, say=said.append)
    template = database.template_path()
    assert template.parent == cache and template.name.startswith("prefect-3.")
    assert "once per Prefect version" in said[0]
    # Prefect's schema at its latest revision, as one self-contained file.
    revision = database.revision(template)
    assert revision and database.revision(database.home_database(fresh_home)) == revision
    assert {"flow_run", "deployment", "work_pool", "work_queue"} <= _tables(template)
    assert sorted(p.name for p in cache.iterdir()) == [template.name]
    # A second home copies it without building, and a home with a database is left alone.
    said.clear()
    other = fresh_home.parent / "other-home"
    assert database.seed_home(other, say=said.append) and said == []
    assert not database.seed_home(other)


def test_a_server_on_a_seeded_home_works(fresh_home, cache):
    server = PrefectServer(quiet=True).start()
    try:
        assert database.template_path().exists()
        api.call("POST", f"{server.api_url}/work_pools/", {"name": "seeded", "type": "process"})
        assert api.call("GET", f"{server.api_url}/work_pools/seeded")["name"] == "seeded"
    finally:
        server.stop()
    # The home's own database holds the pool; the template stays empty.
    with sqlite3.connect(database.home_database(fresh_home)) as db:
        assert db.execute("SELECT count(*) FROM work_pool WHERE name='seeded'").fetchone() == (1,)
    with sqlite3.connect(f"file:{database.template_path()}?mode=ro&immutable=1", uri=True) as db:
        assert db.execute("SELECT count(*) FROM work_pool").fetchone() == (0,)


def test_a_damaged_template_is_rebuilt(fresh_home, cache):
    cache.mkdir()
    database.template_path().write_bytes(b"not a database")
    assert database.seed_home(fresh_home)
    assert database.revision(database.template_path()) is not None


def test_without_a_usable_cache_the_server_builds_its_own_database(
    fresh_home, tmp_path, monkeypatch
):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache cannot be a folder inside a file")
    monkeypatch.setenv("ENERGY_FLOWS_CACHE", str(blocker / "cache"))
    assert database.build_template() is None
    said: list[str] = []
    assert not database.seed_home(fresh_home, say=said.append)
    assert "could not build it" in said[-1] and "ENERGY_FLOWS_CACHE" in said[-1]
    server = PrefectServer(quiet=True).start()  # Prefect migrates on its own, as always
    try:
        assert api.healthy(server.api_url)
        assert database.revision(database.home_database(fresh_home)) is not None
    finally:
        server.stop()


def test_another_database_url_means_no_template(fresh_home, cache, monkeypatch):
    monkeypatch.setenv(
        "PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://u:p@db.example/prefect"
    )
    assert not database.seed_home(fresh_home)
    assert not cache.exists() and not database.home_database(fresh_home).exists()


def test_a_read_only_shared_cache_is_only_read(fresh_home, cache):
    """A hub builds the template into its image and shares it read-only (README, Troubleshooting).

    Homes copy it and leave it as it was; each copy is the learner's own (0600),
    whatever the template's mode. (Tests may run as root, whom file modes do not
    stop, so the check is that nothing in the cache changed, not that a write failed.)
    """
    assert database.ensure_template() is not None  # the image's build step
    shared = [cache, *cache.rglob("*")]
    for path in shared:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    try:
        said: list[str] = []
        assert database.seed_home(fresh_home, say=said.append) and said == []
        copy = database.home_database(fresh_home)
        assert copy.stat().st_mode & 0o777 == 0o600
        assert database.revision(copy) == database.revision(database.template_path())
        assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    finally:
        for path in shared:
            path.chmod(0o755 if path.is_dir() else 0o644)


# ----------------------------------------------------------------------------- damage
@pytest.fixture(scope="module")
def used_database(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a home database a server has used: a pool, a deployment's flow, runs."""
    from tests.conftest import prefect_settings_kept

    home = tmp_path_factory.mktemp("used-home")
    with prefect_settings_kept():  # later tests keep talking to the session's server
        _use_a_server(home)
    path = database.home_database(home)
    with sqlite3.connect(path) as db:  # one self-contained file: its log folded in
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.read_bytes()


def _use_a_server(home: Path) -> None:
    """Start a server in ``home``, give it a pool, a flow and 20 runs, stop it."""
    server = PrefectServer(home=home, quiet=True).start()
    try:
        api.call("POST", f"{server.api_url}/work_pools/", {"name": "kept", "type": "process"})
        flow = api.call("POST", f"{server.api_url}/flows/", {"name": "energy"})
        for i in range(20):
            body = {"flow_id": flow["id"], "name": f"run-{i}", "state": {"type": "COMPLETED"}}
            api.call("POST", f"{server.api_url}/flow_runs/", body)
    finally:
        server.stop()


def _home_with(home: Path, data: bytes) -> Path:
    """A home whose server used ``data`` as its database before (it started once on it)."""
    path = database.home_database(home)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    database.check_home(home)  # what the earlier start did: it is whole, and noted
    assert database.seen_path(home).exists()
    return path


def _refused(home: Path) -> str:
    with pytest.raises(ServiceError) as caught:
        PrefectServer(quiet=True).start()
    assert registry.live_records(home) == [], "a refused database still got a server"
    message = str(caught.value)
    assert "energy-flows reset --yes" in message and "was not started" in message
    return message


def test_garbage_in_the_middle_of_the_database_is_refused_and_kept(fresh_home, used_database):
    path = _home_with(fresh_home, used_database)
    assert len(used_database) > 3 * 65536
    damaged = bytearray(used_database)
    middle = len(damaged) // 2
    damaged[middle : middle + 65536] = os.urandom(65536)
    path.write_bytes(bytes(damaged))

    message = _refused(fresh_home)
    assert f"The Prefect database {path} is damaged" in message
    (kept,) = (fresh_home / "damaged").iterdir()
    assert str(kept) in message and kept.name.startswith("prefect.db.")
    assert kept.read_bytes() == bytes(damaged) and not path.exists()
    # The next start says the database is gone rather than serving an empty one.
    assert "is missing, but a server of this home used it before" in _refused(fresh_home)
    # The remedy the message offers works, and the damaged copy stays.
    reset = subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", "reset", "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reset.returncode == 0, reset.stderr
    server = PrefectServer(quiet=True).start()
    try:
        pools = api.call("POST", f"{server.api_url}/work_pools/filter", {})
        assert "kept" not in [pool["name"] for pool in pools]  # a clean start, as offered
    finally:
        server.stop()
    assert kept.read_bytes() == bytes(damaged)


@pytest.mark.parametrize("how", ["emptied", "truncated"])
def test_an_emptied_or_truncated_database_is_refused(fresh_home, used_database, how):
    path = _home_with(fresh_home, used_database)
    if how == "emptied":
        path.write_bytes(b"")
        message = _refused(fresh_home)
        assert f"The Prefect database {path} is empty (0 bytes)" in message
        assert "(20 flow run(s) at its last start)" in message
        assert path.exists(), "an emptied database was moved or replaced"
    else:
        path.write_bytes(used_database[: len(used_database) // 3])
        message = _refused(fresh_home)
        assert f"The Prefect database {path} is damaged" in message
        (kept,) = (fresh_home / "damaged").iterdir()
        assert kept.read_bytes() == used_database[: len(used_database) // 3]


def test_a_whole_database_starts_and_keeps_its_pool(fresh_home, used_database):
    _home_with(fresh_home, used_database)
    server = PrefectServer(quiet=True).start()
    try:
        assert api.call("GET", f"{server.api_url}/work_pools/kept")["name"] == "kept"
    finally:
        server.stop()
    assert not (fresh_home / "damaged").exists()


def test_a_database_of_an_unknown_prefect_version_names_the_remedy(fresh_home, used_database):
    """Damage the quick check cannot see ends in Alembic's traceback: the error names the
    file, the traceback's last line and `energy-flows reset --yes`."""
    path = _home_with(fresh_home, used_database)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    with pytest.raises(ServiceError) as caught:
        PrefectServer(quiet=True, timeout=60).start()
    message = str(caught.value)
    assert f"The server could not use its database {path}" in message, message
    assert "ffffffffffff" in message.split("The server could not use")[-1]
    assert "`energy-flows reset --yes`" in message
    assert registry.live_records(fresh_home) == []
