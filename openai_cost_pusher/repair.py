"""`verify --repair`: delete the cost series stored wrong, then push them again.

Deduplication keeps the largest value at a timestamp, so a daily cost revised
downwards can never be overwritten, and `delete_series` (VictoriaMetrics 1.112) takes
no time range. The cure is to delete the whole series and push its whole history again
from the Admin API. This module plans that from a `verify.Verdict`, renders the plan,
and carries it out; `cli` decides whether to act (`--yes`) and verifies again after.

- **Which series.** The cost rows verify found `different` (either way) or `missing`
  are compared again line item by line item, with verify's newest-name rule. Each
  `openai_daily_cost` series (project id, line item, currency, with verify's extra
  labels and demo label) that is wrong on one of those days is repaired, under every
  `project` name it is stored with (a renamed project, or one pushed once as
  `unknown`). Series that carry labels besides those (another pusher's) are left
  alone. Token totals and costs the API no longer reports for a whole project and day
  are not repaired: only shown.
- **Per-key costs.** Where verify found a project's per-key sum of a day (`api_keys`
  rows) `different` or `missing`, every `openai_daily_cost_by_api_key` series of that
  project and currency is deleted, under every name, and pushed again from the API
  (grouped by project and API key, from 2025-12-06 on), its keys named from the
  project's key list, or from the deleted series for keys no longer listed.
- **Which days.** As far back as VictoriaMetrics keeps data: its `-retentionPeriod`
  from `/flags` (a single node lists it when set), else its default of 31 days, or
  `--repair-days N` (the N complete UTC days before today), but no further back than
  the oldest day the deleted series hold (older days were never there), up to today.
- **In which order.** Fetch those days from the Admin API first, so that a failing API
  deletes nothing; then delete; then push under each project's current name; then wait
  until the pushed samples can be read back.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from openai_cost_pusher.errors import CostPusherError
from openai_cost_pusher.exposition import render_chunks
from openai_cost_pusher.metrics import (
    DAILY_COST,
    DAILY_COST_BY_API_KEY,
    NO_API_KEY,
    UNKNOWN,
    CostKey,
    CostTable,
    add_cost_lines,
    add_key_cost_lines,
    cost_samples,
    key_cost_samples,
    project_label,
)
from openai_cost_pusher.model import ApiKey, CostLine, Labels, Sample
from openai_cost_pusher.openai_api import COSTS_BY_KEY_GROUP_BY, KEY_COSTS_FROM
from openai_cost_pusher.push import PushStats
from openai_cost_pusher.verify import KEYS_WHAT, Row, Verdict, newest_totals
from openai_cost_pusher.vmread import Series, VmReader
from openai_cost_pusher.window import DAY, Window, day_of

DEFAULT_RETENTION_DAYS = 31
"""VictoriaMetrics' `-retentionPeriod` default: 1 month, which it counts as 31 days."""
MAX_REPAIR_DAYS = 36_600
VISIBLE_WITHIN_S = 30.0
"""How long `apply_repair` waits for the pushed samples to be readable."""
SHOWN_DAYS = 5
"""Wrong days listed per series in the plan; the rest are counted."""

_RETENTION_FLAG = re.compile(r'^-retentionPeriod="?([^"\s]*)"?', re.MULTILINE)
_PROXY_FLAG = re.compile(r"^-(?:auth\.config|remoteWrite\.url)=", re.MULTILINE)
"""vmauth answers `/flags` itself and vmagent's are its own: neither tells the
storage's retention."""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)?$")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": DAY,
    "w": 7 * DAY,
    "y": 365 * DAY,
    None: DEFAULT_RETENTION_DAYS * DAY,  # no suffix: months
}


class RepairIncomplete(CostPusherError):
    """The series were deleted, but pushing them again failed."""


class Source(Protocol):
    """Where the costs are fetched again: the Admin API or the demo organization."""

    def fetch_costs(
        self,
        start: int,
        end: int,
        rejected: None = None,
        group_by: Sequence[str] = ...,
    ) -> Iterator[list[CostLine]]:
        """Yield the cost lines of `[start, end)` page by page, grouped by
        `group_by` (default: project and line item)."""
        ...

    def fetch_api_keys(self, project_id: str) -> list[ApiKey]:
        """Return every API key (id and name) of one project."""
        ...


