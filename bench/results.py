"""The record of one measured figure, its target, and how the figures are shown and stored.

Every figure is measured against a baseline taken in the same run on the same servers; `ratio`
is value / baseline. A target applies either to the ratio or to the value itself.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Comparison = Literal["<=", ">="]


@dataclass(frozen=True)
class Target:
    of: Literal["ratio", "value"]
    comparison: Comparison
    bound: float

    def met_by(self, value: float | None, ratio: float | None) -> bool:
        measured = ratio if self.of == "ratio" else value
        if measured is None or math.isnan(measured):
            return False
        return measured <= self.bound if self.comparison == "<=" else measured >= self.bound

    def __str__(self) -> str:
        return f"{self.of} {self.comparison} {self.bound:g}"


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    met: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def figure(name: str, value: float, unit: str, baseline: float | None,
           target: Target) -> Result:
    """A measured figure; the ratio and whether the target is met are computed, never given."""
    ratio = value / baseline if baseline not in (None, 0) else None
    return Result(name=name, value=value, unit=unit, baseline=baseline, ratio=ratio,
                  target=str(target), met=target.met_by(value, ratio))


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in (0, 100]): the smallest sample with at least p% of
    the samples at or below it. Always one of the samples, never interpolated."""
    if not samples:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    ordered = sorted(samples)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 0.01 <= abs(value) < 100_000:
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.3g}"


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table (readable in a terminal too)."""
    header = ["figure", "value", "unit", "baseline", "ratio", "target", "met"]
    rows = [[r.name, _number(r.value), r.unit, _number(r.baseline), _number(r.ratio), r.target,
             "yes" if r.met else "NO"] for r in results]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in
                                 zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def write_json(results: Sequence[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_json() for r in results], indent=2) + "\n")
