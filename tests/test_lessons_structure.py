"""Static checks of the lesson notebooks: the shape every lesson promises its reader.

No kernel is started here; ``make notebooks-test`` (nbval) runs them. These
checks read the stored notebooks: a title, "what you will be able to do", the time,
the Prefect 2 commands next to today's, exercises with a self-check and a
solution revealed on request, a clean-up section, outputs stored and mostly
compared; and what learners write (exercises, solution lines, Prefect's own API
and commands), counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tools.lesson_solutions import solutions, verdict

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))

#: The lesson files the README's table lists, in order.
EXPECTED = [
    "00_check_setup",
    "01_start_orion",
    "02_energy_flow",
    "03_deployments",
    "04_work_queues",
    "05_agents_and_workers",
    "06_monitoring_and_cleanup",
    "07_outgrowing_one_machine",
    "08_walkthrough_by_hand",
]

#: Every command of the original Prefect 2 walkthrough, and the lesson that maps it.
ORIGINAL_COMMANDS = {
    "prefect orion start": "01",
    "prefect config set PREFECT_API_URL": "01",
    "prefect deployment create": "03",
    "prefect deployment ls": "03",
    "prefect work-queue create energy_usage": "04",
    "prefect agent start": "05",
    "PREFECT_ORION_DATABASE_CONNECTION_URL": "07",
}

#: Tags that stop nbval from comparing a cell's outputs.
UNCOMPARED = {"nbval-ignore-output", "nbval-skip", "skip-execution"}
MIN_COMPARED_RATIO = 0.70


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _compared(cell) -> bool:
    if _tags(cell) & UNCOMPARED:
        return False
    return not re.search(r"^\s*#\s*(NBVAL_IGNORE_OUTPUT|NBVAL_SKIP)\s*$", cell.source, re.M)


def test_the_lessons_are_the_ones_the_readme_lists():
    assert [p.stem for p in LESSONS] == EXPECTED
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The lessons", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\d\d_[a-z_]+)` \|", section, re.M)
    assert listed == EXPECTED


def test_the_agent_lesson_says_so_in_its_file_name():
    assert any("agent" in p.stem or "worker" in p.stem for p in LESSONS)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_opens_with_title_goals_time_and_the_commands_it_replaces(path):
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith(f"# {path.stem[:2]} · "), "a title '# NN · Topic' comes first"
    intro = first.source.lower()
    assert "what you will be able to do" in intro, (
        "objectives as things the learner will be able to do"
    )
    assert re.search(r"\*\*time:\*\* about \d+ minutes", intro), "say how long it takes"
    assert "leaves running:" in intro, "say what the lesson leaves running"
    assert "| prefect 2 walkthrough" in intro and "prefect 3 today" in intro, (
        "a table of the Prefect 2 commands this lesson replaces, next to today's"
    )


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_is_short_and_explains_before_it_shows(path):
    nb = _read(path)
    assert 12 <= len(nb.cells) <= 45, f"{len(nb.cells)} cells: keep a lesson to roughly 15-40"
    for before, cell in zip(nb.cells, nb.cells[1:], strict=False):
        if cell.cell_type == "code" and "solution" not in _tags(cell):
            assert before.cell_type == "markdown", (
                f"a markdown cell explains before the code cell:\n{cell.source[:200]}"
            )


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_ends_with_clean_up_and_recap(path):
    nb = _read(path)
    last = nb.cells[-1]
    assert last.cell_type == "markdown"
    assert re.search(r"^## clean up and recap", last.source.lower(), re.M) or any(
        re.search(r"^## clean up", c.source.lower(), re.M)
        for c in nb.cells[-4:]
        if c.cell_type == "markdown"
    ), "the last section cleans up and recaps"
    assert "recap" in _markdown(nb).lower()


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_first_code_cell_prepares_everything(path):
    nb = _read(path)
    first = _code_cells(nb)[0].source
    if path.stem.startswith("00"):
        return  # the readiness check starts nothing
    if path.stem.startswith("08"):
        # The walkthrough by hand starts nothing either: the learner's terminals do.
        assert "guide()" in first, "lesson 08 shows where its terminals keep their state"
        return
    assert "PrefectServer().start()" in first or "lesson_setup(" in first


@pytest.mark.parametrize("path", [p for p in LESSONS if int(p.stem[:2]) >= 2], ids=lambda p: p.stem)
def test_exercises_have_a_self_check_and_a_solution_revealed_on_request(path):
    """At least two exercises from lesson 02 on; each is followed by its solution, a collapsed
    markdown cell that Run All never executes; each is judged by a check_...() call: in its own
    cell, or (a file written with %%writefile) in the next exercise's."""
    cells = _read(path).cells
    found = solutions(nbformat.read(path, as_version=4))  # raises on a malformed solution
    assert len(found) >= 2, "at least two exercises in each of lessons 02-07"
    for item in found:
        exercise = cells[item.exercise_index]
        assert exercise.cell_type == "code"
        assert cells[item.solution_index].cell_type == "markdown", "Run All must not run it"
        if exercise.source.startswith("%%writefile"):
            later = [s for s in found if s.exercise_index > item.exercise_index]
            assert later and "check_" in cells[later[0].exercise_index].source, (
                "a file exercise is judged by the next exercise's check"
            )
            assert "___" in exercise.source, "a faded example: blanks (___) to fill"
            assert "___" not in item.code
        else:
            assert "check_" in exercise.source, "an exercise cell calls its check_...() function"


