"""Lessons open in tabs: real kernels of one home, started as JupyterLab starts them.

A :class:`Tab` holds one lesson (its solutions filled in) and a kernel of its own,
run cell by cell as a learner does (Shift-Enter down the page, back to an exercise
later). Used by ``test_journey.py`` (every lesson, tabs left open and revisited) and
``test_open_tabs.py`` (one tab whose server moved).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from energy_flows.lessons import leftover_processes
from energy_flows.waiting import wait_until
from tools.execute_lessons import kernel_env, lesson_paths
from tools.lesson_solutions import solutions, verdict, with_solutions

#: What a connection error's traceback shows; no cell may show it.
CONNECTION_WORDS = ("ConnectError", "Connection refused", "ConnectionRefusedError")

#: What the short message for a stopped server asks for.
NEXT_STEP = "first cell again"


class Tab:
    """One lesson open in a tab: its notebook (solutions filled in) and a kernel of its own."""

    def __init__(self, path: Path, home: Path, folder: Path) -> None:
        self.name = path.name[:2]
        self.original = nbformat.read(path, as_version=4)
        self.nb = with_solutions(self.original)
        self.home = home
        self.client = NotebookClient(
            self.nb,
            timeout=300,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(folder)}},
        )
        #: Every output this tab showed: (cell index, output).
        self.shown: list[tuple[int, Any]] = []

    @contextlib.contextmanager
    def open(self) -> Any:
        with self.client.setup_kernel(env=kernel_env(self.home)):
            yield self

    @property
    def exercises(self) -> list[int]:
        return [item.exercise_index for item in solutions(self.original)]

    def run(self, index: int) -> Any:
        """Run cell ``index`` (again); return it with its new outputs."""
        cell = self.nb.cells[index]
        cell.outputs = []
        self.client.execute_cell(cell, index)
        self.shown += [(index, copy.deepcopy(out)) for out in cell.outputs]
        return cell

    def run_code(self, source: str) -> Any:
        """Run a new cell, as a learner types one at the end of the notebook."""
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        return self.run(len(self.nb.cells) - 1)

    def run_through(self, stop: int, skip_exercises: bool = True) -> None:
        """Run the code cells before ``stop`` in order (Shift-Enter down the page)."""
        for index, cell in enumerate(self.nb.cells[:stop]):
            if cell.cell_type == "code" and not (skip_exercises and index in self.exercises):
                cell = self.run(index)
                assert not errors(cell), f"lesson {self.name} cell {index}: {errors(cell)}"

    def index_of(self, text: str) -> int:
        """The first code cell whose source contains ``text``."""
        for index, cell in enumerate(self.nb.cells):
            if cell.cell_type == "code" and text in cell.source:
                return index
        raise AssertionError(f"lesson {self.name} has no cell with {text!r}")

    def solve(self, index: int) -> str:
        """Run exercise ``index`` with its solution; its check's verdict must be ✓."""
        cell = self.run(index)
        assert not errors(cell), f"lesson {self.name} exercise {index}: {errors(cell)}"
        said = verdict(cell)
        if said:  # a %%writefile exercise prints none: the next check judges its file
            assert said.startswith("✓ "), f"lesson {self.name} exercise {index}:\n{said}"
        return said


def errors(cell: Any) -> list[str]:
    return [
        f"{out.get('ename')}: {out.get('evalue')}"
        for out in cell.outputs
        if out.get("output_type") == "error"
    ]


def shown_text(output: Any) -> str:
    """All the text an output shows (a stream, a value, an error's traceback)."""
    parts = [output.get("text", "")]
    parts += [str(v) for v in output.get("data", {}).values()]
    parts += output.get("traceback", [])
    return "\n".join("".join(p) if isinstance(p, list) else str(p) for p in parts)


def assert_readable(tabs: list[Tab]) -> None:
    """No output shows a connection traceback; every error is the short message naming the step."""
    for tab in tabs:
        for index, output in tab.shown:
            text = shown_text(output)
            where = f"lesson {tab.name} cell {index}"
            assert not any(word in text for word in CONNECTION_WORDS), f"{where}:\n{text}"
            if output.get("output_type") == "error":
                assert output["ename"] == "ServerGone", f"{where}:\n{text}"
                assert NEXT_STEP in output["evalue"], f"{where}:\n{text}"
                assert len(output["traceback"]) <= 2, f"{where}:\n{text}"


def lesson(number: str) -> Path:
    return {p.name[:2]: p for p in lesson_paths()}[number]


def no_leftovers(home: Path) -> None:
    with contextlib.suppress(Exception):
        wait_until(lambda: not leftover_processes(home), 30, what="the last processes to end")
    assert leftover_processes(home) == []


def run_all_solved(tab: Tab) -> None:
    """Run All, every exercise with its solution: each check must accept it."""
    for index, cell in enumerate(tab.nb.cells):
        if cell.cell_type != "code":
            continue
        if index in tab.exercises:
            tab.solve(index)
        else:
            ran = tab.run(index)
            assert not errors(ran), f"lesson {tab.name} cell {index}: {errors(ran)}"


def refused_then_set_up_again(tab: Tab, index: int) -> str:
    """Back in a tab: its next cell says the server went; its first cell continues."""
    refused = tab.run(index)
    assert [o["ename"] for o in refused.outputs if o["output_type"] == "error"] == ["ServerGone"], (
        refused.outputs
    )
    first = tab.index_of(f'lesson_setup("{tab.name}")')
    ran = tab.run(first)
    assert not errors(ran), errors(ran)
    return str(refused.outputs[-1]["evalue"])
