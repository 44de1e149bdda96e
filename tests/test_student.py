"""The student edition (`energy-flows student DIR`, `make student`): no answers, nothing else lost.

No kernel runs here: the edition is checked as files, and a static check
(Python's own ``ast``) makes sure that a student who runs a lesson top to
bottom (Run All) never meets a name only a removed solution cell defined.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from energy_flows.errors import EnergyFlowsError
from energy_flows.student import (
    EXERCISE_TAG,
    RECORD_NAME,
    SOLUTION_TAG,
    is_solution,
    write_student_edition,
)
from tools.lesson_solutions import SOLUTION_PATTERN

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LESSONS = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    """The student edition of the real lessons, written once for this module."""
    folder = tmp_path_factory.mktemp("edition") / "student-edition"
    write_student_edition(folder, NOTEBOOKS, say=None)
    return folder


def _read(path: Path):
    return nbformat.read(path, as_version=4)


# --------------------------------------------------------------------------- the edition


def test_the_edition_has_every_lesson_and_no_solution_or_output(edition: Path):
    assert sorted(p.name for p in edition.glob("*.ipynb")) == LESSONS
    for name in LESSONS:
        original, student = _read(NOTEBOOKS / name), _read(edition / name)
        nbformat.validate(student)
        assert student.nbformat == 4
        assert not [c for c in student.cells if SOLUTION_TAG in _tags(c)], name
        for cell in student.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (name, cell.id)
        assert "widgets" not in student.metadata, f"{name}: saved widget state is output"
        # No solution shows anywhere in the file, outputs and metadata included.
        text = (edition / name).read_text()
        for solution in [c for c in original.cells if is_solution(c)]:
            body = solution.source.removeprefix("# Solution\n")
            assert json.dumps(body)[1:-1] not in text, f"{name}: the solution leaks"


def test_the_original_lessons_have_the_solutions_the_edition_removes():
    """So the test above proves something: from lesson 02 on, each exercise has its solution."""
    for name in LESSONS:
        cells = _read(NOTEBOOKS / name).cells
        solutions = [c for c in cells if is_solution(c)]
        assert bool(solutions) == (name >= "02"), name
        assert any(c.get("outputs") for c in cells), f"{name} has stored outputs"


def test_everything_but_the_solutions_is_kept_as_it_was(edition: Path):
    for name in LESSONS:
        original, student = _read(NOTEBOOKS / name), _read(edition / name)
        kept = [c for c in original.cells if not is_solution(c)]
        assert [(c.id, c.cell_type, c.source, c.metadata) for c in student.cells] == [
            (c.id, c.cell_type, c.source, c.metadata) for c in kept
        ], name
        exercises = [c.source for c in original.cells if EXERCISE_TAG in _tags(c)]
        assert [c.source for c in student.cells if EXERCISE_TAG in _tags(c)] == exercises
        assert student.metadata.get("kernelspec") == original.metadata.get("kernelspec")
        assert student.nbformat_minor == original.nbformat_minor


def test_it_says_what_it_wrote(tmp_path: Path):
    said: list[str] = []
    made = write_student_edition(tmp_path / "out", NOTEBOOKS, say=said.append)
    solutions = sum(1 for name in LESSONS for c in _read(NOTEBOOKS / name).cells if is_solution(c))
    assert made.solutions_removed == solutions
    assert said[0] == f"Wrote the student edition of {len(LESSONS)} lessons to {tmp_path / 'out'}:"
    in_02 = sum(1 for c in _read(NOTEBOOKS / LESSONS[2]).cells if is_solution(c))
    assert f"  {LESSONS[2]}  {in_02} solution cells removed" in said
    assert said[-1].startswith(f"{solutions} solution cells removed; every output cleared.")


def test_the_lessons_companion_files_come_along(tmp_path: Path):
    source = tmp_path / "notebooks"
    (source / "data").mkdir(parents=True)
    (source / "data" / "meter.csv").write_text("t,kwh\n")
    (source / ".ipynb_checkpoints").mkdir()
    (source / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").write_text("{}")
    (source / "my_energy_flow.py").write_text("@___\n")  # a lesson wrote it: not a lesson
    (source / "prefect.yaml").write_text("deployments: []\n")
    lesson = nbformat.v4.new_notebook()
    lesson.cells = [
        nbformat.v4.new_code_cell("answer = None", metadata={"tags": [EXERCISE_TAG]}),
        nbformat.v4.new_markdown_cell(
            "<details><summary>Solution</summary>\n\n```python\nanswer = 42\n```\n</details>",
            metadata={"tags": [SOLUTION_TAG]},
        ),
    ]
    nbformat.write(lesson, source / "01_a.ipynb")
    nbformat.write(lesson, source / "data" / "extra.ipynb")
    made = write_student_edition(tmp_path / "out", source, say=None)
    assert made.lessons == {"01_a.ipynb": 1, "data/extra.ipynb": 1}
    assert made.companions == ["data/meter.csv"]
    assert (tmp_path / "out" / "data" / "meter.csv").read_text() == "t,kwh\n"
    assert not (tmp_path / "out" / ".ipynb_checkpoints").exists()
    assert not (tmp_path / "out" / "my_energy_flow.py").exists()
    assert not (tmp_path / "out" / "prefect.yaml").exists()
    assert "answer = 42" not in (tmp_path / "out" / "data" / "extra.ipynb").read_text()


# --------------------------------------------------------------------------- where it writes


def test_a_folder_that_is_not_empty_is_refused_and_left_alone(tmp_path: Path):
    folder = tmp_path / "my-notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(EnergyFlowsError, match=r"is not empty .*another folder, or pass --force"):
        write_student_edition(folder, NOTEBOOKS, say=None)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]

    # --force writes the lessons in, and deletes nothing.
    write_student_edition(folder, NOTEBOOKS, force=True, say=None)
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in folder.glob("*.ipynb")) == LESSONS


def test_a_previous_edition_is_replaced_and_what_else_is_there_is_kept(tmp_path: Path):
    source = tmp_path / "notebooks"
    source.mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        nbformat.write(nbformat.v4.new_notebook(), source / name)
    folder = tmp_path / "handout"
    write_student_edition(folder, source, say=None)
    (folder / ".git").mkdir()  # the hand-out repository's own files
    (folder / "README.md").write_text("Welcome")

    # A lesson renamed in notebooks/: the old one goes, the rest stays.
    (source / "02_b.ipynb").rename(source / "02_c.ipynb")
    made = write_student_edition(folder, source, say=None)
    assert made.removed_stale == ["02_b.ipynb"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".git", "README.md", RECORD_NAME, "01_a.ipynb", "02_c.ipynb"]
    )

    # A lesson of the edition edited by hand is not overwritten without --force.
    (folder / "01_a.ipynb").write_text('{"edited": true}')
    with pytest.raises(EnergyFlowsError, match=r"01_a.ipynb in .* changed since .* --force"):
        write_student_edition(folder, source, say=None)
    assert (folder / "01_a.ipynb").read_text() == '{"edited": true}'
    write_student_edition(folder, source, force=True, say=None)
    assert _read(folder / "01_a.ipynb").nbformat == 4


def test_the_lessons_own_folder_a_file_and_a_missing_source_are_refused(tmp_path: Path):
    with pytest.raises(EnergyFlowsError, match="folder of the original lessons"):
        write_student_edition(NOTEBOOKS, NOTEBOOKS, force=True, say=None)
    with pytest.raises(EnergyFlowsError, match="folder of the original lessons"):
        write_student_edition(NOTEBOOKS / "student", NOTEBOOKS, force=True, say=None)
    assert not (NOTEBOOKS / "student").exists()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(EnergyFlowsError, match="is a file"):
        write_student_edition(tmp_path / "a-file", NOTEBOOKS, force=True, say=None)
    with pytest.raises(EnergyFlowsError, match="The lessons are not where they should be"):
        write_student_edition(tmp_path / "out", tmp_path / "nowhere", say=None)
    assert not (tmp_path / "out").exists()


def test_the_command_line(tmp_path: Path, capsys, monkeypatch):
    """`energy-flows student DIR`: finds the lessons as `energy-flows lab` does."""
    from energy_flows.cli import main

    monkeypatch.chdir(tmp_path)  # the lessons are found next to the package, not in the cwd
    assert main(["student", "handout"]) == 0
    out = capsys.readouterr().out
    assert f"to {tmp_path / 'handout'}:" in out
    assert sorted(p.name for p in (tmp_path / "handout").glob("*.ipynb")) == LESSONS
    assert main(["student", "handout"]) == 0  # again: a previous edition is replaced

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    assert main(["student", "other"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("energy-flows student: ") and "--force" in err


def test_make_student_writes_to_an_ignored_folder():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^student: ", makefile, re.M)
    assert re.search(r"^STUDENT_DIR \?= student-edition$", makefile, re.M)
    assert "/student-edition/" in (ROOT / ".gitignore").read_text().splitlines()


# --------------------------------------------------------------------------- Run All still works


def _code(source: str) -> str:
    """A cell's source as plain Python (``!command`` and ``%magic`` as IPython runs them)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _shell_names(node: ast.AST) -> set[str]:
    """Names a ``!command {name}`` or ``$name`` reads: IPython expands them in the string."""
    names: set[str] = set()
    for const in ast.walk(node):
        if isinstance(const, ast.Constant) and isinstance(const.value, str):
            for expr in re.findall(r"\{([^{}]+)\}", const.value):
                try:
                    names |= {
                        n.id
                        for n in ast.walk(ast.parse(expr.strip(), mode="eval"))
                        if isinstance(n, ast.Name)
                    }
                except SyntaxError:
                    continue
            names |= set(re.findall(r"(?<!\$)\$([A-Za-z_]\w*)", const.value))
    return names


