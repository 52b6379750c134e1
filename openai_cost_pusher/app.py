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
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import schedule

from openai_cost_pusher import __version__, heap, tables
from openai_cost_pusher.batches import (
    KEY_COST_KEY,
    UsageBatches,
    add_usage_parts,
)
from openai_cost_pusher.cycle_report import CycleReport as CycleReport
from openai_cost_pusher.cycle_report import DatasetReport
from openai_cost_pusher.errors import (
    CostPusherError,
    PushRejected,
    PushUnavailable,
    RequestRejected,
    Stopped,
)
from openai_cost_pusher.exposition import (
    DEFAULT_CHUNK_BYTES,
    RenderCache,
    render,
    render_chunks,
)
from openai_cost_pusher.feed import DayFeed
from openai_cost_pusher.health import (
    HEARTBEAT_TICK_S,
    HealthSnapshot,
    Heartbeat,
    live_bound,
)
from openai_cost_pusher.key_names import KEY_COSTS as KEY_COSTS
from openai_cost_pusher.key_names import KeyNames
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
    DAILY_COST_BY_API_KEY,
    DAILY_COST_QUANTITY,
    UNKNOWN,
    USAGE_METRICS,
    CostColumns,
    LabelsByNumber,
    SelfStats,
    UsageColumns,
    UsageNumbers,
    UsageSeriesCache,
    add_cost_lines,
    add_key_cost_lines,
    cost_samples,
    daily_labels,
    key_cost_samples,
    merge_names,
    quantity_samples,
    self_samples,
    today_samples,
    usage_points,
    usage_samples,
)
from openai_cost_pusher.model import (
    Columns,
    CostParts,
    Labels,
    Project,
    Rejected,
    Sample,
    UsageParts,
)
from openai_cost_pusher.openai_api import (
    COSTS_BY_KEY_GROUP_BY,
    KEY_COSTS_FROM,
    USAGE_KINDS,
    USAGE_WIDTHS,
    usage_group_by,
)
from openai_cost_pusher.ports import (
    CostPartsSource,
    CostSource,
    KeyedCostSource,
    Names,
    Reader,
    SpendSource,
    UsagePartsSource,
)
from openai_cost_pusher.ports import Sink as Sink
from openai_cost_pusher.push import PRINTED, STORED, UNANSWERED, PushStats
from openai_cost_pusher.spend_step import SPEND_READ_BUDGET_S, SpendStep
from openai_cost_pusher.tables import SeriesTables
from openai_cost_pusher.vmread import selector
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
    landed: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    """Per UTC day: the digest of its last landing (`Fetched.digest`) and the
    ledger's `removals` right after it."""
    unpushed_from: int | None = None
    started: bool = False
    whole: set[int] = field(default_factory=set)
    """UTC days whose values the ledger keeps value by value until read back,
    although before the lookback: days whose summary the store did not match, so
    that the read-back after their push again can compare series by series."""

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

    def summarize(self, day: int, start: int, end: int, now: float) -> None:
        """Reduce the ledger's values of `[start, end)` (seconds, inside UTC day
        `day`) to their totals where no steady cycle compares them again: before
        the lookback, and not a day kept whole (`whole`)."""
        if day in self.whole:
            return
        lookback = cycle_window(now, self.lookback, self.backfill, None, self.unit)
        end = min(end, lookback.start)
        if start < end:
            self.ledger.summarize(start * 1000, end * 1000)


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


SampleSource = Callable[[int, int, list[Hashable] | None], Iterable[Sample]]
"""The samples of a fetched data set with timestamps in `[start, end)` (seconds),
and each one's key in its table appended to the list where one is given: what a
keyed ledger finds its series by (see `Ledger`)."""


def _keep(day: int) -> None:
    """Hold a day until the cycle ends (usage: its tables are not packed by day)."""


def _no_digest(day: int) -> bytes | None:
    """A data set whose days are always compared sample by sample."""
    return None


