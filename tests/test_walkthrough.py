"""Lesson 08, the walkthrough by hand: typed into real JupyterLab terminals, checked by its cells.

The long test does what a learner does, with the lesson's own solution
blocks: ``make lab``, the lesson opened (a kernel), three terminals opened
through JupyterLab's terminals API, every step's commands typed into them,
Ctrl-C in terminal 3 while a run is in flight, and the lesson's check cells
run in the kernel after each step, until they pass. Afterwards nothing the
terminals started may run. A second test types step 6 before step 3 and then
presses Ctrl-C in ``make lab`` with a server and a worker still running in
the terminals. The short tests pin the Parsons problem, the terminals'
environment, and the plain-Prefect facts the lesson states.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import pytest

from energy_flows import terminals, walkthrough
from tests.jupyterlab import Kernel, MakeLab, Terminal, open_notebook

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "08_walkthrough_by_hand.ipynb"
TOKEN = uuid.uuid4().hex
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
DONE = "done, well done!"


# --------------------------------------------------------------------------- the lesson's cells


@dataclass
class Action:
    """One thing a solution block says to do: type lines into a terminal, or press Ctrl-C there."""

    terminal: int
    lines: list[str]
    ctrl_c: bool = False

    @property
    def keeps_running(self) -> bool:
        """A command that holds its terminal (a server, a worker) until Ctrl-C."""
        return any(w in self.lines[0] for w in ("server start", "worker start"))


def actions(block: str) -> list[Action]:
    """The solution block's terminal actions: ``# terminal N`` picks the terminal; a heredoc is one."""
    found: list[Action] = []
    terminal = 0
    heredoc: list[str] | None = None
    for line in block.splitlines():
        if heredoc is not None:
            heredoc.append(line)
            if line == "EOF":
                found.append(Action(terminal, heredoc))
                heredoc = None
            continue
        chosen = re.match(r"# terminal (\d)(.*)", line)
        if chosen:
            terminal = int(chosen.group(1))
            if "Ctrl-C" in chosen.group(2):
                found.append(Action(terminal, [], ctrl_c=True))
            continue
        if not line.strip() or line.startswith("#"):
            continue
        if "<<'EOF'" in line:
            heredoc = [line]
        else:
            found.append(Action(terminal, [line]))
    assert heredoc is None, f"a heredoc without its EOF in:\n{block}"
    return found


class Lesson:
    """The lesson's code cells, each with the solution block that follows it."""

    def __init__(self, path: Path) -> None:
        cells = nbformat.read(path, as_version=4).cells
        self.cells: list[tuple[str, str | None]] = []
        for i, cell in enumerate(cells):
            if cell.cell_type != "code":
                continue
            after = cells[i + 1] if i + 1 < len(cells) else None
            block = None
            if after is not None and "solution" in after.metadata.get("tags", []):
                fenced = re.search(r"```(?:bash|python)\n(.*?)\n```", after.source, re.S)
                assert fenced, after.source
                block = fenced.group(1)
            self.cells.append((cell.source, block))

    def cell(self, calls: str) -> str:
        """The code cell that calls ``calls``, e.g. ``"check_server()"``."""
        matches = [source for source, _ in self.cells if calls in source]
        assert len(matches) == 1, f"{len(matches)} cells call {calls}"
        return matches[0]

    def solution(self, calls: str) -> str:
        block = next(b for source, b in self.cells if calls in source)
        assert block is not None, f"no solution after the cell calling {calls}"
        return block

    def answered(self, calls: str, answer: str) -> str:
        """The exercise cell with ``answer`` (a line ``name = ...``) in place of its ``None``."""
        source = self.cell(calls)
        name = answer.split("=", 1)[0].strip()
        return re.sub(rf"^{name} = None.*$", answer, source, count=1, flags=re.M)


def with_port(text: str, port: int) -> str:
    """The lesson's commands with the learner's port in place of the suggested one."""
    return text.replace(str(terminals.SUGGESTED_PORT), str(port))


def until_done(kernel: Kernel, code: str, timeout: float, *shown: Terminal) -> str:
    """Run ``code`` (a check cell) again and again until it says done; its last output."""
    deadline = time.monotonic() + timeout
    while True:
        text = kernel.run(code).text
        if DONE in text:
            return text
        if time.monotonic() > deadline:
            screens = "\n".join(f"--- terminal {t.name}:\n{t.text[-2500:]}" for t in shown)
            raise AssertionError(f"not done within {timeout} s:\n{text}\n{screens}")
        time.sleep(2)


