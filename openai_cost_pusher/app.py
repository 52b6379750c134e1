"""One cycle, the state kept between cycles, and the schedule loop.

A cycle fetches the project list, then each data set (costs, then token usage) whole
for its window, and turns it into samples. It first reads back the days it pushed
before and that are due for confirmation (`landing`): values the store lost are
pushed again. Then it pushes what is new or changed, one UTC day after another, oldest
first, recording each day in the ledger once the store acknowledged it, so a push that
fails part-way leaves whole days behind and the next cycle reaches back to the first
day that did not land. A data set whose fetch fails pushes nothing; the other data set
goes on. The self-monitoring samples are pushed after every cycle, success or not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import schedule

from openai_cost_pusher import __version__
from openai_cost_pusher.errors import (
    CostPusherError,
    PushRejected,
    PushUnavailable,
    Stopped,
)
from openai_cost_pusher.exposition import DEFAULT_CHUNK_BYTES, render, render_chunks
from openai_cost_pusher.health import (
    HEARTBEAT_TICK_S,
    HealthSnapshot,
    Heartbeat,
    live_bound,
)
from openai_cost_pusher.landing import (
    BLIND_CONFIRM_S,
    CONFIRM_AFTER_S,
    Pending,
    held_by,
    read_ranges,
)
from openai_cost_pusher.ledger import Ledger, Revision
from openai_cost_pusher.metrics import (
    DAILY_COST,
    UNKNOWN,
    USAGE_METRICS,
    CostTable,
    SelfStats,
    UsageTable,
    add_cost_lines,
    add_usage_lines,
    cost_samples,
    merge_names,
    self_samples,
    today_samples,
    usage_samples,
)
from openai_cost_pusher.model import (
    CostLine,
    Labels,
    Project,
    Rejected,
    Sample,
    UsageLine,
)
from openai_cost_pusher.openai_api import USAGE_KINDS, USAGE_WIDTHS, usage_group_by
from openai_cost_pusher.push import PRINTED, STORED, UNANSWERED, PushStats
from openai_cost_pusher.vmread import Series, selector
from openai_cost_pusher.window import (
    DAY,
    Window,
    cycle_window,
    day_of,
    first_unpushed,
    horizon,
)

log = logging.getLogger(__name__)

REPAIR_HINT = (
    "; to correct it run `openai-cost-pusher verify --repair --days N` (N reaching "
    "back to this day) to see the plan, then the same command with --yes"
)
DEMO_KEY = "demo"
LEARN_NAMES_DAYS = 400
"""How far back the first cycle looks for project names already stored."""
T = TypeVar("T")

Names = Mapping[str, str | None]


class CostSource(Protocol):
    """Where projects, costs and usage come from: the Admin API or the demo."""

    def fetch_projects(self) -> list[Project]:
        """Return every project, archived included."""
        ...

    def fetch_costs(
        self, start: int, end: int, rejected: list[Rejected] | None = None
    ) -> Iterator[list[CostLine]]:
        """Yield the cost lines of `[start, end)` page by page; raise on failure.

        With `rejected` a list, a day with a malformed result is left out and listed
        there instead of failing the fetch.
        """
        ...

    def fetch_usage(
        self,
        kind: str,
        start: int,
        end: int,
        width: str,
        group_by: Sequence[str],
        rejected: list[Rejected] | None = None,
    ) -> Iterator[list[UsageLine]]:
        """Yield one usage endpoint's lines of `[start, end)` page by page; with
        `rejected` a list, a bucket with a malformed result is left out and listed."""
        ...


class Sink(Protocol):
    """Where exposition chunks go: VictoriaMetrics, stdout, or a test recorder."""

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Send every chunk or raise."""
        ...


