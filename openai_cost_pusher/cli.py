"""The command line: flags, environment and `.env`, logging, signals, exit codes.

The only module that reads argv, the environment or `.env`, prints, installs signal
handlers or exits. It wires the clients to the cycle and runs the cycle in a worker
thread, so that SIGTERM or Ctrl+C stops the process within seconds even while a request
hangs: the handler sets the stop event, the main thread notices and returns.

Exit codes: 0 success or a clean stop (`verify`: every value equal), 1 a failed
`--once` cycle (`verify`: a difference or a failed read), 2 bad settings.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TypeVar

from dotenv import dotenv_values

from openai_cost_pusher import __version__
from openai_cost_pusher.app import CycleReport, Pusher, Sink, UsagePlan, run_forever
from openai_cost_pusher.arguments import (
    COMMAND_SETTINGS,
    PROG,
    BadArguments,
    build_parser,
)
from openai_cost_pusher.clients import vm_client, vm_reader
from openai_cost_pusher.config import (
    MAX_DAYS,
    OPTIONS,
    SECRET_FILE_SUFFIX,
    Settings,
    load_settings,
)
from openai_cost_pusher.demo import DEMO_LABEL, DemoOrganization
from openai_cost_pusher.demo_guard import DEMO_PUSH_BUDGET_S, DemoSink, demo_refusal
from openai_cost_pusher.errors import (
    ConfigError,
    CostPusherError,
    PushUnavailable,
)
from openai_cost_pusher.health import HealthServer
from openai_cost_pusher.logs import Redactor, make_formatter
from openai_cost_pusher.metrics import SelfStats
from openai_cost_pusher.openai_api import AdminApi
from openai_cost_pusher.push import (
    PRINTED,
    STORED,
    UNANSWERED,
    PushStats,
    VmClient,
)
from openai_cost_pusher.repair import (
    MAX_REPAIR_DAYS,
    apply_repair,
    plan_repair,
    render_outcome,
    render_plan,
)
from openai_cost_pusher.report import (
    DEFAULT_DAYS,
    DailyRow,
    build_report,
    fetch_report_rows,
    fetch_window,
    render,
    rows_from_cost_lines,
)
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from openai_cost_pusher.verify import Verdict, render_table, run_verify
from openai_cost_pusher.vmread import VmReader, query_root
from openai_cost_pusher.window import complete_days, day_of

log = logging.getLogger("openai_cost_pusher")

V = TypeVar("V")
STOP_GRACE_S = 3.0


def _read_file(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def _dotenv(path: Path = Path(".env")) -> dict[str, str | None]:
    return dict(dotenv_values(path)) if path.is_file() else {}


class StdoutSink:
    """Write exposition chunks to a binary stream (`--dry-run`)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Write every chunk and flush."""
        stats = PushStats(where=PRINTED)
        for chunk in chunks:
            self._out.write(chunk)
            stats.requests += 1
            stats.raw_bytes += len(chunk)
        self._out.flush()
        return stats


def _setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    redactor = Redactor.for_settings(settings)
    handler.setFormatter(make_formatter(settings.log_format, redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _error(line: str) -> None:
    print(f"{PROG}: error: {line}", file=sys.stderr)


def _source(
    settings: Settings, demo: bool, stop: threading.Event, stats: SelfStats
) -> DemoOrganization | AdminApi:
    """Return the demo organization or the Admin API client."""
    if demo:
        return DemoOrganization(time.time)
    assert settings.admin_key is not None
    return AdminApi(
        make_session(),
        settings.openai_base_url,
        settings.admin_key,
        timeouts=Timeouts.from_read(settings.http_timeout_s),
        stop=stop,
        count_request=stats.count_request,
        retrying=lambda: retry_policy(settings.retry_budget_s, stop),
    )


def _build(
    settings: Settings,
    args: argparse.Namespace,
    stop: threading.Event,
    *,
    demo_checked: bool = False,
) -> tuple[Pusher, VmClient | None]:
    instance = settings.instance or socket.gethostname() or "unknown"
    stats = SelfStats(version=__version__, instance=instance)
    extra = settings.extra_labels
    source = _source(settings, args.demo, stop, stats)
    if args.demo:
        extra = tuple(sorted((*extra, DEMO_LABEL)))
    client: VmClient | None = None
    reader: VmReader | None = None
    stdout = StdoutSink(sys.stdout.buffer)
    sink: Sink
    if args.dry_run:
        sink = stdout
    else:
        try:
            root = settings.query_url or query_root(settings.push_url)
        except ValueError as exc:
            log.warning(
                "cannot read back what is pushed (%s): each pushed day is pushed "
                "again every cycle for an hour instead",
                exc,
            )
        else:
            reader = vm_reader(settings, root, stop, settings.retry_budget_s)
        budget = DEMO_PUSH_BUDGET_S if args.demo else settings.retry_budget_s
        client = vm_client(settings, stop, budget)
        sink = (
            DemoSink(
                client,
                settings.push_url,
                lambda: demo_refusal(settings, stop, time.time()),
                checked=demo_checked,
            )
            if args.demo
            else client
        )
    usage = None
    if settings.usage_width is not None:
        usage = UsagePlan.build(
            settings.usage_width,
            lookback_days=settings.lookback_days,
            backfill_days=settings.backfill_days,
            lookback_hours=settings.usage_lookback_hours,
            backfill_hours=settings.usage_backfill_hours,
            by_user=settings.usage_by_user,
            by_api_key=settings.usage_by_api_key,
        )
    pusher = Pusher(
        source,
        sink,
        lookback_days=settings.lookback_days,
        backfill_days=settings.backfill_days,
        extra_labels=extra,
        usage=usage,
        stats=stats,
        reader=reader,
        costs_by_api_key=settings.costs_by_api_key,
        spend=source if settings.spend_limits else None,
        spend_refresh_s=settings.spend_limits_refresh_s,
    )
    return pusher, client


def _install_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _run_worker(work: Callable[[], int], stop: threading.Event) -> int:
    """Run `work` in a thread; return its code, or 0 when a signal stops it."""
    result: list[int] = []
    _install_signals(stop)
    worker = threading.Thread(target=lambda: result.append(work()), daemon=True)
    worker.start()
    while worker.is_alive() and not stop.is_set():
        worker.join(0.2)
    if stop.is_set():
        log.info("stopping")
        worker.join(STOP_GRACE_S)
        return 0
    return result[0] if result else 1


def _verify(argv: Sequence[str]) -> int:
    """Run `verify`: compare VictoriaMetrics with the Admin API, print the table.

    With `--repair`, print the plan for the wrong cost series (see `repair`); with
    `--yes` too, carry it out and verify again.
    """
    args = build_parser("verify").parse_args(argv)
    loaded = _load(args, "verify")
    if isinstance(loaded, int):
        return loaded
    settings = loaded
    if not 1 <= args.days <= MAX_DAYS:
        _error(f"--days: expected 1 to {MAX_DAYS}, got {args.days}")
        return 2
    repair_only = {"--yes": args.yes, "--repair-days": args.repair_days is not None}
    for flag, given in repair_only.items():
        if given and not args.repair:
            _error(f"{flag}: only with --repair")
            return 2
    if args.repair_days is not None and not 1 <= args.repair_days <= MAX_REPAIR_DAYS:
        days = args.repair_days
        _error(f"--repair-days: expected 1 to {MAX_REPAIR_DAYS}, got {days}")
        return 2
    try:
        root = settings.query_url or query_root(settings.push_url)
    except ValueError as exc:
        _error(f"VM_PUSH_URL: {exc}")
        return 2
    _setup_logging(settings)
    stop = threading.Event()
    source = _source(settings, args.demo, stop, SelfStats(version=__version__))
    reader = vm_reader(settings, root, stop, settings.retry_budget_s)
    labels = dict(settings.extra_labels)
    labels["demo"] = "true" if args.demo else ""
    now = time.time()
    window = complete_days(now, args.days, include_today=args.include_today)
    moving_from = day_of(now) if args.include_today else None

    def compare() -> Verdict:
        verdict = run_verify(
            source,
            reader,
            window,
            labels,
            usage=settings.usage_width is not None,
            moving_from=moving_from,
            by_api_key=settings.costs_by_api_key,
        )
        if args.all or not verdict.ok or verdict.counts["arriving"]:
            print(render_table(verdict.rows, verdict.names, show_all=args.all))
        counts = verdict.counts
        print(
            f"verify: {window.days} days, {len(verdict.rows)} values: "
            f"{counts['ok']} equal, "
            + (
                f"{counts['arriving']} still arriving (today), "
                if args.include_today
                else ""
            )
            + f"{counts['different']} different, "
            f"{counts['missing']} missing in VictoriaMetrics, "
            f"{counts['extra']} not in the API"
            + ("" if verdict.rows else " (nothing to compare)"),
            flush=True,
        )
        return verdict

    def work() -> int:
        try:
            verdict = compare()
            if not args.repair:
                return 0 if verdict.ok else 1
            plan = plan_repair(
                verdict,
                reader,
                labels,
                window,
                now=now,
                repair_days=args.repair_days,
                moving_from=moving_from,
            )
            print(render_plan(plan), flush=True)
            if plan.empty:
                return 0 if verdict.ok else 1
            if not args.yes:
                print(
                    "dry run: nothing changed; run the same command with --yes to "
                    "delete these series and push them again"
                )
                return 1
            client = vm_client(settings, stop, settings.retry_budget_s)
            outcome = apply_repair(
                plan,
                source,
                reader,
                client,
                labels=labels,
                names=verdict.names,
                stop=stop,
            )
            print(render_outcome(plan, outcome), flush=True)
            verdict = compare()
        except CostPusherError as exc:
            _error(str(exc))
            return 1
        return 0 if verdict.ok else 1

    return _run_worker(work, stop)


def _report(argv: Sequence[str]) -> int:
    """Run `report`: print each project's daily spend as VictoriaMetrics holds it."""
    try:
        args = build_parser("report").parse_args(argv)
    except BadArguments as exc:
        _error(str(exc))
        return 2
    loaded = _load(args, "report")
    if isinstance(loaded, int):
        return loaded
    settings = loaded
    try:
        root = settings.query_url or query_root(settings.push_url)
    except ValueError as exc:
        _error(f"VM_PUSH_URL: {exc}")
        return 2
    _setup_logging(settings)
    stop = threading.Event()
    reader = vm_reader(settings, root, stop, settings.retry_budget_s)
    labels = dict(settings.extra_labels)
    labels["demo"] = "true" if args.demo else ""
    now = time.time()
    window = fetch_window(now, args.days)

    def work() -> int:
        try:
            rows = fetch_report_rows(reader, labels, window.start, window.end)
        except CostPusherError as exc:
            _error(str(exc))
            return 1
        if not rows:
            log.warning(
                "report: no openai_daily_cost samples with these labels in these days",
                extra={"query_url": root, "labels": labels, "days": window.days},
            )
        return _print_out(render(build_report(rows, now, args.days), args.format))

    return _run_worker(work, stop)