def do(action: Action, terms: dict[int, Terminal], port: int, timeout: float = 180) -> str:
    """Carry out one action; the output of a command that ends (and check its exit status 0)."""
    term = terms[action.terminal]
    if action.ctrl_c:
        term.type("\x03")
        return ""
    lines = [with_port(line, port) for line in action.lines]
    if action.keeps_running:
        term.type(lines[0] + "\r")
        return ""
    if len(lines) > 1:  # a heredoc: its lines as typed, then an empty command to wait on
        term.type("\r".join(lines) + "\r")
        output, status = term.run("true", timeout)
    else:
        output, status = term.run(lines[0], timeout)
    assert status == 0, f"`{lines[0]}` failed in terminal {action.terminal}:\n{output}"
    return output


def hand_started(home: Path) -> list[str]:
    """Every Prefect process with the terminals' Prefect home, found without the package's code."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(proc.info["cmdline"] or [])
        try:
            where = proc.environ().get("PREFECT_HOME", "")
            if where.startswith(str(home / "walkthrough")) and "prefect" in command:
                found.append(f"{proc.pid} {command}")
        except (psutil.Error, OSError):
            continue
    return found


def in_home(home: Path) -> list[str]:
    """Every process of the course home ``home`` (JupyterLab, kernels, shells, Prefect)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("ENERGY_FLOWS_HOME") == str(home) or env.get("PREFECT_HOME", "").startswith(
            str(home)
        ):
            found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])}")
    return found


def _wait_gone(what: callable, timeout: float) -> list[str]:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while (left := what()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


class Phases:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = round(now - self._last, 1)
        self._last = now

    def __str__(self) -> str:
        total = sum(self.times.values())
        return ", ".join(f"{k} {v:.0f} s" for k, v in self.times.items()) + f"; total {total:.0f} s"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MakeLab]:
    started = MakeLab.start(tmp_path, TOKEN)
    try:
        yield started
    finally:
        started.kill()
        for line in in_home(started.home):
            psutil.Process(int(line.split()[0])).kill()


def _terminals(lab: MakeLab) -> dict[int, Terminal]:
    return {n: Terminal(lab.base, TOKEN) for n in (1, 2, 3)}


# --------------------------------------------------------------------------- the whole lesson


