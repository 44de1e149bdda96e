"""Start Prefect without the optional ``rfc3987_syntax`` package.

``jsonschema`` imports ``rfc3987_syntax`` when it is installed (JupyterLab's
dependencies install it) to validate "iri" strings, which Prefect never
needs. Importing it costs about a second in every Prefect process. This
launcher marks the module as absent (``sys.modules[name] = None`` makes
``import`` raise ``ImportError``, which jsonschema handles), then runs:

* ``python -m energy_flows.services.launch prefect ARGS...``: the ``prefect``
  command (what ``.venv/bin/prefect`` runs), used for the server and workers;
* ``python -m energy_flows.services.launch engine``: ``python -m prefect.engine``,
  the one interpreter a worker starts per flow run.

Only the standard library is imported here before Prefect itself.
"""

from __future__ import annotations

import runpy
import sys

#: Optional modules kept out of the processes the package starts.
BLOCKED_MODULES = ("rfc3987_syntax",)


def block_optional_modules() -> None:
    """Make ``import rfc3987_syntax`` fail fast, as if it were not installed."""
    for name in BLOCKED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    block_optional_modules()
    if args[:1] == ["engine"]:
        sys.argv = [sys.argv[0], *args[1:]]
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        return 0
    if args[:1] == ["prefect"]:
        from prefect.cli import app

        sys.argv = ["prefect", *args[1:]]
        result = app()
        return int(result or 0) if isinstance(result, int) else 0
    print(
        "usage: python -m energy_flows.services.launch (prefect ARGS... | engine)", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