def _statements(source: str) -> list[tuple[set[str], set[str]]]:
    """For each top-level statement of a cell: (names it reads, names it binds).

    Reads count anywhere in the statement, function bodies included, and
    before the statement's own bindings (``x = x + 1`` reads ``x``). That is
    stricter than Python, never laxer: a name flagged may be fine, a name
    missed would be a NameError for a student.
    """
    result = []
    for statement in ast.parse(_code(source)).body:
        reads, binds = set(), set()
        for node in ast.walk(statement):
            if isinstance(node, ast.Name):
                (reads if isinstance(node.ctx, ast.Load) else binds).add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                binds.add(node.name)
            elif isinstance(node, ast.alias):
                binds.add((node.asname or node.name).split(".")[0])
        shell = _shell_names(statement) if "get_ipython()" in ast.unparse(statement) else set()
        result.append((reads | shell, binds))
    return result


def _solution_code(cell) -> str:
    """The Python a solution cell holds: its fenced block (a markdown solution) or its source."""
    if cell.cell_type == "code":
        return cell.source
    match = SOLUTION_PATTERN.match(cell.source)
    return match["code"] if match and match["language"] == "python" else ""


def names_only_solutions_define(cells) -> list[str]:
    """Problems with Run All of a lesson whose exercises are not done: one line per name.

    Run All never runs a solution (a markdown cell; the student edition has
    none at all). A code cell that reads a name which, at that point, only a
    solution (above it) defines would raise NameError. Names defined by a
    code cell before (an exercise's ``answer = None``, an import) are fine.
    """
    problems = []
    defined: set[str] = set()
    only_in_solutions: dict[str, int] = {}
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" and not is_solution(cell):
            continue
        statements = _statements(_solution_code(cell) if is_solution(cell) else cell.source)
        if is_solution(cell):
            for _, binds in statements:
                for name in binds - defined:
                    only_in_solutions.setdefault(name, index)
            continue
        for reads, binds in statements:
            for name in sorted(reads & set(only_in_solutions) - defined):
                problems.append(
                    f"cell {index} reads {name!r}, which only the solution cell "
                    f"{only_in_solutions[name]} defines"
                )
            defined |= binds
        for name in defined:
            only_in_solutions.pop(name, None)
    return problems