@pytest.mark.server
@pytest.mark.timeout(1500)
def test_the_walkthrough_typed_into_jupyterlab_terminals(
    lab: MakeLab, record_property: pytest.RecordProperty
) -> None:
    lesson = Lesson(LESSON)
    phases = Phases()
    kernel = open_notebook(lab.base, TOKEN, LESSON.name)
    terms = _terminals(lab)
    prefect_home = lab.home / "walkthrough" / "prefect"
    try:
        shown = kernel.run(lesson.cell("guide()")).text
        assert str(prefect_home) in shown
        assert "not yet" in kernel.run(lesson.cell("check_order(order)")).text
        answer = lesson.solution("check_order(order)")
        assert DONE in kernel.run(lesson.answered("check_order(order)", answer)).text
        phases.done("JupyterLab, the lesson's first cells")

        # Step 1 on a port another program holds: Prefect says so, and so does the check.
        step1 = actions(lesson.solution("check_server()"))
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            for action in step1:
                do(action, terms, busy)
            terms[1].wait_for(rf"Port {busy} is already in use", 60)
            said = kernel.run(lesson.cell("check_server()")).text
            assert "another program listens there" in said and "not yet" in said, said
        # ... and the learner follows the advice: another port, for the URL and the server.
        from energy_flows.services.process import free_port

        port = free_port()
        for action in step1:
            do(action, terms, port)
        terms[1].wait_for(rf"Check out the dashboard at http://127.0.0.1:{port}", 90)
        # The banner comes before the server answers (its database is made first).
        said = until_done(kernel, lesson.cell("check_server()"), 180, terms[1])
        assert "calls the API on the same port" in said
        phases.done("step 1 (a taken port, then the server)")

        for action in actions(lesson.solution("check_profile()")):
            output = do(action, terms, port)
        assert f"PREFECT_API_URL='http://127.0.0.1:{port}/api' (from profile)" in output, output
        assert str(prefect_home) in terms[2].text
        until_done(kernel, lesson.cell("check_profile()"), 10, terms[2])
        phases.done("step 2")

        for action in actions(lesson.solution("check_pool()")):
            output = do(action, terms, port)
        assert "energy_usage" in output and "default" in output, output
        until_done(kernel, lesson.cell("check_pool()"), 10, terms[2])
        phases.done("step 3")

        outputs = [do(a, terms, port) for a in actions(lesson.solution("check_deployment()"))]
        assert "energy-usage/by-hand" in outputs[-1], outputs[-1]
        said = until_done(kernel, lesson.cell("check_deployment()"), 10, terms[2])
        assert "every 60 s" in said and "Prefect alone" in said, said
        phases.done("step 4")

        step5 = actions(lesson.solution("check_late()"))
        asked = do(step5[0], terms, port)
        asked_for = re.search(r"Created flow run '([\w-]+)'", asked)
        assert asked_for, asked
        until_done(kernel, lesson.cell("check_late()"), 120, terms[2])
        late = do(step5[1], terms, port)
        assert asked_for.group(1)[:10] in late, late
        inspected = do(step5[2], terms, port)
        assert "late_runs_count" in inspected, inspected
        watched = kernel.run(lesson.cell("monitor()")).text
        assert "energy_usage" in watched and "Late" in watched, watched
        phases.done("step 5 (Late runs)")

        for action in actions(lesson.solution("check_drained()")):
            do(action, terms, port)
        terms[3].wait_for(r"Worker 'ProcessWorker [^']+' started!", 60)
        said = until_done(kernel, lesson.cell("check_drained()"), 180, terms[3])
        assert "taken by ProcessWorker" in said and "drained" in said, said
        completed_run = re.search(r"went Late, then Completed: ([\w-]+)", said).group(1)  # type: ignore[union-attr]
        phases.done("step 6 (the worker drains the queue)")

        # Step 7: a long run, Ctrl-C in terminal 3 while it runs, then mend it.
        step7 = actions(lesson.solution("check_mended(stuck)"))
        asked = do(step7[0], terms, port)
        name, run_id = (
            re.search(r"Created flow run '([\w-]+)'", asked).group(1),  # type: ignore[union-attr]
            re.search(rf"UUID: ({UUID})", asked).group(1),  # type: ignore[union-attr]
        )
        terms[3].wait_for(rf"Flow run '{name}' - Beginning flow run", 120)
        assert step7[1].ctrl_c and step7[1].terminal == 3
        do(step7[1], terms, port)
        terms[3].wait_for(r"Worker '[^']+' stopped!", 60)
        stuck = lesson.answered("check_mended(stuck)", f'stuck = "{run_id}"')
        deadline = time.monotonic() + 20  # the run's process ends with its worker, a moment later
        while "It is still really running" in (said := kernel.run(stuck).text):
            assert time.monotonic() < deadline, said
            time.sleep(1)
        assert "yet the server still says Running" in said, said  # plain Prefect: still Running
        listed = do(step7[2], terms, port)
        in_flight = re.findall(UUID, listed)
        assert run_id in in_flight, listed
        cancel = step7[3]
        assert "<ID>" in cancel.lines[0]
        for other in in_flight:  # every run the worker had in flight, as the lesson says
            do(Action(cancel.terminal, [cancel.lines[0].replace("<ID>", other)]), terms, port)
        said = until_done(kernel, stuck, 150, terms[2])
        assert "cancellation timed out" in said and "now Cancelled" in said, said
        # Prefect's own objects and the run's name are right answers too ...
        by_name = lesson.answered("check_mended(stuck)", f'stuck = "{name}"')
        assert DONE in kernel.run(by_name).text
        as_flow_run = (
            "from energy_flows import learner_server\n"
            "with learner_server.client(learner_server.find_server().api_url) as c:\n"
            f"    stuck = c.read_flow_run('{run_id}')\n"
            "check_mended(stuck)"
        )
        assert DONE in kernel.run(as_flow_run).text
        # ... and a run that Completed is not: the check says why.
        completed = lesson.answered("check_mended(stuck)", f'stuck = "{completed_run}"')
        said = kernel.run(completed).text
        assert "not yet" in said and "the worker was stopped after it ended" in said, said
        assert run_id in do(step7[4], terms, port)
        phases.done("step 7 (Ctrl-C mid-run, cancelled)")

        end = actions(lesson.solution("check_all_stopped()"))
        assert [(a.terminal, a.ctrl_c) for a in end] == [(1, True)]
        do(end[0], terms, port)
        terms[1].wait_for("Server stopped!", 60)
        until_done(kernel, lesson.cell("check_all_stopped()"), 30, terms[1])
        assert _wait_gone(lambda: hand_started(lab.home), 10) == []
        phases.done("the end")
        kernel.run("from energy_flows.widgets.base import stop_all_views\nstop_all_views()")
    finally:
        for term in terms.values():
            term.close()
        kernel.close()
    lab.ctrl_c()  # make itself ends by the signal; JupyterLab's launcher says how it went
    assert "Everything is stopped." in lab.output()
    assert _wait_gone(lambda: in_home(lab.home), 15) == []
    record_property("walkthrough_phases", str(phases))
    print(f"\nthe walkthrough by hand: {phases}")


