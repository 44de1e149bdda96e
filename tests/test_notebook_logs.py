"""Prefect's log lines in a real Jupyter kernel: one block of text per cell.

Plain Prefect prints each log line through rich, which in a notebook makes
every line an HTML output of its own (a bordered block with a scrollbar).
Once a lesson's kernel has the classroom settings, a cell's log lines are
text on stdout, which JupyterLab shows as one block.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import started_kernel

jupyter_client = pytest.importorskip("jupyter_client")

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

THREE_LINES = """
from prefect import flow  # Prefect sets its logging up on this import
from prefect.logging import get_logger
for i in range(3):
    get_logger("prefect.demo").warning("line %d of the cell", i)
"""

START_SERVER = """
from energy_flows import PrefectServer
server = PrefectServer(quiet=True).start()
"""

RUN_A_FLOW = """
from prefect import flow, task

@task
def add(a, b):
    return a + b

@flow(name="log-block")
def total():
    return add(1, 2) + add(3, 4)

total()
"""


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[object]:
    """A real ipykernel, as JupyterLab starts one, with its own ENERGY_FLOWS_HOME."""
    with started_kernel(tmp_path) as (_, client, _):
        yield client


def outputs(client, code: str) -> list[dict]:
    """The cell's outputs as JupyterLab keeps them: consecutive writes to one stream joined."""
    shown: list[dict] = []

    def hook(msg: dict) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and shown and shown[-1].get("name") == content["name"]:
            shown[-1]["text"] += content["text"]
        elif kind == "stream":
            shown.append({"output_type": "stream", **content})
        elif kind in ("display_data", "execute_result", "error"):
            shown.append({"output_type": kind, **content})

    reply = client.execute_interactive(code, timeout=180, output_hook=hook)
    assert reply["content"]["status"] == "ok", shown
    return shown


def test_a_cells_log_lines_are_one_block_of_text(kernel) -> None:
    # Plain Prefect in a notebook: one rich HTML output per log line.
    plain = outputs(kernel, THREE_LINES)
    assert [o["output_type"] for o in plain] == ["display_data"] * 3, plain
    assert all("<pre" in o["data"]["text/html"] for o in plain)

    outputs(kernel, START_SERVER)
    # With the classroom settings (Prefect was imported before them): one stdout block.
    (block,) = outputs(kernel, THREE_LINES)
    assert block["output_type"] == "stream" and block["name"] == "stdout", block
    assert [line.split(" | ")[1:] for line in block["text"].splitlines()] == [
        ["WARNING", f"prefect.demo - line {i} of the cell"] for i in range(3)
    ]

    # A real flow run with two task runs: its log lines, and only them, in one block.
    shown = outputs(kernel, RUN_A_FLOW)
    kinds = [o["output_type"] for o in shown]
    assert kinds == ["stream", "execute_result"], shown
    lines = shown[0]["text"].splitlines()
    assert len(lines) >= 4, lines
    assert all(" | INFO    | " in line for line in lines), lines
    assert any("Task run 'add-" in line and "Completed" in line for line in lines), lines
    assert "Finished in state Completed()" in lines[-1], lines
    assert "\x1b[" not in shown[0]["text"]  # plain text: no colour codes
    assert shown[1]["data"]["text/plain"] == "10"