class Sink(Protocol):
    """Where the samples go: `push.VmClient`."""

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Push every chunk; raise on failure."""
        ...


# ---------------------------------------------------------------------- retention


@dataclass(frozen=True, slots=True)
class Retention:
    """The oldest day VictoriaMetrics keeps (00:00 UTC, Unix seconds), and how that
    was found, for the plan."""

    start: int
    source: str
    known: bool


def parse_retention_period(value: str) -> float:
    """Return `-retentionPeriod` in seconds: a number with a suffix (`ms`, `s`, `m`,
    `h`, `d`, `w`, `y` of 365 days) or without one, counted in months of 31 days."""
    match = _DURATION.match(value.strip())
    if match is None or float(match.group(1)) <= 0:
        msg = f"cannot read -retentionPeriod={value!r}"
        raise ValueError(msg)
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def find_retention(
    flags: str | None, root: str, now: float, repair_days: int | None = None
) -> Retention:
    """Return how far back VictoriaMetrics keeps data, as of `now`.

    `repair_days` (`--repair-days`) wins: that many complete UTC days before today.
    Else `-retentionPeriod` from the `/flags` text of a single node, or its default
    (31 days) where `/flags` does not list it. Behind vmauth, vmagent or a cluster's
    vmselect the storage's flags cannot be read: the default is assumed, and the plan
    says so. The start is the first whole day inside the retention.
    """
    today = day_of(now)
    if repair_days is not None:
        return Retention(
            today - repair_days * DAY, f"--repair-days {repair_days}", True
        )
    cluster = "/select/" in urlsplit(root).path + "/"
    if flags is None or cluster or _PROXY_FLAG.search(flags):
        return Retention(
            _first_day_within(now, DEFAULT_RETENTION_DAYS * DAY),
            f"{DEFAULT_RETENTION_DAYS} days, VictoriaMetrics' default: its "
            "-retentionPeriod cannot be read behind this URL (vmauth, vmagent or a "
            "cluster); pass --repair-days N if it keeps more",
            False,
        )
    match = _RETENTION_FLAG.search(flags)
    if match is None:
        return Retention(
            _first_day_within(now, DEFAULT_RETENTION_DAYS * DAY),
            f"{DEFAULT_RETENTION_DAYS} days, VictoriaMetrics' default (/flags lists "
            "no -retentionPeriod)",
            True,
        )
    try:
        seconds = parse_retention_period(match.group(1))
    except ValueError as exc:
        return Retention(
            _first_day_within(now, DEFAULT_RETENTION_DAYS * DAY),
            f"{DEFAULT_RETENTION_DAYS} days ({exc}); pass --repair-days N",
            False,
        )
    return Retention(
        _first_day_within(now, seconds),
        f'-retentionPeriod="{match.group(1)}" in /flags',
        True,
    )


def _first_day_within(now: float, seconds: float) -> int:
    """Return the first 00:00 UTC after `now - seconds` (and not before 1970)."""
    return max(0, day_of(now - seconds) + DAY)


# ---------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class SeriesRepair:
    """One cost series to delete and push again.

    `key` is project id, line item and currency; `project` the label it is pushed
    under (its current name); `stored` the `project` names it is stored with now;
    `first_day` the oldest day stored under any of them (None: nothing stored);
    `problems` the wrong days (`Row.what` is the line item); `match` the
    `delete_series` selector: exactly these series, whatever their `project`.
    """

    key: CostKey
    project: str
    stored: tuple[str, ...]
    first_day: int | None
    problems: tuple[Row, ...]
    match: str


@dataclass(frozen=True, slots=True)
class KeyRepair:
    """The per-key cost series of one project and currency, to delete and push again.

    `names` maps each stored key id to the `api_key` name it is stored with (for keys
    gone from the key list); `series` counts the stored series; `first_day` is the
    oldest day they hold; `problems` the wrong days; `match` the `delete_series`
    selector, whatever their `project` and `api_key` names.
    """

    project_id: str
    currency: str
    project: str
    names: Mapping[str, str]
    series: int
    first_day: int | None
    problems: tuple[Row, ...]
    match: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What `verify --repair` would do: the series, the days `[start, end)` pushed
    again, the retention that bounds them, the verify window the problems were found
    in, and the rows found wrong that no repair covers (`left`); `keyed` the per-key
    series to repair."""

    series: tuple[SeriesRepair, ...]
    start: int
    end: int
    retention: Retention
    window: Window
    left: tuple[Row, ...]
    keyed: tuple[KeyRepair, ...] = ()

    @property
    def empty(self) -> bool:
        """Return whether the plan repairs nothing."""
        return not self.series and not self.keyed

    @property
    def days(self) -> int:
        """Return how many days are pushed again."""
        return (self.end - self.start) // DAY


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def series_match(
    key: CostKey, labels: Mapping[str, str], absent: Iterable[str] = ()
) -> str:
    """Return the selector of one cost series under every `project` name.

    `labels` are verify's (extra labels, `demo`); an empty value matches an absent
    label (`project_id=""` for unattributed costs). Each name in `absent` must be
    absent, which keeps out series that carry more labels than ours.
    """
    project_id, line_item, currency = key
    pairs = {
        **labels,
        "project_id": project_id,
        "line_item": line_item,
        "currency": currency,
    }
    pairs.update((name, "") for name in absent if name not in pairs)
    matchers = [f"__name__={_quote(DAILY_COST)}", 'project!=""']
    matchers += [f"{k}={_quote(v)}" for k, v in sorted(pairs.items())]
    return "{" + ",".join(matchers) + "}"


