"""Shared fixtures: fake Admin API, real VictoriaMetrics, a settable clock, servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerting import Stoppable
from tests.fake_openai import FakeOpenAI
from tests.vm import VictoriaMetrics


class Clock:
    """A clock the test moves by hand; `now` is Unix seconds."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance_days(self, days: float) -> None:
        """Move the clock forward by whole or partial days."""
        self.now += days * 86_400


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    """Return a clock at 12:00 UTC six days ago, so later days are still in the past.

    VictoriaMetrics drops samples more than about two days in the future, so tests
    that move the clock forward start it in the past.
    """
    today = int(time.time()) // 86_400 * 86_400
    return Clock(today - 6 * 86_400 + 12 * 3600)


@pytest.fixture(name="fake")
def fake_fixture(clock: Clock) -> Iterator[FakeOpenAI]:
    """Return a started fake Admin API that shares the test's clock."""
    with FakeOpenAI(page_size=4, now=clock) as fake:
        yield fake


@pytest.fixture(name="vm")
def vm_fixture(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """Return a real VictoriaMetrics with dedup on, stopped by pid afterwards."""
    server = VictoriaMetrics(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="started")
def started_fixture() -> Iterator[list[Stoppable]]:
    """Collect the servers a test starts and stop each one by its pid afterwards."""
    servers: list[Stoppable] = []
    yield servers
    for server in reversed(servers):
        server.stop()
