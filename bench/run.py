"""Benchmark: whole cycles against the fake Admin API and a real VictoriaMetrics.

Measures, for a small (5 projects x 5 line items) and a large (1,000 x 20) synthetic
organization, a 30-day backfill cycle and a steady-state cycle: Admin API requests
(next to the minimum the page limits allow), CPU seconds and peak RSS of the pusher
process, samples and bytes pushed. Costs only, then costs with token usage (5 models
each on completions and embeddings, every day active) with 1d buckets, and with 1h
buckets over a 7-day window. Then renders and gzips 1,000,000 samples next to
prometheus_client's `generate_latest` on the same samples.

Run: `.venv/bin/python -m bench.run` (after `scripts/test.sh` has fetched the servers).
This is a measurement, not a test: figures vary with the machine.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from openai_cost_pusher.exposition import render_chunks
from openai_cost_pusher.model import Sample
from openai_cost_pusher.push import GZIP_LEVEL
from tests.fake_openai import FakeOpenAI
from tests.vm import VictoriaMetrics

DAY = 86_400
API_PAGE_BUCKETS = 31  # the real API returns about 31 daily buckets per page
ROOT = Path(__file__).resolve().parent.parent


def seed(fake: FakeOpenAI, projects: int, items: int, today: int) -> None:
    """Fill the fake with `projects` x `items` costs on each of 31 days."""
    rng = random.Random(1)
    for p in range(projects):
        fake.add_project(f"proj_{p:05d}", f"Project {p}")
    for day in range(today - 30 * DAY, today + DAY, DAY):
        for p in range(projects):
            for i in range(items):
                fake.set_cost(
                    day, f"proj_{p:05d}", f"model-{i}, input", rng.uniform(0.01, 100)
                )


MODELS = 5
USAGE_KINDS = 8
USAGE_LIMIT = {"1d": 31, "1h": 168}
USAGE_BUCKETS = {"1d": (31, 3), "1h": (169, 24)}
"""Width to buckets in the backfill (complete buckets plus the current one) and in
the steady-state window."""


def seed_usage(fake: FakeOpenAI, projects: int, width: str, now: float) -> None:
    """Give every project 5 models on completions and embeddings in every bucket."""
    step = DAY if width == "1d" else 3600
    backfill, _ = USAGE_BUCKETS[width]
    last = int(now) // step * step
    rng = random.Random(2)
    for start in range(last - (backfill - 1) * step, last + step, step):
        for p in range(projects):
            pid = f"proj_{p:05d}"
            for m in range(MODELS):
                fake.add_usage(
                    "completions",
                    start,
                    project_id=pid,
                    model=f"model-{m}",
                    batch=False,
                    input_tokens=rng.randrange(10**7),
                    output_tokens=rng.randrange(10**6),
                    input_cached_tokens=rng.randrange(10**5),
                    num_model_requests=rng.randrange(1, 10**4),
                )
                fake.add_usage(
                    "embeddings",
                    start,
                    project_id=pid,
                    model=f"embed-{m}",
                    input_tokens=rng.randrange(10**7),
                    num_model_requests=rng.randrange(1, 10**4),
                )


def minimum_requests(projects: int, days: int, width: str, cycle: str) -> int:
    """Return the fewest requests the page limits allow for one cycle."""
    project_pages = max(1, math.ceil(projects / 100))
    cost_pages = math.ceil(days / min(180, API_PAGE_BUCKETS))
    usage_pages = 0
    if width != "off":
        buckets = USAGE_BUCKETS[width][0 if cycle == "backfill" else 1]
        per_query = min(USAGE_LIMIT[width], API_PAGE_BUCKETS)
        usage_pages = USAGE_KINDS * math.ceil(buckets / per_query)
    return project_pages + cost_pages + usage_pages


def run_org(
    name: str, projects: int, items: int, width: str, workdir: Path
) -> dict[str, object]:
    """Run both cycles for one organization and return the figures."""
    now = time.time()
    today = int(now) // DAY * DAY
    vm = VictoriaMetrics(workdir)
    try:
        with FakeOpenAI(page_size=API_PAGE_BUCKETS) as fake:
            seed(fake, projects, items, today)
            if width != "off":
                seed_usage(fake, projects, width, now)
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.cycle_process",
                    fake.base_url,
                    fake.admin_key,
                    vm.push_url,
                    width,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            figures: dict[str, object] = json.loads(
                proc.stdout.strip().splitlines()[-1]
            )
        stored = len(vm.export('{__name__="openai_daily_cost"}'))
    finally:
        vm.stop()
    figures["org"] = name
    figures["series_in_vm"] = stored
    figures["width"] = width
    figures["min_requests_backfill"] = minimum_requests(projects, 31, width, "backfill")
    figures["min_requests_steady"] = minimum_requests(projects, 3, width, "steady")
    return figures


def synthetic_samples(n: int) -> Iterator[Sample]:
    """Yield `n` daily-cost-like samples over 1,000 x 20 series."""
    labels_cache = [
        tuple(
            sorted(
                {
                    "job": "bench",
                    "project_id": f"proj_{p:05d}",
                    "project": f"project_{p}",
                    "line_item": f"model-{i}, input",
                    "currency": "usd",
                }.items()
            )
        )
        for p in range(1000)
        for i in range(20)
    ]
    rng = random.Random(2)
    for k in range(n):
        yield Sample(
            "openai_daily_cost",
            labels_cache[k % len(labels_cache)],
            rng.uniform(0.01, 100),
            1_700_000_000_000 + (k // 20_000) * DAY * 1000,
        )


def bench_render(n: int, repeat: int = 3) -> dict[str, float]:
    """Return the median of `repeat` timings of each renderer (see `render_once`)."""
    runs = [render_once(n) for _ in range(repeat)]
    out = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    out["ratio"] = out["prometheus_client_cpu_s"] / out["ours_cpu_s"]
    return out


def render_once(n: int) -> dict[str, float]:
    """Time render + gzip of `n` samples, and prometheus_client on the same samples."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    samples = list(synthetic_samples(n))
    cpu = time.process_time()
    raw = gz = 0
    for chunk in render_chunks(samples):
        raw += len(chunk)
        gz += len(gzip.compress(chunk, compresslevel=GZIP_LEVEL, mtime=0))
    ours = time.process_time() - cpu

    class Collector:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            names = [k for k, _ in samples[0].labels]
            family = GaugeMetricFamily("openai_daily_cost", "daily cost", labels=names)
            for s in samples:
                family.add_metric(
                    [v for _, v in s.labels], s.value, timestamp=s.ts_ms / 1000
                )
            yield family

    registry = CollectorRegistry()
    registry.register(Collector())
    cpu = time.process_time()
    text = generate_latest(registry)
    baseline_gz = len(gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0))
    baseline = time.process_time() - cpu
    return {
        "samples": n,
        "ours_cpu_s": ours,
        "raw_mb": raw / 1e6,
        "gzip_mb": gz / 1e6,
        "prometheus_client_cpu_s": baseline,
        "prometheus_client_gzip_mb": baseline_gz / 1e6,
        "ratio": baseline / ours,
    }


