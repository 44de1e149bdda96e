"""One home per checkout: where :func:`energy_flows.settings.home_dir` puts the state.

The unit tests check the resolution order without starting anything: the
``home`` argument, then ``ENERGY_FLOWS_HOME``, then ``.energy_flows/`` at the
top of the checkout that contains the current directory, then
``~/.energy_flows``. The last test runs the real command line the way a hub
does: ``energy-flows up`` in ``notebooks/`` (a kernel's working directory),
``energy-flows status`` at the top (a terminal), with ``ENERGY_FLOWS_HOME``
unset, and expects both to see one server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from energy_flows import settings
from energy_flows.services import control, registry

PYPROJECT = '[project]\nname = "energy-flows"\nversion = "0.1.0"\n'


def make_checkout(root: Path, pyproject: str = PYPROJECT) -> Path:
    """The layout that marks a course checkout: ``pyproject.toml`` and ``notebooks/``."""
    (root / "notebooks").mkdir(parents=True)
    (root / "my-lessons").mkdir()
    (root / "pyproject.toml").write_text(pyproject)
    return root


@pytest.fixture
def no_home_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``ENERGY_FLOWS_HOME`` unset and ``~`` moved to a temporary folder; returns that ``~``."""
    if settings.checkout_root(tmp_path) is not None:
        pytest.skip(f"pytest's temporary folder {tmp_path} lies inside a checkout")
    monkeypatch.delenv("ENERGY_FLOWS_HOME", raising=False)
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    return user


def test_kernels_and_terminals_anywhere_in_a_checkout_share_its_home(
    no_home_variable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_checkout(tmp_path / "course")
    deeper = root / "notebooks" / "data" / "raw"
    deeper.mkdir(parents=True)
    for cwd in (root, root / "notebooks", root / "my-lessons", deeper):
        monkeypatch.chdir(cwd)
        assert settings.checkout_root() == root.resolve()
        assert settings.home_dir() == root.resolve() / ".energy_flows", cwd


def test_outside_any_checkout_the_home_is_the_users(
    no_home_variable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert settings.checkout_root() is None
    assert settings.home_dir() == no_home_variable.resolve() / ".energy_flows"
    assert settings.user_home_dir() == no_home_variable / ".energy_flows"


def test_the_variable_and_the_argument_win_over_the_checkout(
    no_home_variable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_checkout(tmp_path / "course")
    monkeypatch.chdir(root / "notebooks")
    monkeypatch.setenv("ENERGY_FLOWS_HOME", str(tmp_path / "from-variable"))
    assert settings.home_dir() == (tmp_path / "from-variable").resolve()
    assert settings.home_dir(tmp_path / "from-argument") == (tmp_path / "from-argument").resolve()
    # An empty variable counts as unset (`export ENERGY_FLOWS_HOME=` in a shell).
    monkeypatch.setenv("ENERGY_FLOWS_HOME", "")
    assert settings.home_dir() == root.resolve() / ".energy_flows"


def test_a_relative_or_tilde_home_is_made_absolute(
    no_home_variable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert settings.home_dir("rel") == (tmp_path / "rel").resolve()
    monkeypatch.setenv("ENERGY_FLOWS_HOME", "~/h")
    assert settings.home_dir() == (no_home_variable / "h").resolve()


def test_the_nearest_checkout_wins(no_home_variable: Path, tmp_path: Path) -> None:
    outer = make_checkout(tmp_path / "outer")
    inner = make_checkout(outer / "notebooks" / "copy-of-course")
    assert settings.checkout_root(inner / "notebooks") == inner.resolve()
    assert settings.checkout_root(outer / "notebooks") == outer.resolve()


@pytest.mark.parametrize(
    ("pyproject", "is_checkout"),
    [
        ('[project]\nname = "Energy_Flows"\n', True),  # PEP 503: the same name
        ('[project]\nname = "energy.flows"\n', True),
        ('[project]\nname = "another-course"\n', False),
        ("[tool.ruff]\nline-length = 100\n", False),  # no [project] table
        ('project = "energy-flows"\n', False),  # not a table
        ("[project\nname = ", False),  # not TOML at all
        (None, False),  # no pyproject.toml
    ],
)
def test_what_counts_as_a_checkout(
    no_home_variable: Path, tmp_path: Path, pyproject: str | None, is_checkout: bool
) -> None:
    root = tmp_path / "folder"
    (root / "notebooks").mkdir(parents=True)
    if pyproject is not None:
        (root / "pyproject.toml").write_text(pyproject)
    assert (settings.checkout_root(root / "notebooks") == root.resolve()) is is_checkout


def test_a_pyproject_without_notebooks_is_not_a_checkout(
    no_home_variable: Path, tmp_path: Path
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "pyproject.toml").write_text(PYPROJECT)
    assert settings.checkout_root(tmp_path / "pkg") is None


def test_an_edited_pyproject_is_read_again(no_home_variable: Path, tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "course", '[project]\nname = "other"\n')
    assert settings.checkout_root(root) is None
    (root / "pyproject.toml").write_text(PYPROJECT + "# renamed\n")
    assert settings.checkout_root(root) == root.resolve()


def test_a_deleted_working_directory_falls_back_to_the_users_home(
    no_home_variable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert settings.checkout_root() is None
    assert settings.home_dir() == no_home_variable.resolve() / ".energy_flows"


def _cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``energy-flows ARGS`` in ``cwd``, as a learner types it: no ENERGY_FLOWS_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in ("ENERGY_FLOWS_HOME", "PREFECT_HOME")}
    env.pop("ENERGY_FLOWS_QUIET", None)
    return subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.server
def test_up_in_notebooks_is_seen_by_status_at_the_top(tmp_path: Path) -> None:
    """The hub bug: the lesson's server ran, yet `energy-flows status` said "Nothing runs"."""
    root = make_checkout(tmp_path / "course")
    home = root.resolve() / ".energy_flows"
    try:
        up = _cli(root / "notebooks", "up")
        assert up.returncode == 0, up.stderr + up.stdout
        server = registry.server_record(home)
        assert server is not None, f"no server recorded in {home}: {up.stdout}"
        assert not (root / "notebooks" / ".energy_flows").exists()

        status = _cli(root, "status")
        assert status.returncode == 0, status.stderr
        assert f"Home: {home}" in status.stdout
        assert "server" in status.stdout and str(server.pid) in status.stdout
        # A terminal in the learner's copy sees the same server too.
        assert str(server.pid) in _cli(root / "my-lessons", "status").stdout
        down = _cli(root, "down")
        assert down.returncode == 0, down.stderr
        assert "Stopped the Prefect server" in down.stdout
        assert not registry.live_records(home)
        assert "Nothing runs" in _cli(root / "notebooks", "status").stdout
    finally:
        control.stop_all(home, quiet=True)
