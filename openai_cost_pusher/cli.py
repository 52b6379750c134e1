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
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from dotenv import dotenv_values

from openai_cost_pusher import __version__
from openai_cost_pusher.app import Pusher, Sink, UsagePlan, run_forever
from openai_cost_pusher.config import (
    MAX_DAYS,
    OPTIONS,
    SECRET_FILE_SUFFIX,
    Settings,
    load_settings,
)
from openai_cost_pusher.demo import DEMO_LABEL, DemoOrganization
from openai_cost_pusher.errors import ConfigError, CostPusherError, PushUnavailable
from openai_cost_pusher.health import HealthServer
from openai_cost_pusher.logs import make_formatter
from openai_cost_pusher.metrics import SelfStats
from openai_cost_pusher.openai_api import AdminApi
from openai_cost_pusher.push import PushStats, VmClient, auth_header
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from openai_cost_pusher.verify import render_table, run_verify
from openai_cost_pusher.vmread import VmReader, query_root
from openai_cost_pusher.window import DAY, Window, cycle_window

log = logging.getLogger("openai_cost_pusher")

PROG = "openai-cost-pusher"
STOP_GRACE_S = 3.0
DEMO_PUSH_BUDGET_S = 2.0


def build_parser(*, verify: bool = False) -> argparse.ArgumentParser:
    """Return the parser; every setting's help names its variable and default."""
    env_only = "\n".join(
        f"  {o.env}: {o.help}"
        + (f" (or {o.env}{SECRET_FILE_SUFFIX}: a file holding it)" if o.secret else "")
        for o in OPTIONS
        if o.flag is None
    )
    description = (
        "Compare what VictoriaMetrics holds with the Admin API, per UTC day and "
        "project: costs and token totals. Exit 0 when every value matches within "
        "1e-9 relative, 1 otherwise.\n"
        if verify
        else "Push exact daily OpenAI organization costs to VictoriaMetrics.\n"
        "Commands: (none) runs the pusher; `verify --help` checks what landed.\n"
    )
    parser = argparse.ArgumentParser(
        prog=f"{PROG} verify" if verify else PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=description
        + "Settings come from flags, then the environment, then ./.env, then defaults.",
        epilog=f"settings read from the environment or .env only:\n{env_only}",
    )
    for option in OPTIONS:
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
    if verify:
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
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


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
        stats = PushStats()
        for chunk in chunks:
            self._out.write(chunk)
            stats.requests += 1
            stats.raw_bytes += len(chunk)
        self._out.flush()
        return stats


class DemoSink:
    """Push to VictoriaMetrics; where nothing answers, show what would be pushed.

    After a failed push it prints straight away for `RETRY_AFTER_S`, so that one
    cycle says once, not three times, that nothing answers.
    """

    RETRY_AFTER_S = 60.0

    def __init__(self, client: VmClient, fallback: StdoutSink, push_url: str) -> None:
        self._client = client
        self._fallback = fallback
        self._push_url = push_url
        self._down_since: float | None = None

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Push, or print the chunks when VictoriaMetrics does not answer."""
        pending = list(chunks)
        down = self._down_since
        if down is not None and time.monotonic() - down < self.RETRY_AFTER_S:
            return self._fallback.push(pending)
        try:
            stats = self._client.push(pending)
        except PushUnavailable as exc:
            self._down_since = time.monotonic()
            log.warning(
                "demo: nothing answers at the push URL; printing the simulated "
                "samples that would have been pushed",
                extra={"push_url": self._push_url, "reason": str(exc)},
            )
            return self._fallback.push(pending)
        self._down_since = None
        return stats


def _setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(settings.log_format, settings.secrets()))
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
    settings: Settings, args: argparse.Namespace, stop: threading.Event
) -> tuple[Pusher, VmClient | None]:
    timeouts = Timeouts.from_read(settings.http_timeout_s)
    stats = SelfStats(version=__version__)
    extra = settings.extra_labels
    source = _source(settings, args.demo, stop, stats)
    if args.demo:
        extra = tuple(sorted((*extra, DEMO_LABEL)))
    client: VmClient | None = None
    stdout = StdoutSink(sys.stdout.buffer)
    sink: Sink
    if args.dry_run:
        sink = stdout
    else:
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
        sink = DemoSink(client, stdout, settings.push_url) if args.demo else client
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
    """Run `verify`: compare VictoriaMetrics with the Admin API, print the table."""
    args = build_parser(verify=True).parse_args(argv)
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    settings = loaded
    if not 1 <= args.days <= MAX_DAYS:
        _error(f"--days: expected 1 to {MAX_DAYS}, got {args.days}")
        return 2
    try:
        root = settings.query_url or query_root(settings.push_url)
    except ValueError as exc:
        _error(f"VM_PUSH_URL: {exc}")
        return 2
    _setup_logging(settings)
    stop = threading.Event()
    timeouts = Timeouts.from_read(settings.http_timeout_s)
    source = _source(settings, args.demo, stop, SelfStats(version=__version__))
    reader = VmReader(
        make_session(),
        root,
        authorization=auth_header(
            settings.vm_username, settings.vm_password, settings.vm_bearer_token
        ),
        timeouts=timeouts,
        stop=stop,
        retrying=lambda: retry_policy(settings.retry_budget_s, stop),
    )
    labels = dict(settings.extra_labels)
    labels["demo"] = "true" if args.demo else ""
    window = cycle_window(time.time(), args.days, args.days, None)
    if not args.include_today:
        window = Window(window.start - DAY, window.end - DAY)

    def work() -> int:
        try:
            verdict = run_verify(
                source, reader, window, labels, usage=settings.usage_width is not None
            )
        except CostPusherError as exc:
            _error(str(exc))
            return 1
        if args.all or not verdict.ok:
            print(render_table(verdict.rows, verdict.names, show_all=args.all))
        counts = verdict.counts
        print(
            f"verify: {window.days} days, {len(verdict.rows)} values: "
            f"{counts['ok']} equal, {counts['different']} different, "
            f"{counts['missing']} missing in VictoriaMetrics, "
            f"{counts['extra']} not in the API"
            + ("" if verdict.rows else " (nothing to compare)")
        )
        return 0 if verdict.ok else 1

    return _run_worker(work, stop)


def _load(args: argparse.Namespace) -> Settings | int:
    """Return the settings, or the exit code after printing every problem."""
    flags: dict[str, str | list[str] | None] = {
        o.env: getattr(args, o.env, None) for o in OPTIONS if o.flag is not None
    }
    try:
        settings = load_settings(flags, os.environ, _dotenv(), _read_file)
    except ConfigError as exc:
        for problem in exc.problems:
            _error(problem)
        return 2
    if settings.admin_key is None and not args.demo:
        _error(
            "no admin key: set OPENAI_ADMIN_KEY (or OPENAI_ADMIN_KEY_FILE), "
            "or pass --demo to try the simulated organization"
        )
        return 2
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:
        return _verify(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    settings = loaded
    _setup_logging(settings)
    stop = threading.Event()
    pusher, client = _build(settings, args, stop)
    if args.demo:
        log.warning(
            "DEMO MODE: simulated organization, not real spend; every "
            'sample carries demo="true"'
        )

    def work() -> int:
        if client is not None:
            client.check_dedup()
        if args.once:
            return 0 if pusher.run_cycle().ok else 1
        run_forever(pusher, settings.interval_s, stop)
        return 0

    health = None
    if settings.listen is not None:
        try:
            health = HealthServer(
                settings.listen, lambda: pusher.health(settings.interval_s)
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