def _print_out(text: str) -> int:
    """Write `text` to stdout; a reader that went away (`| head`) is no error."""
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:  # a terminal that cannot show the bars
            sys.stdout.flush()
            encoding = sys.stdout.encoding or "ascii"
            sys.stdout.buffer.write(text.encode(encoding, "replace"))
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _load(args: argparse.Namespace, command: str | None = None) -> Settings | int:
    """Return the settings, or the exit code after printing every problem.

    A subcommand reads only its own settings (`COMMAND_SETTINGS`) from the
    environment and `.env`: the others keep their defaults, so a setting it does not
    use can neither break it nor be read by it (`report` never reads the admin key).
    """
    wanted = COMMAND_SETTINGS.get(command) if command else None
    flags: dict[str, str | list[str] | None] = {
        o.env: getattr(args, o.env, None) for o in OPTIONS if o.flag is not None
    }

    def own(values: Mapping[str, V]) -> dict[str, V]:
        if wanted is None:
            return dict(values)
        names = wanted | {name + SECRET_FILE_SUFFIX for name in wanted}
        return {k: v for k, v in values.items() if k in names}

    try:
        settings = load_settings(flags, own(os.environ), own(_dotenv()), _read_file)
    except ConfigError as exc:
        for problem in exc.problems:
            _error(problem)
        return 2
    needs_key = wanted is None or "OPENAI_ADMIN_KEY" in wanted
    if needs_key and settings.admin_key is None and not args.demo:
        _error(
            "no admin key: set OPENAI_ADMIN_KEY (or OPENAI_ADMIN_KEY_FILE), "
            "or pass --demo to try the simulated organization"
        )
        return 2
    return settings


