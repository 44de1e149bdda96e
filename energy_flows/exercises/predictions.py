"""\"Predict the outcome\" questions: the learner's choice, and why it is right or what it misses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from energy_flows.exercises.verdict import CheckResult, not_answered

__all__ = [
    "check_await_prediction",
    "check_concurrency_prediction",
    "check_kill_prediction",
    "check_retry_prediction",
]


def _judge_choice(
    check: CheckResult, choice: Any, variable: str, options: Mapping[str, tuple[bool, str]]
) -> CheckResult:
    """Judge a multiple-choice answer; ``options``: letter -> (right?, why, for that choice)."""
    letters = ", ".join(f'"{k}"' for k in options)
    if choice is None:
        return not_answered(check, variable, f"one of {letters}")
    key = str(choice).strip().lower().strip("()").strip()
    if key not in options:
        check.missing.append(f"`{variable}` is {choice!r}: choose one of {letters}.")
        return check
    right, why = options[key]
    (check.right if right else check.missing).append(f"({key}) {why}")
    if not right:
        check.missing.append("Think again, choose another letter, and run the cell again.")
    return check


def check_retry_prediction(choice: Any) -> CheckResult:
    """Lesson 02: what a task with ``retries=2`` does when every attempt fails."""
    check = CheckResult("Predict: retries=2 and a source that always fails")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "Retries try the same call again; they cannot make a source that always fails "
                "answer. Every attempt meets the same error.",
            ),
            "b": (
                True,
                "Right: 1 attempt + 2 retries = 3 attempts, all fail, so the task ends Failed, "
                "and the flow with it (the run below shows it).",
            ),
            "c": (
                False,
                "Prefect does retry: retries=2 means up to 2 more attempts after the first one "
                "fails, whatever the error.",
            ),
            "d": (
                False,
                "retries=2 is a limit: after the first attempt and 2 retries, Prefect gives up.",
            ),
        },
    )


def check_await_prediction(choice: Any) -> CheckResult:
    """Lesson 03: what ``flow.from_source(...)`` gives in a notebook cell without ``await``."""
    check = CheckResult("Predict: flow.from_source(...) without await, in a notebook")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "In a plain script it would be the flow. But a notebook's kernel runs an event "
                "loop, and in one Prefect's from_source and deploy are asynchronous.",
            ),
            "b": (
                True,
                "Right: a coroutine, a call that has not run yet. Nothing happens until you "
                "`await` it; Python warns if it is never awaited.",
            ),
            "c": (
                False,
                "No error is raised: that is what makes it a trap. The call only seems to have "
                "done nothing.",
            ),
            "d": (
                False,
                "from_source only loads the flow; a deployment is made by .deploy() (or "
                "`prefect deploy`), and that too needs await in a notebook.",
            ),
        },
    )


def check_concurrency_prediction(choice: Any) -> CheckResult:
    """Lesson 05: two workers, a queue limited to 1 run at a time, three runs."""
    check = CheckResult("Predict: two workers, a queue with a concurrency limit of 1")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "Three at once would need the queue to allow three: its limit holds, whatever "
                "the number of workers.",
            ),
            "b": (
                False,
                "Two workers could run two runs, but the queue's limit counts runs, not workers: "
                "it hands out a second run only when the first has finished.",
            ),
            "c": (
                True,
                "Right: the queue's concurrency limit is 1, so one run at a time, one after the "
                "other, on whichever worker polls first.",
            ),
            "d": (
                False,
                "The limit slows the runs down; it does not stop them: each one runs in turn.",
            ),
        },
    )


def check_kill_prediction(choice: Any) -> CheckResult:
    """Lesson 06: what the server shows for the run of a plain worker killed with ``kill -9``."""
    check = CheckResult("Predict: kill -9 of a plain `prefect worker start` mid-run")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "Crashed needs someone to tell the server. A worker killed with -9 cannot, and "
                "Prefect has no watchdog of its own: only the course's workers are watched.",
            ),
            "b": (
                True,
                "Right: the run's own process is a separate process; it lives on, finishes the "
                "flow and reports Completed itself. Only if it dies too does the run stay Running.",
            ),
            "c": (
                False,
                "Nobody asked to cancel it: Cancelled only follows a cancellation.",
            ),
            "d": (
                False,
                "Late is for runs that never started; this one was already running.",
            ),
        },
    )
