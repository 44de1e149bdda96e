"""New homes start from a migrated empty database: real migrations, real servers.

Each test gets its own template cache (``ENERGY_FLOWS_CACHE``), so the
template is really built here, not found from an earlier run.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from energy_flows.services import api, database
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
