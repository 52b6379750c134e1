"""One all-or-nothing cycle, the state kept between cycles, and the schedule loop.

A cycle fetches the whole cost answer for its window (projects and every page of
costs), turns it into samples, pushes only what is new or changed plus the live
series, and only then records what landed. Any failure leaves the state as it was, so
the next cycle widens its window back to the oldest day that did not land. The
self-monitoring samples are pushed after every cycle, success or not.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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
    add_cost_lines,
    cost_samples,
    merge_names,
    self_samples,
    today_samples,
)
from openai_cost_pusher.model import CostLine, Labels, Project
from openai_cost_pusher.push import PushStats
from openai_cost_pusher.window import DAY, Window, cycle_window, day_of, first_unpushed

log = logging.getLogger(__name__)
T = TypeVar("T")


class CostSource(Protocol):
    """Where projects and costs come from: the Admin API or the demo organization."""

    def fetch_projects(self) -> list[Project]:
        """Return every project, archived included."""
        ...

    def fetch_costs(self, start: int, end: int) -> Iterator[list[CostLine]]:
        """Yield the cost lines of `[start, end)` page by page; raise on failure."""
        ...


class Sink(Protocol):
    """Where exposition chunks go: VictoriaMetrics, stdout, or a test recorder."""

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Send every chunk or raise."""
        ...


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did, for the log line, `--once` and tests."""

    ok: bool
    window: Window
    samples: int
    stats: PushStats
    error: str | None = None


class _Counting(Generic[T]):
    """Count the items that pass through an iterator."""

    def __init__(self, items: Iterable[T]) -> None:
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[T]:
        for item in self._items:
            self.count += 1
            yield item


def _date(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class Pusher:
    """The cycle and the state it keeps between cycles (ledger, names, window)."""

    def __init__(
        self,
        source: CostSource,
        sink: Sink,
        *,
        lookback_days: int,
        backfill_days: int,
        extra_labels: Labels,
        clock: Callable[[], float] = time.time,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        stats: SelfStats | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.lookback_days = lookback_days
        self.backfill_days = backfill_days
        self.extra = extra_labels
        self.clock = clock
        self.chunk_bytes = chunk_bytes
        self.stats = stats or SelfStats(version=__version__)
        self.ledger = Ledger()
        self.names: dict[str, str | None] = {}
        self.unpushed_from: int | None = None
        self.last_report: CycleReport | None = None
        self._started = False

    def run_cycle(self) -> CycleReport:
        """Run one cycle; never raises except for `Stopped`."""
        now = self.clock()
        if not self._started:
            self.unpushed_from = first_unpushed(now, self.backfill_days)
            self._started = True
        window = cycle_window(
            now, self.lookback_days, self.backfill_days, self.unpushed_from
        )
        started = time.monotonic()
        try:
            report = self._costs_cycle(now, window)
        except Stopped:
            raise
        except CostPusherError as exc:
            report = CycleReport(False, window, 0, PushStats(), str(exc))
        except Exception as exc:  # the cycle boundary: a bug must not kill the loop
            log.exception("cycle failed on an unexpected error")
            report = CycleReport(
                False, window, 0, PushStats(), f"unexpected {type(exc).__name__}: {exc}"
            )
        if not report.ok:
            self.unpushed_from = min(self.unpushed_from or window.start, window.start)
        self.stats.cycles["success" if report.ok else "failure"] += 1
        self.stats.cycle_duration_s = time.monotonic() - started
        self.stats.samples_pushed = report.samples
        self.last_report = report
        self._push_self(now)
        self._log_report(report)
        return report

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

    def _costs_cycle(self, now: float, window: Window) -> CycleReport:
        projects = self.source.fetch_projects()
        table: CostTable = {}
        for lines in self.source.fetch_costs(window.start, window.end):
            add_cost_lines(table, lines)
        names = merge_names(self.names, projects)
        start_ms, end_ms = window.start * 1000, window.end * 1000
        revisions: list[Revision] = []
        changed = self.ledger.changed(cost_samples(table, names, self.extra), revisions)
        live = today_samples(table, names, self.extra, day_of(now), int(now * 1000))
        counted = _Counting(itertools.chain(changed, live))
        stats = self.sink.push(render_chunks(counted, self.chunk_bytes))
        revisions += self.ledger.commit(
            cost_samples(table, names, self.extra), start_ms, end_ms
        )
        horizon = day_of(now) - (max(self.lookback_days, self.backfill_days)) * DAY
        self.ledger.forget_before(horizon * 1000)
        self.names = names
        self.unpushed_from = None
        self.stats.last_success["costs"] = now
        self._report_revisions(revisions)
        return CycleReport(True, window, counted.count, stats)

    def _report_revisions(self, revisions: list[Revision]) -> None:
        for rev in revisions:
            labels = dict(rev.labels)
            log.warning(
                "daily cost revised downwards: VictoriaMetrics keeps the higher value",
                extra={
                    "series": rev.name,
                    "project": labels.get("project"),
                    "project_id": labels.get("project_id"),
                    "line_item": labels.get("line_item"),
                    "day": _date(rev.ts_ms // 1000),
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

    def _log_report(self, report: CycleReport) -> None:
        fields = {
            "window": f"{_date(report.window.start)}..{_date(report.window.end - DAY)}",
            "days": report.window.days,
            "samples": report.samples,
            "requests": report.stats.requests,
            "bytes": report.stats.raw_bytes,
            "gzip_bytes": report.stats.gzip_bytes,
            "duration_s": round(self.stats.cycle_duration_s or 0.0, 3),
        }
        if report.ok:
            log.info("cycle done", extra={"result": "success", **fields})
        else:
            log.error(
                "cycle failed: %s", report.error, extra={"result": "failure", **fields}
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
