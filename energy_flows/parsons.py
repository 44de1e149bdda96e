"""Lesson 08's Parsons problem: the walkthrough's commands, shuffled, to put in an order that works.

:data:`COMMANDS` are seven commands of the walkthrough, lettered A to G;
:data:`BEFORE` says which must come before which, and why. Several orders
could satisfy a looser rule set; these rules admit one, and
:func:`check_order` names the first pair the learner has the wrong way
round, with the reason, never the whole order.
"""

from __future__ import annotations

from typing import Any

from energy_flows.exercises import CheckResult
from energy_flows.terminals import SUGGESTED_PORT

#: The names the walkthrough uses; the checks accept others where the lesson lets the learner choose.
POOL = "walkthrough"
QUEUE = "energy_usage"


#: The walkthrough's commands, shuffled: the learner puts the letters in order.
COMMANDS: dict[str, str] = {
    "A": f"prefect worker start --pool {POOL} --work-queue {QUEUE}",
    "B": "prefect --no-prompt deploy --all",
    "C": f"prefect server start --port {SUGGESTED_PORT}",
    "D": f"prefect work-queue create {QUEUE} --pool {POOL}",
    "E": f"prefect config set PREFECT_API_URL=http://127.0.0.1:{SUGGESTED_PORT}/api",
    "F": "prefect flow-run ls --state Late",
    "G": f"prefect work-pool create {POOL} --type process",
}

_SERVER_FIRST = "every other command is a client of the server: with no server it cannot connect"

#: (comes first, comes later, why): what makes an order work.
BEFORE: tuple[tuple[str, str, str], ...] = (
    (
        "E",
        "C",
        "the server's dashboard takes its API address from PREFECT_API_URL when the server "
        "starts: started with --port before the setting exists, its dashboard calls port 4200 "
        "(and Prefect stops to ask about your profile)",
    ),
    *(("C", later, _SERVER_FIRST) for later in "GDBFA"),
    ("G", "D", "a work queue lives in a work pool: the pool must exist first"),
    ("G", "B", "`prefect deploy` refuses a deployment whose work pool does not exist yet"),
    (
        "D",
        "B",
        "`prefect deploy` makes a missing queue itself; `work-queue create` afterwards only "
        "says it exists already",
    ),
    (
        "B",
        "F",
        "Late runs come from the deployment's schedule: before `prefect deploy` there is none",
    ),
    (
        "F",
        "A",
        "a running worker takes every run on time: start it after you have seen runs go Late",
    ),
)


def _letters(order: Any) -> list[str] | None:
    """The learner's order as letters; None when it cannot be read as one."""
    if isinstance(order, str):
        return [ch.upper() for ch in order if ch.isalpha()]
    if isinstance(order, list | tuple):
        normal = {" ".join(cmd.split()): letter for letter, cmd in COMMANDS.items()}
        letters = []
        for item in order:
            text = " ".join(str(item).split())
            letters.append(normal.get(text, text.upper()))
        return letters
    return None


def check_order(order: Any) -> CheckResult:
    """The Parsons problem: are the walkthrough's commands (:data:`COMMANDS`) in an order that works?

    ``order`` is a string of letters (``"A B C ..."``, any case, spaces and
    commas ignored), a list of letters, or a list of the commands themselves.
    A wrong order gets the first pair that is the wrong way round, and why.
    """
    check = CheckResult("Parsons problem: the walkthrough in order")
    if order is None:
        check.missing.append(
            "`order` is still None: replace None with the seven letters, in the order you "
            'would type the commands, e.g. "GABFDCE", and run the cell again.'
        )
        return check
    letters = _letters(order)
    if letters is None:
        check.missing.append(
            f"`order` is a {type(order).__name__}; give the letters as a string, e.g. "
            '"GABFDCE", or as a list of letters.'
        )
        return check
    unknown = sorted({x for x in letters if x not in COMMANDS})
    twice = sorted({x for x in letters if letters.count(x) > 1 and x in COMMANDS})
    left_out = sorted(set(COMMANDS) - set(letters))
    if unknown:
        check.missing.append(f"{', '.join(unknown)}: not a command of the list (A to G).")
    if twice:
        check.missing.append(f"{', '.join(twice)}: more than once; each command comes once.")
    if left_out:
        check.missing.append(f"{', '.join(left_out)}: missing; all seven commands are needed.")
    if check.missing:
        return check
    position = {letter: i for i, letter in enumerate(letters)}
    wrong = [(a, b, why) for a, b, why in BEFORE if position[a] > position[b]]
    if wrong:
        a, b, why = min(wrong, key=lambda rule: (position[rule[1]], position[rule[0]]))
        check.missing.append(
            f"{b} (`{COMMANDS[b]}`) comes before {a} (`{COMMANDS[a]}`), but {a} must come "
            f"first: {why}."
        )
        return check
    check.right.append("all seven commands, each in a place where it works")
    check.right.extend(f"{a} before {b}: {why}" for a, b, why in BEFORE if a != "C")
    return check


# --------------------------------------------------------------------------- the learner's server
