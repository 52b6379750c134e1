"""Render benchmark: exposition text and gzip next to prometheus_client, side by side.

Each repetition times, on the same 1,000 x 20 series of daily-cost samples and in this
order: rendering alone (`render_chunks`), rendering plus gzip as the push does it
(each chunk compressed at `GZIP_LEVEL`), gzip alone on the rendered chunks, and
`prometheus_client`'s `generate_latest` plus gzip of its text. Ratios are taken within
each repetition, so that the load of a shared machine cancels out, and the median over
repetitions is reported, times and ratios alike.
"""

from __future__ import annotations

import gzip
import random
import statistics
import time
from collections.abc import Iterator

from bench.plan import DAY
from openai_cost_pusher.exposition import render_chunks
from openai_cost_pusher.model import Sample
from openai_cost_pusher.push import GZIP_LEVEL

SERIES = (1000, 20)


def synthetic_samples(n: int) -> list[Sample]:
    """Return `n` daily-cost-like samples over 1,000 x 20 series, day after day."""
    projects, items = SERIES
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
        for p in range(projects)
        for i in range(items)
    ]
    per_day = len(labels_cache)
    rng = random.Random(2)
    return [
        Sample(
            "openai_daily_cost",
            labels_cache[k % per_day],
            rng.uniform(0.01, 100),
            1_700_000_000_000 + (k // per_day) * DAY * 1000,
        )
        for k in range(n)
    ]


def _gzip_all(chunks: list[bytes]) -> int:
    return sum(len(gzip.compress(c, compresslevel=GZIP_LEVEL, mtime=0)) for c in chunks)


def render_once(samples: list[Sample]) -> dict[str, float]:
    """Time each step once on `samples`; return CPU seconds, sizes and ratios."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    cpu = time.process_time()
    chunks = list(render_chunks(samples))
    render_only = time.process_time() - cpu

    cpu = time.process_time()
    raw = gz = 0
    for chunk in render_chunks(samples):
        raw += len(chunk)
        gz += len(gzip.compress(chunk, compresslevel=GZIP_LEVEL, mtime=0))
    ours = time.process_time() - cpu

    cpu = time.process_time()
    gz_alone = _gzip_all(chunks)
    gzip_only = time.process_time() - cpu
    assert gz_alone == gz, "gzip alone must compress the very same bytes"
    del chunks

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
    baseline_render = time.process_time() - cpu
    baseline_gz = len(gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0))
    baseline = time.process_time() - cpu
    return {
        "render_cpu_s": render_only,
        "ours_cpu_s": ours,
        "gzip_cpu_s": gzip_only,
        "prometheus_client_cpu_s": baseline,
        "prometheus_client_render_cpu_s": baseline_render,
        "render_vs_prometheus_client": baseline_render / render_only,
        "raw_mb": raw / 1e6,
        "gzip_mb": gz / 1e6,
        "prometheus_client_raw_mb": len(text) / 1e6,
        "prometheus_client_gzip_mb": baseline_gz / 1e6,
        "ours_vs_prometheus_client": baseline / ours,
        "ours_vs_gzip": ours / gzip_only,
        "render_only_vs_gzip": render_only / gzip_only,
    }


def bench_render(n: int, repeat: int) -> dict[str, float]:
    """Return the median over `repeat` runs of each figure of `render_once`."""
    samples = synthetic_samples(n)
    runs = [render_once(samples) for _ in range(repeat)]
    out = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    out["samples"] = n
    out["repeat"] = repeat
    return out