# --------------------------------------------------------------------------- out of order


@pytest.mark.server
@pytest.mark.timeout(600)
def test_a_worker_before_its_pool_and_ctrl_c_of_make_lab_with_both_running(lab: MakeLab) -> None:
    """Step 6 before step 3: Prefect makes the pool, says so, and the check says what to do next.

    Then Ctrl-C in ``make lab`` while the server and the worker still run in
    their terminals: nothing of theirs may be left.
    """
    lesson = Lesson(LESSON)
    kernel = open_notebook(lab.base, TOKEN, LESSON.name)
    terms = _terminals(lab)
    from energy_flows.services.process import free_port

    port = free_port()
    try:
        kernel.run(lesson.cell("guide()"))
        for action in actions(lesson.solution("check_server()")):
            do(action, terms, port)
        until_done(kernel, lesson.cell("check_server()"), 180, terms[1])

        for action in actions(lesson.solution("check_drained()")):  # the worker, too early
            do(action, terms, port)
        terms[3].wait_for(
            r"Work pool 'walkthrough' does not exist and no worker type was provided", 60
        )
        terms[3].wait_for(r"Worker '[^']+' started!", 60)
        pool = actions(lesson.solution("check_pool()"))[0]
        output, status = terms[2].run(with_port(pool.lines[0], port))
        assert status != 0
        assert "Work pool named 'walkthrough' already exists" in output, output
        said = kernel.run(lesson.cell("check_pool()")).text
        assert "a worker already polls pool 'walkthrough'" in said, said
        assert "prefect work-queue create energy_usage --pool walkthrough" in said, said
        assert len(hand_started(lab.home)) >= 2  # the server and the worker
        # The last cell names both, workers first, with how to stop each.
        said = kernel.run(lesson.cell("check_all_stopped()")).text
        assert "not yet" in said, said
        worker = said.index("a Prefect worker still runs")
        server = said.index("a Prefect server still runs")
        assert worker < server, said
        assert "pool walkthrough): Ctrl-C in the terminal that runs it (terminal 3)" in said, said
        assert f"port {port}): Ctrl-C in the terminal that runs it (terminal 1)" in said, said
    finally:
        for term in terms.values():
            term.disconnect()  # the terminals stay open: make lab's Ctrl-C must end them
        kernel.close()
    lab.ctrl_c()  # make itself ends by the signal; JupyterLab's launcher says how it went
    assert "Everything is stopped." in lab.output()
    assert _wait_gone(lambda: hand_started(lab.home), 30) == []
    assert _wait_gone(lambda: in_home(lab.home), 15) == []


# --------------------------------------------------------------------------- plain Prefect


