"""The benchmark's report: Markdown tables of the figures, and its goals checked.

Goals are checked here, on the figures of one run, and printed as `met` or `NOT met`
with the figure; a goal whose organization was not run says how to run it. They are
never asserted by a test: timings vary with the machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.cycles import CYCLES

Figures = dict[str, Any]

RSS_GOALS = (
    # (projects, items, width, MiB, how to run it)
    (3000, 20, "off", 250.0, "--only scale --projects 3000"),
    (10_000, 20, "1d", 300.0, "--only scale --projects 10000 --scale-usage 1d"),
)
LARGE = (1000, 20)
STEADY_SHARE = 0.05
RENDER_VS_GZIP = 2.5
OURS_VS_PROMETHEUS = 10.0


@dataclass(frozen=True)
class Goal:
    """One goal's verdict: met, not met, or not measured (`met` None)."""

    text: str
    figure: str
    met: bool | None

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        return f"- {self.text}: {self.figure}: **{verdict}**"


def _num(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _mib(f: Figures) -> str:
    return _num(f["peak_rss_mb"], 0)


def _org(r: Figures) -> str:
    spec = r["spec"]
    usage = "costs" if r["width"] == "off" else f"costs + {r['width']} usage"
    return f"{spec['projects']:,} x {spec['items']} {usage}"


def _ratio(r: Figures) -> float:
    backfill: float = r["backfill"]["cpu_s"]
    steady: float = r["steady"]["cpu_s"]
    return steady / backfill if backfill else float("nan")


def cycles_table(results: Iterable[Figures]) -> list[str]:
    """Return one row per organization and cycle, the steady row with its ratio."""
    rows = [
        "| organization | cycle | CPU s | peak RSS MiB | API requests (minimum) "
        "| samples pushed (usage) | gzip MB | steady / backfill CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for cycle in CYCLES:
            f = r[cycle]
            ratio = f"{_ratio(r):.1%}" if cycle == "steady" and f["ok"] else ""
            failed = "" if f["ok"] else f" (failed: {f['error']})"
            rows.append(
                f"| {_org(r)} | {cycle}{failed} | {_num(f['cpu_s'], 2)} | {_mib(f)} "
                f"| {f['api_requests']} ({f['min_requests']}) "
                f"| {f['samples']:,} ({f['usage_samples']:,}) "
                f"| {f['gzip_bytes'] / 1e6:.2f} | {ratio} |"
            )
    return rows


def checks_table(results: Iterable[Figures]) -> list[str]:
    """Return what VictoriaMetrics holds after each run, and each run's wall time."""
    rows = [
        "| organization | daily-cost series stored (expected) "
        "| samples stored (expected) | requests served / counted | wall s |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        stored, expected = r["stored"], r["expected"]
        counted = sum(r[c]["api_requests"] for c in CYCLES)
        rows.append(
            f"| {_org(r)} | {stored['series']:,} ({expected['series']:,}) "
            f"| {stored['samples']:,} ({expected['samples']:,}) "
            f"| {r['served_requests']} / {counted} | {r['wall_s']:.0f} |"
        )
    return rows


def render_table(render: Figures) -> list[str]:
    """Return the render benchmark as a table, ratios included."""
    n, repeat = render["samples"], render["repeat"]
    return [
        f"| {n:,} samples, median of {repeat} | CPU s | MB | ratio |",
        "|---|---|---|---|",
        f"| render + gzip (this package) | {render['ours_cpu_s']:.2f} "
        f"| {render['gzip_mb']:.1f} gzip | |",
        f"| gzip alone, same bytes | {render['gzip_cpu_s']:.2f} "
        f"| {render['raw_mb']:.1f} raw | render + gzip vs gzip alone: "
        f"{render['ours_vs_gzip']:.2f}x |",
        f"| render alone | {render['render_cpu_s']:.2f} | | render alone vs gzip "
        f"alone: {render['render_only_vs_gzip']:.2f}x |",
        f"| prometheus_client generate_latest + gzip "
        f"| {render['prometheus_client_cpu_s']:.2f} "
        f"| {render['prometheus_client_gzip_mb']:.1f} gzip | render + gzip vs "
        f"prometheus_client + gzip: {render['ours_vs_prometheus_client']:.1f}x "
        "faster |",
        f"| prometheus_client generate_latest alone "
        f"| {render['prometheus_client_render_cpu_s']:.2f} "
        f"| {render['prometheus_client_raw_mb']:.1f} raw | render alone vs "
        f"prometheus_client alone: {render['render_vs_prometheus_client']:.1f}x "
        "faster |",
    ]


def _find(
    results: Iterable[Figures], projects: int, items: int, width: str
) -> Figures | None:
    for r in results:
        spec = r["spec"]
        if (spec["projects"], spec["items"], r["width"]) == (projects, items, width):
            return r
    return None


def goals(results: list[Figures], render: Figures | None) -> list[Goal]:
    """Check every goal on this run's figures."""
    out: list[Goal] = []
    for projects, items, width, limit, how in RSS_GOALS:
        usage = "" if width == "off" else f" with {width} usage"
        text = f"peak RSS under {limit:.0f} MiB, {projects:,} x {items} backfill{usage}"
        r = _find(results, projects, items, width)
        if r is None:
            out.append(Goal(text, f"run `python -m bench.run {how}`", None))
        elif not r["backfill"]["ok"]:
            rss = r["backfill"]["peak_rss_mb"]
            so_far = "" if math.isnan(rss) else f"{rss:.0f} MiB so far, and "
            out.append(Goal(text, so_far + _failed(r, "backfill"), False))
        else:
            rss = r["backfill"]["peak_rss_mb"]
            peak = max(
                r[c]["peak_rss_mb"]
                for c in CYCLES
                if not math.isnan(r[c]["peak_rss_mb"])
            )
            figure = f"{rss:.0f} MiB (the process over all three cycles: {peak:.0f})"
            out.append(Goal(text, figure, rss < limit))
    large = [r for r in results if (r["spec"]["projects"], r["spec"]["items"]) == LARGE]
    text = f"steady cycle at most {STEADY_SHARE:.0%} of the backfill's CPU"
    if not large:
        how = "run the scale or orgs scenario without --quick"
        out.append(Goal(f"{text}, {LARGE[0]:,} x {LARGE[1]}", how, None))
    for r in large:
        failed = [c for c in ("backfill", "steady") if not r[c]["ok"]]
        if failed:
            out.append(Goal(f"{text}, {_org(r)}", _failed(r, failed[0]), False))
            continue
        share = _ratio(r)
        cpu = f"{r['steady']['cpu_s']:.2f} of {r['backfill']['cpu_s']:.2f} s"
        out.append(
            Goal(f"{text}, {_org(r)}", f"{share:.1%} ({cpu})", share <= STEADY_SHARE)
        )
    out += _render_goals(render)
    out.append(_requests_goal(results))
    return out


def _render_goals(render: Figures | None) -> list[Goal]:
    checks: list[tuple[str, str, Callable[[Figures], tuple[str, bool]]]] = [
        (
            f"rendering within {RENDER_VS_GZIP}x of gzip alone on the same bytes",
            "render_only_vs_gzip",
            lambda r: (
                f"{r['render_only_vs_gzip']:.2f}x",
                r["render_only_vs_gzip"] <= RENDER_VS_GZIP,
            ),
        ),
        (
            f"rendering at least {OURS_VS_PROMETHEUS:.0f}x faster than "
            "prometheus_client's generate_latest",
            "render_vs_prometheus_client",
            lambda r: (
                f"{r['render_vs_prometheus_client']:.1f}x",
                r["render_vs_prometheus_client"] >= OURS_VS_PROMETHEUS,
            ),
        ),
    ]
    out = []
    for text, _, check in checks:
        if render is None:
            out.append(Goal(text, "run `python -m bench.run --only render`", None))
        else:
            figure, met = check(render)
            out.append(Goal(f"{text} ({render['samples']:,} samples)", figure, met))
    return out


def _requests_goal(results: list[Figures]) -> Goal:
    text = "Admin API requests equal the minimum the page limits allow"
    cycles = [(r, c) for r in results for c in CYCLES]
    if not cycles:
        return Goal(text, "no cycle run", None)
    failed = [f"{_org(r)} {c}" for r, c in cycles if not r[c]["ok"]]
    off = [
        f"{_org(r)} {c} {r[c]['api_requests']} ({r[c]['min_requests']})"
        for r, c in cycles
        if r[c]["ok"] and r[c]["api_requests"] != r[c]["min_requests"]
    ]
    figure = f"{len(cycles) - len(off) - len(failed)} of {len(cycles)} cycles"
    if off:
        figure += "; not the minimum: " + ", ".join(off)
    if failed:
        figure += "; failed: " + ", ".join(failed)
    return Goal(text, figure, not off and not failed)


def _failed(r: Figures, cycle: str) -> str:
    return f"the {cycle} failed ({r[cycle]['error']})"


def report(
    sections: Mapping[str, list[Figures]], render: Figures | None, notes: list[str]
) -> str:
    """Return the whole report: tables per section, checks, render, goals."""
    lines: list[str] = []
    everything = [r for rs in sections.values() for r in rs]
    for title, results in sections.items():
        if results:
            lines += [f"### {title}", "", *cycles_table(results), ""]
    unique = list({r["key"]: r for r in everything}.values())
    if unique:
        lines += ["### What VictoriaMetrics holds after each run", ""]
        lines += [*checks_table(unique), ""]
    if render is not None:
        lines += ["### Render", "", *render_table(render), ""]
    lines += ["### Goals", "", *(g.line() for g in goals(unique, render))]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
