"""Settings: the one table of options, the `Secret` wrapper and the pure loader.

`load_settings` resolves every setting from flags, then the environment, then a `.env`
file, then the default, and collects every problem before failing, so a user sees all
bad settings at once. It never reads the environment or files itself: the caller passes
mappings and a `read_file` function. It makes no network call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from openai_cost_pusher.errors import ConfigError
from openai_cost_pusher.model import Labels

T = TypeVar("T")

IMPORT_SUFFIX = "/api/v1/import/prometheus"
"""The Prometheus text import path of VictoriaMetrics, vmagent and vmauth."""
DEFAULT_PUSH_URL = "http://localhost:8428" + IMPORT_SUFFIX
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class Secret:
    """A secret string that never shows itself in `repr`, `str` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret; call this only where a request header is built."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its environment name, flag, default and help text."""

    env: str
    flag: str | None
    default: str | None
    help: str
    secret: bool = False


OPTIONS: tuple[Option, ...] = (
    Option(
        "OPENAI_ADMIN_KEY",
        None,
        None,
        "OpenAI Admin API key (sk-admin-...); required for real data",
        secret=True,
    ),
    Option(
        "OPENAI_BASE_URL", "--openai-base-url", DEFAULT_BASE_URL, "Admin API root URL"
    ),
    Option(
        "VM_PUSH_URL",
        "--push-url",
        DEFAULT_PUSH_URL,
        "VictoriaMetrics (or vmagent, vmauth) Prometheus text import URL",
    ),
    Option("VM_USERNAME", None, None, "basic-auth user for the push URL (vmauth)"),
    Option(
        "VM_PASSWORD", None, None, "basic-auth password for the push URL", secret=True
    ),
    Option(
        "VM_BEARER_TOKEN",
        None,
        None,
        "bearer token for the push URL (vmauth)",
        secret=True,
    ),
    Option(
        "PUSH_INTERVAL", "--interval", "15m", "time between cycles, like 30s, 15m or 1h"
    ),
    Option(
        "LOOKBACK_DAYS",
        "--lookback-days",
        "3",
        "UTC days, today included, re-fetched and re-checked every cycle",
    ),
    Option(
        "BACKFILL_DAYS",
        "--backfill-days",
        "30",
        "complete UTC days before today fetched on the first cycle (plus today)",
    ),
    Option(
        "COSTS_BY_API_KEY",
        "--costs-by-api-key",
        "true",
        "true pushes each day's cost per project and API key "
        "(openai_daily_cost_by_api_key, one series per key); false: off",
    ),
    Option(
        "VM_QUERY_URL",
        "--query-url",
        None,
        "verify and report: where to read back (default: from the push URL)",
    ),
    Option(
        "USAGE_BUCKET_WIDTH",
        "--usage-bucket-width",
        "1d",
        "token usage bucket: 1d (lines up with daily costs), 1h, 1m, or off",
    ),
    Option(
        "USAGE_LOOKBACK_HOURS",
        "--usage-lookback-hours",
        "24",
        "with 1h or 1m buckets: hours of usage re-fetched every cycle",
    ),
    Option(
        "USAGE_BACKFILL_HOURS",
        "--usage-backfill-hours",
        "168",
        "with 1h or 1m buckets: hours of usage fetched on the first cycle",
    ),
    Option(
        "USAGE_GROUP_BY_USER",
        "--usage-group-by-user",
        "false",
        "true adds a user_id label to usage series (more series)",
    ),
    Option(
        "USAGE_GROUP_BY_API_KEY",
        "--usage-group-by-api-key",
        "false",
        "true adds an api_key_id label to usage series (more series)",
    ),
    Option(
        "SPEND_LIMITS",
        "--spend-limits",
        "true",
        "read the organization's and every project's spend limit and spend alerts "
        "(false: off)",
    ),
    Option(
        "SPEND_LIMITS_REFRESH_SECONDS",
        "--spend-limits-refresh-seconds",
        "3600",
        "seconds between two reads of the spend limits and alerts (3600 to 5400)",
    ),
    Option(
        "EXTRA_LABELS",
        "--extra-label",
        "job=openai-cost-pusher",
        "labels added to every sample, k=v[,k2=v2]; the flag repeats",
    ),
    Option(
        "INSTANCE",
        "--instance",
        None,
        "instance label of the self-monitoring series (openai_cost_pusher_*), one "
        "per pusher so that two never share a counter; cost and usage series never "
        "carry it; empty: the host name",
    ),
    Option(
        "RETRY_BUDGET",
        "--retry-budget",
        "60s",
        "longest time the retries of one HTTP call may take",
    ),
    Option(
        "HTTP_TIMEOUT",
        "--http-timeout",
        "30s",
        "read timeout of every HTTP call (the connect timeout is 5s or less)",
    ),
    Option(
        "LISTEN",
        "--listen",
        None,
        "host:port of the health listener (/healthz, /metrics); empty: off",
    ),
    Option("LOG_LEVEL", "--log-level", "info", "debug, info, warning or error"),
    Option(
        "LOG_FORMAT",
        "--log-format",
        "text",
        "text (key=value) or json (one object per line)",
    ),
)
"""Every setting, in the order `--help`, `.env.example` and the README list them."""

