"""One all-or-nothing cycle, the state kept between cycles, and the schedule loop.

A cycle fetches the project list, then each data set (costs, then token usage) whole
for its window, turns it into samples, pushes only what is new or changed plus the
live series, and only then records what landed. Each data set is its own unit of all
or nothing: a failure leaves that data set's state as it was, so its next cycle widens
the window back to the oldest bucket that did not land, while the other data set goes
on. The self-monitoring samples are pushed after every cycle, success or not.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import schedule

from openai_cost_pusher import __version__
from openai_cost_pusher.errors import CostPusherError, Stopped
from openai_cost_pusher.exposition import DEFAULT_CHUNK_BYTES, render, render_chunks
from openai_cost_pusher.health import HealthSnapshot
from openai_cost_pusher.ledger import Ledger, Revision
from openai_cost_pusher.metrics import (
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
from openai_cost_pusher.model import CostLine, Labels, Project, Sample, UsageLine
from openai_cost_pusher.openai_api import USAGE_KINDS, USAGE_WIDTHS, usage_group_by
from openai_cost_pusher.push import PushStats
from openai_cost_pusher.window import DAY, Window, cycle_window, first_unpushed

log = logging.getLogger(__name__)
T = TypeVar("T")

Names = Mapping[str, str | None]


class CostSource(Protocol):
    """Where projects, costs and usage come from: the Admin API or the demo."""

    def fetch_projects(self) -> list[Project]:
        """Return every project, archived included."""
        ...

    def fetch_costs(self, start: int, end: int) -> Iterator[list[CostLine]]:
        """Yield the cost lines of `[start, end)` page by page; raise on failure."""
        ...

    def fetch_usage(
        self, kind: str, start: int, end: int, width: str, group_by: Sequence[str]
    ) -> Iterator[list[UsageLine]]:
        """Yield one usage endpoint's lines of `[start, end)` page by page."""
        ...


class Sink(Protocol):
    """Where exposition chunks go: VictoriaMetrics, stdout, or a test recorder."""

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Send every chunk or raise."""
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
        current = int(now // self.unit) * self.unit
        return (current - max(self.lookback, self.backfill) * self.unit) * 1000


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """What one data set did in one cycle."""

    dataset: str
    ok: bool
    window: Window
    samples: int = 0
    stats: PushStats = field(default_factory=PushStats)
    error: str | None = None


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
        )

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


def _stamp(ts: int, unit: int) -> str:
    fmt = "%Y-%m-%d" if unit >= DAY else "%Y-%m-%dT%H:%MZ"
    return time.strftime(fmt, time.gmtime(ts))


Fetched = tuple[Callable[[], Iterable[Sample]], list[Sample]]
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
    ) -> None:
        self.source = source
        self.sink = sink
        self.extra = extra_labels
        self.usage = usage
        self.clock = clock
        self.chunk_bytes = chunk_bytes
        self.stats = stats or SelfStats(version=__version__)
        self.names: dict[str, str | None] = {}
        self.last_report: CycleReport | None = None
        self.costs = _Dataset("costs", DAY, lookback_days, backfill_days, Ledger())
        self.datasets = [self.costs]
        if usage is not None:
            self.datasets.append(
                _Dataset(
                    "usage",
                    usage.step,
                    usage.lookback,
                    usage.backfill,
                    Ledger(usage.step * 1000),
                )
            )

    def run_cycle(self) -> CycleReport:
        """Run one cycle over every data set; never raises except for `Stopped`."""
        now = self.clock()
        started = time.monotonic()
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
                ds.unpushed_from = min(ds.unpushed_from or start, start)
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
        """Fetch one data set whole, push what changed, then record what landed."""
        if ds.name == "costs":
            samples, live = self._fetch_costs(window, names, now)
        else:
            samples, live = self._fetch_usage(window, names)
        revisions: list[Revision] = []
        changed = ds.ledger.changed(samples(), revisions)
        counted = _Counting(itertools.chain(changed, live))
        stats = self.sink.push(render_chunks(counted, self.chunk_bytes))
        revisions += ds.ledger.commit(samples(), window.start * 1000, window.end * 1000)
        ds.ledger.forget_before(ds.horizon_ms(now))
        ds.unpushed_from = None
        self.stats.last_success[ds.name] = now
        self._report_revisions(ds, revisions)
        return DatasetReport(ds.name, True, window, counted.count, stats)

    def _fetch_costs(self, window: Window, names: Names, now: float) -> Fetched:
        table: CostTable = {}
        for lines in self.source.fetch_costs(window.start, window.end):
            add_cost_lines(table, lines)
        today = int(now // DAY) * DAY
        live = today_samples(table, names, self.extra, today, int(now * 1000))
        return (lambda: cost_samples(table, names, self.extra)), live

    def _fetch_usage(self, window: Window, names: Names) -> Fetched:
        plan = self.usage
        assert plan is not None
        table: UsageTable = {}
        for kind, group_by in plan.group_by.items():
            pages = self.source.fetch_usage(
                kind, window.start, window.end, plan.width, group_by
            )
            for lines in pages:
                add_usage_lines(
                    table, lines, names, self.extra, plan.step, plan.optional_dims
                )
        return (lambda: usage_samples(table)), []

    def health(self, interval_s: float) -> HealthSnapshot:
        """Return what the health listener reports, as of now."""
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
        )

    def _report_revisions(self, ds: _Dataset, revisions: list[Revision]) -> None:
        for rev in revisions:
            labels = dict(rev.labels)
            log.warning(
                "value revised downwards: VictoriaMetrics keeps the higher value",
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
        for ds, dr in zip(self.datasets, report.datasets, strict=True):
            fields = {
                "dataset": dr.dataset,
                "window": f"{_stamp(dr.window.start, ds.unit)}.."
                f"{_stamp(dr.window.end - ds.unit, ds.unit)}",
                "samples": dr.samples,
                "requests": dr.stats.requests,
                "bytes": dr.stats.raw_bytes,
                "gzip_bytes": dr.stats.gzip_bytes,
                "duration_s": duration,
            }
            if dr.ok:
                log.info("cycle done", extra={"result": "success", **fields})
            else:
                log.error(
                    "cycle failed: %s",
                    dr.error,
                    extra={"result": "failure", **fields},
                )


def run_forever(pusher: Pusher, interval_s: float, stop: threading.Event) -> None:
    """Run a cycle now, then one every `interval_s`, until `stop` is set."""
    scheduler = schedule.Scheduler()
    try:
        pusher.run_cycle()
        # schedule counts whole seconds; PUSH_INTERVAL is at least 1s
        scheduler.every(max(1, round(interval_s))).seconds.do(pusher.run_cycle)
        while not stop.is_set():
            scheduler.run_pending()
            idle = scheduler.idle_seconds
            stop.wait(max(0.0, idle if idle is not None else interval_s))
    except Stopped:
        log.debug("cycle interrupted by a stop request")
