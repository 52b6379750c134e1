"""`report`: each project's daily spend as the dashboard and the alerts see it.

This module owns the report's numbers and how they are shown:

- daily rows (one per UTC day, project and currency, summed over line items with
  `math.fsum`) built from exported `openai_daily_cost` series (`rows_from_series`) or
  from in-memory cost lines (`rows_from_cost_lines`, for the demo);
- the per-project summary, computed as `deploy/vmalert/openai-cost-rules.yml` does:
  today so far; the baseline, the median of the daily totals of the 7 complete UTC days
  before today that have data (`quantile_over_time(0.5, ...[7d:1d] offset 1d)`); the
  spike ratio today / baseline (none when the baseline is not above 0); month to date
  (UTC calendar month, today included); the month-end forecast, month to date plus the
  7-day sum / 7 times the days left after today; and the same totals per currency for
  the whole organization;
- the text (100 columns, one line per project with a bar of its daily spend), CSV and
  JSON renderings.

Pure: no I/O and no clock. `now` comes in as an argument, and `fetch_report_rows`
reads only through the reader it is given (a `vmread.VmReader`).
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import math
import time
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from openai_cost_pusher.metrics import DAILY_COST, UNATTRIBUTED, project_label
from openai_cost_pusher.model import CostLine, Labels
from openai_cost_pusher.vmread import Series, selector
from openai_cost_pusher.window import DAY, Window, day_of

FORMATS = ("text", "csv", "json")
CSV_HEADER = ("day", "project_id", "project", "currency", "cost")
DEFAULT_DAYS = 14
BASELINE_DAYS = 7
"""Complete UTC days before today that the baseline and the forecast look at."""
TEXT_WIDTH = 100
BLOCKS = "▁▂▃▄▅▆▇█"
NO_COST = "·"
ORGANIZATION = "organization"
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One UTC day's cost of one project in one currency, summed over line items.

    `day` is the day's 00:00 UTC in Unix seconds; `project` is the project's `project`
    label (its newest one, if the project was renamed).
    """

    day: int
    project_id: str
    project: str
    currency: str
    cost: float


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    """What the alerts see of one project in one currency at `now`.

    `history_days` is how many of the 7 complete days before today have data (the
    spike alert needs 3); `total` is the spend over the shown days and `daily` holds
    each shown day's cost, oldest first, None where there is no data.
    """

    project_id: str
    project: str
    currency: str
    today: float
    baseline: float | None
    history_days: int
    ratio: float | None
    month_to_date: float
    forecast: float
    total: float
    daily: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class OrgSummary:
    """The organization's totals in one currency at `now`.

    `daily_avg7d` is the sum of the 7 complete days before today divided by 7 (days
    without spend count as zero), as `openai_cost:org_spend_daily_avg7d:sum`.
    """

    currency: str
    today: float
    daily_avg7d: float
    month_to_date: float
    forecast: float
    total: float
    daily: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one report shows.

    `rows` holds the shown days only, sorted by day, project id and currency;
    `projects` is sorted by spend over the shown days, largest first; `organization`
    by currency.
    """

    now: float
    shown: Window
    rows: tuple[DailyRow, ...]
    projects: tuple[ProjectSummary, ...]
    organization: tuple[OrgSummary, ...]


class Exporter(Protocol):
    """What `fetch_report_rows` reads through: `vmread.VmReader` is one."""

    def export(self, match: str, start_ms: int, end_ms: int) -> list[Series]:
        """Return every series matching `match` with its samples in the range."""
        ...


# ---------------------------------------------------------------------- calendar


def month_start(day: int) -> int:
    """Return 00:00 UTC of the first day of the UTC month that holds `day`."""
    tm = time.gmtime(day)
    return day_of(day) - (tm.tm_mday - 1) * DAY


def days_in_month(day: int) -> int:
    """Return how many days the UTC month that holds `day` has (`days_in_month()`)."""
    tm = time.gmtime(day)
    return calendar.monthrange(tm.tm_year, tm.tm_mon)[1]


def day_of_month(day: int) -> int:
    """Return the UTC day of the month of `day`, 1 to 31 (`day_of_month()`)."""
    return time.gmtime(day).tm_mday


def shown_window(now: float, days: int) -> Window:
    """Return the shown days: the `days` complete UTC days before today, and today."""
    if days < 0:
        msg = f"days: expected 0 or more, got {days}"
        raise ValueError(msg)
    today = day_of(now)
    return Window(today - days * DAY, today + DAY)


def fetch_window(now: float, days: int) -> Window:
    """Return the days a report needs: the shown ones, the 7 days before today for
    the baseline and the forecast, and the month so far."""
    today = day_of(now)
    start = min(
        shown_window(now, days).start, today - BASELINE_DAYS * DAY, month_start(today)
    )
    return Window(start, today + DAY)


# ---------------------------------------------------------------------- rows


def _rank(
    first_last: Mapping[tuple[str, str], tuple[int, int]], pid: str, name: str
) -> tuple[int, int, str]:
    first, last = first_last[(pid, name)]
    return (last, first, name)


def rows_from_series(series: Iterable[Series]) -> list[DailyRow]:
    """Return daily rows from exported `openai_daily_cost` series.

    A day's cost is summed over line items (and any other label but `project`) per
    project id and currency. A project whose `project` label changed keeps one name:
    the newest, the one whose series holds the latest sample (on a tie, the one whose
    series start later). Where series of two names hold the same line item and day,
    only the newest name's value counts, so a rename never counts a day twice. A
    sample not stamped at 00:00 UTC counts for its day, the last one per day winning.
    Samples that are not finite, and series of other metrics, are skipped.
    """
    # series identity without `project` -> name -> day -> (timestamp ms, value)
    groups: dict[Labels, dict[str, dict[int, tuple[int, float]]]] = {}
    first_last: dict[tuple[str, str], tuple[int, int]] = {}
    for labels, points in series:
        metric = dict(labels)
        if metric.get("__name__", DAILY_COST) != DAILY_COST:
            continue
        pid = metric.get("project_id", "")
        name = metric.get("project", "")
        identity = tuple(pair for pair in labels if pair[0] != "project")
        days = groups.setdefault(identity, {}).setdefault(name, {})
        for ts_ms, value in points.items():
            if not math.isfinite(value):
                continue
            day = ts_ms // 1000 // DAY * DAY
            held = days.get(day)
            if held is None or ts_ms >= held[0]:
                days[day] = (ts_ms, value)
            first, last = first_last.get((pid, name), (ts_ms, ts_ms))
            first_last[(pid, name)] = (min(first, ts_ms), max(last, ts_ms))
    newest: dict[str, str] = {}
    for pid, name in first_last:
        if pid not in newest or _rank(first_last, pid, name) > _rank(
            first_last, pid, newest[pid]
        ):
            newest[pid] = name
    parts: dict[tuple[int, str, str], list[float]] = {}
    for identity, by_name in groups.items():
        metric = dict(identity)
        pid, currency = metric.get("project_id", ""), metric.get("currency", "")
        chosen: dict[int, tuple[tuple[int, int, str], float]] = {}
        for name, days in by_name.items():
            if not days:
                continue
            rank = _rank(first_last, pid, name)
            for day, (_, value) in days.items():
                best = chosen.get(day)
                if best is None or rank > best[0]:
                    chosen[day] = (rank, value)
        for day, (_, value) in chosen.items():
            parts.setdefault((day, pid, currency), []).append(value)
    return _rows(parts, lambda pid: (newest.get(pid) or pid) if pid else UNATTRIBUTED)


def rows_from_cost_lines(
    lines: Iterable[CostLine], names: Mapping[str, str | None]
) -> list[DailyRow]:
    """Return daily rows from cost lines and project names (id to name), as the
    pusher would push them: `project` is `metrics.project_label` of the id."""
    parts: dict[tuple[int, str, str], list[float]] = {}
    for line in lines:
        key = (day_of(line.day), line.project_id, line.currency)
        parts.setdefault(key, []).append(line.value)
    return _rows(parts, lambda pid: project_label(pid, names))


def _rows(
    parts: Mapping[tuple[int, str, str], list[float]], name_of: Callable[[str], str]
) -> list[DailyRow]:
    return sorted(
        (
            DailyRow(day, pid, name_of(pid), currency, math.fsum(values))
            for (day, pid, currency), values in parts.items()
        ),
        key=_row_key,
    )


def _row_key(row: DailyRow) -> tuple[int, str, str]:
    return (row.day, row.project_id, row.currency)


def fetch_report_rows(
    reader: Exporter, labels: Mapping[str, str], start: int, end: int
) -> list[DailyRow]:
    """Read the `openai_daily_cost` series that carry `labels` and return the daily
    rows of the UTC days `[start, end)` (Unix seconds at 00:00 UTC).

    `labels` filters like `verify`'s: the extra labels, and `demo` = `"true"` for the
    demo's series or `""` for series without the label.
    """
    series = reader.export(selector(DAILY_COST, labels), start * 1000, end * 1000 - 1)
    return [row for row in rows_from_series(series) if start <= row.day < end]


# ---------------------------------------------------------------------- summary


def median(values: Sequence[float]) -> float | None:
    """Return the 0.5 quantile as VictoriaMetrics' `quantile_over_time` computes it
    (linear interpolation between the middle values), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = 0.5 * (len(ordered) - 1)
    lower = math.floor(rank)
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


