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
from typing import BinaryIO, NoReturn, TypeVar

from dotenv import dotenv_values

from openai_cost_pusher import __version__
from openai_cost_pusher.app import CycleReport, Pusher, Sink, UsagePlan, run_forever
from openai_cost_pusher.config import (
    MAX_DAYS,
    OPTIONS,
    SECRET_FILE_SUFFIX,
    Settings,
    load_settings,
)
from openai_cost_pusher.demo import DEMO_LABEL, DemoOrganization
from openai_cost_pusher.errors import (
    ConfigError,
    CostPusherError,
    PushRejected,
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
    auth_header,
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
    FORMATS,
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
from openai_cost_pusher.window import DAY, complete_days, day_of

log = logging.getLogger("openai_cost_pusher")

PROG = "openai-cost-pusher"
V = TypeVar("V")
STOP_GRACE_S = 3.0
DEMO_PUSH_BUDGET_S = 2.0
# The demo refuses a VictoriaMetrics holding real costs seen in this many days.
DEMO_REAL_DATA_DAYS = 400
REAL_COSTS = 'openai_daily_cost{demo!="true"}'

_READ_SETTINGS = frozenset(
    {
        "VM_PUSH_URL",
        "VM_QUERY_URL",
        "VM_USERNAME",
        "VM_PASSWORD",
        "VM_BEARER_TOKEN",
        "HTTP_TIMEOUT",
        "RETRY_BUDGET",
        "EXTRA_LABELS",
        "LOG_LEVEL",
        "LOG_FORMAT",
    }
)
COMMAND_SETTINGS: dict[str, frozenset[str]] = {
    "verify": _READ_SETTINGS
    | {"OPENAI_ADMIN_KEY", "OPENAI_BASE_URL", "USAGE_BUCKET_WIDTH", "COSTS_BY_API_KEY"},
    "report": _READ_SETTINGS,
}
"""The settings (`config.OPTIONS` env names) each subcommand uses and `--help` lists;
the pusher itself (no subcommand) uses them all."""


class _BadArguments(Exception):
    """A command line argparse rejects, raised instead of argparse's exit."""


class _Parser(argparse.ArgumentParser):
    """A parser whose errors are one `openai-cost-pusher: error:` line, exit 2."""

    def error(self, message: str) -> NoReturn:
        """Raise `_BadArguments` instead of printing the usage and exiting."""
        raise _BadArguments(message)


_DESCRIPTIONS = {
    None: "Push exact daily OpenAI organization costs to VictoriaMetrics.\n"
    "Commands: (none) runs the pusher; `verify --help` checks what landed; "
    "`report --help` shows each project's daily spend.\n",
    "verify": "Compare what VictoriaMetrics holds with the Admin API, per UTC day and "
    "project: costs and token totals. Exit 0 when every value matches within "
    "1e-9 relative, 1 otherwise.\n",
    "report": "Show each project's daily spend as VictoriaMetrics holds it, with "
    "today so far, the 7-day median baseline and spike ratio, month to date and the "
    "month-end forecast, computed as the alert rules do. Needs no admin key. Exit 0, "
    "1 when the read fails, 2 on bad settings.\n",
}


def build_parser(
    command: str | None = None, *, verify: bool = False
) -> argparse.ArgumentParser:
    """Return the parser of `command` (None: the pusher; `verify=True` is
    `command="verify"`); it lists only the settings the command uses
    (`COMMAND_SETTINGS`), and every setting's help names its variable and default."""
    if verify:
        command = "verify"
    wanted = COMMAND_SETTINGS.get(command) if command else None
    options = [o for o in OPTIONS if wanted is None or o.env in wanted]
    env_only = "\n".join(
        f"  {o.env}: {o.help}"
        + (f" (or {o.env}{SECRET_FILE_SUFFIX}: a file holding it)" if o.secret else "")
        for o in options
        if o.flag is None
    )
    parser_class = _Parser if command == "report" else argparse.ArgumentParser
    parser = parser_class(
        prog=f"{PROG} {command}" if command else PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_DESCRIPTIONS[command]
        + "Settings come from flags, then the environment, then ./.env, then defaults.",
        epilog=f"settings read from the environment or .env only:\n{env_only}",
    )
    for option in options:
        default = f" (default: {option.default})" if option.default else ""
        help_text = f"{option.help}; env {option.env}{default}"
        if option.flag is None:
            continue
        if option.env == "EXTRA_LABELS":
            parser.add_argument(
                option.flag,
                dest=option.env,
                action="append",
                metavar="K=V",
                help=help_text,
            )
        else:
            parser.add_argument(
                option.flag, dest=option.env, metavar="VALUE", help=help_text
            )
    if command == "report":
        parser.add_argument(
            "--days",
            type=_report_days,
            default=DEFAULT_DAYS,
            metavar="N",
            help=f"complete UTC days to show before today, 1 to {MAX_DAYS}; today so "
            f"far is shown too (default: {DEFAULT_DAYS})",
        )
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default="text",
            help="text (100 columns), csv (day,project_id,project,currency,cost) or "
            "json (rows and per-project summaries) (default: text)",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help='show the simulated organization\'s demo="true" data (default: '
            "only series without the demo label)",
        )
        parser.add_argument(
            "--version", action="version", version=f"{PROG} {__version__}"
        )
        return parser
    if command == "verify":
        parser.add_argument(
            "--days",
            type=int,
            default=7,
            metavar="N",
            help="complete UTC days to compare, before today (default: 7)",
        )
        parser.add_argument(
            "--include-today",
            action="store_true",
            help="also compare today, whose costs still change (default: the N "
            "complete days before today)",
        )
        parser.add_argument(
            "--all", action="store_true", help="print every row, not only problems"
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help='compare with the simulated organization\'s demo="true" data',
        )
        parser.add_argument(
            "--repair",
            action="store_true",
            help="plan the repair of the cost series found different or missing "
            "(a downward revision cannot be pushed over): delete each series' whole "
            "history and push it again from the Admin API, back as far as "
            "VictoriaMetrics keeps data; prints the plan and changes nothing unless "
            "--yes is given (exit 1 when something needs repair)",
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help="with --repair: carry the plan out, then verify again (exit 0 when "
            "everything matches)",
        )
        parser.add_argument(
            "--repair-days",
            type=int,
            metavar="N",
            help="with --repair: push the N complete UTC days before today again, "
            "plus today (default: VictoriaMetrics' -retentionPeriod from its /flags, "
            "else its default of 31 days); never before the oldest day the deleted "
            "series hold",
        )
        parser.add_argument(
            "--version", action="version", version=f"{PROG} {__version__}"
        )
        return parser
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one cycle and exit: 0 on success, 1 on failure",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the exposition to stdout instead of pushing",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use the built-in simulated organization (no key "
        'needed); its samples carry demo="true"',
    )
    parser.add_argument(
        "--show-report",
        action="store_true",
        help="print the spend report (as `report` shows it) once, after the first "
        "cycle that stored data",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def _report_days(text: str) -> int:
    """Parse `report --days`: a whole number from 1 to `MAX_DAYS`."""
    try:
        days = int(text)
    except ValueError:
        msg = f"expected a whole number of days, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 1 <= days <= MAX_DAYS:
        msg = f"expected 1 to {MAX_DAYS}, got {days}"
        raise argparse.ArgumentTypeError(msg)
    return days


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


class DemoSink:
    """Push to VictoriaMetrics; where nothing answers, push nothing and say so.

    The cycle then reports `nothing answered` (and keeps its window unpushed), and
    the command shows the spend report computed from the simulated data instead.
    After a failed push it skips VictoriaMetrics for `RETRY_AFTER_S`, so that one
    cycle says once, not three times, that nothing answers. Until the server has
    answered `guard` once (see `_demo_refusal`), every push asks it first, so a server
    that comes up holding real data later is refused too.
    """

    RETRY_AFTER_S = 60.0

    def __init__(
        self,
        client: VmClient,
        push_url: str,
        guard: Callable[[], str | None],
        *,
        checked: bool = False,
    ) -> None:
        self._client = client
        self._push_url = push_url
        self._guard = guard
        self._checked = checked
        self._down_since: float | None = None

    def begin_cycle(self) -> None:
        """Give the next pushes a fresh retry budget."""
        self._client.begin_cycle()

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Push, or drop the chunks when VictoriaMetrics does not answer; raise
        `PushRejected` when it holds real data."""
        down = self._down_since
        if down is not None and time.monotonic() - down < self.RETRY_AFTER_S:
            return PushStats(where=UNANSWERED)
        try:
            if not self._checked:
                refusal = self._guard()
                if refusal is not None:
                    raise PushRejected(refusal)
                self._checked = True
            stats = self._client.push(chunks)
        except PushUnavailable as exc:
            self._down_since = time.monotonic()
            log.warning(
                "demo: nothing answers at the push URL; nothing stored",
                extra={"push_url": self._push_url, "reason": str(exc)},
            )
            return PushStats(where=UNANSWERED)
        self._down_since = None
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
    timeouts = Timeouts.from_read(settings.http_timeout_s)
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
            reader = _reader(settings, root, stop, settings.retry_budget_s)
        budget = DEMO_PUSH_BUDGET_S if args.demo else settings.retry_budget_s
        client = VmClient(
            make_session(),
            settings.push_url,
            authorization=auth_header(
                settings.vm_username, settings.vm_password, settings.vm_bearer_token
            ),
            timeouts=timeouts,
            stop=stop,
            retrying=lambda: retry_policy(budget, stop),
        )
        sink = (
            DemoSink(
                client,
                settings.push_url,
                lambda: _demo_refusal(settings, stop),
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


def _reader(
    settings: Settings, root: str, stop: threading.Event, budget_s: float
) -> VmReader:
    """Return a reader of `root` with the push URL's credentials."""
    return VmReader(
        make_session(),
        root,
        authorization=auth_header(
            settings.vm_username, settings.vm_password, settings.vm_bearer_token
        ),
        timeouts=Timeouts.from_read(settings.http_timeout_s),
        stop=stop,
        retrying=lambda: retry_policy(budget_s, stop),
    )


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
    reader = _reader(settings, root, stop, settings.retry_budget_s)
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
            client = VmClient(
                make_session(),
                settings.push_url,
                authorization=auth_header(
                    settings.vm_username, settings.vm_password, settings.vm_bearer_token
                ),
                timeouts=Timeouts.from_read(settings.http_timeout_s),
                stop=stop,
                retrying=lambda: retry_policy(settings.retry_budget_s, stop),
            )
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
    except _BadArguments as exc:
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
    reader = _reader(settings, root, stop, settings.retry_budget_s)
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


def _demo_refusal(settings: Settings, stop: threading.Event) -> str | None:
    """Return why the demo must not push to `settings.push_url`, or None.

    The demo never writes beside real data: before its first push it asks where the
    push URL's data is read (VM_QUERY_URL, else derived from the push URL) whether
    any openai_daily_cost series without demo="true" was seen in the last
    `DEMO_REAL_DATA_DAYS` days. Where nothing answers it raises `PushUnavailable`
    (nothing can be stored there either: ask again before the next push); where the
    question is refused or cannot be asked, it refuses too.
    """
    try:
        root = settings.query_url or query_root(settings.push_url)
    except ValueError as exc:
        return (
            f"VM_PUSH_URL: {exc}; the demo checks there first that it holds no real "
            "data (or use --dry-run)"
        )
    now_ms = int(time.time() * 1000)
    reader = _reader(settings, root, stop, DEMO_PUSH_BUDGET_S)
    try:
        real = reader.has_series(
            REAL_COSTS, now_ms - DEMO_REAL_DATA_DAYS * DAY * 1000, now_ms
        )
    except PushRejected as exc:
        return (
            f"cannot tell whether {root} holds real openai_daily_cost series "
            f"({exc}); the demo never writes beside real data: set VM_QUERY_URL to "
            "where its data is read, or use --dry-run"
        )
    finally:
        reader.close()  # asked again only until it answers: no pool kept
    if real:
        return (
            f"{root} holds real openai_daily_cost series; the demo never writes "
            "beside real data: point VM_PUSH_URL at an empty VictoriaMetrics or use "
            "--dry-run"
        )
    return None


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
        reader = _reader(settings, root, self._stop, settings.retry_budget_s)
        labels = dict(settings.extra_labels)
        labels["demo"] = "true" if self._args.demo else ""
        now = time.time()
        window = fetch_window(now, DEFAULT_DAYS)
        deadline = time.monotonic() + self.VISIBLE_WITHIN_S
        while True:
            rows = fetch_report_rows(reader, labels, window.start, window.end)
            today = day_of(now)
            if any(r.day == today for r in rows) or time.monotonic() > deadline:
                return rows
            if self._stop.wait(1.0):
                return rows


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
            refusal = _demo_refusal(settings, stop)
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
