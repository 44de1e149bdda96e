"""`make screenshots` (``python -m tools.screenshots``): the images in ``output/``, regenerated for real.

A development tool, not part of the installed package: it drives a browser
through :mod:`tools.browser` (Playwright, from the ``test`` extra).

The 2022 walkthrough kept screenshots of flows, deployments, agents and work
queues. Here they are taken from a real run, every time, in five moves:

1. start a Prefect server in a fresh, temporary home (nothing from earlier
   runs shows up in the pictures);
2. create the pool ``energy-pool`` and its queue ``energy_usage``, deploy the
   energy flow (its 30-second schedule paused, so no random runs appear),
   and ask for two runs due in the past: with no worker ("agent") polling,
   they turn Late, as in the walkthrough;
3. photograph the queue with its Late runs;
4. start a worker, let it drain the queue, and photograph the dashboard,
   flows, one flow run (task runs, artifacts), deployments, work pools, the
   drained queue and the pool's workers;
5. lesson 07's scale: a burst of runs on a second queue drained by two
   workers, photographed on the dashboard while they run, and the batch flow
   on a Dask cluster, its dashboard photographed while the tasks run;
6. save the lessons' figures (forecast, run timeline) from those real runs.

Everything is stopped at the end, workers before the server, also after an
error or Ctrl-C.

Pictures are declared, not scripted: :data:`SHOTS` says, for each file, which
UI page it shows and which text must be on that page. :func:`capture` opens
the page in headless Chromium (Debian's ``chromium``, driven by Playwright;
no browser is downloaded), waits until every expected text is in the DOM and
no loading indicator is visible (never a fixed sleep), then takes the
screenshot. What was found is written to ``manifest.json`` next to the
images, and ``README.md`` is generated from the same list, so the pictures,
the checks and the description cannot drift apart.

The pages are those of Prefect's classic UI, the one the lessons' links
(``/dashboard``, ``/work-pools`` ...) open; the server's bare address opens
the new UI (``/v2``), which offers a switch back.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from energy_flows.errors import EnergyFlowsError

if TYPE_CHECKING:
    pass

#: One browser window size for every page, so images compare across runs.
VIEWPORT = {"width": 1280, "height": 800}

#: The deployment photographed: the energy flow, small enough to run in seconds.
DEPLOYMENT = "energy-usage"
PARAMETERS: dict[str, Any] = {"meter_id": "home-001", "days": 35, "test_days": 7}
#: Its schedule (shown on the deployments page; paused, so it adds no runs).
INTERVAL_SECONDS = 30
#: The runs nobody takes until the worker comes: (run name, meter, seconds overdue).
MISSED_RUNS: tuple[tuple[str, str, int], ...] = (
    ("missed-1", "home-001", 40),
    ("missed-2", "home-002", 30),
)

#: Seconds to wait for one page, one state change of the runs, or the server.
DEFAULT_TIMEOUT = 60.0

Moment = Literal["late", "drained", "load", "dask"]

#: Lesson 07's burst: runs of the energy flow on their own queue, two workers.
BURST_QUEUE = "burst"
BURST_DEPLOYMENT = "energy-burst"
BURST_RUNS = 6
BURST_WORKER_LIMIT = 1
#: The Dask batch photographed while it runs: enough meters to last a while.
DASK_METERS = 24


@dataclass(frozen=True)
class Shot:
    """One screenshot: where it comes from and what must be on the page when it is taken.

    ``path`` is a UI path; ``{pool}``, ``{queue}`` and ``{run_id}`` are filled
    in. ``tab`` names a tab of the page to open first, as a learner clicks it
    (``"Workers"``); with ``scroll``, the page is scrolled until that tab bar is
    at the top of the window (some lists render only once visible). ``expect`` lists texts that must all be in the page
    (``innerText``), ``absent`` texts that must not be. ``moment`` says when
    it is taken: ``"late"`` (runs waiting, no worker yet), ``"drained"``
    (the worker ran them all), ``"load"`` (a burst in flight on two workers)
    or ``"dask"`` (the Dask dashboard, ``path`` relative to it, while the
    batch runs).
    """

    file: str
    path: str
    expect: tuple[str, ...]
    what: str
    moment: Moment = "drained"
    absent: tuple[str, ...] = ()
    tab: str | None = None
    scroll: bool = False
    #: Pages drawn on canvases (Dask's Bokeh dashboard): wait for at least this many,
    #: shadow DOM included, so the picture shows the plots and not an empty frame.
    min_canvases: int = 0


@dataclass(frozen=True)
class FigureSpec:
    """One figure the lessons draw, saved from the real runs of the same session."""

    file: str
    what: str
    source: str


QUEUE_PATH = "/work-pools/work-pool/{pool}/queue/{queue}"

SHOTS: tuple[Shot, ...] = (
    Shot(
        "work-queue-energy_usage-late.png",
        QUEUE_PATH,
        ("energy_usage", "missed-1", "missed-2", "Late", "Not Ready"),
        "The work queue `energy_usage` before any worker (agent) polls it: the runs "
        "wait and turn Late; the queue is Not Ready.",
        moment="late",
        absent=("Completed",),
        tab="Runs",
    ),
    Shot(
        "dashboard.png",
        "/dashboard",
        ("Flow Runs", "Task Runs", "Completed", "Active Work Pools", "energy-pool"),
        "The dashboard after the worker ran the queue: flow and task runs by state, "
        "no failures, the active pool and its queues.",
    ),
    Shot(
        "flows.png",
        "/flows",
        ("energy-usage-pipeline", "1 Deployment"),
        "The flows page: the energy usage pipeline, its last run and its deployment.",
    ),
    Shot(
        "flow-run-task-runs.png",
        "/runs/flow-run/{run_id}",
        ("energy-home-001-2024-01-01", "Completed", "ingest-home-001"),
        "One flow run of the energy flow: its task runs (ingest, validate, clean, "
        "build-features, train, evaluate, report) and artifacts in the graph, and the "
        "Task Runs tab.",
        tab="Task Runs",
    ),
    Shot(
        "flow-run-artifacts.png",
        "/runs/flow-run/{run_id}",
        ("energy-home-001-2024-01-01", "energy-report-home-001", "energy-metrics-home-001"),
        "The same flow run's Artifacts tab: the markdown report and the metrics table it "
        "published.",
        tab="Artifacts",
        scroll=True,
    ),
    Shot(
        "deployments.png",
        "/deployments",
        ("energy-usage", "energy-usage-pipeline", "Every 30 seconds"),
        "The deployments page: `energy-usage` of the flow `energy-usage-pipeline` and its "
        "schedule (paused here, so the pictures stay the same).",
    ),
    Shot(
        "work-pools.png",
        "/work-pools",
        ("energy-pool", "Process"),
        "The work pools page: the process pool `energy-pool` that holds the queue.",
    ),
    Shot(
        "work-queue-energy_usage-drained.png",
        QUEUE_PATH,
        ("energy_usage", "Completed", "Ready"),
        "The same queue after a worker started: drained, every run Completed, the queue Ready.",
        absent=("Late", "Not Ready"),
        tab="Runs",
    ),
    Shot(
        "work-pool-workers.png",
        "/work-pools/work-pool/{pool}",
        ("energy-pool-energy_usage", "Online"),
        "The pool's Workers tab: the worker (the 2022 agent) that drained the queue, Online.",
        tab="Workers",
    ),
)

SHOTS += (
    Shot(
        "dashboard-under-load.png",
        "/dashboard",
        ("Flow Runs", "Active Work Pools", "energy-pool"),
        f"Lesson 07: the dashboard during a burst of {BURST_RUNS} runs on the queue "
        f"`{BURST_QUEUE}`, drained by two workers taking {BURST_WORKER_LIMIT} run at a time each: "
        "the Flow Runs chart and the pool's activity while runs are in flight (the tool "
        "checks that some still were when the picture was taken).",
        moment="load",
    ),
    Shot(
        "dask-dashboard.png",
        "/status",
        # Bokeh draws the plots on canvases; the page's text is its menu.
        ("Status", "Workers", "Tasks", "System", "Profile"),
        f"Lesson 07: the Dask dashboard while `energy_usage_batch` runs {DASK_METERS} meters "
        "on a cluster of two worker processes (`dask_runner(n_workers=2)`): the task stream "
        "and the progress of each task (the tool waits until an eighth of the meters are done "
        "and checks that the cluster still ran when the picture was taken).",
        moment="dask",
        min_canvases=4,
    ),
)

FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "forecast.png",
        "Forecast vs actual hourly use of `home-001`, from the result the worker persisted "
        "(lesson 02).",
        "energy_flows.views.plot_forecast(run_result(run).result)",
    ),
    FigureSpec(
        "run-timeline.png",
        "The queue's runs on a time axis, one row per worker (lessons 04 and 05).",
        "energy_flows.views.plot_run_timeline(runs_with_workers(queue_runs()))",
    ),
)

#: JavaScript: the state of the page for one shot. Which expected texts it lacks,
#: which unwanted texts it shows, how many loading indicators (spinners,
#: "--loading" blocks) are visible, and whether the wanted tab is the active one.
#: A tab that is not active yet is clicked, as a learner would (Prefect's UI
#: may reset its tabs while the page's data loads, so this may happen twice).
#:
#: Prefect's UI gives its tabs no ARIA role, so they are found by its design
#: system's class names (``li.p-tab``, ``p-tab__active``). Those are not an API:
#: where a UI has none of them, a tab is any ``[role=tab]`` (active when
#: ``aria-selected``) or, failing that, a list item with the tab's text, which
#: counts as active once clicked; the expected texts then say whether its
#: content shows (``tests/test_screenshots.py`` checks both paths).
PAGE_STATE_JS = """([expect, absent, tab, scroll]) => {
  const text = document.body ? document.body.innerText : "";
  const canvases = (root) => [...root.querySelectorAll("*")].reduce(
    (n, el) => n + (el.shadowRoot ? canvases(el.shadowRoot) : 0),
    root.querySelectorAll("canvas").length);
  const visible = (el) => el.getClientRects().length > 0
    && getComputedStyle(el).visibility !== "hidden";
  const loading = [...document.querySelectorAll(
    '.p-loading-icon, [class*="--loading"], [class*="__loading"], [aria-busy="true"]'
  )].filter(visible).length;
  let tabActive = true;
  if (tab) {
    const named = (selector) => [...document.querySelectorAll(selector)].find(
      (el) => el.innerText.trim() === tab && visible(el));
    const prefect = named("li.p-tab");
    const aria = prefect ? null : named('[role="tab"]');
    const plain = prefect || aria ? null : named("li");
    const el = prefect || aria || plain;
    if (prefect) tabActive = prefect.classList.contains("p-tab__active");
    else if (aria) tabActive = aria.getAttribute("aria-selected") === "true";
    else tabActive = Boolean(plain && plain.dataset.efClicked);
    if (el && !tabActive) {
      el.click();
      if (plain) plain.dataset.efClicked = "1";
    }
    if (el && tabActive && scroll) el.scrollIntoView({block: "start"});
  }
  return {
    missing: expect.filter((t) => !text.includes(t)),
    unwanted: absent.filter((t) => text.includes(t)),
    loading,
    tabActive,
    canvases: canvases(document),
    head: text.slice(0, 1500),
  };
}"""

#: JavaScript: resolve after two animation frames, i.e. once the page has painted.
PAINTED_JS = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


class ScreenshotError(EnergyFlowsError):
    """A page did not show what its screenshot is meant to show, or Chromium is missing."""


def _say(message: str, quiet: bool) -> None:
    from energy_flows.waiting import say

    say(message, quiet)


# --------------------------------------------------------------------------- capture


def capture(
    base_url: str,
    shot: Shot,
    page: Any,
    out: Path,
    context: dict[str, str],
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Open ``shot``'s page, wait until it shows what it should, screenshot it.

    Waits (through :func:`~energy_flows.waiting.wait_until`, never a
    fixed sleep) until every ``shot.expect`` text is in the page, no
    ``shot.absent`` text is, and no loading indicator is visible; then for the
    network to go quiet and the page to paint. Returns the manifest entry:
    file, path, expected texts and whether each was found, size.

    Raises :class:`ScreenshotError` saying which text never appeared.
    """
    from energy_flows.errors import WaitTimeout
    from energy_flows.waiting import wait_until

    path = shot.path.format(**context)
    started = time.monotonic()
    page.goto(base_url.rstrip("/") + path, wait_until="load", timeout=timeout * 1000)
    last: dict[str, Any] = {}

    args = [list(shot.expect), list(shot.absent), shot.tab, shot.scroll]

    def ready() -> dict[str, Any] | None:
        last.update(page.evaluate(PAGE_STATE_JS, args))
        done = last["tabActive"] and not (last["missing"] or last["unwanted"] or last["loading"])
        drawn = last["canvases"] >= shot.min_canvases
        return dict(last) if done and drawn else None

    def what_is_wrong() -> str:
        tab = f"; tab {shot.tab!r} active: {last.get('tabActive')}" if shot.tab else ""
        return (
            f"Missing: {last.get('missing')}; present but should not be: "
            f"{last.get('unwanted')}; loading indicators: {last.get('loading')}{tab}; "
            f"canvases: {last.get('canvases')} of {shot.min_canvases}.\n"
            f"The page begins: {last.get('head', '')!r}"
        )

    try:
        wait_until(
            ready,
            timeout,
            what=f"{path} to show {list(shot.expect)} for {shot.file}",
            interval=0.1,
            max_interval=0.25,
            missing=what_is_wrong,
        )
        page.wait_for_load_state("networkidle", timeout=timeout * 1000)
        page.evaluate(PAINTED_JS)
        target = out / shot.file
        page.screenshot(path=str(target), animations="disabled", caret="hide", scale="css")
        # Check again on the page as photographed (live pages refresh themselves).
        final = page.evaluate(PAGE_STATE_JS, args)
    except WaitTimeout as exc:
        # Photograph the page as it was, to see what went wrong.
        failed = out / f"failed-{shot.file}"
        page.screenshot(path=str(failed), animations="disabled", caret="hide", scale="css")
        raise ScreenshotError(f"{exc}\nThe page as it was: {failed}") from None
    return {
        "file": shot.file,
        "kind": "page",
        "path": path,
        "tab": shot.tab,
        "moment": shot.moment,
        "what": shot.what,
        # text -> present in the DOM when the screenshot was taken (all must be True)
        "expected": {text: text not in final["missing"] for text in shot.expect},
        # text -> present although it must not be (all must be False)
        "unwanted": {text: text in final["unwanted"] for text in shot.absent},
        "tab_active": final["tabActive"],
        "loading_indicators": final["loading"],
        "canvases": final["canvases"],
        "bytes": target.stat().st_size,
        "seconds": round(time.monotonic() - started, 2),
    }