@dataclass(frozen=True, slots=True)
class _Totals:
    today: float
    history: list[float]
    month_to_date: float
    forecast: float
    total: float
    daily: tuple[float | None, ...]


def _totals(days: Mapping[int, float], now: float, shown: Window) -> _Totals:
    today = day_of(now)
    history = [
        days[d] for d in range(today - BASELINE_DAYS * DAY, today, DAY) if d in days
    ]
    first = month_start(today)
    month_to_date = math.fsum(v for d, v in days.items() if first <= d <= today)
    left = days_in_month(today) - day_of_month(today)
    forecast = month_to_date + (math.fsum(history) / BASELINE_DAYS) * left
    daily = tuple(days.get(d) for d in range(shown.start, shown.end, DAY))
    total = math.fsum(v for v in daily if v is not None)
    return _Totals(days.get(today, 0.0), history, month_to_date, forecast, total, daily)


def _daily(
    rows: Iterable[DailyRow], key: Callable[[DailyRow], K]
) -> dict[K, dict[int, list[float]]]:
    out: dict[K, dict[int, list[float]]] = {}
    for row in rows:
        out.setdefault(key(row), {}).setdefault(row.day, []).append(row.cost)
    return out


def summarize_projects(
    rows: Iterable[DailyRow], now: float, shown: Window
) -> list[ProjectSummary]:
    """Return one summary per project id and currency found in `rows`, sorted by
    spend over the `shown` days (largest first), then project id and currency."""
    rows = list(rows)
    names = {row.project_id: row.project for row in rows}
    out = []
    for (pid, currency), by_day in _daily(
        rows, lambda r: (r.project_id, r.currency)
    ).items():
        t = _totals({d: math.fsum(v) for d, v in by_day.items()}, now, shown)
        baseline = median(t.history)
        ratio = t.today / baseline if baseline is not None and baseline > 0 else None
        out.append(
            ProjectSummary(
                project_id=pid,
                project=names[pid],
                currency=currency,
                today=t.today,
                baseline=baseline,
                history_days=len(t.history),
                ratio=ratio,
                month_to_date=t.month_to_date,
                forecast=t.forecast,
                total=t.total,
                daily=t.daily,
            )
        )
    out.sort(key=lambda s: (-s.total, s.project_id, s.currency))
    return out