def own_label_names(key: CostKey, labels: Mapping[str, str]) -> frozenset[str]:
    """Return the label names a series of ours carries (empty values are absent)."""
    project_id, line_item, currency = key
    pairs = {
        **labels,
        "project_id": project_id,
        "line_item": line_item,
        "currency": currency,
    }
    return frozenset({"__name__", "project", *(k for k, v in pairs.items() if v)})


def line_problems(
    verdict: Verdict, moving_from: int | None = None
) -> tuple[dict[CostKey, list[Row]], list[Row]]:
    """Return the wrong days of each cost series, and the rows no repair covers.

    The cost rows verify found `different` or `missing` are compared again per line
    item (a row's `what` is then the line item), by the same rules; a series is
    wrong where its line item is not `ok` (or `arriving`) on such a day. Where no
    line item stands out (every one within the tolerance, the sum not), each line
    item of that project, currency and day counts as wrong.
    """
    wrong: set[tuple[int, str, str]] = set()
    left: list[Row] = []
    for row in verdict.rows:
        if row.status in ("ok", "arriving"):
            continue
        if row.what.startswith("cost ") and row.status in ("different", "missing"):
            wrong.add((row.day, row.project_id, row.what[len("cost ") :]))
        else:
            left.append(row)
    parts: dict[tuple[int, str, tuple[str, str]], list[float]] = {}
    for line in verdict.costs:
        if (line.day, line.project_id, line.currency) in wrong:
            cell = (line.day, line.project_id, (line.currency, line.line_item))
            parts.setdefault(cell, []).append(line.value)
    api = {key: math.fsum(values) for key, values in parts.items()}
    vm = {
        key: value
        for key, value in newest_totals(verdict.series, _currency_and_item).items()
        if (key[0], key[1], key[2][0]) in wrong
    }
    found: dict[CostKey, list[Row]] = {}
    rows_of: dict[tuple[int, str, str], list[tuple[CostKey, Row]]] = {}
    for day, pid, (currency, item) in sorted(set(api) | set(vm)):
        k = (day, pid, (currency, item))
        moving = moving_from is not None and day >= moving_from
        row = Row(day, pid, item, api.get(k), vm.get(k), moving)
        rows_of.setdefault((day, pid, currency), []).append(
            ((pid, item, currency), row)
        )
    for day_pid_currency in sorted(wrong):
        pairs = rows_of.get(day_pid_currency, [])
        bad = [(key, row) for key, row in pairs if row.status not in ("ok", "arriving")]
        for key, row in bad or pairs:
            found.setdefault(key, []).append(row)
    return found, left


