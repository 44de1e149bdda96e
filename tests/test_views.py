"""Figures and tables of energy_flows.views, from hand-made DataFrames (no server)."""

from __future__ import annotations

import re
import types
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from energy_flows import views
from energy_flows.views import timeline

T0 = pd.Timestamp("2025-01-01 12:00", tz="UTC")


def s(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


@pytest.fixture
def runs() -> pd.DataFrame:
    """Five runs: three overlapping on w1, one on w2, one still waiting (Late)."""
    return pd.DataFrame(
        {
            "name": ["a", "b", "c", "d", "e"],
            "state": ["Completed", "Completed", "Running", "Late", "Failed"],
            "deployment": ["x"] * 5,
            "scheduled": [s(0), s(0), s(5), s(2), s(0)],
            "started": [s(0), s(1), s(6), pd.NaT, s(2)],
            "ended": [s(4), s(5), pd.NaT, pd.NaT, s(3)],
            "id": [f"{i}0000000-0000-0000-0000-000000000000" for i in range(1, 6)],
            "worker": ["w1", "w1", "w2", None, "w1"],
        }
    )


def labels(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_assign_lanes_uses_the_lowest_free_lane() -> None:
    assert views.assign_lanes([0, 1, 3, 5], [4, 3, 6, 7]) == [0, 1, 1, 0]
    assert views.assign_lanes([], []) == []
    # back to back runs share a lane: a concurrency limit of 1 gives one lane
    assert views.assign_lanes([0, 2, 4], [2, 4, 6]) == [0, 0, 0]


def test_timeline_has_one_row_per_worker_and_lane(runs: pd.DataFrame) -> None:
    fig = views.plot_run_timeline(runs, now=s(10))
    assert isinstance(fig, Figure)
    # a, b and e overlap on w1: three rows; the Late run waits in its own row
    assert labels(fig) == ["waiting in queue", "w1", "w1 #2", "w1 #3", "w2"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["Completed", "Failed", "Late", "Running"]
    assert fig.number not in plt.get_fignums()  # closed: the notebook shows it once


def test_timeline_rows_are_workers_on_a_clock_time_axis() -> None:
    """Rows carry the workers' names; the x axis reads HH:MM:SS, never "10.1, 10.2"."""
    # Three runs of 0.2 s, two seconds apart: what lesson 05 draws.
    runs = pd.DataFrame(
        {
            "name": ["r1", "r2", "r3"],
            "state": ["Completed"] * 3,
            "scheduled": [s(10)] * 3,
            "started": [s(10.05), s(12.1), s(14.3)],
            "ended": [s(10.25), s(12.3), s(14.5)],
            "worker": ["agent-1", "agent-2", "agent-1"],
        }
    )
    fig = views.plot_run_timeline(runs, now=s(20))
    assert labels(fig) == ["agent-1", "agent-2"]
    fig.canvas.draw()  # tick labels are set when the figure is drawn
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(ticks) >= 3 and all(re.fullmatch(r"12:00:\d\d", t) for t in ticks), ticks
    assert len(set(ticks)) == len(ticks)  # whole seconds: no label twice
    assert fig.axes[0].get_xlabel() == "clock time (UTC), 2025-01-01"

    # One short run still gets whole-second ticks around it.
    fig = views.plot_run_timeline(runs[:1], now=s(20))
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(ticks) >= 3 and all(re.fullmatch(r"12:00:\d\d", t) for t in ticks), ticks

    # An hour of runs: ticks at whole minutes, still as clock times.
    hour = runs.assign(started=[s(0), s(1800), s(3590)], ended=[s(60), s(1900), s(3600)])
    fig = views.plot_run_timeline(hour, now=s(3600))
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks and all(re.fullmatch(r"1[23]:\d\d:00", t) for t in ticks), ticks


def test_timeline_by_lane_and_without_waiting(runs: pd.DataFrame) -> None:
    fig = views.plot_run_timeline(runs.drop(columns="worker"), by="lane", now=s(10))
    assert labels(fig) == ["waiting in queue", "lane 1", "lane 2", "lane 3"]
    fig = views.plot_run_timeline(runs, by="deployment", now=s(10), show_waiting=False)
    assert labels(fig) == ["x", "x #2", "x #3"]


def test_timeline_needs_the_column_it_groups_by(runs: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="runs_with_workers"):
        views.plot_run_timeline(runs.drop(columns="worker"))


def test_timeline_of_no_runs_says_so() -> None:
    empty = pd.DataFrame(columns=["name", "state", "scheduled", "started", "ended", "worker"])
    fig = views.plot_run_timeline(empty)
    assert "no runs yet" in [t.get_text() for t in fig.axes[0].texts]


def _flow_run(run_id: str, worker: str | None, start: float | None) -> Any:
    """A stand-in for Prefect's FlowRun: id, labels, exact start and end."""
    labels = {"prefect.worker.name": worker, "prefect.worker.type": "process"} if worker else {}
    return types.SimpleNamespace(
        id=run_id,
        labels=labels,
        start_time=None if start is None else s(start + 0.123),
        end_time=None if start is None else s(start + 1.456),
    )


def test_runs_with_workers_reads_the_worker_label(
    runs: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = list(runs["id"])
    flow_runs = {
        ids[0]: _flow_run(ids[0], "agent-1", 0),
        ids[1]: _flow_run(ids[1], "agent-2", 1),
        ids[2]: _flow_run(ids[2], None, 6),  # started, but no label: an older worker
        ids[3]: _flow_run(ids[3], None, None),  # Late: no worker took it yet
    }  # ids[4]: a run the server does not know
    asked: list[list[str]] = []

    def from_logs(run_ids: list[str]) -> dict[str, str]:
        asked.append(list(run_ids))
        return {ids[2]: "old-worker"}

    monkeypatch.setattr(timeline, "read_flow_runs", lambda run_ids: flow_runs)
    monkeypatch.setattr(timeline, "workers_from_run_logs", from_logs)
    out = views.runs_with_workers(runs.drop(columns="worker"))
    assert list(out["worker"][:3]) == ["agent-1", "agent-2", "old-worker"]
    assert out["worker"][3:].isna().all()
    assert asked == [[ids[2]]]  # the logs are read only for the started run without a label
    # queue_runs() tables hold exact times already: they are left as they are
    assert out["started"].equals(runs["started"]) and out["ended"].equals(runs["ended"])
    assert views.worker_of(flow_runs[ids[0]]) == "agent-1"
    assert views.worker_of(flow_runs[ids[3]]) is None


def test_workers_come_from_the_submitting_log_line(runs: pd.DataFrame) -> None:
    logs = pd.DataFrame(
        {
            "message": [
                f"Worker 'ProcessWorker 1a2b' submitting flow run '{runs['id'][0]}'",
                "Opening process...",
                f"Worker 'w-2' submitting flow run '{runs['id'][2]}'",
            ]
        }
    )
    out = views.attach_workers(runs.drop(columns="worker"), logs)
    assert out["worker"][0] == "ProcessWorker 1a2b"
    assert out["worker"][2] == "w-2"
    assert out["worker"].isna().sum() == 3


def test_forecast_plot_finds_the_columns_and_shades_the_horizon() -> None:
    index = pd.date_range("2024-01-01", periods=24 * 10, freq="h", tz="UTC")
    forecast = pd.DataFrame(
        {
            "kwh_actual": np.linspace(0, 1, len(index)),
            "kwh_predicted": np.linspace(0, 1, len(index)),
        },
        index=index,
    )
    ahead_index = pd.date_range(index[-1] + pd.Timedelta(hours=1), periods=24, freq="h", tz="UTC")
    ahead = pd.DataFrame({"kwh_predicted": np.ones(24)}, index=ahead_index)

    class Result:
        meter_id = "home-001"

        def __init__(self) -> None:
            self.forecast = forecast
            self.next_hours = ahead

    fig = views.plot_forecast(Result())
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["actual", "predicted", "ahead"]
    assert ax.get_title() == "Forecast vs actual, home-001"
    # only the last 7 days of the test period are drawn
    assert len(ax.get_lines()[0].get_xdata()) == 24 * 7
    assert views.plot_forecast(forecast, days=None).axes[0].get_lines()[0].get_xdata().size == 240
    with pytest.raises(ValueError, match=r"actual=\.\.\. and predicted"):
        views.plot_forecast(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    with pytest.raises(TypeError):
        views.plot_forecast(42)


def test_queue_counts_plot_two_panels_per_queue() -> None:
    history = pd.DataFrame(
        {
            "time": [s(0), s(2), s(0), s(2)],
            "queue": ["q1", "q1", "q2", "q2"],
            "scheduled": [1, 0, 0, 0],
            "late": [0, 1, 0, 2],
            "completed": [0, 0, 1, 1],
        }
    )
    fig = views.plot_queue_counts(history)
    assert [ax.get_title() for ax in fig.axes] == [
        "queue q1: Late runs (their own scale)",
        "queue q1: runs per state",
        "queue q2: Late runs (their own scale)",
        "queue q2: runs per state",
    ]
    late = next(line for line in fig.axes[2].get_lines() if line.get_label() == "Late")
    assert list(late.get_ydata()) == [0, 2]
    assert "Late" not in [line.get_label() for line in fig.axes[3].get_lines()]
    assert "no refreshes yet" in [
        t.get_text() for t in views.plot_queue_counts(history[:0]).axes[0].texts
    ]


def test_queue_counts_plot_keeps_late_visible_beside_a_schedules_stock() -> None:
    """Lesson 04's queue: 68 future Scheduled runs, then one and two Late runs.

    On one shared axis one Late run would sit at 1/68 of the height, on the floor.
    """
    history = pd.DataFrame(
        {
            "time": [s(i) for i in range(6)],
            "queue": "energy_usage",
            "scheduled": [68, 68, 67, 67, 66, 66],
            "late": [0, 0, 1, 1, 2, 1],
            "pending": 0,
            "running": 0,
            "completed": [0, 0, 0, 1, 1, 2],
            "failed": 0,
        }
    )
    fig = views.plot_queue_counts(history)
    late_ax, others_ax = fig.axes
    late = next(line for line in late_ax.get_lines() if line.get_label() == "Late")
    # One Late run is drawn at least a third of the way up its panel, two at least half.
    bottom, top = late_ax.get_ylim()
    heights = [(y - bottom) / (top - bottom) for y in late.get_ydata()]
    assert heights[2] > 1 / 3 and max(heights) > 1 / 2, heights
    scheduled = next(line for line in others_ax.get_lines() if line.get_label() == "Scheduled")
    assert max(scheduled.get_ydata()) == 68


def test_style_runs_highlights_late_rows(runs: pd.DataFrame) -> None:
    html = views.style_runs(runs).to_html()
    assert html.count("background-color: #fde0c5") == 1  # one CSS rule for the Late row
    assert "row3" in html.split("background-color: #fde0c5")[0]


def test_runs_with_workers_reads_many_runs_without_hitting_the_api_limit(prefect_server):
    """A queue with more than 50 runs once made read_logs ask for > 200 rows (HTTP 422)."""
    import uuid

    from energy_flows.views import runs_with_workers, workers_from_run_logs

    runs = pd.DataFrame({"id": [str(uuid.uuid4()) for _ in range(60)], "name": "r"})
    table = runs_with_workers(runs)
    assert len(table) == 60 and "worker" in table.columns
    # the fallback (the workers' log lines) asks for many runs at once, too
    assert workers_from_run_logs(list(runs["id"])) == {}