# --------------------------------------------------------------------------- the walkthrough


@contextlib.contextmanager
def _own_environment() -> Iterator[None]:
    """Give back this process's environment and Prefect settings afterwards.

    Starting a server points this process's Prefect client at it; a caller
    (a test session, a notebook) that had its own server gets it back.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if "prefect.context" in sys.modules:
            import prefect.context

            prefect.context.refresh_global_settings_context()


def _save_figure(fig: Any, target: Path, what: str) -> dict[str, Any]:
    fig.savefig(target, dpi=100, facecolor="white")
    return {"file": target.name, "kind": "figure", "what": what, "bytes": target.stat().st_size}


def take_screenshots(
    out: str | os.PathLike[str] = "output",
    home: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Run the walkthrough against a real server and save every image of :data:`SHOTS` and
    :data:`FIGURES` into ``out``, with ``manifest.json`` and ``README.md``.

    Args:
        out: the folder for the images (created when missing).
        home: the state folder for the server; default a fresh temporary one,
            removed afterwards.
        timeout: the longest any one wait may take, in seconds.
        quiet: no progress lines.

    Returns the manifest entries, one per image. Raises
    :class:`ScreenshotError` when Chromium is missing or a page never shows
    what it should. Leaves no process running.
    """
    from tools.browser import chromium_path

    if chromium_path() is None:
        raise ScreenshotError(
            "Chromium is not installed, so no screenshots can be taken. On Debian or "
            "Ubuntu: `sudo apt-get install chromium` (the project drives the system browser "
            "and never downloads one), then run `make screenshots` again."
        )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("failed-*.png"):  # pictures of an earlier failed attempt
        stale.unlink()
    with contextlib.ExitStack() as stack:
        if home is None:
            home = stack.enter_context(
                tempfile.TemporaryDirectory(
                    prefix="energy-flows-screenshots-", ignore_cleanup_errors=True
                )
            )
        stack.enter_context(_own_environment())
        entries = _walkthrough(out_dir, Path(home), timeout, quiet)
    manifest = {
        "generated_by": "python -m tools.screenshots",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "viewport": VIEWPORT,
        "images": entries,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out_dir / "README.md").write_text(readme_text())
    return entries