def table(results: list[dict[str, object]], render: dict[str, float]) -> str:
    """Return the figures as the Markdown tables the README shows."""
    rows = [
        "| organization | usage | cycle | API requests (minimum) | CPU s "
        "| peak RSS MB | samples pushed (usage) | raw MB | gzip MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for org in results:
        for cycle in ("backfill", "confirm", "steady"):
            f = org[cycle]
            assert isinstance(f, dict) and f["ok"], f
            minimum = org[
                f"min_requests_{'backfill' if cycle == 'backfill' else 'steady'}"
            ]
            rows.append(
                f"| {org['org']} | {org['width']} | {cycle} "
                f"| {f['api_requests']} ({minimum}) "
                f"| {f['cpu_s']:.2f} | {f['peak_rss_mb']:.0f} | {f['samples']:,} "
                f"({f['usage_samples']:,}) "
                f"| {f['raw_bytes'] / 1e6:.2f} | {f['gzip_bytes'] / 1e6:.2f} |"
            )
    rows += [
        "",
        "| 1,000,000 samples | CPU s | gzip MB |",
        "|---|---|---|",
        f"| render + gzip (this package) | {render['ours_cpu_s']:.2f} "
        f"| {render['gzip_mb']:.1f} |",
        f"| prometheus_client generate_latest + gzip | "
        f"{render['prometheus_client_cpu_s']:.2f} "
        f"| {render['prometheus_client_gzip_mb']:.1f} |",
        f"| ratio | {render['ratio']:.1f}x | |",
    ]
    return "\n".join(rows)


def main() -> None:
    """Print the figures as Markdown tables, then as JSON."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, projects, items, width in (
            ("small 5x5", 5, 5, "off"),
            ("small 5x5", 5, 5, "1d"),
            ("large 1000x20", 1000, 20, "off"),
            ("large 1000x20", 1000, 20, "1d"),
            ("large 1000x20", 1000, 20, "1h"),
        ):
            results.append(run_org(name, projects, items, width, Path(tmp)))
    render = bench_render(1_000_000)
    print(table(results, render))
    print(json.dumps({"orgs": results, "render": render}, indent=1))


if __name__ == "__main__":
    main()