class Reader(Protocol):
    """Where pushed data is read back (`vmread.VmReader`)."""

    def export(self, match: str, start_ms: int, end_ms: int) -> list[Series]:
        """Return the series matching `match` with their samples in the range."""
        ...

    def series(
        self, match: str, start_ms: int, end_ms: int, *, limit: int = ...
    ) -> list[dict[str, str]]:
        """Return the label sets of the series matching `match` in the range."""
        ...

    def totals(self, match: str, start_ms: int, end_ms: int) -> tuple[int, float]:
        """Return the number of samples matching `match` in the range, and their sum."""
        ...


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """How token usage is fetched: bucket width, window and grouping."""

    width: str
    step: int
    lookback: int
    backfill: int
    group_by: Mapping[str, Sequence[str]]
    optional_dims: tuple[str, ...]

    @classmethod
    def build(
        cls,
        width: str,
        *,
        lookback_days: int,
        backfill_days: int,
        lookback_hours: int,
        backfill_hours: int,
        by_user: bool = False,
        by_api_key: bool = False,
    ) -> UsagePlan:
        """Return the plan; `1d` follows the costs window, `1h`/`1m` the hours."""
        step = USAGE_WIDTHS[width][0]
        if width == "1d":
            lookback, backfill = lookback_days, backfill_days
        else:
            per_hour = 3600 // step
            lookback, backfill = lookback_hours * per_hour, backfill_hours * per_hour
        group_by = {
            kind: usage_group_by(kind, by_user=by_user, by_api_key=by_api_key)
            for kind in USAGE_KINDS
        }
        optional = tuple(
            d for d, on in (("user_id", by_user), ("api_key_id", by_api_key)) if on
        )
        return cls(width, step, lookback, backfill, group_by, optional)


@dataclass(slots=True)
class _Dataset:
    """The state one data set keeps between cycles."""

    name: str
    unit: int
    lookback: int
    backfill: int
    ledger: Ledger
    metrics: str
    """A regular expression of the data set's metric names, for the read-back."""
    pending: Pending = field(default_factory=Pending)
    unpushed_from: int | None = None
    started: bool = False

    def window(self, now: float) -> Window:
        if not self.started:
            self.unpushed_from = first_unpushed(now, self.backfill, self.unit)
            self.started = True
        return cycle_window(
            now, self.lookback, self.backfill, self.unpushed_from, self.unit
        )

    def horizon_ms(self, now: float) -> int:
        oldest = horizon(now, self.lookback, self.backfill, self.unit)
        return (oldest - self.unit) * 1000


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """What one data set did in one cycle."""

    dataset: str
    ok: bool
    window: Window
    samples: int = 0
    stats: PushStats = field(default_factory=PushStats)
    error: str | None = None
    landed_days: int = 0
    """UTC days whose values the store acknowledged in this cycle."""
    rejected: tuple[Rejected, ...] = ()
    """Buckets the API answered with a malformed result: their days were withheld."""
    unlanded_from: int | None = None
    """The first bucket that did not land, when the data set failed part-way."""


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did, for the log, `--once`, the health listener and tests."""

    datasets: tuple[DatasetReport, ...]

    @property
    def ok(self) -> bool:
        """Return whether every data set landed."""
        return all(d.ok for d in self.datasets)

    @property
    def window(self) -> Window:
        """Return the costs window."""
        return self.datasets[0].window

    @property
    def samples(self) -> int:
        """Return the samples pushed over all data sets."""
        return sum(d.samples for d in self.datasets)

    @property
    def stats(self) -> PushStats:
        """Return the push figures summed over all data sets."""
        return PushStats(
            requests=sum(d.stats.requests for d in self.datasets),
            raw_bytes=sum(d.stats.raw_bytes for d in self.datasets),
            gzip_bytes=sum(d.stats.gzip_bytes for d in self.datasets),
            where=self.where,
        )

    @property
    def where(self) -> str:
        """Return where the cycle's data went: `stored` only if every data set that
        went anywhere was stored (see `PushStats.where`)."""
        places = {d.stats.where for d in self.datasets}
        for place in (UNANSWERED, PRINTED):
            if place in places:
                return place
        return STORED

    @property
    def stored(self) -> bool:
        """Return whether every data set landed in VictoriaMetrics."""
        return self.ok and self.where == STORED

    @property
    def rejected(self) -> tuple[Rejected, ...]:
        """Return the buckets withheld for a malformed result, over all data sets."""
        return tuple(r for d in self.datasets for r in d.rejected)

    @property
    def error(self) -> str | None:
        """Return the first failure's message, if any."""
        return next((d.error for d in self.datasets if d.error), None)

    def get(self, dataset: str) -> DatasetReport:
        """Return one data set's report."""
        return next(d for d in self.datasets if d.dataset == dataset)


