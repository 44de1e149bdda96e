"""`make notebooks` (``python -m tools.execute_lessons execute``): re-execute the lessons.

A development tool, not part of the installed package (it needs a checkout's
``notebooks/`` and nbclient/nbformat, from the ``test`` extra). Every lesson
runs top to bottom with nbclient, each in a fresh temporary home, and its
outputs are stored in the notebook file. Those stored outputs are what nbval
compares (``make notebooks-test``) and what a reader sees on a website.

The notebook tests use the same kernel environment (:func:`kernel_env`) and
temporary-home prefix (:data:`TEMP_HOME_PREFIX`): ``tests/notebooks/nbval_plugin.py``
imports them from here, so both run a lesson the same way.

    python -m tools.execute_lessons execute            # every lesson, in place
    python -m tools.execute_lessons execute 04 05      # some lessons
    python -m tools.execute_lessons execute 00 --out /tmp/x   # store copies elsewhere
    python -m tools.execute_lessons list
    python -m tools.execute_lessons normalise          # stored outputs: a learner's paths
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy_flows.lessons import leftover_processes, lesson_number

#: The folder that holds the lesson notebooks: ``notebooks/`` of this checkout.
NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"

#: Prefix of the temporary homes the executor and the notebook tests create
#: (the nbval sanitizer, ``tests/notebooks/sanitize.cfg``, recognises it in paths).
TEMP_HOME_PREFIX = "ef-lesson-"

#: How the stored outputs show a lesson's home: a learner's, in a checkout cloned to
#: ``~/energy-flows`` (the executor's is a temporary folder, a fact of the machine it ran on).
LEARNER_HOME = "~/energy-flows/.energy_flows"
#: Prefect's default port, the one a learner's server gets when no other program holds it.
DEFAULT_PORT = 4200

#: A temporary home of the executor or the notebook tests, with the folders above it.
_TEMP_HOME = re.compile(r"(?:/[^\s'\"<>/]+)*/" + re.escape(TEMP_HOME_PREFIX) + r"[a-z0-9_]{8}")
#: The line a server prints when another program holds port 4200 on the executor's machine.
_PORT_TAKEN = re.compile(
    rf"Port {DEFAULT_PORT} is taken by another program; using port (\d+) instead\.\n?"
)

#: Variables a lesson's kernel must not inherit from whoever runs the executor:
#: the lesson talks to its own server, in its own home.
_INHERITED_STATE = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_PROFILE", "PREFECT_UI_URL")


def lesson_paths(names: list[str] | None = None) -> list[Path]:
    """The lesson notebooks in teaching order (all, or those whose number or name is given)."""
    paths = sorted(p for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return paths
    wanted = {lesson_number(n) for n in names}
    chosen = [p for p in paths if p.name[:2] in wanted]
    missing = wanted - {p.name[:2] for p in chosen}
    if missing:
        raise SystemExit(f"no lesson numbered {', '.join(sorted(missing))} in {NOTEBOOKS_DIR}")
    return chosen


def kernel_env(home: str | os.PathLike[str]) -> dict[str, str]:
    """The environment of a lesson's kernel: ours, with a home of its own and no inherited server."""
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_STATE}
    env["ENERGY_FLOWS_HOME"] = str(home)
    # The stored outputs show the progress lines a learner sees ("Starting the
    # Prefect server ... ready in 4.2 s"); the notebooks' sanitizer evens out
    # their durations and the lines whose number depends on timing.
    env.pop("ENERGY_FLOWS_QUIET", None)
    # Plain text logs, the same under nbclient and nbval.
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    return env


@dataclass
class LessonRun:
    """How executing one lesson went."""

    name: str
    seconds: float
    ok: bool
    error: str = ""
    leftovers: int = 0


