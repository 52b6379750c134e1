"""`verify`: compare what VictoriaMetrics holds with what the Admin API says.

For each UTC day of a window and each project it compares the day's cost (summed over
line items, per currency) and the day's tokens (per endpoint and token type, summed
over models), and reports every value that is missing, extra or different beyond a
relative 1e-9. Today's values still grow as late costs arrive: with `moving_from` set,
a value of that day or later that the API reports higher than VictoriaMetrics (or that
VictoriaMetrics lacks) is `arriving`, not a difference; one that went down is still a
difference. A renamed project's day is counted once: where series of two `project`
names hold the same series and day (or bucket), only the newest name's value counts,
by `report.rows_from_series`'s rule. The comparison is pure; `run_verify` does the
fetching.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from openai_cost_pusher.errors import RequestRejected
from openai_cost_pusher.metrics import (
    DAILY_COST,
    DAILY_COST_BY_API_KEY,
    USAGE_TOKENS,
    project_label,
)
from openai_cost_pusher.model import CostLine, Rejected, UsageLine
from openai_cost_pusher.openai_api import (
    COSTS_BY_KEY_GROUP_BY,
    COSTS_GROUP_BY,
    KEY_COSTS_FROM,
)
from openai_cost_pusher.ports import CostSource
from openai_cost_pusher.report import rows_from_series
from openai_cost_pusher.vmread import Series, VmReader, selector
from openai_cost_pusher.window import DAY, Window

TOKEN_KINDS = ("completions", "embeddings", "moderations")
REL_TOLERANCE = 1e-9
W = TypeVar("W", bound=Hashable)
_BUCKET = "__bucket__"
"""A label that keeps each bucket of a usage series apart in `newest_totals`."""


class Source(CostSource, Protocol):
    """The Admin API client or the demo organization: a `ports.CostSource` whose
    costs can also be grouped by API key."""

    def fetch_costs(
        self,
        start: int,
        end: int,
        rejected: list[Rejected] | None = None,
        group_by: Sequence[str] = COSTS_GROUP_BY,
    ) -> Iterator[list[CostLine]]:
        """Yield the cost lines of `[start, end)` page by page, grouped by `group_by`.

        With `rejected` a list, a day with a malformed result is left out and listed
        there instead of failing the fetch.
        """
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
    moving: bool = False

    @property
    def status(self) -> str:
        """Return `ok`, `different`, `missing` (not in VM), `extra` (not in API) or
        `arriving` (a moving day's value that grew since it was pushed)."""
        if self.api is None:
            return "extra"
        if self.vm is None:
            return "arriving" if self.moving else "missing"
        scale = max(abs(self.api), abs(self.vm))
        if abs(self.api - self.vm) <= REL_TOLERANCE * scale:
            return "ok"
        return "arriving" if self.moving and self.api > self.vm else "different"


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


def _what(metric: Mapping[str, str]) -> str | None:
    if metric.get("__name__") == DAILY_COST:
        return f"cost {metric.get('currency', '')}"
    if metric.get("__name__") == USAGE_TOKENS:
        return f"tokens {metric.get('operation', '')} {metric.get('type', '')}"
    return None


def vm_totals(series: Sequence[Series]) -> dict[Key, float]:
    """Return VictoriaMetrics' values per day, project and what.

    Each day counts once per series, whatever the `project` label (see
    `newest_totals`): a renamed project's day is never counted twice.
    """
    return newest_totals(series, _what)


def newest_totals(
    series: Sequence[Series], what_of: Callable[[Mapping[str, str]], W | None]
) -> dict[tuple[int, str, W], float]:
    """Return exported values summed per UTC day, project id and `what_of(labels)`.

    Series for which `what_of` returns None are skipped. Series that differ only in
    `project` (a renamed project, or one pushed once as `unknown`) are one series:
    per day (`openai_daily_cost`) or bucket (any other metric) only the newest name's
    value counts, the name whose series holds the latest sample, as
    `report.rows_from_series` decides (it does the work: each `what` travels as its
    `currency`). Buckets are split apart only for project ids stored under several
    names; the others are summed per day first, which keeps minute buckets cheap.
    Samples that are not finite are skipped.
    """
    names: dict[str, set[str]] = {}
    for labels, _ in series:
        metric = dict(labels)
        names.setdefault(metric.get("project_id", ""), set()).add(
            metric.get("project", "")
        )
    codes: dict[W, str] = {}
    whats: dict[str, W] = {}
    shaped: list[Series] = []
    for labels, points in series:
        metric = dict(labels)
        what = what_of(metric)
        if what is None:
            continue
        code = codes.get(what)
        if code is None:
            code = codes[what] = str(len(codes))
            whats[code] = what
        daily = metric.get("__name__") == DAILY_COST
        renamed = len(names[metric.get("project_id", "")]) > 1
        metric["__name__"] = DAILY_COST
        metric["currency"] = code
        identity = tuple(sorted(metric.items()))
        if daily:
            shaped.append((identity, points))
        elif renamed:  # one series per bucket: the newest name wins per bucket
            shaped.extend(
                ((*identity, (_BUCKET, str(ts))), {ts: value})
                for ts, value in points.items()
            )
        else:
            shaped.append((identity, _per_day(points)))
    return {
        (row.day, row.project_id, whats[row.currency]): row.cost
        for row in rows_from_series(shaped)
    }


KEYS_WHAT = "api_keys"
"""The `what` of the per-key rows: `api_keys <currency>`."""


def key_totals(series: Sequence[Series]) -> dict[Key, float]:
    """Return the stored `openai_daily_cost_by_api_key` values summed per UTC day,
    project id and currency (`what` is `api_keys <currency>`).

    A day of one project, key and currency counts once, whatever its `project` and
    `api_key` names: the newest name pair's value (`report.rows_from_series`' rule),
    so a renamed project or key never counts a day twice.
    """
    shaped: list[Series] = []
    for labels, points in series:
        metric = dict(labels)
        if metric.get("__name__") != DAILY_COST_BY_API_KEY:
            continue
        identity = {
            "__name__": DAILY_COST,
            "project_id": metric.get("project_id", ""),
            "api_key_id": metric.get("api_key_id", ""),
            "currency": metric.get("currency", ""),
            "project": f"{metric.get('project', '')}\x1f{metric.get('api_key', '')}",
        }
        shaped.append((tuple(sorted(identity.items())), points))
    return {
        (row.day, row.project_id, f"{KEYS_WHAT} {row.currency}"): row.cost
        for row in rows_from_series(shaped)
    }


def key_expected(costs: Iterable[CostLine], since: int) -> dict[Key, float]:
    """Return what the per-key rows must sum to: each project's cost per UTC day
    and currency from `since` on (the API's own `openai_daily_cost` total)."""
    totals: dict[Key, list[float]] = {}
    for line in costs:
        if line.day >= since:
            key = (line.day, line.project_id, f"{KEYS_WHAT} {line.currency}")
            _add(totals, key, line.value)
    return _sums(totals)


def _key_data_from(source: Source, window: Window) -> int | None:
    """Return the first day of `window` with per-key costs, or None where the API
    has none for it (before 2025-12-06, or it refuses the grouping)."""
    since = max(window.start, KEY_COSTS_FROM)
    if since >= window.end:
        return None
    try:
        for _ in source.fetch_costs(since, window.end, None, COSTS_BY_KEY_GROUP_BY):
            pass
    except RequestRejected:
        return None
    return since


def _per_day(points: Mapping[int, float]) -> dict[int, float]:
    """Return finite bucket values (ms) summed per UTC day, stamped at 00:00."""
    days: dict[int, list[float]] = {}
    for ts_ms, value in points.items():
        if math.isfinite(value):
            days.setdefault(ts_ms // 1000 // DAY * DAY * 1000, []).append(value)
    return {ts_ms: math.fsum(values) for ts_ms, values in days.items()}


def compare(
    api: Mapping[Key, float],
    vm: Mapping[Key, float],
    moving_from: int | None = None,
) -> list[Row]:
    """Return one row per key of either side, sorted by day, project and what.

    Days from `moving_from` on are still arriving (see the module docstring).
    """
    keys = sorted(set(api) | set(vm))
    return [
        Row(
            day,
            pid,
            what,
            api.get(k),
            vm.get(k),
            moving_from is not None and day >= moving_from,
        )
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
    """The outcome of one verify run: the compared rows, the project names, and
    what was compared (the API's cost lines and the exported series), which
    `repair` looks at line item by line item."""

    rows: list[Row]
    names: Mapping[str, str | None]
    costs: Sequence[CostLine] = ()
    series: Sequence[Series] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Return how many rows have each status."""
        out = {"ok": 0, "arriving": 0, "different": 0, "missing": 0, "extra": 0}
        for row in self.rows:
            out[row.status] += 1
        return out

    @property
    def ok(self) -> bool:
        """Return whether every value matched (or is still arriving) and there was
        something to compare."""
        counts = self.counts
        settled = counts["ok"] + counts["arriving"]
        return counts["ok"] > 0 and settled == len(self.rows)


def run_verify(
    source: Source,
    reader: VmReader,
    window: Window,
    labels: Mapping[str, str],
    *,
    usage: bool,
    moving_from: int | None = None,
    by_api_key: bool = False,
) -> Verdict:
    """Fetch both sides for `window` and compare them (see `compare`).

    With `by_api_key`, each project's stored per-key costs of a day must also sum
    to the project's cost that day (rows `api_keys <currency>`), on the days the API
    has per-key data for: from 2025-12-06 on, unless it refuses the grouping.
    """
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
    api, vm = api_totals(costs, usage_lines), vm_totals(series)
    since = _key_data_from(source, window) if by_api_key else None
    if since is not None:
        api.update(key_expected(costs, since))
        keyed = reader.export(
            selector(DAILY_COST_BY_API_KEY, labels),
            since * 1000,
            window.end * 1000 - 1,
        )
        vm.update(key_totals(keyed))
    rows = compare(api, vm, moving_from)
    return Verdict(rows, names, costs, series)
