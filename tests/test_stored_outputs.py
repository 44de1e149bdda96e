"""The lessons' stored outputs show a learner's run, not the machine that executed them.

``make notebooks`` runs every lesson in a temporary home, on a machine where port
4200 may be taken; ``tools/execute_lessons.py`` stores the outputs as a learner
would see them (their home, ``~/energy-flows/.energy_flows``, and port 4200).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tools.execute_lessons import LEARNER_HOME, _normalise, learner_view, lesson_paths

#: A path in the system's temporary folder, or a temporary home of the executor.
GENERATOR_PATH = re.compile(r"/tmp/|/var/folders/|ef-lesson-")


def output_texts(node: Any) -> list[str]:
    """Every string of a notebook's outputs and metadata (widget states too), sources aside."""
    if isinstance(node, dict):
        return [t for k, v in node.items() if k != "source" for t in output_texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in output_texts(v)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("path", lesson_paths(), ids=lambda p: p.stem)
def test_no_stored_output_holds_the_generators_temporary_paths(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    found = [t for t in output_texts(nb) if GENERATOR_PATH.search(t)]
    assert not found, (
        f"{path.name} stores the executing machine's paths: "
        f"{[GENERATOR_PATH.search(t)[0] for t in found][:5]}; store them as a learner sees them "
        "with `.venv/bin/python -m tools.execute_lessons normalise` (make notebooks does it)"
    )
    assert "Port 4200 is taken by another program" not in "".join(output_texts(nb))


def test_a_learners_view_of_an_executors_output(tmp_path: Path) -> None:
    home = tmp_path / "ef-lesson-ab3_x9zq"
    taken = "Port 4200 is taken by another program; using port 54165 instead.\n"
    text = (
        f"{taken}Starting the Prefect server for {home} ...\n"
        "<PrefectServer running ui=http://127.0.0.1:54165 pid=12 home='/tmp/ef-lesson-ab3_x9zq'>\n"
        "PREFECT_SERVER_API_PORT=54165 prefect server start --port 54165; 2880 readings"
    )
    assert learner_view(text, ["54165"], home) == (
        f"Starting the Prefect server for {LEARNER_HOME} ...\n"
        f"<PrefectServer running ui=http://127.0.0.1:4200 pid=12 home='{LEARNER_HOME}'>\n"
        "PREFECT_SERVER_API_PORT=4200 prefect server start --port 4200; 2880 readings"
    )
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("server = PrefectServer().start()  # /tmp/ef-lesson-ab3_x9zq")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=taken),
        nbformat.v4.new_output("stream", name="stdout", text=f"log: {home}/logs/server.log\n"),
        nbformat.v4.new_output("execute_result", {"text/plain": "'http://127.0.0.1:54165/api'"}),
    ]
    nb.cells.append(cell)
    _normalise(nb, home)
    assert [o.get("text") for o in cell.outputs[:1]] == [f"log: {LEARNER_HOME}/logs/server.log\n"]
    # Consecutive writes to one stream are stored as one output, as JupyterLab keeps them.
    cell.outputs[1:1] = [
        nbformat.v4.new_output("stream", name="stdout", text="12:00:01.000 | INFO | a\n"),
        nbformat.v4.new_output("stream", name="stdout", text="12:00:01.100 | INFO | b\n"),
    ]
    _normalise(nb, home)
    assert [o.output_type for o in cell.outputs] == ["stream", "execute_result"]
    assert cell.outputs[0].text.endswith(
        "/logs/server.log\n12:00:01.000 | INFO | a\n12:00:01.100 | INFO | b\n"
    )
    assert cell.outputs[-1]["data"]["text/plain"] == "'http://127.0.0.1:4200/api'"
    assert "/tmp/ef-lesson-ab3_x9zq" in cell.source  # what the lesson says is left alone
