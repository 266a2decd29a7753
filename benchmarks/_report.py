"""The shape every benchmark reports in: a printed table and a JSON document.

``{"area": AREA, "figures": [{"name", "value", "unit", "target"}, ...]}``, where
``target`` is a comparison such as ``">= 0.40"`` (or ``None`` for a figure printed for
context, e.g. a peer's rate measured in the same run).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

_COMPARATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure and the target it is held to."""

    name: str
    value: float
    unit: str
    target: str | None = None

    def met(self) -> bool | None:
        """Return whether the value meets the target, or ``None`` without one."""
        if self.target is None:
            return None
        op, _, bound = self.target.strip().partition(" ")
        return bool(_COMPARATORS[op](self.value, float(bound)))


def report(area: str, figures: Sequence[Figure], json_path: Path | None = None) -> dict:
    """Print ``figures`` as a table and write them as JSON to ``json_path`` if given."""
    table = Table(title=f"creditx bench {area}")
    for column in ("figure", "value", "unit", "target", "met"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for fig in figures:
        met = fig.met()
        table.add_row(
            fig.name,
            f"{fig.value:,.4g}" if abs(fig.value) < 1000 else f"{fig.value:,.0f}",
            fig.unit,
            fig.target or "",
            "" if met is None else ("yes" if met else "NO"),
        )
    Console().print(table)
    document = {"area": area, "figures": [asdict(f) for f in figures]}
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=1))
    return document