SECRET_FILE_SUFFIX = "_FILE"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
MAX_DAYS = 400
RESERVED_LABELS = frozenset(
    {
        "project_id",
        "project",
        "line_item",
        "currency",
        "demo",
        "dataset",
        "result",
        "endpoint",
        "code",
        "version",
        "operation",
        "model",
        "type",
        "batch",
        "size",
        "source",
        "tool",
        "context_level",
        "user_id",
        "instance",
        "api_key_id",
        "api_key",
        "unit",
        "scope",
        "enforcement",
        "alert_id",
    }
)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings; durations in seconds, secrets wrapped in `Secret`."""

    admin_key: Secret | None
    openai_base_url: str
    push_url: str
    vm_username: str | None
    vm_password: Secret | None
    vm_bearer_token: Secret | None
    interval_s: float
    lookback_days: int
    backfill_days: int
    extra_labels: Labels
    retry_budget_s: float
    http_timeout_s: float
    log_level: str
    log_format: str
    listen: tuple[str, int] | None = None
    query_url: str | None = None
    usage_width: str | None = "1d"
    usage_lookback_hours: int = 24
    usage_backfill_hours: int = 168
    usage_by_user: bool = False
    usage_by_api_key: bool = False
    costs_by_api_key: bool = True
    instance: str | None = None
    spend_limits: bool = True
    spend_limits_refresh_s: int = 3600

    def secrets(self) -> list[str]:
        """Return every secret value, for the log redaction filter."""
        held = (self.admin_key, self.vm_password, self.vm_bearer_token)
        return [s.reveal() for s in held if s is not None and s.reveal()]


def parse_duration(text: str) -> float:
    """Return the seconds in a duration like `30s`, `15m`, `1h` or `1h30m`."""
    cleaned = text.strip()
    if not _DURATION.match(cleaned):
        msg = f"expected a duration like 30s, 15m or 1h, got {cleaned!r}"
        raise ValueError(msg)
    parts = _DURATION_PART.findall(cleaned)
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in parts)


def parse_labels(items: list[str]) -> Labels:
    """Return label pairs from `k=v` items; names follow Prometheus rules."""
    pairs: dict[str, str] = {}
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            msg = f"expected k=v, got {item!r}"
            raise ValueError(msg)
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            msg = f"{name!r} is not a valid label name"
            raise ValueError(msg)
        if name in RESERVED_LABELS:
            msg = f"{name!r} is a label the pusher sets itself"
            if name == "instance":
                msg += " on its self-monitoring series: set INSTANCE instead"
            raise ValueError(msg)
        pairs[name] = value
    return tuple(sorted(pairs.items()))


def parse_url(text: str, *, allow_query: bool) -> str:
    """Return a validated http(s) URL without credentials or a trailing slash."""
    url = text.strip()
    # never echo what may be a password: `user:pw@host` without a scheme is not
    # recognised as credentials by urlsplit, so hide everything up to the last `@`
    shown = "***@" + url.rpartition("@")[2] if "@" in url else url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"expected an http:// or https:// URL, got {shown!r}"
        raise ValueError(msg)
    if parts.username is not None or parts.password is not None:
        msg = "credentials in the URL are not allowed: use VM_USERNAME and VM_PASSWORD"
        raise ValueError(msg)
    try:
        _ = parts.port
    except ValueError:
        msg = f"the port in {shown!r} is not a number from 0 to 65535"
        raise ValueError(msg) from None
    if parts.fragment or (parts.query and not allow_query):
        msg = f"expected a URL without a query or fragment, got {shown!r}"
        raise ValueError(msg)
    return url.rstrip("/") if not parts.query else url


def parse_listen(text: str) -> tuple[str, int] | None:
    """Return `(host, port)` from `host:port` or `:port`; empty text means off."""
    value = text.strip()
    if not value:
        return None
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        msg = f"expected host:port like 0.0.0.0:9108 or :9108, got {text!r}"
        raise ValueError(msg)
    return (host or "0.0.0.0", int(port_text))


USAGE_WIDTHS = ("1d", "1h", "1m", "off")
MAX_MINUTE_HOURS = 24


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    msg = f"expected true or false, got {text!r}"
    raise ValueError(msg)


def _parse_hours(text: str) -> int:
    try:
        hours = int(text.strip())
    except ValueError:
        msg = f"expected a whole number of hours, got {text!r}"
        raise ValueError(msg) from None
    if not 1 <= hours <= MAX_DAYS * 24:
        msg = f"expected 1 to {MAX_DAYS * 24} hours, got {hours}"
        raise ValueError(msg)
    return hours


SPEND_REFRESH_RANGE = (3600, 5400)
"""Spend limits are read at most once an hour, and at least every 90 minutes, so
that rules looking back 2 hours (`last_over_time(openai_spend_limit[2h])`) always
see them."""


def _parse_refresh(text: str) -> int:
    low, high = SPEND_REFRESH_RANGE
    try:
        seconds = int(text.strip())
    except ValueError:
        msg = f"expected a whole number of seconds, got {text!r}"
        raise ValueError(msg) from None
    if not low <= seconds <= high:
        msg = f"expected {low} to {high} seconds, got {seconds}"
        raise ValueError(msg)
    return seconds


MAX_INSTANCE_CHARS = 128


def _parse_instance(text: str) -> str | None:
    """Return the `instance` label value; empty means the host name (None)."""
    value = text.strip()
    if not value:
        return None
    if len(value) > MAX_INSTANCE_CHARS or any(ord(ch) < 32 for ch in value):
        msg = (
            f"expected at most {MAX_INSTANCE_CHARS} characters without control "
            f"characters, got {value[:40]!r}"
        )
        raise ValueError(msg)
    return value


def _parse_days(text: str) -> int:
    try:
        days = int(text.strip())
    except ValueError:
        msg = f"expected a whole number of days, got {text!r}"
        raise ValueError(msg) from None
    if not 1 <= days <= MAX_DAYS:
        msg = f"expected 1 to {MAX_DAYS} days, got {days}"
        raise ValueError(msg)
    return days


def _parse_choice(text: str, choices: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if value not in choices:
        msg = f"expected one of {', '.join(choices)}, got {text!r}"
        raise ValueError(msg)
    return value


ASCII_SECRETS = frozenset({"OPENAI_ADMIN_KEY", "VM_BEARER_TOKEN"})
"""Secrets sent verbatim in a header, so ASCII only. `VM_PASSWORD` is base64-encoded
as UTF-8 into the Basic header, so any printable character is fine there."""


def secret_problem(value: str, *, ascii_only: bool) -> str | None:
    """Return what is wrong with a secret, never quoting it, or None.

    The caller has cut trailing line breaks (`\\n`, `\\r\\n`), from a file or the
    environment alike: `echo`, editors and `kubectl create secret --from-file` add
    one. Anything else is an error, not silently fixed: an empty value, a byte order
    mark, whitespace at the ends or inside, control characters, and for header
    secrets (`ASCII_SECRETS`) any character outside ASCII (headers are Latin-1 at
    best; an admin key is ASCII).
    """
    if not value:
        return "the value is empty"
    if "\ufeff" in value:
        return "the value holds a byte order mark (BOM); save it without one"
    if value != value.strip():
        return "the value starts or ends with whitespace; remove it"
    if any(ch.isspace() for ch in value):
        return "the value holds whitespace; a secret is one word"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "the value holds control characters; copy it again"
    if ascii_only and not value.isascii():
        return "the value holds non-ASCII characters; copy the plain ASCII value again"
    return None


class _Resolver:
    """Resolve raw values by precedence and collect problems."""

    def __init__(
        self,
        args: Mapping[str, str | list[str] | None],
        environ: Mapping[str, str],
        dotenv: Mapping[str, str | None],
        read_file: Callable[[str], str],
    ) -> None:
        self.args = args
        self.environ = environ
        self.dotenv = dotenv
        self.read_file = read_file
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        flag = self.args.get(name)
        if isinstance(flag, list):
            return ",".join(flag) if flag else None
        if flag is not None:
            return flag
        if name in self.environ:
            return self.environ[name]
        return self.dotenv.get(name)

    def text(self, option: Option) -> str:
        value = self.raw(option.env)
        if value is None or (value.strip() == "" and option.default is not None):
            return option.default or ""
        return value

    def parse(self, option: Option, parser: Callable[[str], T], fallback: T) -> T:
        text = self.text(option)
        try:
            return parser(text)
        except ValueError as exc:
            self.problems.append(f"{option.env}: {exc}")
            return fallback

    def secret(self, name: str) -> Secret | None:
        """Resolve NAME or NAME_FILE (never both), checked by `secret_problem`."""
        direct = self.raw(name)
        path = self.raw(name + SECRET_FILE_SUFFIX)
        if direct and path:
            self.problems.append(
                f"{name}: set either {name} or {name}{SECRET_FILE_SUFFIX}, not both"
            )
            return None
        if path:
            try:
                value = self.read_file(path).rstrip("\r\n")
            except (OSError, UnicodeError) as exc:  # a binary file is not UTF-8
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                self.problems.append(
                    f"{name}{SECRET_FILE_SUFFIX}: cannot read {path!r}: {reason}"
                )
                return None
            source = f"{name}{SECRET_FILE_SUFFIX}"
        elif direct:
            value, source = direct.rstrip("\r\n"), name
        else:
            return None
        problem = secret_problem(value, ascii_only=name in ASCII_SECRETS)
        if problem:
            self.problems.append(f"{source}: {problem}")
            return None
        return Secret(value)


def _option(env: str) -> Option:
    return next(o for o in OPTIONS if o.env == env)


def load_settings(
    args: Mapping[str, str | list[str] | None],
    environ: Mapping[str, str],
    dotenv: Mapping[str, str | None],
    read_file: Callable[[str], str],
) -> Settings:
    """Resolve and validate every setting, or raise `ConfigError` listing each problem.

    `args` maps environment names (`PUSH_INTERVAL`) to flag values, `None` where the
    flag was not given; `EXTRA_LABELS` may be a list of `k=v` items.
    """
    r = _Resolver(args, environ, dotenv, read_file)
    admin_key = r.secret("OPENAI_ADMIN_KEY")
    base_url = r.parse(
        _option("OPENAI_BASE_URL"), lambda t: parse_url(t, allow_query=False), ""
    )
    push_url = r.parse(
        _option("VM_PUSH_URL"), lambda t: parse_url(t, allow_query=True), ""
    )
    username = (r.raw("VM_USERNAME") or "").strip() or None
    password = r.secret("VM_PASSWORD")
    bearer = r.secret("VM_BEARER_TOKEN")
    if bearer is not None and (username or password):
        r.problems.append(
            "VM_BEARER_TOKEN: set either a bearer token or VM_USERNAME/VM_PASSWORD, "
            "not both"
        )
    if password is not None and not username:
        r.problems.append("VM_PASSWORD: set VM_USERNAME too")
    interval = r.parse(_option("PUSH_INTERVAL"), parse_duration, 900.0)
    if interval < 1:
        r.problems.append("PUSH_INTERVAL: expected at least 1s")
    budget = r.parse(_option("RETRY_BUDGET"), parse_duration, 60.0)
    timeout = r.parse(_option("HTTP_TIMEOUT"), parse_duration, 30.0)
    if timeout <= 0:
        r.problems.append("HTTP_TIMEOUT: expected more than 0s")
    extra: Labels = r.parse(
        _option("EXTRA_LABELS"),
        lambda t: (("job", "openai-cost-pusher"), *parse_labels(t.split(","))),
        (("job", "openai-cost-pusher"),),
    )
    width = r.parse(
        _option("USAGE_BUCKET_WIDTH"), lambda t: _parse_choice(t, USAGE_WIDTHS), "1d"
    )
    usage_lookback = r.parse(_option("USAGE_LOOKBACK_HOURS"), _parse_hours, 24)
    usage_backfill = r.parse(_option("USAGE_BACKFILL_HOURS"), _parse_hours, 168)
    if width == "1m":
        for env, hours in (
            ("USAGE_LOOKBACK_HOURS", usage_lookback),
            ("USAGE_BACKFILL_HOURS", usage_backfill),
        ):
            if hours > MAX_MINUTE_HOURS:
                r.problems.append(
                    f"{env}: with USAGE_BUCKET_WIDTH=1m at most {MAX_MINUTE_HOURS} "
                    f"hours (1,440 one-minute buckets a query), got {hours}; use 1h "
                    "buckets for longer windows"
                )
    settings = Settings(
        admin_key=admin_key,
        openai_base_url=base_url,
        push_url=push_url,
        vm_username=username,
        vm_password=password,
        vm_bearer_token=bearer,
        interval_s=interval,
        lookback_days=r.parse(_option("LOOKBACK_DAYS"), _parse_days, 3),
        backfill_days=r.parse(_option("BACKFILL_DAYS"), _parse_days, 30),
        extra_labels=tuple(sorted(dict(extra).items())),
        retry_budget_s=budget,
        http_timeout_s=timeout,
        log_level=r.parse(
            _option("LOG_LEVEL"), lambda t: _parse_choice(t, LOG_LEVELS), "info"
        ),
        listen=r.parse(_option("LISTEN"), parse_listen, None),
        query_url=r.parse(
            _option("VM_QUERY_URL"),
            lambda t: parse_url(t, allow_query=False) if t.strip() else None,
            None,
        ),
        usage_width=None if width == "off" else width,
        usage_lookback_hours=usage_lookback,
        usage_backfill_hours=usage_backfill,
        usage_by_user=r.parse(_option("USAGE_GROUP_BY_USER"), _parse_bool, False),
        usage_by_api_key=r.parse(_option("USAGE_GROUP_BY_API_KEY"), _parse_bool, False),
        costs_by_api_key=r.parse(_option("COSTS_BY_API_KEY"), _parse_bool, True),
        instance=r.parse(_option("INSTANCE"), _parse_instance, None),
        spend_limits=r.parse(_option("SPEND_LIMITS"), _parse_bool, True),
        spend_limits_refresh_s=r.parse(
            _option("SPEND_LIMITS_REFRESH_SECONDS"), _parse_refresh, 3600
        ),
        log_format=r.parse(
            _option("LOG_FORMAT"), lambda t: _parse_choice(t, LOG_FORMATS), "text"
        ),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings
