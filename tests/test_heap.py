"""The heap's free pages go back to the system once a cycle lets a day go."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from openai_cost_pusher import heap
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI
from tests.orgs import DAY, make_pusher, seed_odd_org
from tests.vm import VictoriaMetrics

_PAGE = 4096


def _resident_mib() -> float:
    """Return this process' resident memory in MiB (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE / (1 << 20)


@pytest.mark.skipif(not heap.trimmable(), reason="the C library has no malloc_trim")
def test_trim_returns_the_free_pages_a_structure_left_between_live_blocks() -> None:
    """Blocks freed between blocks still live stay resident, as glibc keeps them;
    `trim` hands their whole pages back."""
    # 2 KiB blocks come from the C heap (Python's own allocator takes up to 512
    # bytes); one block in 64 stays live, so the heap's top cannot shrink by itself
    blocks = [bytes(2048) for _ in range(48_000)]  # about 94 MiB
    kept = blocks[::64] + blocks[-1:]
    del blocks
    freed_resident = _resident_mib()
    heap.trim()
    trimmed = _resident_mib()
    assert freed_resident - trimmed > 40, (freed_resident, trimmed)
    assert len(kept) == 751


@pytest.mark.parametrize("libc", ["refused", "no malloc_trim"])
def test_without_malloc_trim_nothing_is_called(
    libc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A C library without `malloc_trim` (musl, macOS), or none to open by
    `CDLL(None)` (Windows raises TypeError there), leaves trimming off, no error."""

    def cdll(name: object) -> object:
        if libc == "refused":
            raise TypeError("expected str, bytes or os.PathLike object, not NoneType")
        return object()  # no such symbol

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert heap._malloc_trim() is None


def test_a_cycle_trims_after_each_landed_day_and_each_data_set(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """The pusher returns free pages once each day's tables are let go, and once a
    data set is done, whether it landed or failed."""
    seed_odd_org(fake, int(clock.now) // DAY * DAY)
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=5)
    trims: list[int] = []
    pusher.trim = lambda: trims.append(1)
    report = pusher.run_cycle()
    assert report.ok, report.error
    (costs,) = report.datasets
    assert costs.landed_days == 6  # 5 complete days and today
    assert len(trims) == 6 + 1
    trims.clear()
    vm.stop()  # the store is gone: the data set fails, and is trimmed all the same
    clock.now += 900
    (failed,) = pusher.run_cycle().datasets
    assert not failed.ok
    assert len(trims) == failed.landed_days + 1
