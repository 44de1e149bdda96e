"""Zombie runs: Prefect's own backstop for runs whose worker died without a word.

When a worker dies (SIGKILL, a laptop lid closed, a machine lost), the flow
runs it started stay Running in the server for good: Prefect learns that a
run ended only from the run's own process or from its worker, and both are
gone. For the workers the package starts, its services layer notices within
seconds and marks their runs Crashed. For any other worker (a
``prefect worker start`` in a terminal, another machine) this module switches
on what Prefect's "detect zombie flows" guide recommends:

* every flow run sends a ``prefect.flow-run.heartbeat`` event every
  ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (30 in the classroom, see
  :mod:`energy_flows.settings`);
* an automation, run by the server's triggers service, marks a run Crashed
  when, after a heartbeat, neither another heartbeat nor a final state
  (Completed, Failed, Cancelled, Crashed) arrives within ``within`` seconds.

:func:`ensure_zombie_automation` installs that automation, once: it finds it
by name, and a second call changes nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from energy_flows.errors import OrchestrationError
from energy_flows.orchestration.common import client, html_table

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

#: The automation's name, as in Prefect's guide; :func:`ensure_zombie_automation` finds it by it.
AUTOMATION_NAME = "Crash zombie flows"

#: The message of the Crashed state the automation sets (Prefect's guide's words).
CRASH_MESSAGE = "Flow run marked as crashed due to missing heartbeats."

#: The event a live flow run sends, and the events after which it sends none.
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
FINAL_EVENTS = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
)

#: A run is a zombie after this many heartbeats missed in a row (the guide: 30 s and 90 s).
MISSED_HEARTBEATS = 3

#: ``within`` must leave a healthy run at least this many heartbeat periods: a
#: heartbeat that arrives a little late must never crash a live run.
MIN_HEARTBEATS_WITHIN = 1.5

#: Prefect never sends flow-run heartbeats more often than this (seconds).
PREFECT_MIN_HEARTBEAT = 30


@dataclass(frozen=True)
class ZombieAutomation:
    """The automation that marks silent runs Crashed, as a learner sees it.

    ``within_seconds``: how long after a run's last heartbeat it is marked
    Crashed (plus up to 5 s, how often the server evaluates such automations).
    ``heartbeat_seconds``: how often flow runs started with this process's
    settings send a heartbeat. ``changes`` says what the call that returned
    it did: ``("created",)``, ``("within 60 s → 90 s",)`` or ``()`` (nothing).
    """

    name: str
    within_seconds: float
    enabled: bool
    heartbeat_seconds: int
    id: str
    changes: tuple[str, ...] = ()

    def sentence(self) -> str:
        """What the automation does, in one sentence."""
        return (
            f"A flow run that sent a heartbeat and then, for {self.within_seconds:g} s, neither "
            f"another one (runs send one every {self.heartbeat_seconds} s) nor a final state, "
            "is marked Crashed."
        )

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "DISABLED"
        changes = ", ".join(self.changes) or "none (already as asked)"
        return (
            f"Automation {self.name!r} ({state}): {self.sentence()}\n"
            f"  crash message: {CRASH_MESSAGE!r}\n"
            f"  changes: {changes}"
        )

    def _repr_html_(self) -> str:
        return html_table(
            f"Automation {self.name!r}",
            {
                "enabled": self.enabled,
                "marks a run Crashed after": f"{self.within_seconds:g} s without a heartbeat",
                "flow runs send a heartbeat every": f"{self.heartbeat_seconds} s",
                "crash message": CRASH_MESSAGE,
                "changes": self.changes or "none (already as asked)",
            },
            note=self.sentence(),
        )


def heartbeat_seconds() -> int:
    """How often flow runs started with this process's settings send a heartbeat (seconds).

    ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` (Prefect never goes below 30 s).
    Raises :class:`~energy_flows.errors.OrchestrationError` when heartbeats are off.
    """
    from prefect.settings import get_current_settings

    value = get_current_settings().flows.heartbeat_frequency
    if value is None:
        raise OrchestrationError(
            "Flow runs send no heartbeats here (PREFECT_FLOWS_HEARTBEAT_FREQUENCY is unset), "
            "so an automation could not tell a live run from a dead one. Set it, e.g. "
            "`export PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30` (the classroom does), and try again."
        )
    return max(int(value), PREFECT_MIN_HEARTBEAT)


def _within_seconds(within: float | dt.timedelta | None, heartbeat: int) -> float:
    if within is None:
        return float(MISSED_HEARTBEATS * heartbeat)
    if isinstance(within, dt.timedelta):
        value = within.total_seconds()
    elif isinstance(within, int | float) and not isinstance(within, bool):
        value = float(within)
    else:
        raise OrchestrationError(
            f"within must be a number of seconds or a datetime.timedelta; got {within!r}."
        )
    least = MIN_HEARTBEATS_WITHIN * heartbeat
    if not math.isfinite(value) or value < least:
        raise OrchestrationError(
            f"within={within!r} is too short: flow runs send a heartbeat every {heartbeat} s, "
            f"so a live run could go {heartbeat} s without one and be marked Crashed. "
            f"Use at least {least:g} s; {MISSED_HEARTBEATS * heartbeat} s "
            f"({MISSED_HEARTBEATS} missed heartbeats) is Prefect's recommendation."
        )
    return value


def _wanted(name: str, within: float) -> AutomationCore:
    """The automation of Prefect's "detect zombie flows" guide, with our ``within``."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import (
        AutomationCore,
        EventTrigger,
        Posture,
        ResourceSpecification,
    )

    return AutomationCore(
        name=name,
        description=(
            f"Marks a flow run Crashed when it has sent no heartbeat for {within:g} s and "
            "has not finished: its process or its worker died. Installed by energy-flows "
            "(ensure_zombie_automation)."
        ),
        enabled=True,
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *FINAL_EVENTS},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=within),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, name=None, message=CRASH_MESSAGE, force=False
            )
        ],
    )


def _trigger_key(trigger: Any) -> Any:
    """What makes two triggers the same (their generated ids aside).

    ``after``, ``expect`` and ``for_each`` are sets: dumped, their order is
    the set's iteration order, which differs between two equal sets built in
    another order (the one read back from the server). Lists are compared sorted.
    """
    return _unordered(trigger.model_dump(mode="json", exclude={"id"}))


def _unordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _unordered(item) for key, item in value.items()}
    if isinstance(value, list):
        return sorted((_unordered(item) for item in value), key=repr)
    return value


def _actions_key(actions: Any) -> Any:
    return [action.model_dump(mode="json") for action in actions]


def ensure_zombie_automation(
    within: float | dt.timedelta | None = None, name: str = AUTOMATION_NAME
) -> ZombieAutomation:
    """Install, once, the automation that marks runs of dead workers Crashed; return it.

    Prefect's "detect zombie flows" recipe: a flow run that sent a heartbeat
    and then, for ``within`` seconds, neither another heartbeat nor a final
    state is set Crashed with the message :data:`CRASH_MESSAGE`. Needs the
    server's triggers service (on in the classroom) and flow runs that send
    heartbeats (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, 30 s in the classroom).

    Idempotent: the automation is found by ``name``; a second call changes
    nothing, a call with another ``within`` updates it, a disabled one is
    enabled again, and duplicates (two kernels creating it at once) are removed.

    Args:
        within: seconds (or a ``timedelta``) without a heartbeat after which a
            run counts as dead; default three heartbeats (90 s in the
            classroom). At least one and a half heartbeats, so that a live run
            is never marked Crashed.
        name: the automation's name.

    Returns:
        A :class:`ZombieAutomation`; ``changes`` says what this call did.
    """
    heartbeat = heartbeat_seconds()
    seconds = _within_seconds(within, heartbeat)
    wanted = _wanted(name, seconds)
    with client() as c:
        # Most recently updated first (the server's order): that one is kept.
        found = [a for a in c.read_automations_by_name(name) if a.name == name]
        changes: list[str] = []
        if not found:
            automation_id = c.create_automation(wanted)
            return ZombieAutomation(
                name, seconds, True, heartbeat, str(automation_id), ("created",)
            )
        keep, extra = found[0], found[1:]
        for duplicate in extra:
            c.delete_automation(duplicate.id)
        if extra:
            changes.append(f"removed {len(extra)} duplicate(s)")
        differs: list[str] = []
        old_within = getattr(keep.trigger, "within", None)
        if _trigger_key(keep.trigger) != _trigger_key(wanted.trigger):
            if isinstance(old_within, dt.timedelta) and old_within.total_seconds() != seconds:
                differs.append(f"within {old_within.total_seconds():g} s → {seconds:g} s")
            else:
                differs.append("trigger reset to Prefect's recipe")
        if _actions_key(keep.actions) != _actions_key(wanted.actions):
            differs.append("action reset to Prefect's recipe")
        if not keep.enabled:
            differs.append("enabled again")
        if differs:
            c.update_automation(keep.id, wanted)
        changes += differs
        return ZombieAutomation(name, seconds, True, heartbeat, str(keep.id), tuple(changes))