def _walkthrough(out: Path, home: Path, timeout: float, quiet: bool) -> list[dict[str, Any]]:
    from energy_flows import orchestration as orch
    from energy_flows.orchestration.common import now_utc
    from energy_flows.prefect_internals import flush_to_server
    from energy_flows.services.control import stop_all
    from energy_flows.services.server import PrefectServer, free_port
    from energy_flows.services.worker import Worker
    from energy_flows.views import plot_forecast, plot_run_timeline, runs_with_workers
    from tools.browser import launch_chromium

    pool, queue = orch.DEFAULT_POOL, orch.DEFAULT_QUEUE
    entries: list[dict[str, Any]] = []
    try:
        _say(f"Starting a Prefect server in a fresh home ({home})", quiet)
        # A free port, never the learner's usual 4200.
        port = free_port()
        server = PrefectServer(home, port=port, timeout=max(timeout, 90.0), quiet=True).start()
        orch.ensure_work_pool(pool)
        orch.ensure_work_queue(queue, pool=pool)
        deployment = orch.deploy_energy_flow(
            DEPLOYMENT,
            parameters=PARAMETERS,
            interval=INTERVAL_SECONDS,
            work_pool=pool,
            work_queue=queue,
            paused=True,
        )
        now = now_utc()
        runs = [
            orch.trigger(
                deployment.full_name,
                parameters={"meter_id": meter},
                flow_run_name=name,
                scheduled_time=now - dt.timedelta(seconds=overdue),
            )
            for name, meter, overdue in MISSED_RUNS
        ]
        _say(f"Waiting for {len(runs)} runs to turn Late (no worker yet)", quiet)
        late = orch.wait_for(runs, until="late", timeout=timeout, progress=False)
        if set(late["state"]) != {"Late"}:
            raise RuntimeError(f"the missed runs did not all turn Late: {late.to_dict('records')}")
        context = {"pool": pool, "queue": queue, "run_id": runs[0].id}

        with launch_chromium() as browser:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)

            def shoot(moment: Moment) -> None:
                for shot in SHOTS:
                    if shot.moment == moment and moment != "dask":
                        entries.append(
                            capture(server.ui_url, shot, page, out, context, timeout=timeout)
                        )
                        _say(f"  {shot.file}", quiet)

            shoot("late")
            _say("Starting a worker (the 2022 agent) and letting it drain the queue", quiet)
            Worker(pool=pool, queues=[queue], home=home, timeout=timeout, quiet=True).start()
            finished = orch.wait_for(runs, until="completed", timeout=timeout, progress=False)
            bad = [f"{r.name}: {r.state}" for r in finished if r.state != "Completed"]
            if bad:
                raise ScreenshotError(
                    f"Runs did not complete ({', '.join(bad)}), so the pictures would show "
                    f"failures. See the server's log in {home / 'logs'}."
                )
            orch.wait_for(until="empty", queue=queue, pool=pool, timeout=timeout, progress=False)
            shoot("drained")
            _say(f"A burst of {BURST_RUNS} runs, two workers (lesson 07)", quiet)
            _burst(home, pool, timeout, lambda: shoot("load"))
            _say("The batch on a Dask cluster (lesson 07)", quiet)
            _dask_batch(timeout, lambda url: entries.append(_dask_shot(url, page, out, timeout)))
            _say("  dask-dashboard.png", quiet)

        result = orch.run_result(runs[0])
        if result.result is None:
            raise ScreenshotError(f"The result of {result.name!r} cannot be read: {result.note}")
        figures = {
            "forecast.png": plot_forecast(result.result),
            "run-timeline.png": plot_run_timeline(
                runs_with_workers(orch.queue_runs(queue, pool)),
                title=f"Runs of the queue {queue}, by worker",
            ),
        }
        for spec in FIGURES:
            entries.append(_save_figure(figures[spec.file], out / spec.file, spec.what))
            _say(f"  {spec.file}", quiet)
    finally:
        # The batch flow ran in this process: send its queued logs and events while the
        # server still answers (else Prefect says "All connection attempts failed" at exit).
        flush_to_server(timeout=5)
        stop_all(home, quiet=True)
    return entries


