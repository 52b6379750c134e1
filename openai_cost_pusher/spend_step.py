"""The spend-limit step of a cycle: read spend limits and alerts, a bounded while.

A refresh reads the organization's limit and alerts, then each active project's, and
is due again `refresh_s` after it started. One cycle spends at most `budget_s` on the
reads; those left over continue in the next cycle, so that a large organization never
delays the costs for long. What was read is pushed stamped now; a failed push keeps it
for the next cycle. Optional: nothing here fails the cycle. A read refused (403) is
not asked again in the refresh, and /healthz names it (`refused`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from openai_cost_pusher.errors import CostPusherError, Stopped, Transient
from openai_cost_pusher.model import Labels, Project, Sample
from openai_cost_pusher.ports import Names, SpendSource
from openai_cost_pusher.push import UNANSWERED, PushStats
from openai_cost_pusher.spend_limits import (
    SpendAlert,
    SpendLimit,
    Unread,
    spend_samples,
)

log = logging.getLogger(__name__)

SPEND_READ_BUDGET_S = 120.0
"""The most time one cycle spends reading spend limits; the reads left over continue
in the next cycle, so that a large organization never delays the costs for long."""

SpendRead = tuple[str, str]
"""One spend read: `limit` or `alerts`, and the project id (`""`: the organization)."""

_SPEND_READS = ("limit", "alerts")


def _spend_kind(read: SpendRead) -> str:
    """Return a read's kind, as named in logs and /healthz."""
    what, project_id = read
    scope = "project" if project_id else "organization"
    return f"{scope} spend {'limits' if what == 'limit' else 'alerts'}"


@dataclass(slots=True)
class SpendStep:
    """The spend-limit step, and what it keeps between cycles."""

    source: SpendSource
    refresh_s: float
    budget_s: float
    due: float | None = None
    """Wall-clock time of the next refresh; None: at the next cycle."""
    queue: deque[SpendRead] = field(default_factory=deque)
    """The reads of the refresh under way not done yet, in order."""
    limits: list[SpendLimit] = field(default_factory=list)
    alerts: list[SpendAlert] = field(default_factory=list)
    """Records read and not pushed yet (a failed push keeps them for the next)."""
    skipped: set[str] = field(default_factory=set)
    """Kinds of read refused (403) in the refresh under way: not asked again."""
    refused: set[str] = field(default_factory=set)
    """Kinds of read refused in the last refresh, for /healthz."""
    said: set[str] = field(default_factory=set)
    """What was logged once already (a refusal, an unset limit)."""
    tally: dict[str, int] = field(default_factory=dict)
    """Counts of the refresh under way, for its summary line."""
    first_failure: str | None = None

    def run(
        self,
        now: float,
        projects: Sequence[Project],
        names: Names,
        *,
        push: Callable[[list[Sample]], PushStats],
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        extra: Labels,
    ) -> bool:
        """Read the spend limits and alerts when a refresh is due (or one is under
        way), for at most the step's budget (timed by `monotonic`), and `push` what
        was read, stamped at `clock()`; return whether it went somewhere (then it
        is no longer kept).

        Optional: nothing here fails the cycle. A refresh reads the organization's
        limit and alerts, then each active project's, in the project list's order,
        and is due again `refresh_s` after it started. A read that fails is logged
        (the refresh's first failure in full) and leaves out only its own series.
        """
        if not self.queue and (self.due is None or now >= self.due):
            active = [p.id for p in projects if not p.archived]
            self.queue = deque([("limit", ""), ("alerts", "")])
            self.queue.extend((what, pid) for pid in active for what in _SPEND_READS)
            self.due = now + self.refresh_s
            self.limits, self.alerts = [], []  # this refresh replaces the unpushed
            self.skipped, self.tally, self.first_failure = set(), {}, None
        if self.queue:
            self._read(monotonic)
            if not self.queue:
                self.refused = set(self.skipped)
                log.info(
                    "spend limits read",
                    extra={"dataset": "spend_limits", **self.tally},
                )
        if not (self.limits or self.alerts):
            return False
        samples = spend_samples(
            self.limits, self.alerts, names, extra, int(clock() * 1000)
        )
        try:
            pushed = push(samples)
        except CostPusherError as exc:
            log.warning(
                "spend limits not pushed; pushed again next cycle: %s",
                exc,
                extra={"dataset": "spend_limits"},
            )
            return False
        if pushed.where == UNANSWERED:
            return False  # nothing went anywhere (the demo alone): kept for the next
        self.limits, self.alerts = [], []
        return True

    def _read(self, monotonic: Callable[[], float]) -> None:
        """Do the refresh's reads left, in order, until done, the step's budget is
        spent, or a read fails after its retries on a transient failure (a rate
        limit that lasts): the rest continues in the next cycle."""
        started, done = monotonic(), 0
        while self.queue:
            if done and monotonic() - started >= self.budget_s:
                log.info(
                    "spend limits: %d reads continue in the next cycle",
                    len(self.queue),
                    extra={"dataset": "spend_limits"},
                )
                return
            read = self.queue.popleft()
            if _spend_kind(read) in self.skipped:
                continue  # refused already in this refresh: the key lacks the scope
            self.tally["reads"] = self.tally.get("reads", 0) + 1
            done += 1
            try:
                self._read_one(read)
            except Stopped:
                raise
            except CostPusherError as exc:
                self._failed(str(exc))
                if isinstance(exc, Transient):
                    log.warning(
                        "spend limits: reading paused until the next cycle; %d "
                        "reads left",
                        len(self.queue),
                        extra={"dataset": "spend_limits"},
                    )
                    return
            except Exception as exc:  # the step's boundary: never fail the cycle
                log.exception("spend limit read failed on an unexpected error")
                self._failed(f"unexpected {type(exc).__name__}: {exc}")

    def _read_one(self, read: SpendRead) -> None:
        what, project_id = read
        kind = _spend_kind(read)
        got: SpendLimit | list[SpendAlert] | Unread
        if what == "limit":
            got = self.source.fetch_spend_limit(project_id)
            if isinstance(got, SpendLimit):
                self.limits.append(got)
                self.tally["limits"] = self.tally.get("limits", 0) + 1
        else:
            got = self.source.fetch_spend_alerts(project_id)
            if isinstance(got, list):
                self.alerts.extend(got)
                self.tally["alerts"] = self.tally.get("alerts", 0) + len(got)
        if got is Unread.REFUSED:
            self.skipped.add(kind)
            self.tally["refused"] = self.tally.get("refused", 0) + 1
            if "refused" not in self.said:
                self.said.add("refused")
                log.warning(
                    "%s cannot be read: the admin key lacks the scope (HTTP 403); "
                    "refused spend reads have no series, /healthz names them, and "
                    "this is said once",
                    kind,
                    extra={"dataset": "spend_limits"},
                )
        elif got is Unread.NOT_CONFIGURED and what == "limit":
            self.tally["no_limit"] = self.tally.get("no_limit", 0) + 1
            said = f"unset {kind}"
            if said not in self.said:
                self.said.add(said)
                log.info(
                    "no spend limit set for %s: no openai_spend_limit series for it "
                    "(said once)",
                    "a project" if project_id else "the organization",
                    extra={"dataset": "spend_limits", "project_id": project_id},
                )

    def _failed(self, error: str) -> None:
        """Count a failed spend read; log the refresh's first failure in full."""
        self.tally["failed"] = self.tally.get("failed", 0) + 1
        if self.first_failure is None:
            self.first_failure = error
            log.warning(
                "spend limit read failed; its series are left out: %s",
                error,
                extra={"dataset": "spend_limits"},
            )
        else:
            log.debug("spend limit read failed: %s", error)