@pytest.mark.server
def test_plain_prefect_port_alone_gives_a_dashboard_calling_4200_and_deploy_needs_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the lesson says of plain Prefect 3.9, in the terminals' own environment."""
    from energy_flows.prefect_internals import dashboard_api_url
    from energy_flows.services.process import free_port

    home = tmp_path / "home"
    monkeypatch.setenv("ENERGY_FLOWS_HOME", str(home))
    env = terminals.terminal_env(os.environ)
    Path(env["PREFECT_HOME"]).mkdir(parents=True)
    port = free_port()
    prefect = [sys.executable, "-m", "prefect"]
    server = subprocess.Popen(
        [*prefect, "server", "start", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        from energy_flows.services.api import healthy

        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not healthy(f"{url}/api"):
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
        # --port alone, no PREFECT_API_URL: the dashboard calls Prefect's default port.
        assert dashboard_api_url(url) == "http://127.0.0.1:4200/api"
        said = repr(walkthrough.check_server())
        assert "asks http://127.0.0.1:4200/api for its data" in said, said

        # prefect deploy refuses a pool that does not exist.
        (tmp_path / "energy_flow.py").write_text(
            "from prefect import flow\n\n@flow\ndef energy_usage():\n    pass\n"
        )
        (tmp_path / "prefect.yaml").write_text(
            "deployments:\n- name: by-hand\n  entrypoint: energy_flow.py:energy_usage\n"
            "  work_pool:\n    name: walkthrough\n"
        )
        deploy = subprocess.run(
            [*prefect, "--no-prompt", "deploy", "--all"],
            env={**env, "PREFECT_API_URL": f"{url}/api"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert deploy.returncode == 1
        assert "references work pool 'walkthrough' which does not exist" in " ".join(
            deploy.stdout.split()
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_each_step_check_is_called_without_arguments_and_keeps_its_help():
    """The cells call check_pool() ... check_drained(); help() shows what each judges."""
    import inspect

    for check in (
        walkthrough.check_pool,
        walkthrough.check_deployment,
        walkthrough.check_late,
        walkthrough.check_drained,
    ):
        assert inspect.signature(check).parameters == {}, check.__name__
        assert check.__doc__ and check.__doc__.startswith("Step "), check.__name__
        assert check.__name__.startswith("check_")


def test_prefects_defaults_are_the_ones_the_lesson_states():
    from prefect.settings.models.server.services import (
        ServerServicesCancellationCleanupSettings,
        ServerServicesLateRunsSettings,
    )
    from prefect.settings.models.worker import WorkerSettings

    late = ServerServicesLateRunsSettings.model_fields["after_seconds"].default
    assert late.total_seconds() == walkthrough.LATE_AFTER_SECONDS == 15
    timeout = ServerServicesCancellationCleanupSettings.model_fields["cancelling_timeout_seconds"]
    assert timeout.default == walkthrough.CANCELLING_TIMEOUT_SECONDS == 300
    assert WorkerSettings.model_fields["query_seconds"].default == 10


# --------------------------------------------------------------------------- the Parsons problem


def test_the_right_order_is_accepted_however_it_is_written():
    right = "ECGDBFA"
    for answer in (right, "e c g d b f a", "E,C,G,D,B,F,A", list(right)):
        assert walkthrough.check_order(answer).ok, answer
    commands = [walkthrough.COMMANDS[letter] for letter in right]
    assert walkthrough.check_order(commands).ok
    assert walkthrough.check_order([" ".join(c.split()) + "  " for c in commands]).ok


@pytest.mark.parametrize(
    ("order", "said"),
    [
        ("CEGDBFA", "C (`prefect server start --port 4300`) comes before E"),
        ("EGCDBFA", "G (`prefect work-pool create walkthrough --type process`) comes before C"),
        (
            "ECDGBFA",
            "D (`prefect work-queue create energy_usage --pool walkthrough`) comes before G",
        ),
        ("ECGBDFA", "B (`prefect --no-prompt deploy --all`) comes before D"),
        ("ECGDFBA", "F (`prefect flow-run ls --state Late`) comes before B"),
        ("ECGDBAF", "A (`prefect worker start"),
    ],
)
def test_a_wrong_order_names_the_pair_and_why(order: str, said: str):
    check = walkthrough.check_order(order)
    assert not check.ok
    [message] = check.missing
    assert message.startswith(said), message
    assert ": " in message.split("must come first", 1)[1]  # and why
    assert "ECGDBFA" not in message  # a hint, not the answer


def test_missing_repeated_or_unknown_letters_and_none_get_a_hint():
    assert "still None" in repr(walkthrough.check_order(None))
    assert "D: missing" in repr(walkthrough.check_order("ECGBFA"))
    assert "C: more than once" in repr(walkthrough.check_order("ECCGDBFA"))
    assert "X: not a command" in repr(walkthrough.check_order("ECGDBFAX"))
    assert "give the letters as a string" in repr(walkthrough.check_order(42))


# --------------------------------------------------------------------------- the terminals


def test_the_terminals_get_plain_prefect_in_the_courses_prefect_home(tmp_path: Path):
    from energy_flows import settings

    home = tmp_path / "home"
    course = settings.classroom_env(home)  # JupyterLab's environment under `make lab`
    course["PREFECT_API_URL"] = "http://127.0.0.1:9999/api"  # exported by the learner, say
    env = terminals.terminal_env(course, home)
    assert env["PREFECT_HOME"] == str(home / "walkthrough" / "prefect")
    assert env["ENERGY_FLOWS_HOME"] == str(home)
    prefect = {k: v for k, v in env.items() if k.startswith("PREFECT_")}
    assert prefect == {
        "PREFECT_HOME": str(home / "walkthrough" / "prefect"),
        "PREFECT_UI_STATIC_DIRECTORY": str(home / "walkthrough" / "prefect" / "ui"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    assert env["PATH"] == course["PATH"]  # this environment's `prefect` comes first
    assert "NO_COLOR" not in env
    assert terminals.export_line(home) == (
        f'mkdir -p "{home / "walkthrough" / "prefect"}" && '
        f'export PREFECT_HOME="{home / "walkthrough" / "prefect"}"'
    )


def test_jupyterlab_is_told_to_open_terminals_through_the_launcher(tmp_path: Path):
    from energy_flows.lab import lab_command

    argv = lab_command(8888, tmp_path, open_browser=False)
    shell = json.dumps(terminals.shell_command())
    assert f"--ServerApp.terminado_settings=shell_command={shell}" in argv
    out = subprocess.run(
        [sys.executable, "-m", "energy_flows.terminals", "jupyter-config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == terminals.jupyter_config()


def test_binders_jupyter_config_gets_the_terminals_and_keeps_what_else_it_holds(tmp_path: Path):
    path = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"ServerApp": {"terminado_settings": {"type": "xterm"}}, "LabApp": {"x": 1}}')
    done = subprocess.run(
        [sys.executable, "-m", "energy_flows.terminals", "jupyter-config", str(path)], check=False
    )
    assert done.returncode == 0
    assert json.loads(path.read_text()) == {
        "ServerApp": {
            "terminado_settings": {"type": "xterm", "shell_command": terminals.shell_command()}
        },
        "LabApp": {"x": 1},
    }


def test_the_launcher_becomes_the_shell_with_that_environment(tmp_path: Path):
    env = {**os.environ, "ENERGY_FLOWS_HOME": str(tmp_path), "SHELL": "/bin/sh"}
    env["PREFECT_LOGGING_LEVEL"] = "DEBUG"
    shell = subprocess.run(
        terminals.shell_command(),
        input='echo "home=$PREFECT_HOME level=${PREFECT_LOGGING_LEVEL:-unset}"; echo "pid=$$"\n',
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"home={tmp_path / 'walkthrough' / 'prefect'} level=unset" in shell.stdout
    assert (tmp_path / "walkthrough" / "prefect").is_dir()


def test_the_profile_prefect_config_set_writes_is_read(tmp_path: Path):
    folder = tmp_path / "walkthrough" / "prefect"
    folder.mkdir(parents=True)
    assert terminals.read_profile(tmp_path).api_url is None
    (folder / "profiles.toml").write_text(
        'active = "ephemeral"\n\n[profiles.ephemeral]\n'
        'PREFECT_API_URL = "http://127.0.0.1:4301/api"\n\n[profiles.local]\n'
    )
    profile = terminals.read_profile(tmp_path)
    assert (profile.name, profile.api_url) == ("ephemeral", "http://127.0.0.1:4301/api")


@pytest.mark.parametrize(
    ("argv", "role", "options"),
    [
        (
            ["/v/bin/python", "/v/bin/prefect", "server", "start", "--port", "4300"],
            "server",
            {"--port": "4300"},
        ),
        (
            ["python", "-m", "prefect", "worker", "start", "-p", "w", "-q", "energy_usage"],
            "worker",
            {"--pool": "w", "--work-queue": "energy_usage"},
        ),
        (["/v/bin/python", "-m", "prefect.engine"], "flow run", {}),
        (["/v/bin/python", "/v/bin/prefect", "--no-prompt", "deploy", "--all"], "command", {}),
        (["bash"], None, {}),
    ],
)
def test_what_a_terminal_started_is_told_apart(argv, role, options):
    assert terminals._role(argv) == role
    assert {k: v for k, v in terminals._options(argv).items() if k in options} == options