def _fetched_whole(end: int) -> None:
    """A data set fetched whole before its first day lands."""


def _no_live() -> list[Sample]:
    return []


def _nothing_open() -> None:
    pass


def _whole_before(fetched: Fetched, failure: CostPusherError) -> bool:
    """Read what the answers hold after a day that failed to land (`failure`),
    without adding it: True when they end whole and in time order, so that the days
    before landed whole (otherwise the next cycle fetches the window again from its
    start). A stop reads nothing more."""
    if isinstance(failure, Stopped):
        return False
    try:
        fetched.skip_rest()
    except CostPusherError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Fetched:
    """A data set being fetched, for `_land`: its days are taken from the answers
    one at a time (`ready`), each landing before the next is read."""

    samples: SampleSource
    """The samples of a UTC day (or any range), built anew on each call."""
    release: Callable[[int], None] = _keep
    """Let go of a day's values (Unix seconds) once it has landed: the cycle's tables
    shrink as the ledger grows."""
    digest: Callable[[int], bytes | None] = _no_digest
    """A digest of a day's series, values and labels: equal to the one of the day's
    last landing (and the ledger unchanged since) means the same samples landed
    already, and none need be built; None: no digest."""
    ready: Callable[[int], None] = _fetched_whole
    """Read the answers until they have handed on every bucket before `end` (Unix
    seconds): the days before it are then whole, their rejections listed."""
    finish: Callable[[], list[Sample]] = _no_live
    """Read the answers to their ends; return the samples stamped now
    (`openai_cost_today`), pushed after the days."""
    close: Callable[[], None] = _nothing_open
    """Let go of the answers still open (a data set that failed)."""
    skip_rest: Callable[[], None] = _nothing_open
    """Read the answers to their ends without adding what they hold: raises where
    `finish` would (an answer out of order, say)."""

    @classmethod
    def fed(
        cls,
        feed: DayFeed[Any],
        samples: SampleSource,
        release: Callable[[int], None],
        digest: Callable[[int], bytes | None],
        finish: Callable[[], list[Sample]] | None = None,
    ) -> Fetched:
        """A data set whose days are read from `feed` as they land; `finish`
        drains it (by default it drains it, and nothing is stamped now)."""

        def drain() -> list[Sample]:
            feed.drain()
            return []

        return cls(
            samples,
            release,
            digest,
            feed.upto,
            drain if finish is None else finish,
            feed.close,
            feed.skip_rest,
        )


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
        spend: SpendSource | None = None,
        spend_refresh_s: float = 3600.0,
        spend_budget_s: float = SPEND_READ_BUDGET_S,
        costs_by_api_key: bool = False,
        trim: Callable[[], None] = heap.trim,
    ) -> None:
        # spend limits and alerts are read from `spend` when given (SPEND_LIMITS)
        self.spend = (
            None if spend is None else SpendStep(spend, spend_refresh_s, spend_budget_s)
        )
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
        # returns the heap's free pages once a day's tables are let go (`heap`)
        self.trim = trim
        self.stats = stats or SelfStats(version=__version__)
        self.names: dict[str, str | None] = {}
        # each series' number, the usage series' labels, and the results batches of
        # the lookback, kept from cycle to cycle: a steady cycle builds no labels
        # where no day changed, and the ledgers find their series by the very same
        # keys and tuples
        self.tables = SeriesTables()
        self.last_report: CycleReport | None = None
        # for the health listener: the start-up grace of /healthz counts from here,
        # and /livez watches the heartbeat (loop ticks and every Admin API request)
        self.started = clock()
        self.heartbeat = Heartbeat()
        self.stats.on_request = self.heartbeat.beat
        self.costs = _Dataset(
            "costs",
            DAY,
            lookback_days,
            backfill_days,
            Ledger(self._daily_labels, numbered=True),
            f"{DAILY_COST}|{DAILY_COST_QUANTITY}",
        )
        self.datasets = [self.costs]
        self._keys = self._key_state(costs_by_api_key, lookback_days, backfill_days)
        if usage is not None:
            self.datasets.append(
                _Dataset(
                    "usage",
                    usage.step,
                    usage.lookback,
                    usage.backfill,
                    # keyed by the usage table's numbers, unless the series are
                    # renamed after the fetch (`api_key`): then by their labels
                    Ledger()
                    if "api_key_id" in usage.optional_dims
                    else Ledger(self._usage_labels, numbered=True),
                    USAGE_METRICS,
                )
            )

    def _daily_labels(self, name: str, key: Hashable) -> Labels:
        """The labels of a daily metric's series by its key, with today's names: how
        the keyed ledgers of the costs data sets report and read back a series."""
        # the ledgers are numbered: a series' key is its number in its table
        costs_key = self.tables.key_of(name, cast(int, key))
        return daily_labels(name, costs_key, self.names, self._keys.names, self.extra)

    def _usage_labels(self, name: str, key: Hashable) -> Labels:
        """The labels of a usage series by its number in the usage table: how the
        usage ledger reports and reads back a series."""
        del name  # the number is the series', name included
        return self.tables.usage_labels(cast(int, key))

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
        projects: list[Project] = []
        try:
            projects = self.source.fetch_projects()
            names: Names | None = merge_names(self.names, projects)
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
        if names is not None and self.spend is not None:
            pushed = self.spend.run(
                now,
                projects,
                names,
                push=self._push_samples,
                clock=self.clock,
                monotonic=self.monotonic,
                extra=self.extra,
            )
            if pushed:
                self.stats.last_success["spend_limits"] = now
        report = CycleReport(reports)
        self.stats.cycles["success" if report.ok else "failure"] += 1
        self.stats.cycle_duration_s = time.monotonic() - started
        self.stats.samples_pushed = report.samples
        self.last_report = report
        self._push_self(now)
        self._log_report(report, failure)
        return report

    def _push_samples(self, samples: list[Sample]) -> PushStats:
        """Push samples to the sink, stamped as they are; raise on failure."""
        return self.sink.push(render_chunks(samples, self.chunk_bytes))

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
        finally:
            self.trim()  # the data set's tables and batches are let go

    def _land(
        self, ds: _Dataset, now: float, window: Window, names: Names
    ) -> DatasetReport:
        """Fetch one data set whole, confirm earlier pushes, then push what changed
        day by day, recording each day as it lands."""
        bad: list[Rejected] = []
        if ds.name == "costs":
            fetched: Fetched | None = self._fetch_costs(ds, window, names, now, bad)
        elif ds.name == KEY_COSTS:
            fetched = self._fetch_key_costs(ds, window, names, now, bad)
            if fetched is None:  # the API keeps no per-key data for the window
                return DatasetReport(ds.name, True, window)
        else:
            fetched = self._fetch_usage(ds, window, names, now, bad)
        assert fetched is not None
        try:
            return self._land_days(ds, now, window, fetched, bad)
        finally:
            fetched.close()
            self._report_rejected(ds, bad)

    def _land_days(
        self,
        ds: _Dataset,
        now: float,
        window: Window,
        fetched: Fetched,
        bad: list[Rejected],
    ) -> DatasetReport:
        """Land the window's days one by one as the answers move past each, then
        the samples stamped now."""
        revisions: list[Revision] = []
        render_cache = RenderCache()  # each series' text built once per cycle
        total, pushed, days = PushStats(), 0, 0
        try:
            for first in range(day_of(window.start), window.end, DAY):
                start, end = max(first, window.start), min(first + DAY, window.end)
                # a failed fetch fails the data set (below) from its window's
                # start: had the answer been out of order before it failed, the
                # days it seemed to have moved past were not whole
                fetched.ready(end)
                if any(day_of(r.start) == first for r in bad):
                    fetched.release(first)
                    continue  # a day is pushed whole or not at all
                digest = fetched.digest(first)
                keys: list[Hashable] | None = [] if ds.ledger.keyed else None
                fresh_keys: list[Hashable] | None = [] if ds.ledger.keyed else None
                start_ms, end_ms = start * 1000, end * 1000
                held = ds.ledger.held_between(start_ms, end_ms)
                day: list[Sample] = []
                fresh: tuple[list[Sample], int] = (day, held)
                streamed = False  # recorded as they went
                if digest is not None and ds.landed.get(first) == (
                    digest,
                    ds.ledger.removals,
                ):
                    # the very samples of the day's last landing, which the ledger
                    # holds as they were: none is new, and none need be built
                    going: Iterable[Sample] = day
                elif not held:
                    # nothing held of the day (a backfill's): every sample is new
                    # and none can be gone, so each is recorded as it is rendered
                    # and no list of the day's samples is held (what was recorded
                    # is taken back if the push fails)
                    streamed = True
                    built = fetched.samples(start, end, keys)  # each built once
                    going = ds.ledger.recording(built, keys)
                else:
                    day = list(fetched.samples(start, end, keys))  # each built once
                    fresh = ds.ledger.diff(day, revisions, keys, fresh_keys)
                    going = fresh[0]
                try:
                    stats = self.sink.push(
                        render_chunks(going, self.chunk_bytes, cache=render_cache)
                    )
                except BaseException as exc:
                    if streamed:
                        ds.ledger.forget_between(start_ms, end_ms)
                    if not isinstance(exc, CostPusherError):
                        raise
                    self._report_revisions(ds, revisions)
                    return DatasetReport(
                        ds.name,
                        False,
                        window,
                        pushed,
                        total,
                        error=str(exc),
                        landed_days=days,
                        unlanded_from=start if _whole_before(fetched, exc) else None,
                    )
                finally:
                    del going
                # a streamed day's samples: the values it now holds (one a series)
                landed = (
                    ds.ledger.held_between(start_ms, end_ms)
                    if streamed
                    else len(fresh[0])
                )
                total = _add_stats(total, stats)
                pushed += landed
                if stats.where == UNANSWERED:
                    if streamed:
                        ds.ledger.forget_between(start_ms, end_ms)
                    # nothing went anywhere: the next cycle pushes this window again
                    ds.unpushed_from = min(
                        ds.unpushed_from or window.start, window.start
                    )
                    return DatasetReport(ds.name, True, window, pushed, total)
                if not streamed:
                    revisions += ds.ledger.commit(
                        day, start_ms, end_ms, fresh, keys, fresh_keys
                    )
                ds.summarize(first, start, end, now)
                if digest is not None:
                    ds.landed[first] = (digest, ds.ledger.removals)
                if stats.where == STORED:
                    ds.pending.pushed(first, self.monotonic(), landed)
                del day, fresh, keys, fresh_keys
                fetched.release(first)
                self.trim()
                days += 1
            live = fetched.finish()
            total = _add_stats(
                total, self.sink.push(render_chunks(live, self.chunk_bytes))
            )
            pushed += len(live)
        except Stopped:
            self._report_revisions(ds, revisions)
            raise  # the fetch, read as the days land, saw the stop: end the cycle
        except CostPusherError as exc:
            self._report_revisions(ds, revisions)
            return DatasetReport(
                ds.name, False, window, pushed, total, error=str(exc), landed_days=days
            )
        oldest_ms = ds.horizon_ms(now)
        ds.ledger.forget_before(oldest_ms)
        # the days that left the lookback since the last cycle
        for first in range(day_of(oldest_ms // 1000), window.end, DAY):
            ds.summarize(first, first, first + DAY, now)
        ds.pending.forget_before(day_of(oldest_ms // 1000))
        for old in [d for d in ds.landed if d * 1000 < oldest_ms]:
            del ds.landed[old]
        ds.whole = {d for d in ds.whole if d * 1000 >= oldest_ms}
        # a withheld day is fetched again by every cycle until it is whole
        ds.unpushed_from = min((day_of(r.start) for r in bad), default=None)
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
            self._keys.learned = True  # nor key names: no second wait on the store
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
                ds.whole.discard(day)
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
                    ds.whole.discard(day)
                continue
            # days kept as totals only cannot be compared series by series: they
            # are pushed again whole, and kept whole until read back
            summed = {
                day_of(ts // 1000)
                for ts in ds.ledger.summarized_between(start * 1000, end * 1000)
            }
            series = self.reader.export(match, start * 1000, end * 1000 - 1)
            lost = ds.ledger.reconcile(held_by(series), start * 1000, end * 1000)
            for day in range(start, end, DAY):
                ds.pending.confirmed(day)
                if day in summed:
                    ds.whole.add(day)
                else:
                    ds.whole.discard(day)
            if lost:
                oldest = min(lost) // 1000
                ds.unpushed_from = min(ds.unpushed_from or oldest, oldest)
            if summed:
                log.warning(
                    "the store's count or sum differs from what was pushed; pushing "
                    "these days again whole, to compare them series by series",
                    extra={
                        "dataset": ds.name,
                        "days": ",".join(_stamp(day, DAY) for day in sorted(summed)),
                    },
                )
            lost_values = [ts for ts in lost if day_of(ts // 1000) not in summed]
            if lost_values:
                log.warning(
                    "the store lost values it had acknowledged; pushing them again",
                    extra={
                        "dataset": ds.name,
                        "days": f"{_stamp(start, DAY)}..{_stamp(end - DAY, DAY)}",
                        "samples": len(lost_values),
                    },
                )

    def _fetch_costs(
        self,
        ds: _Dataset,
        window: Window,
        names: Names,
        now: float,
        bad: list[Rejected],
    ) -> Fetched:
        held = ds.ledger.series
        renumber = ds.ledger.renumber
        table: CostColumns = Columns(self.tables.index(DAILY_COST, held, renumber))
        quantities: CostColumns = Columns(
            self.tables.index(DAILY_COST_QUANTITY, held, renumber)
        )
        source = self.source
        feed: DayFeed[CostParts] | None = None
        if isinstance(source, CostPartsSource):
            # read day by day as the days land (`Fetched.ready`)
            feed = self.tables.cost_feed(
                ds.name,
                lambda known: source.fetch_cost_parts(
                    window.start, window.end, bad, known
                ),
                table,
                quantities,
                self._keep_from(ds, now),
            )
        else:  # a source without batch digests (the demo): every line is read
            for lines in source.fetch_costs(window.start, window.end, bad):
                add_cost_lines(table, lines, quantities)
        today = int(now // DAY) * DAY
        # this cycle's labels, each built once for all the days built, and let go
        # with the data set: the keyed ledger needs none kept
        labels_cache: LabelsByNumber = []
        units_cache: LabelsByNumber = []
        labels_gen = self.tables.generation(DAILY_COST, names)
        units_gen = self.tables.generation(DAILY_COST_QUANTITY, names)

        def samples(
            start: int, end: int, keys: list[Hashable] | None
        ) -> Iterable[Sample]:
            yield from cost_samples(
                table, names, self.extra, start, end, labels_cache, keys
            )
            yield from quantity_samples(
                quantities, names, self.extra, start, end, units_cache, keys
            )

        def release(day: int) -> None:
            if day != today:  # `finish` takes today's spend from it
                table.drop(day)
                quantities.drop(day)

        def digest(day: int) -> bytes:
            return (
                b"%d,%d," % (labels_gen, units_gen)
                + table.digest(day)
                + quantities.digest(day)
            )

        def finish() -> list[Sample]:
            if feed is not None:
                feed.drain()
            live = today_samples(table, names, self.extra, today, int(now * 1000))
            table.drop(today)
            quantities.drop(today)
            return live

        if feed is None:
            return Fetched(samples, release, digest, finish=finish)
        return Fetched.fed(feed, samples, release, digest, finish)

    def _fetch_usage(
        self,
        ds: _Dataset,
        window: Window,
        names: Names,
        now: float,
        bad: list[Rejected],
    ) -> Fetched:
        plan = self.usage
        assert plan is not None
        named_keys = "api_key_id" in plan.optional_dims
        # packed by bucket, over numbers kept from cycle to cycle (renamed after
        # the fetch where series carry the `api_key` label: see `name_usage_keys`)
        renumber = ds.ledger.renumber if ds.ledger.numbered else None
        state = self.tables.usage_state(ds.ledger.series, names, renumber)
        generation = state.generation
        table: UsageColumns = Columns(state.index)
        series: UsageSeriesCache = {}  # this cycle's; the last one's is state.series
        numbers_of = UsageNumbers(
            table, names, self.extra, plan.optional_dims, series, state.series
        )
        batches: dict[str, UsageBatches] = {}  # this cycle's; see state.batches
        feed = None
        source = self.source
        if isinstance(source, UsagePartsSource):
            feed = self._usage_feed(
                source,
                window,
                table,
                numbers_of,
                bad,
                last=state.batches,
                this=batches,
                keep_from=self._keep_from(ds, now),
                done=lambda: state.keep(series, batches),
            )
        else:
            for kind, group_by in plan.group_by.items():
                buckets = source.fetch_usage(
                    kind, window.start, window.end, plan.width, group_by, bad
                )
                # a source without batch digests (the demo): every line is read, and
                # added by number like the rest
                numbers_of.add(line for lines in buckets for line in lines)
            state.keep(series, batches)
        if named_keys and feed is not None:
            feed.drain()  # keys are named from the whole window
        if named_keys:
            named = self._keys.name_usage_keys(
                usage_points(table, plan.step), self.clock, self.reader, self.extra
            )
            return Fetched(lambda start, end, _: usage_samples(named, start, end))
        packed = table
        offsets = range(0, DAY, plan.step)

        def samples(
            start: int, end: int, keys: list[Hashable] | None
        ) -> Iterable[Sample]:
            return usage_samples(packed, start, end, keys)

        def release(day: int) -> None:
            for offset in offsets:
                packed.drop(day + offset)

        def digest(day: int) -> bytes:
            # the series are the keys of the index, labels included: a renamed
            # project's series take new numbers, so its day's digest differs
            return b"%d," % generation + b"".join(
                packed.digest(day + offset) for offset in offsets
            )

        if feed is None:
            return Fetched(samples, release, digest)
        return Fetched.fed(feed, samples, release, digest)

    def _usage_feed(
        self,
        source: UsagePartsSource,
        window: Window,
        table: UsageColumns,
        numbers_of: UsageNumbers,
        bad: list[Rejected],
        *,
        last: dict[str, UsageBatches],
        this: dict[str, UsageBatches],
        keep_from: int,
        done: Callable[[], None],
    ) -> DayFeed[UsageParts]:
        """Return a feed of every usage endpoint's buckets side by side, each added
        to `table` as it is taken (`add_usage_parts`), which calls `done` once
        drained. By endpoint, `last` holds the results batches the last cycle kept
        (known: not parsed again) and `this` receives this cycle's while they fit
        `USAGE_VALUES_KEPT`, those from `keep_from` on (seconds: where the next
        lookback starts)."""
        plan = self.usage
        assert plan is not None
        kinds = list(plan.group_by)
        kept = [last.get(kind, {}) for kind in kinds]
        keep = [this.setdefault(kind, {}) for kind in kinds]
        left = [tables.USAGE_VALUES_KEPT]

        def add(i: int, bucket: UsageParts) -> None:
            left[0] -= add_usage_parts(
                table,
                (bucket,),
                numbers_of,
                kept[i],
                keep[i],
                keep_from,
                left[0],
            )

        streams = [
            source.fetch_usage_parts(
                kind,
                window.start,
                window.end,
                plan.width,
                plan.group_by[kind],
                bad,
                kept[i],
            )
            for i, kind in enumerate(kinds)
        ]
        return DayFeed(streams, add, done)

    @staticmethod
    def _keep_from(ds: _Dataset, now: float) -> int:
        """Return where the next cycle's lookback starts (seconds): it fetches that
        again, so its results batches are the ones to keep."""
        return cycle_window(now, ds.lookback, ds.backfill, None, ds.unit).start

    def _key_state(self, on: bool, lookback_days: int, backfill_days: int) -> KeyNames:
        """Add the per-key costs data set when `on`; return the key names' state."""
        lister = getattr(self.source, "fetch_api_keys", None)
        if on:
            if not isinstance(self.source, KeyedCostSource):
                raise TypeError("costs by API key need a source that lists API keys")
            self.datasets.append(
                _Dataset(
                    KEY_COSTS,
                    DAY,
                    lookback_days,
                    backfill_days,
                    Ledger(self._daily_labels, numbered=True),
                    DAILY_COST_BY_API_KEY,
                )
            )
        return KeyNames(lister if callable(lister) else None, LEARN_NAMES_DAYS)

    def _fetch_key_costs(
        self,
        ds: _Dataset,
        window: Window,
        names: Names,
        now: float,
        bad: list[Rejected],
    ) -> Fetched | None:
        """Fetch the costs per project and API key of the window; None where the API
        keeps no per-key data for it (days before `KEY_COSTS_FROM` are never asked
        for; a refused grouping is said once), which is no failure."""
        source = cast(KeyedCostSource, self.source)
        self._keys.learn(now, self.reader, self.extra)
        start = max(window.start, KEY_COSTS_FROM)
        if window.start < KEY_COSTS_FROM:
            self._keys.say_once(
                "before",
                "no per-key cost data before 2025-12-06: the Admin API keeps none; "
                "those days have no openai_daily_cost_by_api_key samples",
            )
        if start >= window.end:
            return None
        index = self.tables.index(
            DAILY_COST_BY_API_KEY, ds.ledger.series, ds.ledger.renumber
        )
        table: CostColumns = Columns(index)
        try:
            if isinstance(source, CostPartsSource):
                # read whole: the keys' names come from the whole window's table
                self.tables.cost_feed(
                    ds.name,
                    lambda known: source.fetch_cost_parts(
                        start, window.end, bad, known, COSTS_BY_KEY_GROUP_BY
                    ),
                    table,
                    None,
                    self._keep_from(ds, now),
                    KEY_COST_KEY,
                ).drain()
            else:
                for lines in source.fetch_costs(
                    start, window.end, bad, COSTS_BY_KEY_GROUP_BY
                ):
                    add_key_cost_lines(table, lines)
        except RequestRejected as exc:
            self._keys.say_once(
                f"refused {exc}",
                "no per-key cost data: the Admin API refuses to group these days' "
                "costs by API key; nothing of them is pushed, and this is no failure",
                reason=str(exc),
            )
            return None
        self._keys.refresh({(pid, kid) for pid, kid, _ in table}, now)
        key_names = dict(self._keys.names)  # as of this fetch
        labels_cache: LabelsByNumber = []  # this cycle's, as for the costs
        labels_gen = self.tables.generation(DAILY_COST_BY_API_KEY, names, key_names)

        def samples(
            start: int, end: int, keys: list[Hashable] | None
        ) -> Iterable[Sample]:
            return key_cost_samples(
                table, names, key_names, self.extra, start, end, labels_cache, keys
            )

        def digest(day: int) -> bytes:
            return b"%d," % labels_gen + table.digest(day)

        return Fetched(samples, table.drop, digest)

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
        notes.extend(
            f"{kind} not read: the admin key lacks the scope (HTTP 403)"
            for kind in sorted(() if self.spend is None else self.spend.refused)
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
