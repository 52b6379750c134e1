"""`verify`: compare what VictoriaMetrics holds with what the Admin API says.

For each UTC day of a window and each project it compares the day's cost (summed over
line items, per currency) and the day's tokens (per endpoint and token type, summed
over models), and reports every value that is missing, extra or different beyond a
relative 1e-9. The comparison is pure; `run_verify` does the fetching.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from openai_cost_pusher.metrics import DAILY_COST, USAGE_TOKENS, project_label
from openai_cost_pusher.model import CostLine, Project, UsageLine
from openai_cost_pusher.vmread import Series, VmReader, selector
from openai_cost_pusher.window import DAY, Window

TOKEN_KINDS = ("completions", "embeddings", "moderations")
REL_TOLERANCE = 1e-9


class Source(Protocol):
    """The Admin API client or the demo organization (see `app.CostSource`)."""

    def fetch_projects(self) -> list[Project]:
        """Return every project, archived included."""
        ...

    def fetch_costs(self, start: int, end: int) -> Iterator[list[CostLine]]:
        """Yield the cost lines of `[start, end)` page by page."""
        ...

    def fetch_usage(
        self, kind: str, start: int, end: int, width: str, group_by: Sequence[str]
    ) -> Iterator[list[UsageLine]]:
        """Yield one usage endpoint's lines of `[start, end)` page by page."""
        ...


Key = tuple[int, str, str]
"""UTC day (Unix seconds), project id, and what: `cost usd` or `tokens <op> <type>`."""


@dataclass(frozen=True, slots=True)
class Row:
    """One compared value."""

    day: int
    project_id: str
    what: str
    api: float | None
    vm: float | None

    @property
    def status(self) -> str:
        """Return `ok`, `different`, `missing` (not in VM) or `extra` (not in API)."""
        if self.api is None:
            return "extra"
        if self.vm is None:
            return "missing"
        scale = max(abs(self.api), abs(self.vm))
        return "ok" if abs(self.api - self.vm) <= REL_TOLERANCE * scale else "different"


def _add(totals: dict[Key, list[float]], key: Key, value: float) -> None:
    totals.setdefault(key, []).append(value)


def _sums(totals: dict[Key, list[float]]) -> dict[Key, float]:
    return {key: math.fsum(values) for key, values in totals.items()}


def api_totals(
    costs: Iterable[CostLine], usage: Iterable[UsageLine]
) -> dict[Key, float]:
    """Return the API's values per day, project and what."""
    totals: dict[Key, list[float]] = {}
    for line in costs:
        _add(totals, (line.day, line.project_id, f"cost {line.currency}"), line.value)
    for u in usage:
        project_id = dict(u.dims).get("project_id", "")
        day = u.start // DAY * DAY
        for name, value in u.counters:
            if name.endswith("_tokens"):
                kind = name[: -len("_tokens")]
                _add(totals, (day, project_id, f"tokens {u.operation} {kind}"), value)
    return _sums(totals)


def vm_totals(series: Iterable[Series]) -> dict[Key, float]:
    """Return VictoriaMetrics' values per day, project and what."""
    totals: dict[Key, list[float]] = {}
    for labels, points in series:
        m = dict(labels)
        project_id = m.get("project_id", "")
        if m.get("__name__") == DAILY_COST:
            what = f"cost {m.get('currency', '')}"
        elif m.get("__name__") == USAGE_TOKENS:
            what = f"tokens {m.get('operation', '')} {m.get('type', '')}"
        else:
            continue
        for ts_ms, value in points.items():
            _add(totals, (ts_ms // 1000 // DAY * DAY, project_id, what), value)
    return _sums(totals)


def compare(api: Mapping[Key, float], vm: Mapping[Key, float]) -> list[Row]:
    """Return one row per key of either side, sorted by day, project and what."""
    keys = sorted(set(api) | set(vm))
    return [
        Row(day, pid, what, api.get(k), vm.get(k))
        for k in keys
        for day, pid, what in [k]
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def render_table(
    rows: Iterable[Row], names: Mapping[str, str | None], *, show_all: bool
) -> str:
    """Return the rows as an aligned text table (only problems unless `show_all`)."""
    header = (
        "day",
        "project",
        "what",
        "api",
        "victoriametrics",
        "difference",
        "status",
    )
    lines = [header]
    for row in rows:
        if row.status == "ok" and not show_all:
            continue
        diff = "-" if row.api is None or row.vm is None else f"{row.vm - row.api:+.9g}"
        project = project_label(row.project_id, names)
        label = f"{project} ({row.project_id})" if row.project_id else project
        day = f"{_iso(row.day)}"
        lines.append(
            (day, label, row.what, _number(row.api), _number(row.vm), diff, row.status)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in lines
    )


def _iso(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one verify run."""

    rows: list[Row]
    names: Mapping[str, str | None]

    @property
    def counts(self) -> dict[str, int]:
        """Return how many rows have each status."""
        out = {"ok": 0, "different": 0, "missing": 0, "extra": 0}
        for row in self.rows:
            out[row.status] += 1
        return out

    @property
    def ok(self) -> bool:
        """Return whether every value matched and there was something to compare."""
        counts = self.counts
        return counts["ok"] > 0 and counts["ok"] == len(self.rows)


def run_verify(
    source: Source,
    reader: VmReader,
    window: Window,
    labels: Mapping[str, str],
    *,
    usage: bool,
) -> Verdict:
    """Fetch both sides for `window` and compare them."""
    names = {p.id: p.name for p in source.fetch_projects()}
    costs = [
        line for page in source.fetch_costs(window.start, window.end) for line in page
    ]
    usage_lines: list[UsageLine] = []
    if usage:
        for kind in TOKEN_KINDS:
            for page in source.fetch_usage(
                kind, window.start, window.end, "1d", ["project_id"]
            ):
                usage_lines.extend(page)
    names_regex = f"{DAILY_COST}|{USAGE_TOKENS}" if usage else DAILY_COST
    series = reader.export(
        selector(names_regex, labels), window.start * 1000, window.end * 1000 - 1
    )
    rows = compare(api_totals(costs, usage_lines), vm_totals(series))
    return Verdict(rows, names)
