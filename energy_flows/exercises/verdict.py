"""What a self-check says: what is right, and what is missing (a hint, never the answer)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from energy_flows.vocabulary import BAD_COLOUR, OK_COLOUR

__all__ = ["CheckResult", "not_answered"]


@dataclass
class CheckResult:
    """The verdict of one self-check: what is right and what is missing."""

    exercise: str
    right: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing."""
        return not self.missing

    def expect(self, good: bool, missing: str, right: str | None = None) -> bool:
        """Note ``right`` (when given) if ``good``, else the hint ``missing``; return ``good``."""
        if good:
            if right is not None:
                self.right.append(right)
        else:
            self.missing.append(missing)
        return good

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        head = f"✓ {self.exercise}: done, well done!" if self.ok else f"✗ {self.exercise}: not yet."
        lines = [head, *(f"  ✓ {r}" for r in self.right), *(f"  ✗ {m}" for m in self.missing)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = OK_COLOUR if self.ok else BAD_COLOUR
        head = "done, well done!" if self.ok else "not yet."
        items = [f"<li style='color:{OK_COLOUR}'>✓ {html.escape(r)}</li>" for r in self.right]
        items += [f"<li style='color:{BAD_COLOUR}'>✗ {html.escape(m)}</li>" for m in self.missing]
        return (
            f"<div><b style='color:{colour}'>{'✓' if self.ok else '✗'} "
            f"{html.escape(self.exercise)}: {head}</b>"
            f"<ul style='margin:2px 0'>{''.join(items)}</ul></div>"
        )


def not_answered(check: CheckResult, variable: str, hint: str) -> CheckResult:
    """The exercise's variable is still None: say what kind of answer goes there."""
    check.missing.append(
        f"`{variable}` is still None: replace None with your answer ({hint}) and run the cell again."
    )
    return check