def _burst(home: Path, pool: str, timeout: float, shoot: Any) -> None:
    """Lesson 07's burst: two workers, :data:`BURST_RUNS` runs at once; ``shoot`` while they run."""
    from energy_flows import orchestration as orch
    from energy_flows.services.worker import Worker
    from energy_flows.waiting import wait_until

    orch.ensure_work_queue(BURST_QUEUE, pool=pool)
    burst = orch.deploy_energy_flow(
        BURST_DEPLOYMENT, parameters={"days": 60}, work_pool=pool, work_queue=BURST_QUEUE
    )
    workers = [
        Worker(pool, [BURST_QUEUE], name=f"agent-{i}", limit=BURST_WORKER_LIMIT, home=home,
               timeout=timeout, quiet=True).start()
        for i in (1, 2)
    ]  # fmt: skip
    runs = [
        orch.trigger(
            burst, parameters={"meter_id": f"home-{i:03d}"}, flow_run_name=f"burst-{i:02d}"
        )
        for i in range(1, BURST_RUNS + 1)
    ]

    # By id: a run of the energy flow takes another name when it starts.
    ids = {run.id for run in runs}

    def states() -> list[str]:
        # One query for all of them: a look run by run takes longer than a run is Running
        # on a quiet machine, and each run could be seen before and after, never during.
        table = orch.queue_runs(BURST_QUEUE, pool)
        return list(table.loc[table["id"].isin(ids), "state"])

    def under_load() -> bool:
        now = states()
        # Taken by a worker (Pending: its process starting; Running), while others wait
        # for room: Scheduled, or Late once past due by the late threshold (5 s).
        taken = any(s in ("Pending", "Running") for s in now)
        return taken and any(s in ("Scheduled", "Late") for s in now)

    # Photographed under load: runs in progress, and others still waiting for room.
    wait_until(
        under_load,
        timeout,
        what="the burst to have runs in progress while others wait",
        interval=0.2,
        missing=lambda: ", ".join(states()),
    )
    shoot()
    final = {"Completed", "Failed", "Crashed", "Cancelled"}
    if all(state in final for state in states()):
        raise ScreenshotError(
            "The burst was over before its picture was taken, so it would not show a server "
            "under load: raise BURST_RUNS or the runs' days in tools/screenshots.py."
        )
    finished = orch.wait_for(runs, until="completed", timeout=max(timeout, 180), progress=False)
    bad = [f"{r.name}: {r.state}" for r in finished if r.state != "Completed"]
    if bad:
        raise ScreenshotError(f"Burst runs did not complete: {', '.join(bad)}.")
    for worker in workers:
        worker.stop()


