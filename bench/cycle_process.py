"""Run a backfill, a confirming and a steady-state cycle here; print figures as JSON.

One line per cycle, as it ends, so that a run stopped at its time limit keeps the
figures of the cycles it finished.

The confirming cycle is the first after the backfill that reads back what it pushed
(every day of the backfill, a week per request), the steady cycle a later one (the
days pushed since): both with `confirm_after_s=0`, after a flush of VictoriaMetrics,
so that the read-back runs at once rather than 30 s later.

Started by `bench/cycles.py` as a separate process, so that CPU time and peak RSS are
the pusher's alone (the synthetic API and VictoriaMetrics run elsewhere).
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.plan import BACKFILL_DAYS, BACKFILL_HOURS, LOOKBACK_DAYS, LOOKBACK_HOURS
from openai_cost_pusher.app import Pusher, UsagePlan
from openai_cost_pusher.config import Secret
from openai_cost_pusher.metrics import SelfStats
from openai_cost_pusher.openai_api import AdminApi
from openai_cost_pusher.push import VmClient
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from openai_cost_pusher.vmread import VmReader, query_root


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB (VmHWM).

    Not `getrusage().ru_maxrss`: Linux keeps that across `execve`, so a child of a
    large process (the benchmark, which holds the fake organization) would report
    its parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Run three cycles, printing one JSON line with each one's figures."""
    base_url, key, push_url, width = sys.argv[1:5]
    stop = threading.Event()
    stats = SelfStats(version="bench")
    timeouts = Timeouts(5.0, 120.0)
    api = AdminApi(
        make_session(),
        base_url,
        Secret(key),
        timeouts=timeouts,
        stop=stop,
        count_request=stats.count_request,
        retrying=lambda: retry_policy(60, stop),
    )
    client = VmClient(
        make_session(),
        push_url,
        authorization=None,
        timeouts=timeouts,
        stop=stop,
        retrying=lambda: retry_policy(60, stop),
    )
    usage = None
    if width != "off":
        usage = UsagePlan.build(
            width,
            lookback_days=LOOKBACK_DAYS,
            backfill_days=BACKFILL_DAYS,
            lookback_hours=LOOKBACK_HOURS,
            backfill_hours=BACKFILL_HOURS,
        )
    reader = VmReader(
        make_session(),
        query_root(push_url),
        authorization=None,
        timeouts=timeouts,
        stop=stop,
        retrying=lambda: retry_policy(60, stop),
    )
    pusher = Pusher(
        api,
        client,
        lookback_days=LOOKBACK_DAYS,
        backfill_days=BACKFILL_DAYS,
        extra_labels=(("job", "bench"),),
        usage=usage,
        stats=stats,
        reader=reader,
        costs_by_api_key=True,  # on by default (COSTS_BY_API_KEY)
    )
    current: dict[str, Any] = {"cycle": "backfill", "cpu": 0.0, "calls": 0}

    def cut_short(signum: int, frame: object) -> None:
        """At the benchmark's time limit: the figures so far of the cycle running."""
        figures = {
            "cycle": current["cycle"],
            "ok": False,
            "error": "stopped at the time limit (--timeout) before it ended",
            "cpu_s": time.process_time() - current["cpu"],
            "api_requests": sum(stats.api_requests.values()) - current["calls"],
            "peak_rss_mb": peak_rss_mb(),
        }
        print(json.dumps(figures), flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, cut_short)
    # BENCH_PROFILE=DIR: write each cycle's cProfile statistics to DIR/<cycle>.prof
    # (the CPU figures then include the profiler's own cost)
    profile_dir = os.environ.get("BENCH_PROFILE", "")
    for name in ("backfill", "confirm", "steady"):
        if name != "backfill":
            pusher.confirm_after_s = 0.0
            flush = reader.root + "/internal/force_flush"
            make_session().get(flush, timeout=60).raise_for_status()
        calls = sum(stats.api_requests.values())
        current.update(cycle=name, cpu=time.process_time(), calls=calls)
        cpu = time.process_time()
        wall = time.monotonic()
        if profile_dir:
            profiler = cProfile.Profile()
            report = profiler.runcall(pusher.run_cycle)
            profiler.dump_stats(str(Path(profile_dir) / f"{name}.prof"))
        else:
            report = pusher.run_cycle()
        figures = {
            "cycle": name,
            "ok": report.ok,
            "error": report.error,
            "cpu_s": time.process_time() - cpu,
            "wall_s": time.monotonic() - wall,
            "api_requests": sum(stats.api_requests.values()) - calls,
            "samples": report.samples,
            "usage_samples": report.get("usage").samples if usage else 0,
            "push_requests": report.stats.requests,
            "raw_bytes": report.stats.raw_bytes,
            "gzip_bytes": report.stats.gzip_bytes,
            "peak_rss_mb": peak_rss_mb(),
        }
        print(json.dumps(figures), flush=True)  # a run cut short keeps its cycles


if __name__ == "__main__":
    main()
