"""The command line's grammar: each command's flags, help and the settings it reads.

Pure: builds `argparse` parsers and says which settings (`config.OPTIONS`) each
subcommand uses; reading argv, the environment and `.env` is `cli`'s.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from openai_cost_pusher import __version__
from openai_cost_pusher.config import MAX_DAYS, OPTIONS, SECRET_FILE_SUFFIX
from openai_cost_pusher.report import DEFAULT_DAYS, FORMATS

PROG = "openai-cost-pusher"

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


class BadArguments(Exception):
    """A command line argparse rejects, raised instead of argparse's exit."""


class _Parser(argparse.ArgumentParser):
    """A parser whose errors are one `openai-cost-pusher: error:` line, exit 2."""

    def error(self, message: str) -> NoReturn:
        """Raise `BadArguments` instead of printing the usage and exiting."""
        raise BadArguments(message)


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