def _dask_batch(timeout: float, shoot: Any) -> None:
    """Run the batch on a Dask cluster in a thread; ``shoot(dashboard_url)`` while it runs."""
    import threading

    from energy_flows.flows import energy_usage_batch
    from energy_flows.services.cluster import dask_runner
    from energy_flows.waiting import wait_until

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            flow = energy_usage_batch.with_options(task_runner=dask_runner(n_workers=2))
            outcome["rows"] = len(flow(n_meters=DASK_METERS, days=60))
        except BaseException as exc:  # reported below, in this thread
            outcome["error"] = exc

    def busy() -> bool | None:
        if "error" in outcome or "rows" in outcome:
            return True  # over: said below
        now = _dask_counts()
        # Tasks running, and enough done for the task stream to show them.
        return (now.get("processing", 0) >= 1 and now.get("memory", 0) >= DASK_METERS // 8) or None

    thread = threading.Thread(target=run, name="dask-batch", daemon=True)
    thread.start()
    try:
        wait_until(busy, max(timeout, 120), what="the batch's tasks to run on Dask", interval=0.2)
        if "error" not in outcome and "rows" not in outcome:
            _shoot_dashboard(shoot)
    finally:
        thread.join(max(timeout, 180))
    if "error" in outcome:
        raise ScreenshotError(f"The batch on Dask failed: {outcome['error']!r}")
    if outcome.get("rows") != DASK_METERS:
        raise ScreenshotError(
            f"The batch on Dask gave {outcome.get('rows')} rows, not {DASK_METERS}."
        )


def _dask_counts() -> dict[str, int]:
    """The scheduler's task counts, from the dashboard's JSON (empty before and after)."""
    from energy_flows.services.cluster import dashboard_links

    links = dashboard_links(local=True)
    if not links:
        return {}
    url = links[0].removesuffix("/status") + "/json/counts.json"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.load(answer)
    except (OSError, ValueError):
        return {}


def _shoot_dashboard(shoot: Any) -> None:
    """``shoot(dashboard_url)`` while the batch runs; an error if it ended meanwhile."""
    from energy_flows.services.cluster import dashboard_links

    shoot(dashboard_links(local=True)[0].removesuffix("/status"))
    if not dashboard_links(local=True):
        raise ScreenshotError(
            "The batch on Dask ended before its dashboard was photographed: raise "
            "DASK_METERS in tools/screenshots.py."
        )


def _dask_shot(base_url: str, page: Any, out: Path, timeout: float) -> dict[str, Any]:
    [shot] = [s for s in SHOTS if s.moment == "dask"]
    return capture(base_url, shot, page, out, {}, timeout=timeout)


# --------------------------------------------------------------------------- README


def readme_text() -> str:
    """``output/README.md``, generated from :data:`SHOTS` and :data:`FIGURES`."""
    lines = [
        "# output/: screenshots and figures",
        "",
        "Real screenshots of the Prefect UI and the figures the lessons draw, all taken from",
        "one real run of the original walkthrough: a server in a fresh home, the work queue",
        "`energy_usage` with Late runs while no worker (the 2022 *agent*) polls it, then a",
        "worker that drains it; then lesson 07's scale: a burst on two workers, and the batch",
        "flow on a Dask cluster.",
        "",
        "Regenerate every file here with one command (about a minute; needs Debian's",
        "`chromium`, which Playwright drives; no browser is downloaded):",
        "",
        "```",
        "make screenshots            # = .venv/bin/python -m tools.screenshots",
        ".venv/bin/python -m tools.screenshots --out some/folder",
        "```",
        "",
        "Each page is photographed only once the texts listed in `manifest.json` are on it and",
        "no loading indicator is visible; the manifest records what was found. The list below",
        "and those checks come from one declaration, `SHOTS` and `FIGURES` in",
        "`tools/screenshots.py`. The UI pages are those of Prefect's classic UI, which",
        "the lessons' links open (1280×800 window).",
        "",
        "## Screenshots of the Prefect UI",
        "",
        "| File | What it shows | UI page |",
        "|---|---|---|",
    ]
    for shot in SHOTS:
        where = f"`{shot.path}`" + (f", tab {shot.tab}" if shot.tab else "")
        when = {
            "late": "before the worker",
            "drained": "after the worker",
            "load": "during the burst",
            "dask": "Dask's dashboard, during the batch",
        }[shot.moment]
        lines.append(f"| [`{shot.file}`]({shot.file}) | {shot.what} | {where} ({when}) |")
    lines += ["", "## Figures from the lessons", "", "| File | What it shows | Drawn by |"]
    lines.append("|---|---|---|")
    for spec in FIGURES:
        lines.append(f"| [`{spec.file}`]({spec.file}) | {spec.what} | `{spec.source}` |")
    lines += [
        "",
        "`manifest.json` lists, for each image, the page path, the texts expected in the page",
        "and whether each was present when the screenshot was taken. `tests/test_screenshots.py`",
        "regenerates everything into a temporary folder and checks it.",
        "",
    ]
    return "\n".join(lines)


def image_files() -> list[str]:
    """Every image file name this module produces, in order."""
    return [shot.file for shot in SHOTS] + [spec.file for spec in FIGURES]


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.screenshots [--out FOLDER] [--timeout S]`` (``make screenshots``)."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.screenshots",
        description="Regenerate the screenshots and figures in output/ from a real run "
        "(needs Debian's chromium).",
    )
    parser.add_argument("--out", default="output", help="folder for the PNGs (default output/)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds any one wait may take (default {DEFAULT_TIMEOUT:g}; more on a busy machine)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    started = time.monotonic()
    try:
        entries = take_screenshots(out, timeout=args.timeout)
    except EnergyFlowsError as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(
        f"screenshots: {len(entries)} images in {out}/ "
        f"({time.monotonic() - started:.0f} s); see {out / 'README.md'}"
    )
    return 0


if __name__ == "__main__":
    # Also as `python tools/screenshots.py`: the checkout's root makes `tools` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
