"""DeploymentBuilder: a form that deploys the energy flow, checking every field as you type."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import ipywidgets as w

from energy_flows.errors import OrchestrationError
from energy_flows.markup import Markup, bad, cell, element, ok
from energy_flows.vocabulary import DEFAULT_DEPLOYMENT, DEFAULT_POOL, DEFAULT_QUEUE
from energy_flows.widgets.base import SnapshotDisplay, button
from energy_flows.widgets.cron import explain_cron
from energy_flows.widgets.parameters import parameter_fields

__all__ = ["DeploymentBuilder"]


class DeploymentBuilder(SnapshotDisplay):
    """A form that deploys the energy flow, checking every field as you type.

    Fields: the deployment name; the flow's parameters (typed from its
    signature); the schedule (an interval in seconds, a cron, or none); the
    work pool and queue; paused. The message under the form says what is
    wrong (a bad cron says why) before anyone clicks Deploy; Deploy calls
    :func:`energy_flows.orchestration.deploy_energy_flow` (or ``deploy`` for
    another flow) and shows the deployment or the error in place.

    The form judges its fields with the very checks Deploy runs
    (:func:`energy_flows.orchestration.deployments.deployment_problems`,
    which includes the flow's own parameter rules): "ready to deploy" means
    the deployment would be created, and ``days = -5`` is refused here as it
    would be there. Only what the server knows (does the work pool exist?)
    waits for the click. Changing any field clears the result or error of
    the previous Deploy: it described another form.

    Under the form it shows, for what the fields hold, the same deployment
    written with Prefect's own API (:meth:`prefect_code`: ``flow.from_source``
    and ``.deploy``) and as a ``prefect.yaml`` entry (:meth:`prefect_yaml`),
    ready to copy. Deploy does the same, after its checks.

    From code (what tests do)::

        b = DeploymentBuilder()
        b.set(name="every-5-min", schedule="cron", cron="*/5 * * * *",
              parameters={"days": 7})
        b.errors            # [] when everything is valid
        info = b.deploy()   # raises OrchestrationError when not

    ``b.deploy_button.click()`` does the same as the button.
    """

    def __init__(
        self,
        flow: Any = None,
        *,
        name: str = DEFAULT_DEPLOYMENT,
        schedule: str = "interval",
        interval: float = 60,
        cron: str = "*/5 * * * *",
        work_pool: str = DEFAULT_POOL,
        work_queue: str = DEFAULT_QUEUE,
        paused: bool = False,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        if flow is None:
            from energy_flows.flows import energy_usage_pipeline

            flow = energy_usage_pipeline
            self._uses_default_flow = True
        else:
            self._uses_default_flow = False
        self.flow = flow
        self.result: Any = None
        self.last_error: str | None = None
        style = {"description_width": "10em"}

        def wide() -> w.Layout:
            return w.Layout(width="28em")

        self.name_field = w.Text(
            value=name, description="deployment name", style=style, layout=wide()
        )
        self.parameter_fields = parameter_fields(flow)
        self.schedule_field = w.ToggleButtons(
            options=[("interval", "interval"), ("cron", "cron"), ("none", "none")],
            value=schedule,
            description="schedule",
            style={"description_width": "10em", "button_width": "6em"},
        )
        self.interval_field = w.FloatText(
            value=interval, description="every (seconds)", style=style, layout=wide()
        )
        self.cron_field = w.Text(
            value=cron, description="cron", placeholder="*/5 * * * *", style=style, layout=wide()
        )
        self.pool_field = w.Text(
            value=work_pool, description="work pool", style=style, layout=wide()
        )
        self.queue_field = w.Text(
            value=work_queue, description="work queue", style=style, layout=wide()
        )
        self.paused_field = w.Checkbox(value=paused, description="paused", indent=False)
        self.deploy_button = button(
            "Deploy", "rocket", "Create or update the deployment", "primary"
        )
        self.message = w.HTML()
        self.output = w.HTML()
        self.equivalent = w.HTML()
        self.deploy_button.on_click(lambda _: self._on_click())
        flow_name = getattr(flow, "name", getattr(flow, "__name__", "flow"))
        params_box = w.VBox(
            [f.widget for f in self.parameter_fields.values()],
            layout=w.Layout(margin="0 0 0 2em"),
        )
        #: The fields below the parameters: schedule, where the runs go, paused.
        self.settings_fields = [
            self.schedule_field,
            self.interval_field,
            self.cron_field,
            self.pool_field,
            self.queue_field,
            self.paused_field,
        ]
        super().__init__(
            [
                w.HTML(element("b", "Deploy the flow ", element("code", flow_name))),
                self.name_field,
                w.HTML(element("i", "parameters") if self.parameter_fields else ""),
                params_box,
                *self.settings_fields,
                w.HBox([self.deploy_button, self.message]),
                self.output,
                self.equivalent,
            ]
        )
        self.add_class("energy-flows-deployment-builder")
        for widget in self._inputs():
            widget.observe(lambda _change: self._on_form_change(), names="value")
        if parameters:
            self.set(parameters=parameters)
        self._validate_and_show()

    def _inputs(self) -> list[w.Widget]:
        parameters = [f.widget for f in self.parameter_fields.values()]
        return [self.name_field, *self.settings_fields, *parameters]

    # -- from code
    def set(
        self,
        *,
        name: str | None = None,
        schedule: str | None = None,
        interval: float | None = None,
        cron: str | None = None,
        work_pool: str | None = None,
        work_queue: str | None = None,
        paused: bool | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> DeploymentBuilder:
        """Set fields as a learner would type them (validation runs as it would)."""
        if schedule is not None and schedule not in ("interval", "cron", "none"):
            raise OrchestrationError(
                f"schedule must be 'interval', 'cron' or 'none', not {schedule!r}."
            )
        for key in parameters or {}:
            if key not in self.parameter_fields:
                raise OrchestrationError(
                    f"The flow has no parameter {key!r}; its parameters are "
                    f"{', '.join(self.parameter_fields) or 'none'}."
                )
        fields = [
            (self.name_field, name),
            (self.schedule_field, schedule),
            (self.interval_field, None if interval is None else float(interval)),
            (self.cron_field, cron),
            (self.pool_field, work_pool),
            (self.queue_field, work_queue),
            (self.paused_field, None if paused is None else bool(paused)),
        ]
        for field, value in fields:
            if value is not None:
                field.value = value
        for key, value in (parameters or {}).items():
            self.parameter_fields[key].set(value)
        return self

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters that differ from the flow's defaults (what the deployment stores).

        Raises ValueError when a field cannot be read (JSON that does not parse).
        """
        values, unreadable = self._readable_parameters()
        if unreadable:
            raise ValueError(unreadable[0])
        return values

    def _readable_parameters(self) -> tuple[dict[str, Any], list[str]]:
        """Like :attr:`parameters`, but skipping fields that cannot be read (and saying why)."""
        values: dict[str, Any] = {}
        unreadable: list[str] = []
        for name, f in self.parameter_fields.items():
            try:
                value = f.value()
            except ValueError as exc:
                unreadable.append(str(exc))
                continue
            if value != f.default:
                values[name] = value
        return values, unreadable

    def _deploy_arguments(self, parameters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The deployment name and the keyword arguments Deploy passes on, read from the fields."""
        kind = self.schedule_field.value
        schedule: dict[str, Any] = {}
        if kind == "interval":
            schedule["interval"] = self.interval_field.value
        elif kind == "cron":
            schedule["cron"] = self.cron_field.value.strip()
        options = dict(
            parameters=parameters,
            work_pool=self.pool_field.value.strip(),
            work_queue=self.queue_field.value.strip(),
            paused=self.paused_field.value,
            **schedule,
        )
        return self.name_field.value.strip(), options

    @property
    def errors(self) -> list[str]:
        """What is wrong with the fields now, one sentence each ([] when ready).

        The sentences are those of
        :func:`~energy_flows.orchestration.deployments.deployment_problems`,
        the checks Deploy runs; a bad cron is explained field by field
        (:func:`explain_cron`), and a parameter whose JSON cannot be read
        says so.
        """
        from energy_flows.orchestration.deployments import deployment_problems

        parameters, unreadable = self._readable_parameters()
        name, options = self._deploy_arguments(parameters)
        problems = []
        for key, error in deployment_problems(self.flow, name, **options).items():
            text = str(error)
            if key == "schedule" and "cron" in options:
                text = explain_cron(options["cron"]) or text
            problems.append(text)
        return problems + unreadable

    def schedule_words(self) -> str:
        """The schedule in words: "every 30 s", "cron '0 6 * * *'", or no schedule."""
        kind = self.schedule_field.value
        if kind == "interval":
            return f"every {self.interval_field.value:g} s"
        if kind == "cron":
            return f"cron '{self.cron_field.value}'"
        return "no schedule (runs start only when triggered)"

    def describe(self) -> str:
        """One line: what Deploy would create."""
        schedule = self.schedule_words()
        try:
            params = json.dumps(self.parameters, default=str, sort_keys=True)
        except ValueError:
            params = "(invalid)"
        return (
            f"deployment '{self.name_field.value}': {schedule}, pool '{self.pool_field.value}', "
            f"queue '{self.queue_field.value}', paused {'yes' if self.paused_field.value else 'no'}"
            f", parameters {params}"
        )

    def _flow_source(self) -> tuple[str, str, str]:
        """(module, folder expression, file entrypoint) of the form's flow, for the code shown."""
        import inspect
        from pathlib import Path

        module = getattr(getattr(self.flow, "fn", None), "__module__", "") or "flows"
        function = getattr(getattr(self.flow, "fn", None), "__name__", "flow")
        try:
            file_name = Path(inspect.getsourcefile(self.flow.fn) or "flows.py").name
        except TypeError:
            file_name = "flows.py"
        return module, file_name, function

    def prefect_code(self) -> str:
        """What the form deploys, written with Prefect's own API (a notebook cell, ready to copy).

        ``flow.from_source(folder, "file.py:function")`` loads the flow as a
        worker will; ``.deploy(...)`` registers it. ``await``: in a notebook
        both are asynchronous.
        """
        name, options = self._deploy_arguments(_safe_parameters(self))
        module, file_name, function = self._flow_source()
        lines = [
            "import importlib",
            "from pathlib import Path",
            "",
            "from prefect import flow",
            "",
            f"module = importlib.import_module({_py(module)})",
            "remote_flow = await flow.from_source(",
            "    source=str(Path(module.__file__).parent),",
            f'    entrypoint="{file_name}:{function}",',
            ")",
            "await remote_flow.deploy(",
            f"    name={_py(name)},",
            f"    work_pool_name={_py(options['work_pool'])},",
            f"    work_queue_name={_py(options['work_queue'])},",
        ]
        if "interval" in options:
            lines.append(f"    interval={options['interval']:g},")
        if "cron" in options:
            lines.append(f"    cron={_py(options['cron'])},")
        if options["parameters"]:
            lines.append(f"    parameters={_py(options['parameters'])},")
        if options["paused"]:
            lines.append("    paused=True,")
        lines.append(")")
        return "\n".join(lines)

    def prefect_yaml(self) -> str:
        """What the form deploys, as an entry of ``prefect.yaml`` (for ``prefect deploy``)."""
        import yaml

        name, options = self._deploy_arguments(_safe_parameters(self))
        module, _, function = self._flow_source()
        entry: dict[str, Any] = {"name": name, "entrypoint": f"{module}.{function}"}
        if options["parameters"]:
            entry["parameters"] = options["parameters"]
        entry["work_pool"] = {
            "name": options["work_pool"],
            "work_queue_name": options["work_queue"],
        }
        if "interval" in options:
            interval = options["interval"]
            entry["schedules"] = [
                {"interval": int(interval) if interval == int(interval) else interval}
            ]
        elif "cron" in options:
            entry["schedules"] = [{"cron": options["cron"]}]
        if options["paused"]:
            entry["paused"] = True
        text = yaml.safe_dump({"deployments": [entry]}, sort_keys=False, default_flow_style=False)
        return str(text).rstrip()

    def deploy(self) -> Any:
        """Create or update the deployment from the fields and return its info.

        Raises :class:`~energy_flows.errors.OrchestrationError` (and shows it
        under the form) when a field is invalid or Prefect refuses.
        """
        problems = self.errors
        if problems:
            error = OrchestrationError(
                "The deployment was not created: "
                + " ".join(problems)
                + " Fix the field, then deploy again."
            )
            self._show_failure(error)
            raise error
        from energy_flows import orchestration as orch

        name, options = self._deploy_arguments(self.parameters)
        self.output.value = element("i", "deploying…")
        try:
            if self._uses_default_flow:
                info = orch.deploy_energy_flow(name, **options)
            else:
                info = orch.deploy(self.flow, name, **options)
        except Exception as exc:
            self._show_failure(exc)
            raise
        self.result = info
        self.last_error = None
        shown = Markup(info._repr_html_()) if hasattr(info, "_repr_html_") else str(info)
        self.output.value = element("div", ok("✓ deployed", tag="div"), shown)
        return info

    def _on_click(self) -> None:
        with contextlib.suppress(Exception):  # shown in place by deploy()
            self.deploy()

    def _show_failure(self, exc: BaseException) -> None:
        self.result = None
        self.last_error = str(exc)
        self.output.value = bad("✗ ", str(exc))

    def _on_form_change(self) -> None:
        """A field changed: forget the last Deploy's result or error, then check the form."""
        self.result = None
        self.last_error = None
        self.output.value = ""
        self._validate_and_show()

    def _validate_and_show(self) -> None:
        kind = self.schedule_field.value
        self.interval_field.layout.display = None if kind == "interval" else "none"
        self.cron_field.layout.display = None if kind == "cron" else "none"
        problems = self.errors
        if problems:
            items = [element("li", problem) for problem in problems]
            self.message.value = bad(element("ul", *items, style="margin:0"))
            self.equivalent.value = ""
        else:
            self.message.value = ok("✓ ready to deploy")
            self.equivalent.value = self._equivalent_html()

    def _equivalent_html(self) -> str:
        return element(
            "div",
            element("i", "The same with Prefect's API, in a notebook cell:"),
            element("pre", self.prefect_code()),
            element("i", "The same as an entry of prefect.yaml (then: prefect deploy -n NAME):"),
            element("pre", self.prefect_yaml()),
        )

    # -- display
    def _status_lines(self) -> str:
        """What is wrong with the form, or that it is ready (or deployed)."""
        problems = self.errors
        if problems:
            return "\n".join(f"  ✗ {p}" for p in problems)
        if self.last_error:
            return f"  ✗ {self.last_error}"
        return "  ✓ deployed" if self.result is not None else "  ✓ ready to deploy"

    def snapshot_text(self) -> str:
        """The form as text: what it would deploy, its problems or result, and Prefect's code."""
        text = f"DeploymentBuilder {self.describe()}\n{self._status_lines()}"
        if self.errors:
            return text
        return (
            f"{text}\n\nThe same with Prefect's API, in a notebook cell:\n{self.prefect_code()}"
            f"\n\nThe same as an entry of prefect.yaml:\n{self.prefect_yaml()}"
        )

    def snapshot_html(self) -> str:
        """The form as HTML: a table of its fields, then its message."""
        rows = {
            "deployment name": self.name_field.value,
            **{f"parameter {n}": v for n, v in _safe_parameters(self).items()},
            "schedule": self.schedule_words(),
            "work pool": self.pool_field.value,
            "work queue": self.queue_field.value,
            "paused": "yes" if self.paused_field.value else "no",
        }
        body = [
            element("tr", element("th", key, style="text-align:left"), cell(value))
            for key, value in rows.items()
        ]
        status = self._status_lines()
        return element(
            "div",
            element("b", "DeploymentBuilder"),
            element("table", *body),
            element("pre", status),
            Markup(self._equivalent_html()) if not self.errors else None,
        )


def _py(value: Any) -> str:
    """``value`` as Python source, strings in double quotes (as the lessons write them)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        inner = ", ".join(_py(v) for v in value)
        return (
            f"[{inner}]"
            if isinstance(value, list)
            else f"({inner}{',' if len(value) == 1 else ''})"
        )
    return repr(value)


def _safe_parameters(builder: DeploymentBuilder) -> dict[str, Any]:
    try:
        return builder.parameters
    except ValueError:
        return {}
