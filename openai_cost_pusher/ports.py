"""The protocols the cycle depends on: where data comes from, goes to, is read back.

`CostSource` is the Admin API client (`openai_api.AdminApi`) or the demo organization
(`demo`); `KeyedCostSource` the same, able to group costs by API key and list keys;
`UsagePartsSource` and `CostPartsSource` one that leaves unparsed the usage or costs
it gave before (the client);
`Sink` where exposition chunks are pushed (`push.VmClient`, stdout, a test recorder);
`Reader` where pushed data is read back (`vmread.VmReader`); `SpendSource` where spend
limits and alerts come from. Types only: nothing here does any I/O.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from openai_cost_pusher.model import (
    ApiKey,
    CostLine,
    CostParts,
    Project,
    Rejected,
    UsageLine,
    UsageParts,
)
from openai_cost_pusher.push import PushStats
from openai_cost_pusher.spend_limits import SpendAlert, SpendLimit, Unread
from openai_cost_pusher.vmread import Series

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


@runtime_checkable
class KeyedCostSource(Protocol):
    """A source that can group costs by API key and list each project's keys."""

    def fetch_costs(
        self,
        start: int,
        end: int,
        rejected: list[Rejected] | None = None,
        group_by: Sequence[str] = ...,
    ) -> Iterator[list[CostLine]]:
        """Yield the cost lines of `[start, end)` grouped by `group_by`."""
        ...

    def fetch_api_keys(self, project_id: str) -> list[ApiKey]:
        """Return every API key (id and name) of one project."""
        ...


@runtime_checkable
class UsagePartsSource(Protocol):
    """A source that hands usage on with the digests of its results batches, and
    leaves unparsed the batches the caller knows (`AdminApi.fetch_usage_parts`)."""

    def fetch_usage_parts(
        self,
        kind: str,
        start: int,
        end: int,
        width: str,
        group_by: Sequence[str],
        rejected: list[Rejected] | None,
        known: Container[bytes],
    ) -> Iterator[UsageParts]:
        """Yield one usage endpoint's buckets of `[start, end)` as `UsageParts`."""
        ...


@runtime_checkable
class CostPartsSource(Protocol):
    """A source that hands costs on with the digests of their results batches, as
    `UsagePartsSource` does usage (`AdminApi.fetch_cost_parts`)."""

    def fetch_cost_parts(
        self,
        start: int,
        end: int,
        rejected: list[Rejected] | None,
        known: Container[bytes],
        group_by: Sequence[str] = ...,
    ) -> Iterator[CostParts]:
        """Yield the days of `[start, end)` grouped by `group_by` as `CostParts`."""
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


class SpendSource(Protocol):
    """Where spend limits and spend alerts come from: the Admin API or the demo."""

    def fetch_spend_limit(self, project_id: str = "") -> SpendLimit | Unread:
        """Return the organization's (`""`) or a project's limit, or why none."""
        ...

    def fetch_spend_alerts(self, project_id: str = "") -> list[SpendAlert] | Unread:
        """Return the organization's (`""`) or a project's alerts, or why none."""
        ...