@pytest.mark.parametrize("path", [p for p in LESSONS if int(p.stem[:2]) >= 2], ids=lambda p: p.stem)
def test_each_check_judges_the_learners_answer(path):
    """The exercise keeps the learner's answer in a variable (None until answered) and hands
    it to its check; the solution fills the same variable and checks it the same way. Run All
    leaves the exercise to the learner: its stored output is the check's "not yet"."""
    cells = _read(path).cells
    for item in solutions(nbformat.read(path, as_version=4)):
        exercise = cells[item.exercise_index].source
        if exercise.startswith("%%writefile"):
            continue
        answer = re.search(r"^(\w+) = None  # replace None", exercise, re.M)
        assert answer, (
            f"the exercise starts its answer as `name = None  # replace None ...`:\n{exercise}"
        )
        name = answer.group(1)
        check = re.search(rf"^(check_\w+)\({name}\)$", exercise, re.M)
        assert check, f"the exercise ends with check_...({name}):\n{exercise}"
        stored = verdict(cells[item.exercise_index])
        assert stored.startswith("✗ ") and "still None" in stored, (
            f"the stored output is the check's not-yet:\n{stored}"
        )
        if item.language == "bash":
            continue  # the answer is what the commands print (lesson 08's terminals)
        assert re.search(rf"^\s*{name} = \S", item.code, re.M), f"the solution assigns {name}"
        assert item.code.rstrip().endswith(f"{check.group(1)}({name})"), item.code


#: What a solution block uses when it uses Prefect's own API or CLI.
PREFECT_USE = re.compile(
    r"\bprefect\b|prefect_dask|@flow|@task|\.deploy\(|from_source|run_deployment|get_client|return_state"
)
#: A Prefect command run in a cell: `!prefect <command> [<subcommand>]`.
PREFECT_COMMAND = re.compile(r"^!prefect\s+([a-z-]+)(?:\s+([a-z-]+))?", re.M)


def _executed_prefect_commands() -> set[str]:
    """The distinct `prefect ...` commands run by code cells that Run All executes."""
    found = set()
    for path in LESSONS:
        for cell in _code_cells(_read(path)):
            if "exercise" in _tags(cell):
                continue
            for command, sub in PREFECT_COMMAND.findall(cell.source):
                found.add(f"prefect {command}" + (f" {sub}" if sub and command != "deploy" else ""))
    return found


def test_learners_write_prefect(capsys):
    """What the learner writes across the lessons, counted from the notebooks."""
    found = [s for p in LESSONS for s in solutions(nbformat.read(p, as_version=4))]
    lines = sum(s.lines for s in found)
    prefect = [s for s in found if PREFECT_USE.search(s.code)]
    commands = _executed_prefect_commands()
    with capsys.disabled():
        print(
            f"\n{len(found)} exercises, {lines} solution lines, {len(prefect)} of "
            f"{len(found)} solutions use Prefect's API or CLI; "
            f"{len(commands)} distinct prefect commands run: {', '.join(sorted(commands))}"
        )
    assert len(found) >= 14
    assert lines >= 60
    assert len(prefect) / len(found) >= 0.6
    assert len(commands) >= 8
    assert "prefect deploy" in commands
    writes_yaml = [
        c
        for p in LESSONS
        for c in _code_cells(_read(p))
        if c.source.startswith("%%writefile prefect.yaml") and "exercise" not in _tags(c)
    ]
    assert writes_yaml, "a lesson writes a prefect.yaml (and runs prefect deploy on it)"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_stored_outputs_are_complete_and_clean(path):
    nb = _read(path)
    for cell in _code_cells(nb):
        assert cell.execution_count is not None, (
            f"not executed: run `make notebooks`\n{cell.source[:120]}"
        )
        for out in cell.outputs:
            assert out.output_type != "error", f"stored error in:\n{cell.source[:200]}"
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            assert "\x1b[" not in text, "colour codes in a stored output"
            if out.output_type == "stream":
                assert out.name == "stdout", (
                    f"stderr in a stored output (warnings, logs?):\n{cell.source[:200]}\n{text[:400]}"
                )
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_original_commands_are_mapped_in_their_lessons_and_in_the_cheat_sheet():
    readme = (ROOT / "README.md").read_text()
    by_number = {p.stem[:2]: _markdown(_read(p)) for p in LESSONS}
    for command, lesson in ORIGINAL_COMMANDS.items():
        assert command in by_number[lesson], f"lesson {lesson} maps `{command}`"
        assert command in readme, f"the README's cheat-sheet maps `{command}`"


def test_most_outputs_are_compared_by_nbval(capsys):
    with_output = compared = 0
    rows = []
    for path in LESSONS:
        cells = [c for c in _code_cells(_read(path)) if c.outputs]
        n = sum(_compared(c) for c in cells)
        rows.append(f"{path.stem:28s} {n:3d} of {len(cells):3d} compared")
        with_output += len(cells)
        compared += n
    ratio = compared / with_output if with_output else 0.0
    with capsys.disabled():
        print("\n" + "\n".join(rows))
        print(f"compared cells with output: {compared} of {with_output} = {ratio:.0%}")
    assert ratio >= MIN_COMPARED_RATIO


def test_few_cells_are_ignored_and_none_skipped():
    for path in LESSONS:
        for cell in _code_cells(_read(path)):
            assert "nbval-skip" not in _tags(cell), "skipped cells leave their outputs unchecked"