@pytest.mark.parametrize("name", LESSONS)
def test_run_all_of_a_student_lesson_never_needs_a_removed_solution(name: str):
    problems = names_only_solutions_define(_read(NOTEBOOKS / name).cells)
    assert problems == [], f"{name}: " + "; ".join(problems)


def test_the_run_all_check_finds_a_lesson_that_needs_its_solution():
    """The check above fails when a lesson is wrong."""
    code = nbformat.v4.new_code_cell

    def lesson(*sources_and_tags):
        return [code(src, metadata={"tags": tags}) for src, tags in sources_and_tags]

    exercise, solution = [EXERCISE_TAG], [SOLUTION_TAG]
    as_markdown = lesson(
        ("answer = None\ncheck(answer)", exercise),
        ("", []),
        ("print(helper)", []),
    )
    as_markdown[1] = nbformat.v4.new_markdown_cell(
        "<details><summary>Solution</summary>\n\n```python\nhelper = make()\n```\n</details>",
        metadata={"tags": solution},
    )
    assert names_only_solutions_define(as_markdown) == [
        "cell 2 reads 'helper', which only the solution cell 1 defines"
    ]
    good = lesson(
        ("answer = None\ncheck(answer)", exercise),
        ("helper = make()\nanswer = helper.run()", solution),
        ("print(answer)", []),  # the exercise defines it too
        ("helper = 1\nprint(helper)", []),  # defined again before it is read
    )
    assert names_only_solutions_define(good) == []
    bad = lesson(
        ("answer = None", exercise),
        ("import pandas as pd\nrun7 = trigger()\nanswer = 1", solution),
        ("print(run7.id)", []),
        ("table = pd.DataFrame()", []),
        ("def later():\n    return run7", []),
        ("!echo {run7.id}", []),  # IPython expands {run7.id} in the command
        ("run7 = run7 + 1", []),  # reads it before it binds it
        ("print(run7)", []),  # after `run7 = ...` above: fine
    )
    assert names_only_solutions_define(bad) == [
        f"cell {i} reads {n!r}, which only the solution cell 1 defines"
        for i, n in [(2, "run7"), (3, "pd"), (4, "run7"), (5, "run7"), (6, "run7")]
    ]
