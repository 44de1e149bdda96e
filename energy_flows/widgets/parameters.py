"""Form fields typed from a flow's signature: what DeploymentBuilder shows for its parameters."""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

__all__ = ["ParameterField", "parameter_fields"]


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(annotation, False)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


@dataclass
class ParameterField:
    """One flow parameter in the form: its widget and how to read a value from it."""

    name: str
    annotation: Any
    default: Any
    widget: w.Widget
    kind: str  # "bool", "int", "float", "str", "choice", "json"
    optional: bool = False
    doc: str = ""

    def value(self) -> Any:
        """The parameter value the widget holds (raises ValueError for bad JSON)."""
        raw = self.widget.value
        if self.kind == "json":
            text = str(raw).strip()
            if not text:
                return None if self.optional or self.default is None else self.default
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"parameter '{self.name}': {text!r} is not valid JSON ({exc.msg})"
                ) from exc
        if self.kind == "str" and self.optional and raw == "":
            return None
        return raw

    def set(self, value: Any) -> None:
        """Put ``value`` in the widget, as a learner would type it (JSON for ``kind="json"``)."""
        if self.kind == "json":
            self.widget.value = "" if value is None else json.dumps(value, default=str)
        elif self.kind == "str":
            self.widget.value = "" if value is None else str(value)
        else:
            self.widget.value = value


def parameter_fields(fn: Callable[..., Any]) -> dict[str, ParameterField]:
    """Form fields typed from a function's signature (a flow's ``.fn``).

    ``bool`` → checkbox, ``int`` → integer box, ``float`` → number box,
    ``str`` → text, ``Literal[...]`` → dropdown; anything else (lists,
    dates, optional numbers) → a text box that takes JSON.
    """
    fn = getattr(fn, "fn", fn)
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError):
        signature = inspect.signature(fn)
    fields: dict[str, ParameterField] = {}
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation, optional = _unwrap_optional(param.annotation)
        default = None if param.default is inspect.Parameter.empty else param.default
        description = name.replace("_", " ")
        style = {"description_width": "10em"}
        layout = w.Layout(width="28em")
        common = {"description": description, "style": style, "layout": layout}
        kind = "json"
        if annotation is bool and default is not None:
            widget: w.Widget = w.Checkbox(value=bool(default), indent=False, **common)
            kind = "bool"
        elif annotation is int and not optional:
            widget = w.IntText(value=int(default or 0), **common)
            kind = "int"
        elif annotation is float and not optional:
            widget = w.FloatText(value=float(default or 0.0), **common)
            kind = "float"
        elif annotation is str:
            widget = w.Text(value="" if default is None else str(default), **common)
            kind = "str"
        elif typing.get_origin(annotation) is typing.Literal:
            options = list(typing.get_args(annotation))
            widget = w.Dropdown(
                options=options, value=default if default in options else options[0], **common
            )
            kind = "choice"
        else:
            text = "" if default is None else json.dumps(default, default=str)
            widget = w.Text(value=text, placeholder="JSON, empty = default", **common)
        fields[name] = ParameterField(name, annotation, default, widget, kind, optional)
    return fields