def summarize_organization(
    rows: Iterable[DailyRow], now: float, shown: Window
) -> list[OrgSummary]:
    """Return the organization's totals per currency, sorted by currency."""
    out = []
    for currency, by_day in sorted(_daily(rows, lambda r: r.currency).items()):
        t = _totals({d: math.fsum(v) for d, v in by_day.items()}, now, shown)
        out.append(
            OrgSummary(
                currency=currency,
                today=t.today,
                daily_avg7d=math.fsum(t.history) / BASELINE_DAYS,
                month_to_date=t.month_to_date,
                forecast=t.forecast,
                total=t.total,
                daily=t.daily,
            )
        )
    return out


def build_report(rows: Iterable[DailyRow], now: float, days: int) -> Report:
    """Return the report at `now` over `days` complete days plus today.

    `rows` should cover `fetch_window(now, days)`; rows after today are ignored.
    """
    shown = shown_window(now, days)
    kept = sorted((r for r in rows if r.day <= day_of(now)), key=_row_key)
    return Report(
        now=now,
        shown=shown,
        rows=tuple(r for r in kept if r.day in shown),
        projects=tuple(summarize_projects(kept, now, shown)),
        organization=tuple(summarize_organization(kept, now, shown)),
    )


# ---------------------------------------------------------------------- rendering