def _currency_and_item(metric: Mapping[str, str]) -> tuple[str, str] | None:
    if metric.get("__name__") != DAILY_COST:
        return None
    return (metric.get("currency", ""), metric.get("line_item", ""))


def plan_repair(
    verdict: Verdict,
    reader: VmReader,
    labels: Mapping[str, str],
    window: Window,
    *,
    now: float,
    repair_days: int | None = None,
    moving_from: int | None = None,
) -> Plan:
    """Return the repair plan for what `verdict` found in `window` (see the module
    notes). Reads VictoriaMetrics: the stored series of each wrong cost series (all
    of their history) and `/flags`; changes nothing."""
    found, left = line_problems(verdict, moving_from)
    now_ms = int(now * 1000)
    keyed = _key_repairs(verdict, left, reader, labels, now_ms)
    left = [row for row in left if not _key_problem(row)]
    repairs: list[SeriesRepair] = []
    for key in sorted(found):
        stored = reader.export(series_match(key, labels), 0, now_ms)
        own = own_label_names(key, labels)
        ours = [(lbl, pts) for lbl, pts in stored if {k for k, _ in lbl} == own]
        others = {k for lbl, _ in stored for k, _ in lbl} - own
        first = min((ts for _, pts in ours for ts in pts), default=None)
        repairs.append(
            SeriesRepair(
                key=key,
                project=project_label(key[0], verdict.names),
                stored=tuple(sorted({dict(lbl).get("project", "") for lbl, _ in ours})),
                first_day=None if first is None else day_of(first / 1000),
                problems=tuple(found[key]),
                match=series_match(key, labels, sorted(others)),
            )
        )
    retention = find_retention(
        reader.flags() if (repairs or keyed) and repair_days is None else None,
        reader.root,
        now,
        repair_days,
    )
    oldest = min(
        [r.first_day for r in repairs if r.first_day is not None]
        + [row.day for r in repairs for row in r.problems]
        + [k.first_day for k in keyed if k.first_day is not None]
        + [row.day for k in keyed for row in k.problems],
        default=retention.start,
    )
    start = min(max(retention.start, oldest), day_of(now))
    return Plan(
        tuple(repairs),
        start,
        day_of(now) + DAY,
        retention,
        window,
        tuple(left),
        tuple(keyed),
    )


def _key_problem(row: Row) -> bool:
    """Return whether `row` is a per-key sum found wrong (repaired, not just shown)."""
    return row.what.startswith(f"{KEYS_WHAT} ") and row.status in (
        "different",
        "missing",
    )


def _key_repairs(
    verdict: Verdict,
    rows: Sequence[Row],
    reader: VmReader,
    labels: Mapping[str, str],
    now_ms: int,
) -> list[KeyRepair]:
    """Return the per-key series to repair: every one of each project and currency
    whose per-key sum verify found wrong on some day (reads what they hold)."""
    wrong: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if _key_problem(row):
            currency = row.what[len(KEYS_WHAT) + 1 :]
            wrong.setdefault((row.project_id, currency), []).append(row)
    out = []
    for (project_id, currency), problems in sorted(wrong.items()):
        pairs = {**labels, "project_id": project_id, "currency": currency}
        matchers = [f"__name__={_quote(DAILY_COST_BY_API_KEY)}", 'project!=""']
        matchers += [f"{k}={_quote(v)}" for k, v in sorted(pairs.items())]
        match = "{" + ",".join(matchers) + "}"
        stored = reader.export(match, 0, now_ms)
        names = {
            dict(lbl).get("api_key_id", ""): dict(lbl).get("api_key", "")
            for lbl, _ in stored
        }
        first = min((ts for _, pts in stored for ts in pts), default=None)
        out.append(
            KeyRepair(
                project_id,
                currency,
                project_label(project_id, verdict.names),
                {
                    k: v
                    for k, v in names.items()
                    if k and v not in (UNKNOWN, NO_API_KEY)
                },
                len(stored),
                None if first is None else day_of(first / 1000),
                tuple(problems),
                match,
            )
        )
    return out