class _FirstReport:
    """After the first cycle that stored data, print the spend report once
    (`--show-report`); after a demo cycle that nothing answered, print the report of
    what it would have stored instead of raw exposition."""

    VISIBLE_WITHIN_S = 20.0
    """Freshly imported samples become searchable within seconds: the report waits
    at most this long for today's day to show."""

    def __init__(
        self, settings: Settings, args: argparse.Namespace, stop: threading.Event
    ) -> None:
        self._settings = settings
        self._args = args
        self._stop = stop
        self._done = False

    def __call__(self, report: CycleReport) -> None:
        if self._done or not report.ok:
            return
        try:
            if report.where == UNANSWERED and self._args.demo:
                self._done = True
                self._print(self._demo_rows())
            elif report.where == STORED and self._args.show_report:
                self._done = True
                self._print(self._stored_rows())
        except CostPusherError as exc:
            log.warning("cannot show the report", extra={"reason": str(exc)})

    def _print(self, rows: list[DailyRow]) -> None:
        report = build_report(rows, time.time(), DEFAULT_DAYS)
        print(render(report, "text"), flush=True)

    def _demo_rows(self) -> list[DailyRow]:
        org = DemoOrganization(time.time)
        window = fetch_window(time.time(), DEFAULT_DAYS)
        lines = [
            line for page in org.fetch_costs(window.start, window.end) for line in page
        ]
        names = {p.id: p.name for p in org.fetch_projects()}
        return rows_from_cost_lines(lines, names)

    def _stored_rows(self) -> list[DailyRow]:
        settings = self._settings
        root = settings.query_url or query_root(settings.push_url)
        reader = vm_reader(settings, root, self._stop, settings.retry_budget_s)
        labels = dict(settings.extra_labels)
        labels["demo"] = "true" if self._args.demo else ""
        now = time.time()
        window = fetch_window(now, DEFAULT_DAYS)
        deadline = time.monotonic() + self.VISIBLE_WITHIN_S
        try:
            while True:
                rows = fetch_report_rows(reader, labels, window.start, window.end)
                today = day_of(now)
                if any(r.day == today for r in rows) or time.monotonic() > deadline:
                    return rows
                if self._stop.wait(1.0):
                    return rows
        finally:
            reader.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:
        return _verify(argv[1:])
    if argv[:1] == ["report"]:
        return _report(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    settings = loaded
    _setup_logging(settings)
    stop = threading.Event()
    demo_checked = False
    if args.demo and not args.dry_run:
        try:
            refusal = demo_refusal(settings, stop, time.time())
        except PushUnavailable:
            refusal = None
        else:
            demo_checked = True
        if refusal is not None:
            _error(refusal)
            return 2
    pusher, client = _build(settings, args, stop, demo_checked=demo_checked)
    if args.demo:
        log.warning(
            "DEMO MODE: simulated organization, not real spend; every "
            'sample carries demo="true"'
        )

    after = _FirstReport(settings, args, stop)

    def work() -> int:
        if client is not None:
            client.check_dedup()
        if args.once:
            report = pusher.run_cycle()
            after(report)
            return 0 if report.ok and not report.rejected else 1
        run_forever(pusher, settings.interval_s, stop, after_cycle=after)
        return 0

    health = None
    if settings.listen is not None:
        try:
            call_s = (
                settings.retry_budget_s
                + Timeouts.from_read(settings.http_timeout_s).deadline
            )
            health = HealthServer(
                settings.listen,
                lambda: pusher.health(settings.interval_s, call_s),
                redact=Redactor.for_settings(settings),
            )
        except OSError as exc:
            _error(
                f"LISTEN: cannot listen on {settings.listen[0]}:"
                f"{settings.listen[1]}: {exc.strerror or exc}"
            )
            return 2
    try:
        return _run_worker(work, stop)
    finally:
        if health is not None:
            health.close()