def _iso(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day))


def render_csv(report: Report) -> str:
    """Return `day,project_id,project,currency,cost` rows, `cost` as `repr(float)`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in report.rows:
        writer.writerow(
            (_iso(row.day), row.project_id, row.project, row.currency, repr(row.cost))
        )
    return buffer.getvalue()


def render_json(report: Report) -> str:
    """Return the rows, the project summaries and the organization totals as JSON."""
    doc = {
        "from": _iso(report.shown.start),
        "to": _iso(report.shown.end - DAY),
        "now": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.now)),
        "rows": [
            {
                "day": _iso(r.day),
                "project_id": r.project_id,
                "project": r.project,
                "currency": r.currency,
                "cost": r.cost,
            }
            for r in report.rows
        ],
        "projects": [
            {
                "project_id": p.project_id,
                "project": p.project,
                "currency": p.currency,
                "today": p.today,
                "baseline": p.baseline,
                "history_days": p.history_days,
                "ratio": p.ratio,
                "month_to_date": p.month_to_date,
                "forecast": p.forecast,
                "total": p.total,
            }
            for p in report.projects
        ],
        "organization": [
            {
                "currency": o.currency,
                "today": o.today,
                "daily_avg7d": o.daily_avg7d,
                "month_to_date": o.month_to_date,
                "forecast": o.forecast,
                "total": o.total,
            }
            for o in report.organization
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def cells(text: str) -> int:
    """Return how many terminal columns `text` takes (wide East Asian letters 2,
    combining marks 0)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _fit(text: str, width: int) -> str:
    """Return `text` cut with `…` to at most `width` columns, padded to `width`."""
    text = _printable(text)
    if cells(text) > width:
        kept = ""
        for ch in text:
            if cells(kept + ch) > width - 1:
                break
            kept += ch
        text = kept + "…"
    return text + " " * (width - cells(text))


def _amount(value: float | None, width: int) -> str:
    """Return `value` in at most `width` characters: 2 decimals where they fit."""
    if value is None:
        return "-"
    for decimals in (2, 1, 0):
        text = f"{value:.{decimals}f}"
        if len(text) <= width:
            return text
    for scale, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")):
        text = f"{value / scale:.1f}{suffix}"
        if len(text) <= width:
            return text
    return f"{value:.0e}"[:width]


def _ratio(value: float | None, width: int) -> str:
    return "-" if value is None else _amount(value, width - 1) + "x"


def bar(values: Sequence[float | None]) -> str:
    """Return one block character per value, scaled to the largest; `·` where a day
    has no cost (no data, zero or negative)."""
    top = max((v for v in values if v is not None), default=0.0)
    out = []
    for value in values:
        if value is None or value <= 0 or top <= 0:
            out.append(NO_COST)
        else:
            level = math.ceil(value / top * len(BLOCKS)) - 1
            out.append(BLOCKS[max(0, min(len(BLOCKS) - 1, level))])
    return "".join(out)


