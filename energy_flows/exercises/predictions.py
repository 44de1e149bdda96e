"""\"Predict the outcome\" questions: the learner's choice, and why it is right or what it misses.

The questions' texts live in ``predictions.toml`` next to this module: for each
question, its title, the right letter and one sentence per choice.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from energy_flows.exercises.verdict import CheckResult, not_answered

__all__ = [
    "check_await_prediction",
    "check_concurrency_prediction",
    "check_kill_prediction",
    "check_retry_prediction",
]


@cache
def _questions() -> dict[str, Any]:
    return tomllib.loads(Path(__file__).with_name("predictions.toml").read_text(encoding="utf-8"))


def _judge_prediction(question: str, choice: Any, variable: str = "my_prediction") -> CheckResult:
    """Judge a multiple-choice answer to ``question`` (a table of predictions.toml)."""
    asked = _questions()[question]
    check = CheckResult(asked["title"])
    letters = ", ".join(f'"{k}"' for k in asked["why"])
    if choice is None:
        return not_answered(check, variable, f"one of {letters}")
    key = str(choice).strip().lower().strip("()").strip()
    if key not in asked["why"]:
        check.missing.append(f"`{variable}` is {choice!r}: choose one of {letters}.")
        return check
    right = key == asked["right"]
    (check.right if right else check.missing).append(f"({key}) {asked['why'][key]}")
    if not right:
        check.missing.append("Think again, choose another letter, and run the cell again.")
    return check


def check_retry_prediction(choice: Any) -> CheckResult:
    """Lesson 02: what a task with ``retries=2`` does when every attempt fails."""
    return _judge_prediction("retry", choice)


def check_await_prediction(choice: Any) -> CheckResult:
    """Lesson 03: what ``flow.from_source(...)`` gives in a notebook cell without ``await``."""
    return _judge_prediction("await", choice)


def check_concurrency_prediction(choice: Any) -> CheckResult:
    """Lesson 05: two workers, a queue limited to 1 run at a time, three runs."""
    return _judge_prediction("concurrency", choice)


def check_kill_prediction(choice: Any) -> CheckResult:
    """Lesson 06: what the server shows for the run of a plain worker killed with ``kill -9``."""
    return _judge_prediction("kill", choice)