def _iso(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day))


def _problem(row: Row) -> str:
    if row.vm is None:
        return f"{_iso(row.day)} missing in VictoriaMetrics ({row.api:.6f} in the API)"
    if row.api is None:
        return f"{_iso(row.day)} no longer in the API ({row.vm:.6f} stored)"
    if row.vm > row.api:
        change = "lower in the API, revised downwards"
    elif row.vm < row.api:
        change = "higher in the API"
    else:
        change = "equal, but the day's sum differs"
    return f"{_iso(row.day)} {change} ({row.vm:.6f} stored, {row.api:.6f} in the API)"


def render_plan(plan: Plan) -> str:
    """Return the plan as text: one line per series, then what happens to them."""
    if not plan.series:
        lines = [
            f"repair: nothing to repair in the {plan.window.days} days compared "
            f"({_iso(plan.window.start)} to {_iso(plan.window.end - DAY)})"
        ]
    else:
        lines = [
            f"repair: {len(plan.series)} openai_daily_cost series wrong in the "
            f"{plan.window.days} days compared ({_iso(plan.window.start)} to "
            f"{_iso(plan.window.end - DAY)}):"
        ]
    for fix in plan.series:
        pid, item, currency = fix.key
        who = f"{fix.project} ({pid})" if pid else fix.project
        shown = [_problem(row) for row in fix.problems[:SHOWN_DAYS]]
        more = len(fix.problems) - SHOWN_DAYS
        if more > 0:
            shown.append(f"and {more} more days")
        stored = (
            f"stored as {', '.join(fix.stored)} since {_iso(fix.first_day)}"
            if fix.first_day is not None
            else "not stored at all"
        )
        lines.append(f"  {who}, line item {_quote(item)}, {currency}: {stored}")
        lines.extend(f"    {text}" for text in shown)
    if plan.series:
        lines.append(
            f"each is deleted with its whole history, under every project name "
            f"(delete_series takes no time range), and its {plan.days} days from "
            f"{_iso(plan.start)} to {_iso(plan.end - DAY)} are pushed again from the "
            "Admin API under the project's current name"
        )
        kept = (
            f"VictoriaMetrics keeps data from {_iso(plan.retention.start)} "
            f"({plan.retention.source})"
        )
        if plan.start > plan.retention.start:
            kept += f"; these series hold nothing before {_iso(plan.start)}"
        lines.append(kept)
        lost = [
            fix
            for fix in plan.series
            if fix.first_day is not None and fix.first_day < plan.start
        ]
        if lost:
            lines.append(
                f"WARNING: {len(lost)} of these series hold days before "
                f"{_iso(plan.start)}, which are deleted and not pushed again: "
                "VictoriaMetrics drops samples older than its retention; if it keeps "
                "more, pass --repair-days N"
            )
    for keyed in plan.keyed:
        pid = keyed.project_id
        who = f"{keyed.project} ({pid})" if pid else keyed.project
        lines.append(
            f"  {who}, {DAILY_COST_BY_API_KEY}, {keyed.currency}: {keyed.series} "
            "series deleted and pushed again"
        )
        lines.extend(f"    {_problem(row)}" for row in keyed.problems[:SHOWN_DAYS])
    if plan.left:
        lines.append(
            f"not repaired: {len(plan.left)} other values (token totals, or costs "
            "the API no longer reports for that project and day); see the table"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- acting


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `apply_repair` did: stored series deleted (every project name of
    each repaired series), samples pushed and how, and whether every pushed sample
    of the verify window could be read back in time."""

    deleted: int
    samples: int
    push: PushStats
    visible: bool


def apply_repair(
    plan: Plan,
    source: Source,
    reader: VmReader,
    sink: Sink,
    *,
    labels: Mapping[str, str],
    names: Mapping[str, str | None],
    stop: threading.Event,
    visible_within_s: float = VISIBLE_WITHIN_S,
) -> Outcome:
    """Carry the plan out: fetch, delete, push, wait until readable.

    The days are fetched whole before anything is deleted, so a failing Admin API
    changes nothing. Samples carry `labels`' non-empty values as extra labels (the
    pusher's, and `demo="true"` for the demo) and `metrics.project_label` of the
    current project list, exactly as the pusher pushes them.
    """
    keys = {fix.key for fix in plan.series}
    table: CostTable = {}
    for page in source.fetch_costs(plan.start, plan.end):
        add_cost_lines(
            table,
            (ln for ln in page if (ln.project_id, ln.line_item, ln.currency) in keys),
        )
    extra: Labels = tuple(sorted((k, v) for k, v in labels.items() if v))
    samples = list(cost_samples(table, names, extra))
    samples += _key_samples(plan, source, names, extra)
    reader.delete_series(
        [fix.match for fix in plan.series] + [fix.match for fix in plan.keyed]
    )
    try:
        stats = sink.push(render_chunks(samples)) if samples else PushStats()
    except CostPusherError as exc:
        msg = (
            f"{exc}; the {len(plan.series)} series were deleted but not pushed "
            f"again: run `openai-cost-pusher verify --repair --yes --days "
            f"{max(1, plan.days - 1)}` to push their days from {_iso(plan.start)}"
        )
        raise RepairIncomplete(msg) from exc
    visible = _wait_visible(plan, reader, table, stop, visible_within_s)
    deleted = sum(len(fix.stored) for fix in plan.series)
    deleted += sum(fix.series for fix in plan.keyed)
    return Outcome(deleted, len(samples), stats, visible)


def _key_samples(
    plan: Plan,
    source: Source,
    names: Mapping[str, str | None],
    extra: Labels,
) -> list[Sample]:
    """Return the per-key samples of the plan's projects and currencies, fetched from
    the API for the plan's days (from 2025-12-06 on), named as the pusher names them:
    from each project's key list, else the name the deleted series had."""
    wanted = {(fix.project_id, fix.currency) for fix in plan.keyed}
    start = max(plan.start, KEY_COSTS_FROM)
    if not wanted or start >= plan.end:
        return []
    table: CostTable = {}
    for page in source.fetch_costs(start, plan.end, None, COSTS_BY_KEY_GROUP_BY):
        add_key_cost_lines(
            table, (ln for ln in page if (ln.project_id, ln.currency) in wanted)
        )
    key_names: dict[str, str] = {}
    for fix in plan.keyed:
        key_names.update(fix.names)
    for project_id in sorted({pid for pid, _ in wanted if pid}):
        key_names.update((k.id, k.name) for k in source.fetch_api_keys(project_id))
    return list(key_cost_samples(table, names, key_names, extra))


def _wait_visible(
    plan: Plan,
    reader: VmReader,
    table: CostTable,
    stop: threading.Event,
    within_s: float,
) -> bool:
    """Wait until the pushed days of the verify window can be read back.

    VictoriaMetrics answers a push before the samples are searchable (a second or
    two); `verify` right after would see them missing.
    """
    window = plan.window
    want = {
        fix.match: sum(1 for day, _ in table[fix.key].items() if day in window)
        for fix in plan.series
        if fix.key in table
    }
    start_ms, end_ms = window.start * 1000, window.end * 1000 - 1
    deadline = time.monotonic() + within_s
    while True:
        pending = {
            match: n
            for match, n in want.items()
            if n and _count(reader.export(match, start_ms, end_ms)) < n
        }
        if not pending:
            return True
        if time.monotonic() > deadline or stop.wait(0.5):
            return False
        want = pending


def _count(series: Sequence[Series]) -> int:
    return sum(len(points) for _, points in series)


def render_outcome(plan: Plan, outcome: Outcome) -> str:
    """Return one line saying what `apply_repair` did."""
    readable = (
        "verifying again"
        if outcome.visible
        else "not all of it is readable yet; verifying again"
    )
    return (
        f"repair: deleted {outcome.deleted} stored series ({len(plan.series)} cost "
        f"series under every project name), pushed {outcome.samples} samples "
        f"({plan.days} days from {_iso(plan.start)} to {_iso(plan.end - DAY)}); "
        f"{readable}"
    )