_NUMBERS = (
    ("today", 9),
    ("baseline", 9),
    ("ratio", 6),
    ("month", 10),
    ("forecast", 10),
    ("cur", 4),
)
_MIN_NAME = 14


def render_text(report: Report, width: int = TEXT_WIDTH) -> str:
    """Return the report as lines of at most `width` terminal columns.

    One line per project and currency, largest spend over the shown days first: the
    name (cut to fit), a bar of its daily spend scaled to its own largest day (the
    last days that fit when there are more than columns), today so far, baseline,
    ratio, month to date, forecast and currency; then one organization line per
    currency and a legend.
    """
    fixed = sum(w for _, w in _NUMBERS) + len(_NUMBERS) + 1  # one space between
    shown_days = report.shown.days
    bar_width = max(1, min(shown_days, width - fixed - _MIN_NAME))
    name_width = max(1, width - fixed - bar_width)
    first, last = report.shown.start, report.shown.end - DAY
    clock = time.strftime("%H:%M", time.gmtime(report.now))
    lines = [
        _cut(
            f"OpenAI daily cost per project, {_iso(first)} to {_iso(last)} UTC "
            f"({_iso(last)} so far, as of {clock} UTC)",
            width,
        )
    ]
    if bar_width < shown_days:
        lines.append(_cut(f"(bars: the last {bar_width} days)", width))

    def line(name: str, bar_text: str, numbers: Sequence[str]) -> str:
        cols = [_fit(name, name_width), _fit(bar_text, bar_width)]
        cols += [
            text[:w].ljust(w) if label == "cur" else text.rjust(w)
            for (label, w), text in zip(_NUMBERS, numbers, strict=True)
        ]
        return " ".join(cols).rstrip()

    lines.append(line("project", "daily"[:bar_width], [label for label, _ in _NUMBERS]))
    ids: dict[str, set[str]] = {}
    for p in report.projects:
        ids.setdefault(p.project, set()).add(p.project_id)
    shared = {name for name, pids in ids.items() if len(pids) > 1}
    lines.extend(
        line(
            _name(p, shared, name_width),
            bar(p.daily[-bar_width:]),
            [
                _amount(p.today, 9),
                _amount(p.baseline, 9),
                _ratio(p.ratio, 6),
                _amount(p.month_to_date, 10),
                _amount(p.forecast, 10),
                p.currency,
            ],
        )
        for p in report.projects
    )
    if not report.projects:
        lines.append("(no openai_daily_cost data for these days)")
    lines.extend(
        line(
            ORGANIZATION,
            bar(o.daily[-bar_width:]),
            [
                _amount(o.today, 9),
                "-",
                "-",
                _amount(o.month_to_date, 10),
                _amount(o.forecast, 10),
                o.currency,
            ],
        )
        for o in report.organization
    )
    lines.extend(
        _cut(text, width)
        for text in (
            f"daily: oldest to today, scaled per line ({NO_COST} no cost). "
            "ratio: today / baseline.",
            "baseline: median of the 7 days before today that have data. "
            "month: UTC month to date.",
            "forecast: month + (sum of the 7 days before today) / 7 x days left in "
            "the month after today.",
        )
    )
    return "\n".join(lines) + "\n"


def _name(project: ProjectSummary, shared: set[str], width: int) -> str:
    """Return the project's name; with the project id where names are alike."""
    name = project.project if project.project_id else UNATTRIBUTED
    if name not in shared or not project.project_id:
        return name
    suffix = f" ({_printable(project.project_id)})"
    room = width - cells(suffix)
    if room < 4:
        return name
    return (_fit(name, room).rstrip() if cells(name) > room else name) + suffix


def _cut(text: str, width: int) -> str:
    return _fit(text, width).rstrip() if cells(text) > width else text


def render(report: Report, fmt: str) -> str:
    """Return the report in `fmt`: one of `FORMATS`."""
    if fmt == "csv":
        return render_csv(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "text":
        return render_text(report)
    msg = f"expected one of {', '.join(FORMATS)}, got {fmt!r}"
    raise ValueError(msg)
