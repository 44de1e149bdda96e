"""Names a learner chooses: what Prefect accepts, and what can also become a file name.

Prefect refuses ``/ % & > <`` in the names of pools, queues, deployments
and workers. Its client also puts names, unquoted, into the web address it
reads them from (``/deployments/name/<flow>/<name>``): a line break or a tab
makes that address invalid, and ``?`` or ``#`` cut it short, so the name is
never found again. Those are refused too. A worker's name also names its state and log files
(``<home>/state/worker-<name>.json``), so it must be a plain file name too.
Checked here, before anything is sent or written, with a message that says
what to change. No Prefect import: the services check names without it.
"""

from __future__ import annotations

import re

from energy_flows.errors import OrchestrationError

#: Characters Prefect does not allow in names.
BANNED_CHARACTERS = "/%&><"

#: Characters that end the path of a web address: the rest of the name is lost.
URL_CUTTING_CHARACTERS = "?#"

#: A name that is safe as a file name and in Prefect: letters, digits, ``_ . -``.
FILE_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_prefect_name(name: object, what: str) -> str:
    """Return ``name`` if Prefect accepts it for a ``what`` (e.g. "work pool"); else say why."""
    if not isinstance(name, str) or not name.strip():
        raise OrchestrationError(f"A {what} needs a non-empty name; got {name!r}.")
    bad = set(BANNED_CHARACTERS) & set(name)
    if bad:
        raise OrchestrationError(
            f"The {what} name {name!r} contains {''.join(sorted(bad))!r}, which Prefect does "
            "not allow in names. Use letters, digits, '-' and '_'."
        )
    unsendable = sorted(
        {c for c in name if not c.isprintable() or c in URL_CUTTING_CHARACTERS}, key=name.index
    )
    if unsendable:
        shown = ", ".join(repr(c) for c in unsendable)
        raise OrchestrationError(
            f"The {what} name {name!r} contains {shown}, which Prefect cannot send in the web "
            "address it looks names up by (line breaks, tabs and other control characters, "
            "'?' and '#'). Use letters, digits, spaces, '-' and '_'."
        )
    return name


def check_file_safe_name(name: object, what: str) -> str:
    """Return ``name`` if it can also be a file name (a worker's); else say why and give an example."""
    if not isinstance(name, str) or not FILE_SAFE_NAME.match(name):
        raise OrchestrationError(
            f"The {what} name {name!r} cannot be used: it also names files, so use 1-63 "
            "letters, digits, '_', '.' or '-', starting with a letter or digit "
            "(no '/' or spaces), e.g. 'agent-1'."
        )
    return name