def _wait_for_no_leftovers(home: Path, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = leftover_processes(home)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def execute_lesson(
    path: Path,
    timeout: float = 300.0,
    keep_home: bool = False,
    out: str | os.PathLike[str] | None = None,
) -> LessonRun:
    """Execute one lesson top to bottom in a fresh home and store its outputs.

    The outputs go into ``path`` itself, or into a file of the same name in
    the folder ``out``. The kernel runs in ``path``'s folder either way, as
    a learner's would.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    home = Path(tempfile.mkdtemp(prefix=TEMP_HOME_PREFIX)).resolve()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=True,
    )
    start = time.monotonic()
    error = ""
    # The kernel's own stderr (its start-up warnings) goes to a file, not to our output.
    kernel_log = Path(tempfile.gettempdir()) / f"{path.stem}.kernel.log"
    try:
        with open(kernel_log, "w") as stderr:
            client.execute(env=kernel_env(home), stderr=stderr)
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    except Exception as exc:
        error = f"{exc.__class__.__name__}: {exc}"
    seconds = time.monotonic() - start
    # The kernel is gone: its watchdogs stop the server and workers it started.
    left = _wait_for_no_leftovers(home, timeout=20)
    for proc in left:
        with contextlib.suppress(Exception):
            proc.kill()
    if not error:
        _normalise(nb, home)
        target = path if out is None else Path(out) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
    else:
        # Keep the lesson file as it was; the failed run goes next to the temp homes.
        failed = Path(tempfile.gettempdir()) / f"{path.stem}.failed.ipynb"
        nbformat.write(nb, failed)
        error += f" (outputs so far: {failed})"
    if not keep_home:
        shutil.rmtree(home, ignore_errors=True)
    return LessonRun(path.stem, seconds, not error, error, len(left))


#: An ANSI style code ("bold", "underline", "reset"), as rich writes them.
_ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def _normalise(nb: Any, home: Path | None = None) -> None:
    """Keep the stored notebook tidy, and showing what a learner's run shows.

    * No per-run metadata that only makes diffs noisy.
    * Rich's notebook rendering (Prefect's ``.deploy()`` prints through it) sends
      an HTML copy, which the notebook shows, and a plain-text copy that keeps
      its styles as ANSI codes; those codes are removed from the stored text
      (the notebooks' sanitizer removes them from fresh outputs too).
    * The executor's temporary home reads :data:`LEARNER_HOME`, and a server
      that took another port because a program on the executor's machine held
      4200 reads 4200, without the line that said so (:func:`learner_view`).
    """
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data and isinstance(data.get("text/plain"), str):
                data["text/plain"] = _ANSI_STYLE.sub("", data["text/plain"])
    texts: list[str] = []
    _map_strings(nb, lambda text: texts.append(text) or text)
    taken = sorted({port for text in texts for port in _PORT_TAKEN.findall(text)})
    _map_strings(nb, lambda text: learner_view(text, taken, home))
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = _joined_streams(cell.outputs)


def _joined_streams(outputs: list[Any]) -> list[Any]:
    """Consecutive writes to one stream as one output, as JupyterLab keeps them.

    nbclient stores each write (each of Prefect's log lines) as an output of its
    own. A stream left empty (it said only which port was taken) is dropped.
    """
    joined: list[Any] = []
    for output in outputs:
        if output.get("output_type") == "stream":
            if not output.text:
                continue
            last = joined[-1] if joined else None
            if last is not None and last.get("output_type") == "stream":
                if last.name == output.name:
                    last.text += output.text
                    continue
        joined.append(output)
    return joined


def learner_view(text: str, taken_ports: Sequence[str] = (), home: Path | None = None) -> str:
    """``text`` as a learner's run would show it: their home's path, and port 4200.

    ``taken_ports`` are the ports the executor's servers used in place of 4200.
    """
    if home is not None:
        text = text.replace(str(home), LEARNER_HOME)
    text = _TEMP_HOME.sub(LEARNER_HOME, text)
    text = _PORT_TAKEN.sub("", text)
    for port in taken_ports:
        text = re.sub(rf"(?<=[:/= ]){port}\b", str(DEFAULT_PORT), text)
    return text


def _map_strings(node: Any, change: Callable[[str], str]) -> None:
    """Replace every string of a notebook's outputs and metadata by ``change(it)``, in place.

    Cell sources are left alone: what a lesson says is its author's.
    """
    if isinstance(node, dict):
        keys = [k for k in node if k != "source"]
    elif isinstance(node, list):
        keys = list(range(len(node)))
    else:
        return
    for key in keys:
        if isinstance(node[key], str):
            node[key] = change(node[key])
        else:
            _map_strings(node[key], change)


def execute(
    names: list[str] | None = None,
    timeout: float = 300.0,
    out: str | os.PathLike[str] | None = None,
) -> list[LessonRun]:
    """Execute the lessons (all, or the named ones) one after the other and report each."""
    runs = []
    for path in lesson_paths(names):
        print(f"executing {path.name} ...", end="", flush=True)
        run = execute_lesson(path, timeout=timeout, out=out)
        status = "ok" if run.ok else f"FAILED: {run.error}"
        extra = f" ({run.leftovers} process(es) left running, killed)" if run.leftovers else ""
        print(f" {run.seconds:5.1f} s  {status}{extra}", flush=True)
        runs.append(run)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.execute_lessons",
        description="Re-execute the lesson notebooks, each in a fresh home, and store their outputs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute lessons and store their outputs")
    ex.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    ex.add_argument("--timeout", type=float, default=300.0, help="seconds per cell (default 300)")
    ex.add_argument(
        "--out",
        default=None,
        metavar="FOLDER",
        help="store the executed notebooks in FOLDER (default: in place, in notebooks/)",
    )
    sub.add_parser("list", help="list the lessons")
    norm = sub.add_parser(
        "normalise", help="show the stored outputs as a learner's run would (no re-execution)"
    )
    norm.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for path in lesson_paths():
            print(path.name)
        return 0
    if args.command == "normalise":
        import nbformat

        for path in lesson_paths(args.lessons):
            nb = nbformat.read(path, as_version=4)
            _normalise(nb)
            nbformat.write(nb, path)
        return 0
    runs = execute(args.lessons, timeout=args.timeout, out=args.out)
    total = sum(r.seconds for r in runs)
    print(f"{len(runs)} lesson(s), {total:.1f} s in all")
    failed = [r for r in runs if not r.ok or r.leftovers]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
