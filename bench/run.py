"""Benchmark: whole pusher cycles at several organization sizes, and the renderer.

Three scenarios, each optional (`--only`):
- `scale`: costs backfills of 10 / 100 / 1,000 / 3,000 projects x 20 line items (30
  complete days + today), then the first confirming cycle and a steady cycle: CPU
  seconds and peak RSS of the pusher process, Admin API requests next to the minimum
  the page limits allow, the steady-to-backfill CPU ratio. 10,000 projects (6.2
  million samples) by `--projects`; usage widths by `--scale-usage`.
- `orgs`: a small (5 x 5) and the large (1,000 x 20) organization at each usage width
  (`off`, `1d`; `1h` by `--usage off,1d,1h`): what token usage costs.
- `render`: render + gzip of a million samples, gzip alone on the same bytes, and
  prometheus_client's generate_latest + gzip, median of `--repeat` runs.

Then the goals, each `met` or `NOT met` with its figure (`bench/report.py`).

Run: `.venv/bin/python -m bench.run` (after `scripts/test.sh` has fetched
VictoriaMetrics); `--quick` for a smoke run of a minute; `--all` for every goal in
one run, 10,000 projects included (about 17 minutes); `--help` for the rest. This
is a measurement, not a test: figures vary with the machine, ratios much less. The
default run takes about 5 minutes on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.cycles import ROOT, Spec, run_org
from bench.plan import WIDTHS
from bench.render import bench_render
from bench.report import report
from bench.synthetic_api import check_against_fake

T = TypeVar("T")
SCENARIOS = ("scale", "orgs", "render")
DEFAULT_PROJECTS = (10, 100, 1000, 3000)
LARGEST = 10_000  # projects of the scale table's largest organization (`--all`)
QUICK_PROJECTS = (10, 100)
SMALL = (5, 5)


def comma_list(parse: Callable[[str], T], name: str) -> Callable[[str], list[T]]:
    """Return an argparse type reading `a,b,c` with `parse` for each item."""

    def convert(text: str) -> list[T]:
        try:
            out = [parse(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc}") from None
        if not out:
            raise argparse.ArgumentTypeError(f"{name}: expected at least one value")
        return out

    return convert


def positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


def width(text: str) -> str:
    if text not in WIDTHS:
        raise ValueError(f"expected one of {', '.join(WIDTHS)}, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Run the pusher against a synthetic Admin API and a real "
        "VictoriaMetrics at several organization sizes, time the renderer, and check "
        "the performance goals. Prints Markdown tables and the goals.",
    )
    parser.add_argument(
        "--only",
        choices=SCENARIOS,
        help="run one scenario: scale (costs backfills by size), orgs (usage "
        "widths on a small and the large organization) or render (default: all)",
    )
    parser.add_argument(
        "--projects",
        type=comma_list(positive, "--projects"),
        metavar="N[,N...]",
        help="organization sizes of the scale table, in projects (default: "
        f"{','.join(map(str, DEFAULT_PROJECTS))}; add 10000 for 6.2 million samples)",
    )
    parser.add_argument(
        "--items",
        type=positive,
        metavar="N",
        default=20,
        help="cost line items per project, scale and large organization (default: 20)",
    )
    parser.add_argument(
        "--usage",
        type=comma_list(width, "--usage"),
        metavar="WIDTH[,WIDTH...]",
        help="usage widths of the orgs scenario: off (costs alone), 1d, 1h "
        "(default: off,1d; 1h on the large organization adds several minutes)",
    )
    parser.add_argument(
        "--scale-usage",
        type=comma_list(width, "--scale-usage"),
        metavar="WIDTH[,WIDTH...]",
        default=["off"],
        help="usage widths of the scale table (default: off)",
    )
    parser.add_argument(
        "--large",
        type=positive,
        metavar="N",
        help="projects of the orgs scenario's large organization (default: 1000)",
    )
    parser.add_argument(
        "--timeout",
        type=positive,
        metavar="S",
        default=900,
        help="stop an organization's pusher after this many seconds and report "
        "the cycles it finished, and CPU and peak RSS so far (default: 900)",
    )
    parser.add_argument(
        "--repeat",
        type=positive,
        metavar="N",
        help="render benchmark: the median of this many runs (default: 3)",
    )
    parser.add_argument(
        "--samples",
        type=positive,
        metavar="N",
        help="render benchmark: samples rendered (default: 1000000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of about a minute: scale 10,100; orgs 5x5 and 100 x "
        "items; render 100,000 samples once (unless set explicitly)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="every goal in one run (about 17 minutes here): the scale table at "
        "10,100,1000,3000,10000 projects and 10,000 with 1d usage, the orgs "
        "scenario at off,1d,1h (unless set explicitly)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write every figure to FILE as JSON",
    )
    return parser


def measured_tree() -> str:
    """Return the commit measured, and the package files changed since it."""

    def git(*args: str) -> str:
        run = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return run.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "openai_cost_pusher").splitlines()
    files = ", ".join(line.split(maxsplit=1)[-1] for line in changed)
    return f"Measured on commit {commit}" + (
        f" with uncommitted changes to {files}." if files else "."
    )


def _log(began: float, text: str) -> None:
    print(f"[{time.monotonic() - began:5.0f}s] {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios; print the tables and goals; return 0."""
    args = build_parser().parse_args(argv)
    quick: bool = args.quick
    every: bool = args.all
    if quick and every:
        print("bench.run: --quick and --all exclude each other", file=sys.stderr)
        return 2
    projects: list[int] = args.projects or list(
        QUICK_PROJECTS if quick else DEFAULT_PROJECTS + ((LARGEST,) if every else ())
    )
    usage: list[str] = args.usage or ["off", "1d", *(["1h"] if every else [])]
    large: int = args.large or (100 if quick else 1000)
    samples: int = args.samples or (100_000 if quick else 1_000_000)
    repeat: int = args.repeat or (1 if quick else 3)
    scenarios = [args.only] if args.only else list(SCENARIOS)
    began = time.monotonic()

    _log(began, "checking the synthetic Admin API against FakeOpenAI")
    check_against_fake()
    plans: dict[str, list[Spec]] = {}
    if "scale" in scenarios:
        title = (
            f"Scale: backfills of N projects x {args.items} line items "
            "(30 complete days + today), then a confirming and a steady cycle"
        )
        plans[title] = [
            Spec(p, args.items, w) for w in args.scale_usage for p in projects
        ]
        largest = Spec(LARGEST, args.items, "1d")
        if every and largest not in plans[title]:
            plans[title].append(largest)  # the 300 MiB goal's organization
    if "orgs" in scenarios:
        title = "Organizations by usage width"
        plans[title] = [
            Spec(p, i, w) for p, i in (SMALL, (large, args.items)) for w in usage
        ]
    done: dict[Spec, dict[str, Any]] = {}
    sections: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for title, specs in plans.items():
            sections[title] = []
            for spec in specs:
                if spec not in done:
                    _log(began, f"{spec.key}: running")
                    done[spec] = run_org(spec, Path(tmp), args.timeout)
                    f = done[spec]
                    _log(
                        began,
                        f"{spec.key}: backfill {f['backfill']['cpu_s']:.1f} CPU s, "
                        f"{f['backfill']['peak_rss_mb']:.0f} MiB, "
                        f"{f['wall_s']:.0f} s wall",
                    )
                sections[title].append(done[spec])
    render = None
    if "render" in scenarios:
        _log(began, f"render: {samples:,} samples, {repeat} runs")
        render = bench_render(samples, repeat)
    notes = [measured_tree()]
    if "scale" in scenarios and LARGEST not in projects:
        notes.append(
            "10,000 projects (6.2 million samples per backfill; with 1d usage more "
            "than 10 minutes here) are not in this run: add them with `--projects "
            "10,100,1000,3000,10000`, and the 1d usage goal with `--only scale "
            "--projects 10000 --scale-usage 1d`; every goal at once with `--all`."
        )
    if "orgs" in scenarios and "1h" not in usage:
        notes.append("1h usage is not in this run: add it with `--usage off,1d,1h`.")
    total = time.monotonic() - began
    notes.append(f"Total wall time: {total:.0f} s.")
    print(report(sections, render, notes))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"sections": sections, "render": render, "wall_s": total}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
