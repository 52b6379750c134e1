"""Whole pusher cycles against the synthetic Admin API and a real VictoriaMetrics.

`run_org` serves one synthetic organization (`bench/synthetic_api.py`), starts a
VictoriaMetrics, and runs `bench/cycle_process.py` in a separate process: a backfill,
the first confirming cycle and a steady cycle. CPU seconds and peak RSS are the
pusher process's alone; the server and VictoriaMetrics run elsewhere.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan import (
    API_PAGE_BUCKETS,
    BACKFILL_DAYS,
    BACKFILL_HOURS,
    LOOKBACK_DAYS,
    LOOKBACK_HOURS,
)
from bench.synthetic_api import KEYS, Org, SyntheticApi
from openai_cost_pusher.parsers import USAGE_KINDS as PUSHED_USAGE_KINDS
from tests.vm import VictoriaMetrics

ROOT = Path(__file__).resolve().parent.parent
CYCLES = ("backfill", "confirm", "steady")
USAGE_KINDS = len(PUSHED_USAGE_KINDS)
PROJECTS_LIMIT = 100
API_KEYS_LIMIT = 100
COSTS_LIMIT = 180
USAGE_LIMIT = {"1d": 31, "1h": 168}
BUCKETS = {
    "costs": (BACKFILL_DAYS + 1, LOOKBACK_DAYS),
    "1d": (BACKFILL_DAYS + 1, LOOKBACK_DAYS),
    "1h": (BACKFILL_HOURS + 1, LOOKBACK_HOURS),
}
"""Buckets a backfill and a later cycle fetch: the complete ones plus the current."""


@dataclass(frozen=True)
class Spec:
    """One organization to run: its size and usage width, and a name for tables."""

    projects: int
    items: int
    width: str

    @property
    def key(self) -> str:
        return f"{self.projects}x{self.items} {self.width}"


def minimum_requests(spec: Spec, cycle: str) -> int:
    """Return the fewest Admin API requests the page limits allow for one cycle.

    One project page per 100 projects; for each bucket query (costs by line item,
    costs by API key, each usage endpoint), one page per `min(limit, page size)`
    buckets, with the largest `limit` of the endpoint; and in the backfill one key
    list page per project (100 keys a page).
    """
    first = cycle == "backfill"
    pages = max(1, math.ceil(spec.projects / PROJECTS_LIMIT))
    days = BUCKETS["costs"][0 if first else 1]
    # costs by line item, then by API key (COSTS_BY_API_KEY, on by default)
    pages += 2 * math.ceil(days / min(COSTS_LIMIT, API_PAGE_BUCKETS))
    if first:  # each project's key list, read again an hour later at the earliest
        pages += spec.projects * math.ceil(KEYS / API_KEYS_LIMIT)
    if spec.width != "off":
        buckets = BUCKETS[spec.width][0 if first else 1]
        per_page = min(USAGE_LIMIT[spec.width], API_PAGE_BUCKETS)
        pages += USAGE_KINDS * math.ceil(buckets / per_page)
    return pages


def expected_samples(spec: Spec) -> dict[str, int]:
    """Return the daily-cost series and samples a backfill stores."""
    series = spec.projects * spec.items
    return {"series": series, "samples": series * (BACKFILL_DAYS + 1)}


def run_org(spec: Spec, workdir: Path, timeout_s: float) -> dict[str, Any]:
    """Run the three cycles for one organization and return their figures.

    A pusher process still running after `timeout_s` is killed; the cycles it did
    not finish are reported as failed.
    """
    began = time.monotonic()
    org = Org(spec.projects, spec.items, spec.width, now=time.time())
    vm = VictoriaMetrics(workdir)
    try:
        with SyntheticApi(org) as api:
            figures = _run_cycles(spec, api, vm, timeout_s)
            served = sum(api.requests.values())
        stored = stored_costs(vm)
    finally:
        vm.stop()
    figures["spec"] = {"projects": spec.projects, "items": spec.items}
    figures["width"] = spec.width
    figures["key"] = spec.key
    figures["served_requests"] = served
    figures["stored"] = stored
    figures["expected"] = expected_samples(spec)
    for cycle in CYCLES:
        figures[cycle]["min_requests"] = minimum_requests(spec, cycle)
    figures["wall_s"] = time.monotonic() - began
    return figures


def _run_cycles(
    spec: Spec, api: SyntheticApi, vm: VictoriaMetrics, timeout_s: float
) -> dict[str, Any]:
    """Run `bench/cycle_process.py` against `api` and `vm`; return its figures."""
    args = [sys.executable, "-m", "bench.cycle_process", api.base_url]
    args += [api.admin_key, vm.push_url, spec.width]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    cut_short = None
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # by its pid, only the process started here: SIGTERM makes it print the
        # figures of the cycle it is in (CPU and peak RSS so far) and exit
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        cut_short = "not run: the time limit ended the run"
    figures: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith('{"cycle"'):
            row = json.loads(line)
            figures[row.pop("cycle")] = {**_not_run(""), **row}
    if cut_short is None and proc.returncode != 0:
        raise RuntimeError(f"{spec.key}: the pusher process failed:\n{err[-3000:]}")
    for cycle in CYCLES:
        figures.setdefault(cycle, _not_run(cut_short or "not run"))
    return figures


def _not_run(reason: str) -> dict[str, Any]:
    return {
        "ok": False,
        "error": reason,
        "cpu_s": float("nan"),
        "wall_s": float("nan"),
        "api_requests": 0,
        "samples": 0,
        "usage_samples": 0,
        "push_requests": 0,
        "raw_bytes": 0,
        "gzip_bytes": 0,
        "peak_rss_mb": float("nan"),
    }


def stored_costs(vm: VictoriaMetrics) -> dict[str, int]:
    """Return the `openai_daily_cost` series and samples VictoriaMetrics holds."""
    window = f"{BACKFILL_DAYS + 5}d"
    out = {}
    for name, expr in (
        ("series", f"count(last_over_time(openai_daily_cost[{window}]))"),
        ("samples", f"sum(count_over_time(openai_daily_cost[{window}]))"),
    ):
        result = vm.query(expr)
        out[name] = int(float(result[0]["value"][1])) if result else 0
    return out
