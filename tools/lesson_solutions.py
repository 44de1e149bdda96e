"""The lessons' solutions: read them out of the notebooks, and run a lesson with them filled in.

A lesson's exercise is a code cell tagged ``exercise``; its solution is the
markdown cell right after it, tagged ``solution``, that holds a collapsed
``<details><summary>Solution</summary>`` with one fenced code block
(```` ```python ````, ```` ```yaml ```` for a file the exercise cell writes with
``%%writefile``, or ```` ```bash ```` for shell commands). Run All never
executes a solution, so the stored output of an exercise cell is its check's
"not yet" hint. The tests run the solutions by other means, with this module:

* :func:`solutions` lists a notebook's exercises and their solution code;
* :func:`solved_source` is what the exercise cell becomes once solved (a
  ``%%writefile`` line kept, shell lines prefixed with ``!``);
* :func:`with_solutions` is a copy of the notebook whose exercise cells hold
  their solutions;
* :func:`run_with_solutions` executes that copy in a kernel and returns each
  exercise's verdict (what its check printed), so a test can assert every
  check says ✓.

Lessons of any number follow this convention; the checks' verdicts are read
from their output, whatever module defines them.

    python -m tools.lesson_solutions 03        # run lesson 03 with its solutions, print verdicts
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy_flows.student import EXERCISE_TAG, SOLUTION_TAG  # the student edition drops solutions

#: A solution cell: the collapsed block, a blank line, one fenced code block, the closing tag.
SOLUTION_PATTERN = re.compile(
    r"\A<details><summary>Solution</summary>\n\n```(?P<language>python|yaml|bash)\n"
    r"(?P<code>.*?)\n```\n</details>\s*\Z",
    re.S,
)


@dataclass(frozen=True)
class Solution:
    """One exercise of a notebook and its solution."""

    exercise_index: int
    solution_index: int
    language: str
    code: str

    @property
    def lines(self) -> int:
        """The solution's lines of code (blank lines and comment-only lines aside)."""
        return sum(
            1
            for line in self.code.splitlines()
            if line.strip() and not line.strip().startswith("#")
        )


def _tags(cell: Any) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def solutions(notebook: Any) -> list[Solution]:
    """Every exercise of ``notebook`` (an nbformat 4 notebook) with its solution, in order.

    Raises ``ValueError`` for an exercise without a solution cell right after
    it, or a solution cell that does not follow the convention.
    """
    found = []
    cells = notebook.cells
    for index, cell in enumerate(cells):
        if EXERCISE_TAG not in _tags(cell):
            continue
        following = cells[index + 1] if index + 1 < len(cells) else None
        if following is None or SOLUTION_TAG not in _tags(following):
            raise ValueError(f"exercise cell {index} is not followed by a solution cell")
        if following.cell_type != "markdown":
            raise ValueError(f"solution cell {index + 1} is a {following.cell_type} cell")
        match = SOLUTION_PATTERN.match(following.source)
        if match is None:
            raise ValueError(
                f"solution cell {index + 1} is not '<details><summary>Solution</summary>', "
                "a blank line, one ```python|yaml|bash block and '</details>'"
            )
        found.append(Solution(index, index + 1, match["language"], match["code"]))
    return found


def solved_source(exercise: str, solution: Solution) -> str:
    """The exercise cell's source once solved with ``solution``.

    A ``%%writefile`` (any cell magic) the exercise starts with stays in front
    of a solution that does not start with one itself (a ``yaml`` block holds
    the file alone); each line of a ``bash`` block becomes a ``!`` command.
    """
    code = solution.code
    if solution.language == "bash":
        code = "\n".join(f"!{line}" if line.strip() else line for line in code.splitlines())
    first = exercise.splitlines()[0] if exercise else ""
    if first.startswith("%%") and not code.startswith("%%"):
        code = f"{first}\n{code}"
    return code


def with_solutions(notebook: Any) -> Any:
    """A copy of ``notebook`` whose exercise cells hold their solutions (outputs cleared)."""
    solved = copy.deepcopy(notebook)
    for item in solutions(notebook):
        cell = solved.cells[item.exercise_index]
        cell.source = solved_source(cell.source, item)
        cell.outputs = []
        cell.execution_count = None
    return solved


def verdict(cell: Any) -> str:
    """What a check printed in ``cell`` (its ✓/✗ text), or ``""``."""
    for output in cell.get("outputs", []):
        text = output.get("data", {}).get("text/plain") or output.get("text") or ""
        text = "".join(text) if isinstance(text, list) else str(text)
        for line in text.splitlines():
            if line.startswith(("✓ ", "✗ ")):
                return text[text.index(line) :]
    return ""


def run_with_solutions(
    path: Path,
    env: dict[str, str],
    folder: Path,
    timeout: float = 300.0,
) -> tuple[Any, dict[int, str]]:
    """Execute lesson ``path`` with its solutions filled in; return it and each check's verdict.

    The lesson runs in ``folder`` (a copy is written there, so the files its
    cells write, such as lesson 02's ``my_energy_flow.py``, land there and the
    next lesson run in the same folder finds them), in a kernel with ``env``.
    The verdicts are keyed by the exercise cell's index: the text its check
    printed, which starts with ``✓`` when the solution was accepted. A
    ``%%writefile`` exercise prints no verdict (the next exercise's check
    judges the file).
    """
    import nbformat
    from nbclient import NotebookClient

    folder.mkdir(parents=True, exist_ok=True)
    notebook = with_solutions(nbformat.read(path, as_version=4))
    target = folder / path.name
    nbformat.write(notebook, target)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=env)
    nbformat.write(notebook, target)
    verdicts = {
        item.exercise_index: verdict(notebook.cells[item.exercise_index])
        for item in solutions(nbformat.read(path, as_version=4))
    }
    return notebook, verdicts


def main(argv: list[str] | None = None) -> int:
    from tools.execute_lessons import TEMP_HOME_PREFIX, kernel_env, lesson_paths

    parser = argparse.ArgumentParser(
        prog="python -m tools.lesson_solutions",
        description="Run lessons with their solutions filled in, one home, and print the verdicts.",
    )
    parser.add_argument("lessons", nargs="*", help="lesson numbers (default: all)")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix=TEMP_HOME_PREFIX))
    folder = Path(tempfile.mkdtemp(prefix="ef-solutions-"))
    failed = 0
    try:
        for path in lesson_paths(args.lessons or None):
            _, verdicts = run_with_solutions(path, kernel_env(home), folder)
            for index, text in verdicts.items():
                head = text.splitlines()[0] if text else "(a file the next exercise checks)"
                failed += head.startswith("✗")
                print(f"{path.stem} cell {index}: {head}", flush=True)
    finally:
        from tools.execute_lessons import _wait_for_no_leftovers

        for proc in _wait_for_no_leftovers(home, timeout=20):
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