class _Counting(Generic[T]):
    """Count the items that pass through an iterator."""

    def __init__(self, items: Iterable[T]) -> None:
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[T]:
        for item in self._items:
            self.count += 1
            yield item


def _same_totals(held: tuple[int, float], pushed: tuple[int, float]) -> bool:
    """Return whether the store holds as many values as were pushed, with the same
    sum (within the store's precision: it keeps about 12 significant digits)."""
    (n_held, sum_held), (n_pushed, sum_pushed) = held, pushed
    scale = max(abs(sum_held), abs(sum_pushed), 1e-300)
    return n_held == n_pushed and abs(sum_held - sum_pushed) <= 1e-9 * scale


def _add_stats(total: PushStats, more: PushStats) -> PushStats:
    """Return the sum of two pushes' figures; `nothing answered`, then `printed`,
    wins over `stored`."""
    places = {total.where, more.where}
    where = next((p for p in (UNANSWERED, PRINTED) if p in places), STORED)
    return PushStats(
        requests=total.requests + more.requests,
        raw_bytes=total.raw_bytes + more.raw_bytes,
        gzip_bytes=total.gzip_bytes + more.gzip_bytes,
        where=where,
    )


def _stamp(ts: int, unit: int) -> str:
    fmt = "%Y-%m-%d" if unit >= DAY else "%Y-%m-%dT%H:%MZ"
    return time.strftime(fmt, time.gmtime(ts))


SampleSource = Callable[[int, int], Iterable[Sample]]
"""The samples of a fetched data set with timestamps in `[start, end)` (seconds)."""

Fetched = tuple[SampleSource, list[Sample]]
"""A fetched data set: a way to (re)generate its samples, and its live samples."""


