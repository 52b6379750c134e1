"""Frozen records passed between layers: projects, cost lines and samples.

This module owns the shapes only. Parsing lives in `openai_api`, turning records into
samples in `metrics`, and rendering in `exposition`. Times are integers: Unix seconds
for API records, milliseconds for samples, never float seconds times 1000.
"""

from __future__ import annotations

from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name: hashable, so a series can be a dict key."""


@dataclass(frozen=True, slots=True)
class Project:
    """One OpenAI project as the project list returns it."""

    id: str
    name: str | None
    archived: bool = False


@dataclass(frozen=True, slots=True)
class CostLine:
    """One cost result: a day's amount for one project, line item and currency.

    `day` is the bucket's start in Unix seconds (00:00 UTC). `project_id` and
    `line_item` are `""` where the API reports null.
    """

    day: int
    project_id: str
    line_item: str
    currency: str
    value: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample to push: metric name, sorted labels, value and timestamp in ms."""

    name: str
    labels: Labels
    value: float
    ts_ms: int


def labels_of(pairs: dict[str, str]) -> Labels:
    """Return `pairs` as sorted, hashable label pairs."""
    return tuple(sorted(pairs.items()))
