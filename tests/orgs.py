"""Seeded organizations for integration tests, and helpers to compare VM with the fake.

An organization here has names that stress label handling (quotes, backslashes,
newlines, non-Latin letters, two names that normalize alike, a null name, an archived
project), costs without a project and a null line item, with full-precision floats.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from openai_cost_pusher import jsonstream, parsers
from openai_cost_pusher.app import Pusher, UsagePlan
from openai_cost_pusher.config import Secret
from openai_cost_pusher.metrics import SelfStats
from openai_cost_pusher.openai_api import AdminApi
from openai_cost_pusher.push import VmClient
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI
from tests.vm import VictoriaMetrics

DAY = 86_400

ODD_PROJECTS: dict[str, tuple[str | None, bool]] = {
    "proj_quote": ('Quote "Q" \\ back\nslash', False),
    "proj_intl": ("Ünïcode Проект ✓", False),
    "proj_team_a1": ("Team A", False),
    "proj_team_a2": ("team-a", False),
    "proj_nameless": (None, False),
    "proj_archived": ("Old Archived Thing", True),
}
EXPECTED_LABEL = {
    "proj_quote": "quote_q_back_slash",
    "proj_intl": "ünïcode_проект",
    "proj_team_a1": "team_a",
    "proj_team_a2": "team_a",
    "proj_nameless": "proj_nameless",
    "proj_archived": "old_archived_thing",
    "": "unattributed",
}
LINE_ITEMS: tuple[str | None, ...] = ("gpt-4o, input", "gpt-4o, output", None)

CostKey = tuple[str, str, str, int]
"""project_id, line_item, currency, day in ms: how a daily value is compared."""


def seed_odd_org(
    fake: FakeOpenAI, today: int, *, days_back: int = 35, seed: int = 7
) -> None:
    """Fill `fake` with the odd projects and random costs for `days_back` days."""
    for project_id, (name, archived) in ODD_PROJECTS.items():
        fake.add_project(project_id, name, archived=archived)
    rng = random.Random(seed)
    for day in range(today - days_back * DAY, today + DAY, DAY):
        owners: list[str | None] = [*ODD_PROJECTS, None]
        for owner in owners:
            for item in LINE_ITEMS:
                if rng.random() < 0.85:
                    fake.set_cost(day, owner, item, rng.uniform(0.0001, 80.0))


def fake_costs(fake: FakeOpenAI, start: int, end: int) -> dict[CostKey, float]:
    """Return the fake's daily costs in `[start, end)` keyed as VM series are."""
    return {
        (pid or "", item or "", currency, day * 1000): value
        for (day, pid, item, currency), value in fake.costs().items()
        if start <= day < end
    }


def vm_costs(
    vm: VictoriaMetrics, labels: dict[str, str] | None = EXPECTED_LABEL
) -> dict[CostKey, float]:
    """Return every `openai_daily_cost` value stored in VM, checking one per day."""
    out: dict[CostKey, float] = {}
    for series in vm.export('{__name__="openai_daily_cost"}'):
        m = series.metric
        assert len(series.timestamps) == len(set(series.timestamps)), series
        for ts, value in zip(series.timestamps, series.values, strict=True):
            key = (m.get("project_id", ""), m.get("line_item", ""), m["currency"], ts)
            assert key not in out, f"two series hold {key}"
            out[key] = value
            if labels is not None:
                assert m["project"] == labels[m.get("project_id", "")], m
    return out


def assert_equal_costs(
    expected: dict[CostKey, float], actual: dict[CostKey, float]
) -> None:
    """Assert both hold the same keys and values within 1e-9 relative."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing, f"missing in VictoriaMetrics: {missing[:5]}"
    assert not extra, f"not in the API: {extra[:5]}"
    for key, value in expected.items():
        assert abs(actual[key] - value) <= 1e-9 * max(abs(value), 1e-12), (
            key,
            value,
            actual[key],
        )


def make_pusher(
    fake: FakeOpenAI,
    push_url: str,
    clock: Clock,
    *,
    lookback_days: int = 3,
    backfill_days: int = 30,
    sleeps: list[float] | None = None,
    stop: threading.Event | None = None,
    usage: UsagePlan | None = None,
    costs_by_api_key: bool = False,
) -> Pusher:
    """Return a pusher wired to the fake over HTTP and to a push URL, with no waits."""
    stop = stop or threading.Event()
    recorded = sleeps if sleeps is not None else []
    stats = SelfStats(version="test")
    api = AdminApi(
        make_session(),
        fake.base_url,
        Secret(fake.admin_key),
        timeouts=Timeouts(2.0, 5.0),
        stop=stop,
        count_request=stats.count_request,
        retrying=lambda: retry_policy(120, stop, sleep=recorded.append),
    )
    client = VmClient(
        make_session(),
        push_url,
        authorization=None,
        timeouts=Timeouts(2.0, 5.0),
        stop=stop,
        retrying=lambda: retry_policy(120, stop, sleep=recorded.append, max_attempts=2),
    )
    return Pusher(
        api,
        client,
        lookback_days=lookback_days,
        backfill_days=backfill_days,
        extra_labels=(("job", "test"),),
        clock=clock,
        stats=stats,
        chunk_bytes=64 * 1024,
        usage=usage,
        costs_by_api_key=costs_by_api_key,
    )


def dead_url() -> str:
    """Return an import URL on a port where nothing listens."""
    from tests.procs import free_port

    return f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"


def spy_on_parsed_cost_batches(
    monkeypatch: pytest.MonkeyPatch, batch_bytes: int | None = None
) -> list[int]:
    """Return the day of each costs results batch parsed from now on (an empty
    `results` array is no batch); with `batch_bytes`, cut days into batches that
    long."""
    if batch_bytes is not None:
        monkeypatch.setattr(jsonstream, "BATCH_BYTES", batch_bytes)
    parsed: list[int] = []
    real = parsers.CostBucket._add

    def spy(
        self: parsers.CostBucket, batch: list[Any], offset: int, start: int
    ) -> None:
        if batch:
            parsed.append(start)
        real(self, batch, offset, start)

    monkeypatch.setattr(parsers.CostBucket, "_add", spy)
    return parsed