class Pusher:
    """The cycle and the state it keeps between cycles (ledgers, names, windows)."""

    def __init__(
        self,
        source: CostSource,
        sink: Sink,
        *,
        lookback_days: int,
        backfill_days: int,
        extra_labels: Labels,
        usage: UsagePlan | None = None,
        clock: Callable[[], float] = time.time,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        stats: SelfStats | None = None,
        reader: Reader | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        confirm_after_s: float = CONFIRM_AFTER_S,
    ) -> None:
        self.source = source
        self.sink = sink
        # where pushed days are read back; None: push each day again for a while
        self.reader = reader
        self.monotonic = monotonic
        self.confirm_after_s = confirm_after_s
        self.extra = extra_labels
        self.usage = usage
        self.clock = clock
        self.chunk_bytes = chunk_bytes
        self.stats = stats or SelfStats(version=__version__)
        self.names: dict[str, str | None] = {}
        self.last_report: CycleReport | None = None
        # for the health listener: the start-up grace of /healthz counts from here,
        # and /livez watches the heartbeat (loop ticks and every Admin API request)
        self.started = clock()
        self.heartbeat = Heartbeat()
        self.stats.on_request = self.heartbeat.beat
        self.costs = _Dataset(
            "costs", DAY, lookback_days, backfill_days, Ledger(), DAILY_COST
        )
        self.datasets = [self.costs]
        if usage is not None:
            self.datasets.append(
                _Dataset(
                    "usage",
                    usage.step,
                    usage.lookback,
                    usage.backfill,
                    Ledger(usage.step * 1000),
                    USAGE_METRICS,
                )
            )

    def run_cycle(self) -> CycleReport:
        """Run one cycle over every data set; never raises except for `Stopped`."""
        now = self.clock()
        started = time.monotonic()
        begin = getattr(self.sink, "begin_cycle", None)
        if callable(begin):
            begin()  # one retry budget per cycle for the push target
        if not self.costs.started:
            self._learn_names(now)
        for ds in self.datasets:
            if ds.started:
                self._confirm(ds)
        windows = [(ds, ds.window(now)) for ds in self.datasets]
        try:
            names: Names | None = merge_names(self.names, self.source.fetch_projects())
            failure = None
        except Stopped:
            raise
        except CostPusherError as exc:
            names, failure = None, str(exc)
        if names is None:
            reports = tuple(
                DatasetReport(ds.name, False, window, error=failure)
                for ds, window in windows
            )
        else:
            self.names = dict(names)
            reports = tuple(
                self._run_dataset(ds, now, window, names) for ds, window in windows
            )
        for ds, done in zip(self.datasets, reports, strict=True):
            if not done.ok:
                start = done.window.start
                if done.unlanded_from is not None:
                    ds.unpushed_from = done.unlanded_from  # the days before landed
                else:
                    ds.unpushed_from = min(ds.unpushed_from or start, start)
            self.stats.unconfirmed[ds.name] = ds.pending.samples
            self.stats.unconfirmed_age_s[ds.name] = ds.pending.oldest_age(
                self.monotonic()
            )
        report = CycleReport(reports)
        self.stats.cycles["success" if report.ok else "failure"] += 1
        self.stats.cycle_duration_s = time.monotonic() - started
        self.stats.samples_pushed = report.samples
        self.last_report = report
        self._push_self(now)
        self._log_report(report, failure)
        return report

    def _run_dataset(
        self, ds: _Dataset, now: float, window: Window, names: Names
    ) -> DatasetReport:
        try:
            return self._land(ds, now, window, names)
        except Stopped:
            raise
        except CostPusherError as exc:
            return DatasetReport(ds.name, False, window, error=str(exc))
        except Exception as exc:  # the cycle boundary: a bug must not kill the loop
            log.exception("%s failed on an unexpected error", ds.name)
            return DatasetReport(
                ds.name, False, window, error=f"unexpected {type(exc).__name__}: {exc}"
            )

    def _land(
        self, ds: _Dataset, now: float, window: Window, names: Names
    ) -> DatasetReport:
        """Fetch one data set whole, confirm earlier pushes, then push what changed
        day by day, recording each day as it lands."""
        bad: list[Rejected] = []
        if ds.name == "costs":
            samples, live = self._fetch_costs(window, names, now, bad)
        else:
            samples, live = self._fetch_usage(window, names, bad)
        withheld = {day_of(r.start) for r in bad}
        self._report_rejected(ds, bad)
        revisions: list[Revision] = []
        total, pushed, days = PushStats(), 0, 0
        try:
            for start in range(day_of(window.start), window.end, DAY):
                if start in withheld:
                    continue  # a day is pushed whole or not at all
                start, end = max(start, window.start), min(start + DAY, window.end)
                day = list(samples(start, end))  # each sample built once
                counted = _Counting(ds.ledger.changed(day, revisions))
                try:
                    stats = self.sink.push(render_chunks(counted, self.chunk_bytes))
                except CostPusherError as exc:
                    self._report_revisions(ds, revisions)
                    return DatasetReport(
                        ds.name,
                        False,
                        window,
                        pushed,
                        total,
                        error=str(exc),
                        landed_days=days,
                        unlanded_from=start,
                    )
                total = _add_stats(total, stats)
                pushed += counted.count
                if stats.where == UNANSWERED:
                    # nothing went anywhere: the next cycle pushes this window again
                    ds.unpushed_from = min(
                        ds.unpushed_from or window.start, window.start
                    )
                    return DatasetReport(ds.name, True, window, pushed, total)
                revisions += ds.ledger.commit(day, start * 1000, end * 1000)
                if stats.where == STORED:
                    ds.pending.pushed(day_of(start), self.monotonic(), counted.count)
                days += 1
            total = _add_stats(
                total, self.sink.push(render_chunks(live, self.chunk_bytes))
            )
            pushed += len(live)
        except CostPusherError as exc:
            self._report_revisions(ds, revisions)
            return DatasetReport(
                ds.name, False, window, pushed, total, error=str(exc), landed_days=days
            )
        ds.ledger.forget_before(ds.horizon_ms(now))
        ds.pending.forget_before(day_of(ds.horizon_ms(now) // 1000))
        # a withheld day is fetched again by every cycle until it is whole
        ds.unpushed_from = min(withheld) if withheld else None
        self.stats.last_success[ds.name] = now
        self._report_revisions(ds, revisions)
        return DatasetReport(
            ds.name,
            True,
            window,
            pushed,
            total,
            landed_days=days,
            rejected=tuple(bad),
        )

    def _report_rejected(self, ds: _Dataset, bad: list[Rejected]) -> None:
        self.stats.rejected_buckets[ds.name] = len(bad)
        for r in bad:
            log.warning(
                "malformed result: its UTC day is withheld, and fetched again",
                extra={
                    "dataset": ds.name,
                    "day": _stamp(day_of(r.start), DAY),
                    "bucket": _stamp(r.start, ds.unit),
                    "endpoint": r.endpoint,
                    "path": r.path,
                    "reason": r.reason,
                },
            )

    def _learn_names(self, now: float) -> None:
        """Before the first push, learn the `project` labels already stored for
        each project id, so that a project missing from the project list keeps its
        name across restarts instead of turning `unknown`."""
        if self.reader is None:
            return
        now_ms = int(now * 1000)
        start_ms = now_ms - LEARN_NAMES_DAYS * DAY * 1000
        try:
            found = self.reader.series(
                selector(DAILY_COST, dict(self.extra)), start_ms, now_ms
            )
        except CostPusherError as exc:
            log.info("cannot learn stored project names", extra={"reason": str(exc)})
            return
        for labels in found:
            pid, name = labels.get("project_id", ""), labels.get("project", "")
            if pid and name and name != UNKNOWN:
                self.names.setdefault(pid, name)

    def _confirm(self, ds: _Dataset) -> None:
        """Read back the days due for confirmation; forget what the store lost, and
        reach the window back to it, so that this cycle pushes it again. Without a
        read-back, push each pushed day again until `BLIND_CONFIRM_S` after its
        first push."""
        at = self.monotonic()
        due = ds.pending.due(at, self.confirm_after_s)
        if not due:
            return
        if self.reader is not None:
            try:
                self._read_back(ds, due)
            except PushUnavailable as exc:
                log.info(
                    "cannot read back now; the pushed days stay unconfirmed",
                    extra={"dataset": ds.name, "reason": str(exc)},
                )
                return
            except PushRejected as exc:
                log.warning(
                    "cannot read back what was pushed: set VM_QUERY_URL to where the "
                    "pushed data is read; until then each pushed day is pushed again "
                    "every cycle for %ds",
                    BLIND_CONFIRM_S,
                    extra={"reason": str(exc)},
                )
                self.reader = None
            else:
                return
        for day in due:
            if at - ds.pending.first_push(day) >= BLIND_CONFIRM_S:
                ds.pending.confirmed(day)
            elif ds.ledger.forget_between(day * 1000, (day + DAY) * 1000):
                ds.unpushed_from = min(ds.unpushed_from or day, day)

    def _read_back(self, ds: _Dataset, due: list[int]) -> None:
        """Confirm each due day: first by its sample count and sum, two small
        queries; only where they differ, series by series from an export."""
        assert self.reader is not None
        labels = dict(self.extra)
        labels.setdefault(DEMO_KEY, "")  # real data: never count demo series
        match = selector(ds.metrics, labels)
        for start, end in read_ranges(due):
            held = self.reader.totals(match, start * 1000, end * 1000)
            if _same_totals(held, ds.ledger.totals_between(start * 1000, end * 1000)):
                for day in range(start, end, DAY):
                    ds.pending.confirmed(day)
                continue
            series = self.reader.export(match, start * 1000, end * 1000 - 1)
            lost = ds.ledger.reconcile(held_by(series), start * 1000, end * 1000)
            for day in range(start, end, DAY):
                ds.pending.confirmed(day)
            if lost:
                oldest = min(lost) // 1000
                ds.unpushed_from = min(ds.unpushed_from or oldest, oldest)
                log.warning(
                    "the store lost values it had acknowledged; pushing them again",
                    extra={
                        "dataset": ds.name,
                        "days": f"{_stamp(start, DAY)}..{_stamp(end - DAY, DAY)}",
                        "samples": len(lost),
                    },
                )

    def _fetch_costs(
        self, window: Window, names: Names, now: float, bad: list[Rejected]
    ) -> Fetched:
        table: CostTable = {}
        for lines in self.source.fetch_costs(window.start, window.end, bad):
            add_cost_lines(table, lines)
        today = int(now // DAY) * DAY
        live = today_samples(table, names, self.extra, today, int(now * 1000))
        labels_cache: dict[tuple[str, str, str], Labels] = {}

        def samples(start: int, end: int) -> Iterable[Sample]:
            return cost_samples(table, names, self.extra, start, end, labels_cache)

        return samples, live

    def _fetch_usage(
        self, window: Window, names: Names, bad: list[Rejected]
    ) -> Fetched:
        plan = self.usage
        assert plan is not None
        table: UsageTable = {}
        for kind, group_by in plan.group_by.items():
            buckets = self.source.fetch_usage(
                kind, window.start, window.end, plan.width, group_by, bad
            )
            # one call per endpoint, so that each series' labels are built once;
            # the lines still arrive, and are added, one bucket at a time
            add_usage_lines(
                table,
                (line for lines in buckets for line in lines),
                names,
                self.extra,
                plan.step,
                plan.optional_dims,
            )

        def samples(start: int, end: int) -> Iterable[Sample]:
            return usage_samples(table, start, end)

        return samples, []

    def health(self, interval_s: float, call_s: float = 0.0) -> HealthSnapshot:
        """Return what the health listener reports, as of now; `call_s` is the
        longest one HTTP call may take with its retries (see `live_bound`)."""
        now = self.clock()
        report = self.last_report
        return HealthSnapshot(
            now=now,
            interval_s=interval_s,
            last_success=self.stats.last_success.get("costs"),
            last_ok=None if report is None else report.ok,
            last_error=None if report is None else report.error,
            metrics=render(
                self_samples(self.stats, self.extra, int(now * 1000)), timestamps=False
            ),
            started=self.started,
            heartbeat_age_s=self.heartbeat.age(),
            live_after_s=live_bound(interval_s, call_s),
            notes=self._health_notes(report, interval_s),
        )

    def _health_notes(
        self, report: CycleReport | None, interval_s: float
    ) -> tuple[str, ...]:
        """Say what is withheld, and what waits for the store's confirmation longer
        than a healthy pusher makes anything wait (two intervals)."""
        at = self.monotonic()
        late = max(2 * interval_s, 2 * self.confirm_after_s)
        notes = [
            f"{ds.name}: {ds.pending.samples} values not confirmed by the store for "
            f"{ds.pending.oldest_age(at):.0f}s"
            for ds in self.datasets
            if ds.pending.oldest_age(at) > late
        ]
        notes.extend(
            f"withheld {_stamp(day_of(r.start), DAY)}: malformed {r.endpoint} "
            f"at {r.path}"
            for r in (() if report is None else report.rejected)
        )
        return tuple(notes)

    def _report_revisions(self, ds: _Dataset, revisions: list[Revision]) -> None:
        for rev in revisions:
            labels = dict(rev.labels)
            log.warning(
                "value revised downwards: VictoriaMetrics keeps the higher value%s",
                REPAIR_HINT if ds.name == "costs" else "",
                extra={
                    "dataset": ds.name,
                    "series": rev.name,
                    "project": labels.get("project"),
                    "project_id": labels.get("project_id"),
                    "line_item": labels.get("line_item"),
                    "day" if ds.unit >= DAY else "bucket": _stamp(
                        rev.ts_ms // 1000, ds.unit
                    ),
                    "pushed": rev.old,
                    "now": "missing" if rev.new is None else rev.new,
                },
            )
        self.stats.downward_revisions += len(revisions)

    def _push_self(self, now: float) -> None:
        samples = self_samples(self.stats, self.extra, int(now * 1000))
        try:
            self.sink.push(render_chunks(samples, self.chunk_bytes))
        except CostPusherError as exc:
            log.debug("self-monitoring push failed", extra={"error": str(exc)})

    def _log_report(self, report: CycleReport, project_failure: str | None) -> None:
        duration = round(self.stats.cycle_duration_s or 0.0, 3)
        if project_failure is not None:
            log.error(
                "cycle failed: %s",
                project_failure,
                extra={
                    "result": "failure",
                    "datasets": "costs,usage" if self.usage else "costs",
                    "duration_s": duration,
                },
            )
            return
        said: set[str] = set()
        for ds, dr in zip(self.datasets, report.datasets, strict=True):
            fields: dict[str, object] = {
                "dataset": dr.dataset,
                "window": f"{_stamp(dr.window.start, ds.unit)}.."
                f"{_stamp(dr.window.end - ds.unit, ds.unit)}",
                "days_landed": dr.landed_days,
                "samples": dr.samples,
                "requests": dr.stats.requests,
                "bytes": dr.stats.raw_bytes,
                "gzip_bytes": dr.stats.gzip_bytes,
                "duration_s": duration,
            }
            if dr.rejected:
                fields["days_withheld"] = len({day_of(r.start) for r in dr.rejected})
            if dr.ok:
                fields["where"] = dr.stats.where
            where = dr.stats.where
            if not dr.ok and dr.error in said:
                # one ERROR line per cause: the same failure of another data set
                log.info(
                    "cycle failed: the same cause",
                    extra={"result": "failure", **fields},
                )
                continue
            said.add(dr.error or "")
            if dr.ok and where == STORED:
                log.info("cycle done", extra={"result": "success", **fields})
            elif dr.ok and where == PRINTED:
                log.info("cycle done", extra={"result": "printed", **fields})
            elif dr.ok:
                log.warning(
                    "cycle done, nothing stored",
                    extra={"result": "not_stored", **fields},
                )
            else:
                log.error(
                    "cycle failed: %s",
                    dr.error,
                    extra={"result": "failure", **fields},
                )


def run_forever(
    pusher: Pusher,
    interval_s: float,
    stop: threading.Event,
    after_cycle: Callable[[CycleReport], None] | None = None,
) -> None:
    """Run a cycle now, then one every `interval_s`, until `stop` is set; hand each
    cycle's report to `after_cycle`."""
    scheduler = schedule.Scheduler()

    def cycle() -> None:
        report = pusher.run_cycle()
        if after_cycle is not None:
            after_cycle(report)

    try:
        cycle()
        # schedule counts whole seconds; PUSH_INTERVAL is at least 1s
        scheduler.every(max(1, round(interval_s))).seconds.do(cycle)
        while not stop.is_set():
            pusher.heartbeat.beat()
            scheduler.run_pending()
            pusher.heartbeat.beat()
            idle = scheduler.idle_seconds
            wait = max(0.0, idle if idle is not None else interval_s)
            # short waits: the heartbeat ticks while the loop waits (/livez)
            stop.wait(min(wait, HEARTBEAT_TICK_S))
    except Stopped:
        log.debug("cycle interrupted by a stop request")
