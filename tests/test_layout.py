"""The package's layout: modules use each other's public names only, and stay short.

A name with a leading underscore (``_status``, ``_common``) is private to the
module that defines it (a private *module* to its package): another module
that imports it breaks the day it is renamed, and nobody reading the owner
knows it has outside users. Such a name gets a public name in the module that
owns it instead. And a module over :data:`MAX_LINES` lines holds several
things: split it by what it holds.

Both checks read the source with :mod:`ast` (imports inside functions count
too); nothing is imported.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import energy_flows

PACKAGE = Path(energy_flows.__file__).resolve().parent
MAX_LINES = 650

# Known offenders, owned by other parts of the "Structure" work and waiting for
# their owners to move to public names. Each is (module file relative to
# energy_flows/, "imported.module.name"). Empty these lists as they are fixed:
# an entry that no longer offends only warns, a new offence fails.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()
KNOWN_LONG_MODULES: set[str] = set()


@dataclass(frozen=True)
class Offence:
    module: str  # file relative to energy_flows/
    line: int
    imported: str  # "module.name"

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.imported)

    def __str__(self) -> str:
        return f"energy_flows/{self.module}:{self.line} imports the private {self.imported}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module an ``ImportFrom`` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_submodule(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative).is_dir()


def _reaches_private(
    importer: str, dotted: str, is_module: Callable[[str], bool] = _is_submodule
) -> bool:
    """True when ``dotted`` (a module, or a name in one) is private to a place ``importer`` is not.

    A private module is private to its package (its siblings may import it); a
    private function, class or constant to the module that defines it.
    """
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not _is_private(part):
            continue
        owner = ".".join(parts[:i])
        if is_module(".".join(parts[: i + 1])):
            allowed = importer == owner or importer.startswith(owner + ".")
        else:
            allowed = importer == owner
        if not allowed:
            return True
    return False


def private_imports(path: Path) -> list[Offence]:
    """Every import in ``path`` of another energy_flows module's private name or module."""
    importer = _module_name(path)
    relative = path.relative_to(PACKAGE).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, importer, path.name == "__init__.py")
            targets = [f"{source}.{alias.name}" for alias in node.names if alias.name != "*"]
            if node.names[0].name == "*":
                targets = [source]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "energy_flows" or target == importer:
                continue
            if _reaches_private(importer, target):
                found.append(Offence(relative, node.lineno, target))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_checks_see_what_they_should() -> None:
    """The checker itself, on made-up imports (so an empty result means something)."""
    modules = {"energy_flows.orchestration._client", "energy_flows.orchestration.runs"}

    def reaches(importer: str, dotted: str) -> bool:
        return _reaches_private(importer, dotted, is_module=modules.__contains__)

    assert reaches("energy_flows.views", "energy_flows.orchestration._client.client")
    assert reaches("energy_flows.views", "energy_flows.orchestration._client")
    assert reaches("energy_flows.tour", "energy_flows.orchestration.runs._run_id")
    assert reaches("energy_flows.orchestration.waits", "energy_flows.orchestration.runs._run_id")
    assert reaches("energy_flows.orchestration.runs", "energy_flows.orchestration._client._fmt")
    # its own package may use a private module, and dunders are not private
    assert not reaches(
        "energy_flows.orchestration.runs", "energy_flows.orchestration._client.client"
    )
    assert not reaches("energy_flows.cli", "energy_flows.__version__")
    assert not reaches("energy_flows.tour", "energy_flows.orchestration.runs.run_info")


def test_no_module_imports_another_modules_private_names() -> None:
    offences = [o for path in _modules() for o in private_imports(path)]
    new = [str(o) for o in offences if o.key not in KNOWN_PRIVATE_IMPORTS]
    assert not new, (
        "Import public names only: give the name a public name in the module that "
        "defines it (no leading underscore), then import that.\n" + "\n".join(new)
    )
    fixed = KNOWN_PRIVATE_IMPORTS - {o.key for o in offences}
    if fixed:
        warnings.warn(
            f"fixed, remove from KNOWN_PRIVATE_IMPORTS in {Path(__file__).name}: {sorted(fixed)}",
            stacklevel=1,
        )


def test_no_module_is_longer_than_max_lines() -> None:
    lengths = {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
        for p in _modules()
    }
    long = {m: n for m, n in lengths.items() if n > MAX_LINES}
    new = [
        f"energy_flows/{m}: {n} lines"
        for m, n in sorted(long.items())
        if m not in KNOWN_LONG_MODULES
    ]
    assert not new, (
        f"Modules over {MAX_LINES} lines hold several things: split each by what it holds "
        "(a package whose __init__ re-exports keeps every import working).\n" + "\n".join(new)
    )
    fixed = KNOWN_LONG_MODULES - set(long)
    if fixed:
        warnings.warn(
            f"short now, remove from KNOWN_LONG_MODULES in {Path(__file__).name}: {sorted(fixed)}",
            stacklevel=1,
        )


#: Uses of Prefect's private parts that remain, each guarded and listed in
#: docs/prefect-facts.md ("Prefect's private parts"): (file, the private name).
ALLOWED_PRIVATE_PREFECT = {
    # Imported ahead of time to start the server faster; a module missing from a
    # release is skipped (tests/test_recovery.py checks it), never stops a start.
    ("services/launch.py", "prefect.cli._server_utils"),
}
_PREFECT_PRIVATE = re.compile(r"prefect(\.[A-Za-z0-9]+)*\._[A-Za-z]\w*")


def test_prefect_private_parts_are_only_the_listed_guarded_ones() -> None:
    """``grep -rn "prefect\\._\\|\\._vendor\\|cli\\._" energy_flows/`` finds only the listed uses."""
    found = {
        (path.relative_to(PACKAGE).as_posix(), match.group(0))
        for path in _modules()
        for match in _PREFECT_PRIVATE.finditer(path.read_text(encoding="utf-8"))
    }
    assert found <= ALLOWED_PRIVATE_PREFECT, (
        "Use Prefect's public API, or guard the private use with a fallback and a test, "
        "then list it here and in docs/prefect-facts.md:\n"
        + "\n".join(
            f"energy_flows/{f}: {name}" for f, name in sorted(found - ALLOWED_PRIVATE_PREFECT)
        )
    )
    docs = (PACKAGE.parent / "docs" / "prefect-facts.md").read_text(encoding="utf-8")
    assert all(name in docs for _, name in ALLOWED_PRIVATE_PREFECT)
    assert _PREFECT_PRIVATE.search("from prefect._vendor.croniter import croniter")
