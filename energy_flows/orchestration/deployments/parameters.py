"""A deployment's parameters: what the flow's signature accepts, and what its runs would refuse.

Checked at deploy time, so a typo or a value every run would refuse is one
clear sentence now instead of a failed run at every tick of the schedule.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from energy_flows.errors import DataError, OrchestrationError

if TYPE_CHECKING:
    from prefect import Flow

__all__ = ["check_flow_rules", "check_parameters_dict", "validate_parameters"]


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def check_parameters_dict(parameters: object) -> dict[str, Any]:
    """``parameters`` as a new dict (``{}`` for None), or an error that shows what one looks like."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        raise OrchestrationError(
            "parameters must be a dict of parameter names and values, e.g. "
            f"parameters={{'days': 120}}; got {parameters!r}."
        )
    return dict(parameters)


def validate_parameters(flow: Flow, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Check ``parameters`` against the flow's signature; return them as the server stores them.

    Unknown names and values of the wrong type are refused with the list of
    what the flow accepts. Values are converted the way the run will see them
    ("7" for an ``int`` becomes 7) and made JSON-friendly (dates as ISO text).
    """
    import pydantic
    from pydantic_core import to_jsonable_python

    parameters = check_parameters_dict(parameters)
    signature = inspect.signature(flow.fn)
    accepted = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    described = ", ".join(
        f"{n}: {_type_name(p.annotation)}"
        + ("" if p.default is inspect.Parameter.empty else f" = {p.default!r}")
        for n, p in accepted.items()
    )
    unknown = sorted(set(parameters) - set(accepted))
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        raise OrchestrationError(
            f"The flow {flow.name!r} has no parameter {', '.join(map(repr, unknown))}. "
            f"It takes: {described or 'no parameters'}."
        )
    missing = [
        n
        for n, p in accepted.items()
        if p.default is inspect.Parameter.empty and n not in parameters
    ]
    if missing:
        raise OrchestrationError(
            f"The flow {flow.name!r} needs a value for {', '.join(map(repr, missing))} "
            f"(no default). Pass it in parameters=. It takes: {described}."
        )
    hints = _type_hints(flow.fn)
    checked: dict[str, Any] = {}
    for name, value in parameters.items():
        annotation = hints.get(name, inspect.Parameter.empty)
        if annotation is inspect.Parameter.empty or annotation is Any:
            checked[name] = to_jsonable_python(value, fallback=str)
            continue
        try:
            converted = pydantic.TypeAdapter(annotation).validate_python(value)
        except pydantic.ValidationError:
            raise OrchestrationError(
                f"Parameter {name!r} of flow {flow.name!r} must be {_type_name(annotation)}; "
                f"got {value!r} ({type(value).__name__})."
            ) from None
        except Exception:  # an annotation pydantic cannot check: leave it to the run
            converted = value
        checked[name] = to_jsonable_python(converted, fallback=str)
    return checked


def check_flow_rules(flow: Flow, parameters: dict[str, Any]) -> None:
    """Refuse parameters that every run of ``flow`` would refuse, with the run's own sentence.

    A deployment stores default parameters for its runs. If a run of the flow
    refuses them (the package's flows check theirs first thing, with
    :func:`energy_flows.data.check_pipeline_parameters`, then read their data
    with :func:`~energy_flows.data.load_readings`, which allows at most 36525
    ``days``), every scheduled run would fail, one after the other. So the same
    checks run here, at deploy time, on ``parameters`` as
    :func:`validate_parameters` returned them (the flow's own defaults fill in
    the rest). Flows from elsewhere have no such rules: only their signature
    is checked.

    Raises :class:`~energy_flows.errors.OrchestrationError` (like every other
    deploy-time check, so one ``except`` catches them all) whose message holds
    the run's :class:`~energy_flows.errors.DataError` sentence; the
    ``DataError`` is its ``__cause__``.
    """
    from energy_flows.data import check_pipeline_parameters
    from energy_flows.data.loading import check_reading_days
    from energy_flows.flows import energy_usage_batch, energy_usage_pipeline

    if getattr(flow, "fn", None) not in {energy_usage_pipeline.fn, energy_usage_batch.fn}:
        return
    judged = set(inspect.signature(check_pipeline_parameters).parameters) - {"defaults"}
    defaults = {
        name: p.default
        for name, p in inspect.signature(flow.fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    try:
        checked = check_pipeline_parameters(
            **{k: v for k, v in parameters.items() if k in judged}, defaults=defaults
        )
        check_reading_days(checked["days"])  # what the run's ingest step checks next
    except DataError as exc:
        raise OrchestrationError(
            f"The flow {flow.name!r} would refuse every run of this deployment: {exc} "
            "Change that parameter, then deploy again."
        ) from exc


def _type_hints(fn: Any) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {n: p.annotation for n, p in inspect.signature(fn).parameters.items()}
