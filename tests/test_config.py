"""Test settings: precedence, collected problems, parsers, and that secrets stay hidden.

`load_settings` is pure: flags, environment and `.env` come in as mappings and files are
read through an injected `read_file`, so no test touches the real environment or disk.
"""

from __future__ import annotations

import argparse
import errno
import socket
import threading
from collections.abc import Callable, Mapping

import pytest

from openai_cost_pusher.cli import _build
from openai_cost_pusher.config import (
    DEFAULT_BASE_URL,
    DEFAULT_PUSH_URL,
    OPTIONS,
    RESERVED_LABELS,
    Secret,
    Settings,
    load_settings,
    parse_duration,
    parse_url,
)
from openai_cost_pusher.errors import ConfigError

Args = Mapping[str, str | list[str] | None]


def _reader(files: Mapping[str, str | Exception]) -> Callable[[str], str]:
    """Return a read_file that serves `files` and raises like open() otherwise."""

    def read(path: str) -> str:
        content = files.get(path)
        if content is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if isinstance(content, Exception):
            raise content
        return content

    return read


def _load(
    args: Args | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str | None] | None = None,
    files: Mapping[str, str | Exception] | None = None,
) -> Settings:
    return load_settings(args or {}, environ or {}, dotenv or {}, _reader(files or {}))


def _problems(
    args: Args | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str | None] | None = None,
    files: Mapping[str, str | Exception] | None = None,
) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(args, environ, dotenv, files)
    assert str(info.value) == "; ".join(info.value.problems)
    return info.value.problems


def test_defaults() -> None:
    """With nothing set, every setting takes the documented default."""
    settings = _load()
    assert settings == Settings(
        admin_key=None,
        openai_base_url=DEFAULT_BASE_URL,
        push_url=DEFAULT_PUSH_URL,
        vm_username=None,
        vm_password=None,
        vm_bearer_token=None,
        interval_s=900.0,
        lookback_days=3,
        backfill_days=30,
        extra_labels=(("job", "openai-cost-pusher"),),
        retry_budget_s=60.0,
        http_timeout_s=30.0,
        log_level="info",
        log_format="text",
    )
    assert DEFAULT_BASE_URL == "https://api.openai.com/v1"
    assert DEFAULT_PUSH_URL == "http://localhost:8428/api/v1/import/prometheus"


PRECEDENCE = [
    ("PUSH_INTERVAL", "interval_s", ("30s", "1m", "2h"), (30.0, 60.0, 7200.0), 900.0),
    ("LOOKBACK_DAYS", "lookback_days", ("5", "6", "7"), (5, 6, 7), 3),
    ("BACKFILL_DAYS", "backfill_days", ("10", "20", "40"), (10, 20, 40), 30),
    (
        "LOG_LEVEL",
        "log_level",
        ("debug", "warning", "error"),
        ("debug", "warning", "error"),
        "info",
    ),
    (
        "VM_PUSH_URL",
        "push_url",
        ("http://a:1/x", "http://b:2/x", "http://c:3/x"),
        ("http://a:1/x", "http://b:2/x", "http://c:3/x"),
        DEFAULT_PUSH_URL,
    ),
    ("RETRY_BUDGET", "retry_budget_s", ("1s", "2s", "3s"), (1.0, 2.0, 3.0), 60.0),
]


@pytest.mark.parametrize(("env", "attr", "raw", "parsed", "default"), PRECEDENCE)
@pytest.mark.parametrize(
    ("sources", "winner"),
    [
        ((True, True, True), 0),
        ((False, True, True), 1),
        ((True, False, True), 0),
        ((True, True, False), 0),
        ((False, False, True), 2),
        ((False, True, False), 1),
        ((False, False, False), None),
    ],
    ids=["all", "env+dotenv", "flag+dotenv", "flag+env", "dotenv", "env", "none"],
)
def test_precedence(
    env: str,
    attr: str,
    raw: tuple[str, str, str],
    parsed: tuple[object, object, object],
    default: object,
    sources: tuple[bool, bool, bool],
    winner: int | None,
) -> None:
    """Flags beat the environment, which beats `.env`, which beats the default."""
    flag_set, env_set, dotenv_set = sources
    settings = _load(
        args={env: raw[0] if flag_set else None},
        environ={env: raw[1]} if env_set else {},
        dotenv={env: raw[2]} if dotenv_set else {},
    )
    assert getattr(settings, attr) == (default if winner is None else parsed[winner])


def test_empty_value_means_default() -> None:
    """An empty or blank value takes the default rather than failing."""
    settings = _load(
        args={"LOOKBACK_DAYS": ""},
        environ={"PUSH_INTERVAL": "  "},
        dotenv={"LOG_LEVEL": None},
    )
    assert (settings.lookback_days, settings.interval_s, settings.log_level) == (
        3,
        900.0,
        "info",
    )


def test_every_problem_is_collected() -> None:
    """Several bad settings give one line each, each naming its setting first."""
    problems = _problems(
        environ={
            "PUSH_INTERVAL": "15x",
            "LOOKBACK_DAYS": "0",
            "BACKFILL_DAYS": "lots",
            "LOG_LEVEL": "loud",
            "LOG_FORMAT": "xml",
            "VM_PUSH_URL": "ftp://vm/x",
            "OPENAI_BASE_URL": "api.openai.com",
            "EXTRA_LABELS": "1bad=x",
            "HTTP_TIMEOUT": "0s",
            "RETRY_BUDGET": "soon",
        }
    )
    named = [p.split(":", 1)[0] for p in problems]
    assert sorted(named) == sorted(
        [
            "PUSH_INTERVAL",
            "LOOKBACK_DAYS",
            "BACKFILL_DAYS",
            "LOG_LEVEL",
            "LOG_FORMAT",
            "VM_PUSH_URL",
            "OPENAI_BASE_URL",
            "EXTRA_LABELS",
            "HTTP_TIMEOUT",
            "RETRY_BUDGET",
        ]
    )
    assert all("\n" not in p for p in problems)
    assert "PUSH_INTERVAL: expected a duration like 30s, 15m or 1h, got '15x'" in (
        problems
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("2d", 172_800.0),
        (" 15m ", 900.0),
        ("0s", 0.0),
        ("1m30s", 90.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations like 30s, 15m, 1h and combinations parse to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["15x", "15", "m", "-5s", "1 h", "", "15M", "1h 30m", "s15", "1e3s", "∞s"]
)
def test_parse_duration_rejects(text: str) -> None:
    """Anything but number-unit pairs is refused with the expected form named."""
    with pytest.raises(ValueError, match="expected a duration like 30s, 15m or 1h"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("PUSH_INTERVAL", "500ms", "PUSH_INTERVAL: expected at least 1s"),
        ("HTTP_TIMEOUT", "0s", "HTTP_TIMEOUT: expected more than 0s"),
        ("RETRY_BUDGET", "1 minute", "RETRY_BUDGET: expected a duration"),
        ("LOOKBACK_DAYS", "401", "LOOKBACK_DAYS: expected 1 to 400 days, got 401"),
        ("BACKFILL_DAYS", "2.5", "BACKFILL_DAYS: expected a whole number of days"),
        ("LOG_FORMAT", "logfmt", "LOG_FORMAT: expected one of text, json"),
    ],
)
def test_bad_values(env: str, value: str, fragment: str) -> None:
    """Out-of-range durations, days and choices are refused naming the setting."""
    problems = _problems(environ={env: value})
    assert len(problems) == 1
    assert problems[0].startswith(fragment)


def test_durations_and_choices_are_normalised() -> None:
    """Durations become float seconds and choices are lowercased."""
    settings = _load(
        environ={
            "PUSH_INTERVAL": "1h30m",
            "HTTP_TIMEOUT": "2.5s",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": " JSON ",
        }
    )
    assert settings.interval_s == 5400.0
    assert settings.http_timeout_s == 2.5
    assert settings.log_level == "warning"
    assert settings.log_format == "json"


@pytest.mark.parametrize(
    ("text", "allow_query", "expected"),
    [
        (
            "http://localhost:8428/api/v1/import/prometheus",
            True,
            "http://localhost:8428/api/v1/import/prometheus",
        ),
        (
            "https://vmauth.example.com/insert/0/prometheus/api/v1/import/prometheus",
            True,
            "https://vmauth.example.com/insert/0/prometheus/api/v1/import/prometheus",
        ),
        ("https://api.openai.com/v1/", False, "https://api.openai.com/v1"),
        ("  http://127.0.0.1:8080  ", False, "http://127.0.0.1:8080"),
        (
            "http://[::1]:8428/api/v1/import/prometheus",
            True,
            "http://[::1]:8428/api/v1/import/prometheus",
        ),
        (
            "http://vm:8428/api/v1/import/prometheus?extra_label=env=prod",
            True,
            "http://vm:8428/api/v1/import/prometheus?extra_label=env=prod",
        ),
    ],
)
def test_parse_url_accepts(text: str, allow_query: bool, expected: str) -> None:
    """http(s) URLs with a host pass, trailing slash trimmed, query where allowed."""
    assert parse_url(text, allow_query=allow_query) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("localhost:8428/api/v1/import/prometheus", "http:// or https://"),
        ("vm/api/v1/import/prometheus", "http:// or https://"),
        ("ftp://vm/x", "http:// or https://"),
        ("http:///path", "http:// or https://"),
        ("http://user:pw@vm:8428/x", "credentials in the URL"),
        ("https://token@vm/x", "credentials in the URL"),
        ("http://vm:99999/x", "port"),
        ("http://vm:port/x", "port"),
        ("https://api.openai.com/v1?x=1", "without a query"),
        ("https://api.openai.com/v1#frag", "without a query or fragment"),
    ],
)
def test_parse_url_rejects(text: str, fragment: str) -> None:
    """URLs without a scheme, other schemes, credentials and bad ports are refused."""
    with pytest.raises(ValueError, match=fragment):
        parse_url(text, allow_query=False)


@pytest.mark.parametrize("env", ["VM_PUSH_URL", "OPENAI_BASE_URL"])
@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2pw@vm:8428/x",
        "user:hunter2pw@vm:8428/x",
        "ftp://user:hunter2pw@vm/x",
        "http://user:hunter2pw@vm:99999/x",
    ],
)
def test_url_credentials_never_echoed(env: str, url: str) -> None:
    """A password inside a rejected URL never appears in the problem line."""
    problems = _problems(environ={env: url})
    assert len(problems) == 1
    assert problems[0].startswith(f"{env}: ")
    assert "hunter2pw" not in problems[0]


@pytest.mark.parametrize(
    ("args", "environ", "expected"),
    [
        ({}, {}, {"job": "openai-cost-pusher"}),
        (
            {},
            {"EXTRA_LABELS": "team=ml,env=prod"},
            {"job": "openai-cost-pusher", "team": "ml", "env": "prod"},
        ),
        ({}, {"EXTRA_LABELS": "job=custom,team=ml"}, {"job": "custom", "team": "ml"}),
        (
            {},
            {"EXTRA_LABELS": " team=ml , ,"},
            {"job": "openai-cost-pusher", "team": "ml"},
        ),
        (
            {},
            {"EXTRA_LABELS": "q=a=b,empty="},
            {"job": "openai-cost-pusher", "q": "a=b", "empty": ""},
        ),
        (
            {"EXTRA_LABELS": ["team=ml", "env=prod"]},
            {"EXTRA_LABELS": "other=x"},
            {"job": "openai-cost-pusher", "team": "ml", "env": "prod"},
        ),
        ({"EXTRA_LABELS": ["job=j"]}, {}, {"job": "j"}),
    ],
    ids=[
        "default",
        "env",
        "job-overridden",
        "blanks",
        "values",
        "flag-wins",
        "flag-job",
    ],
)
def test_extra_labels(
    args: Args, environ: dict[str, str], expected: dict[str, str]
) -> None:
    """Extra labels parse from k=v lists; `job` stays unless it is overridden."""
    labels = _load(args=args, environ=environ).extra_labels
    assert labels == tuple(sorted(expected.items()))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1team=x", "not a valid label name"),
        ("team-x=y", "not a valid label name"),
        ("__meta=y", "not a valid label name"),
        ("=y", "not a valid label name"),
        ("tëam=y", "not a valid label name"),
        ("noequals", "expected k=v"),
        ("project=x", "a label the pusher sets itself"),
        ("project_id=x", "a label the pusher sets itself"),
        ("demo=true", "a label the pusher sets itself"),
        ("currency=eur", "a label the pusher sets itself"),
        ("line_item=x", "a label the pusher sets itself"),
        ("dataset=x", "a label the pusher sets itself"),
    ],
)
def test_extra_labels_rejected(value: str, fragment: str) -> None:
    """Bad or reserved label names fail with one EXTRA_LABELS line."""
    problems = _problems(environ={"EXTRA_LABELS": f"team=ml,{value}"})
    assert len(problems) == 1
    assert problems[0].startswith("EXTRA_LABELS: ")
    assert fragment in problems[0]


SECRET_SETTINGS = [
    ("OPENAI_ADMIN_KEY", "admin_key", {}),
    ("VM_PASSWORD", "vm_password", {"VM_USERNAME": "pusher"}),
    ("VM_BEARER_TOKEN", "vm_bearer_token", {}),
]


@pytest.mark.parametrize(("name", "attr", "needs"), SECRET_SETTINGS)
@pytest.mark.parametrize(
    "content",
    ["s3cr3t-VALUE\n", "s3cr3t-VALUE\r\n", "s3cr3t-VALUE", "s3cr3t-VALUE\n\n"],
)
def test_secret_from_file(
    name: str, attr: str, needs: dict[str, str], content: str
) -> None:
    """NAME_FILE reads the secret through read_file, trailing newline stripped."""
    settings = _load(
        environ={**needs, f"{name}_FILE": "/run/secrets/s"},
        files={"/run/secrets/s": content},
    )
    secret = getattr(settings, attr)
    assert isinstance(secret, Secret)
    assert secret.reveal() == "s3cr3t-VALUE"
    assert settings.secrets() == ["s3cr3t-VALUE"]


@pytest.mark.parametrize(("name", "attr", "needs"), SECRET_SETTINGS)
def test_secret_direct(name: str, attr: str, needs: dict[str, str]) -> None:
    """NAME gives the secret directly, from the environment or `.env`."""
    assert getattr(_load(environ={**needs, name: "s3cr3t-VALUE"}), attr) == Secret(
        "s3cr3t-VALUE"
    )
    assert getattr(_load(environ=needs, dotenv={name: "s3cr3t-VALUE"}), attr) == Secret(
        "s3cr3t-VALUE"
    )


@pytest.mark.parametrize(("name", "attr", "needs"), SECRET_SETTINGS)
def test_secret_both_forms_is_an_error(
    name: str, attr: str, needs: dict[str, str]
) -> None:
    """Setting both NAME and NAME_FILE is refused, whichever source each is in."""
    problems = _problems(
        environ={**needs, name: "s3cr3t-VALUE"},
        dotenv={f"{name}_FILE": "/run/secrets/s"},
        files={"/run/secrets/s": "other"},
    )
    assert problems == [f"{name}: set either {name} or {name}_FILE, not both"]


@pytest.mark.parametrize(("name", "attr", "needs"), SECRET_SETTINGS)
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (None, "No such file or directory"),
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
        (IsADirectoryError(errno.EISDIR, "Is a directory"), "Is a directory"),
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            "UnicodeDecodeError",
        ),
    ],
    ids=["missing", "denied", "directory", "not-utf8"],
)
def test_unreadable_secret_file(
    name: str, attr: str, needs: dict[str, str], error: Exception | None, reason: str
) -> None:
    """A secret file that cannot be read fails with a line naming NAME_FILE."""
    files: dict[str, str | Exception] = {} if error is None else {"/s": error}
    problems = _problems(environ={**needs, f"{name}_FILE": "/s"}, files=files)
    assert len(problems) == 1
    assert problems[0].startswith(f"{name}_FILE: cannot read '/s'")
    assert reason in problems[0]


@pytest.mark.parametrize(
    ("environ", "files", "setting"),
    [
        ({"OPENAI_ADMIN_KEY": "sk admin"}, {}, "OPENAI_ADMIN_KEY"),
        ({"OPENAI_ADMIN_KEY": "   "}, {}, "OPENAI_ADMIN_KEY"),
        ({"VM_BEARER_TOKEN": "tok\tx"}, {}, "VM_BEARER_TOKEN"),
        ({"OPENAI_ADMIN_KEY_FILE": "/k"}, {"/k": "\n"}, "OPENAI_ADMIN_KEY_FILE"),
        (
            {"OPENAI_ADMIN_KEY_FILE": "/k"},
            {"/k": "sk-admin\nsecond line\n"},
            "OPENAI_ADMIN_KEY_FILE",
        ),
    ],
)
def test_malformed_secret(
    environ: dict[str, str], files: dict[str, str | Exception], setting: str
) -> None:
    """Empty secrets or ones holding whitespace are refused, naming the source."""
    problems = _problems(environ=environ, files=files)
    assert len(problems) == 1
    assert problems[0].startswith(f"{setting}: ")


_BOM = "the value holds a byte order mark (BOM); save it without one"
_ENDS = "the value starts or ends with whitespace; remove it"
_INNER = "the value holds whitespace; a secret is one word"
_CONTROL = "the value holds control characters; copy it again"
_NON_ASCII = "the value holds non-ASCII characters; copy the plain ASCII value again"


@pytest.mark.parametrize(
    ("environ", "files", "problem"),
    [
        (
            {"OPENAI_ADMIN_KEY": "\ufeffsk-admin-TOPSECRET"},
            {},
            f"OPENAI_ADMIN_KEY: {_BOM}",
        ),
        (
            {"OPENAI_ADMIN_KEY_FILE": "/k"},
            {"/k": "\ufeffsk-admin-TOPSECRET\n"},
            f"OPENAI_ADMIN_KEY_FILE: {_BOM}",
        ),
        ({"OPENAI_ADMIN_KEY": " sk-admin-TOPSECRET"}, {}, f"OPENAI_ADMIN_KEY: {_ENDS}"),
        ({"OPENAI_ADMIN_KEY": "sk-admin-TOPSECRET "}, {}, f"OPENAI_ADMIN_KEY: {_ENDS}"),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin-TOPSECRET\t"},
            {},
            f"OPENAI_ADMIN_KEY: {_ENDS}",
        ),
        (
            {"OPENAI_ADMIN_KEY": "\nsk-admin-TOPSECRET"},
            {},
            f"OPENAI_ADMIN_KEY: {_ENDS}",
        ),
        (
            {"OPENAI_ADMIN_KEY_FILE": "/k"},
            {"/k": " sk-admin-TOPSECRET\n"},
            f"OPENAI_ADMIN_KEY_FILE: {_ENDS}",
        ),
        ({"OPENAI_ADMIN_KEY": "sk-admin TOPSECRET"}, {}, f"OPENAI_ADMIN_KEY: {_INNER}"),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin\u00a0TOPSECRET"},
            {},
            f"OPENAI_ADMIN_KEY: {_INNER}",
        ),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin-TOPSECRET\x7f"},
            {},
            f"OPENAI_ADMIN_KEY: {_CONTROL}",
        ),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin-TOPSECRET\u00e9"},
            {},
            f"OPENAI_ADMIN_KEY: {_NON_ASCII}",
        ),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin-TOPSECRET\u043a"},
            {},
            f"OPENAI_ADMIN_KEY: {_NON_ASCII}",
        ),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin-TOPSECRET\u200b"},
            {},
            f"OPENAI_ADMIN_KEY: {_NON_ASCII}",
        ),
        ({"VM_BEARER_TOKEN": "TOPSECRET\u2026"}, {}, f"VM_BEARER_TOKEN: {_NON_ASCII}"),
        (
            {"VM_USERNAME": "u", "VM_PASSWORD": "\ufeffTOPSECRET"},
            {},
            f"VM_PASSWORD: {_BOM}",
        ),
        (
            {"VM_USERNAME": "u", "VM_PASSWORD_FILE": "/p"},
            {"/p": "TOPSECRET \n"},
            f"VM_PASSWORD_FILE: {_ENDS}",
        ),
    ],
)
def test_secret_hygiene(
    environ: dict[str, str], files: dict[str, str | Exception], problem: str
) -> None:
    """A BOM, whitespace at the ends or inside, control characters and (for the
    header secrets) non-ASCII characters are one problem naming the setting; the
    value is never shown."""
    problems = _problems(environ=environ, files=files)
    assert problems == [problem]
    assert "TOPSECRET" not in problems[0]


@pytest.mark.parametrize("value", ["sk-admin-OK\n", "sk-admin-OK\r\n", "sk-admin-OK"])
@pytest.mark.parametrize("source", ["environ", "dotenv"])
def test_a_trailing_line_break_is_cut_from_any_source(value: str, source: str) -> None:
    """`echo` and `kubectl create secret --from-file` add a line break: it is cut
    from the environment and `.env` too, as from a file."""
    given = {"OPENAI_ADMIN_KEY": value}
    settings = _load(environ=given) if source == "environ" else _load(dotenv=given)
    assert settings.admin_key == Secret("sk-admin-OK")


def test_a_non_ascii_password_is_fine() -> None:
    """VM_PASSWORD travels base64-encoded (UTF-8) in the Basic header: any
    printable character is fine."""
    settings = _load(environ={"VM_USERNAME": "u", "VM_PASSWORD": "p\u00e4ss-\u043a"})
    assert settings.vm_password == Secret("p\u00e4ss-\u043a")


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        (
            {"VM_BEARER_TOKEN": "tok", "VM_USERNAME": "u"},
            "VM_BEARER_TOKEN: set either a bearer token or VM_USERNAME/VM_PASSWORD, "
            "not both",
        ),
        (
            {"VM_BEARER_TOKEN": "tok", "VM_USERNAME": "u", "VM_PASSWORD": "pw"},
            "VM_BEARER_TOKEN: set either a bearer token or VM_USERNAME/VM_PASSWORD, "
            "not both",
        ),
        ({"VM_PASSWORD": "pw"}, "VM_PASSWORD: set VM_USERNAME too"),
    ],
)
def test_push_auth_conflicts(environ: dict[str, str], problem: str) -> None:
    """A bearer token excludes basic auth, and a password needs a user name."""
    assert problem in _problems(environ=environ)


def test_basic_auth() -> None:
    """User name and password together configure basic auth."""
    settings = _load(environ={"VM_USERNAME": " pusher ", "VM_PASSWORD": "pw"})
    assert settings.vm_username == "pusher"
    assert settings.vm_password == Secret("pw")
    assert settings.vm_bearer_token is None


SECRETS = ("sk-admin-TOPSECRET1", "pw-TOPSECRET2", "tok-TOPSECRET3")


def test_no_secret_in_config_errors() -> None:
    """No secret value appears in any problem line, whatever else is wrong."""
    environ = {
        "OPENAI_ADMIN_KEY": SECRETS[0],
        "VM_USERNAME": "u",
        "VM_PASSWORD": SECRETS[1],
        "VM_BEARER_TOKEN": SECRETS[2],
        "PUSH_INTERVAL": "soon",
        "VM_PUSH_URL": f"http://u:{SECRETS[1]}@vm/x",
    }
    dotenv = {"OPENAI_ADMIN_KEY_FILE": "/k", "VM_PASSWORD_FILE": "/missing"}
    with pytest.raises(ConfigError) as info:
        _load(environ=environ, dotenv=dotenv, files={"/k": SECRETS[0]})
    texts = [str(info.value), repr(info.value), *info.value.problems]
    assert len(info.value.problems) >= 4
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize(
    ("environ", "files"),
    [
        ({"OPENAI_ADMIN_KEY": "sk admin TOPSECRET"}, {}),
        ({"OPENAI_ADMIN_KEY_FILE": "/k"}, {"/k": "sk-admin TOPSECRET\n"}),
        ({"VM_BEARER_TOKEN": "TOPSECRET\x01"}, {}),
    ],
)
def test_no_secret_in_malformed_secret_error(
    environ: dict[str, str], files: dict[str, str | Exception]
) -> None:
    """A refused secret is described, never quoted."""
    for problem in _problems(environ=environ, files=files):
        assert "TOPSECRET" not in problem


def test_no_secret_in_settings_repr() -> None:
    """repr and str of Settings, and str, repr and format of Secret, show `***`."""
    settings = _load(
        environ={
            "OPENAI_ADMIN_KEY": SECRETS[0],
            "VM_USERNAME": "u",
            "VM_PASSWORD": SECRETS[1],
        }
    )
    for text in (repr(settings), str(settings), f"{settings}"):
        for secret in SECRETS:
            assert secret not in text
    assert "***" in repr(settings)
    key = settings.admin_key
    assert key is not None
    assert str(key) == "***"
    assert f"{key}" == "***"
    assert repr(key) == "Secret('***')"
    assert key.reveal() == SECRETS[0]
    assert sorted(settings.secrets()) == sorted(SECRETS[:2])


def test_every_option_is_unique() -> None:
    """Each setting has one environment name and at most one flag."""
    envs = [o.env for o in OPTIONS]
    flags = [o.flag for o in OPTIONS if o.flag]
    assert len(envs) == len(set(envs))
    assert len(flags) == len(set(flags))
    assert all(flag.startswith("--") for flag in flags)


# -- INSTANCE: the self-monitoring series' instance label ----------------------------


@pytest.mark.parametrize(
    ("args", "environ", "expected"),
    [
        ({}, {}, None),
        ({}, {"INSTANCE": ""}, None),
        ({}, {"INSTANCE": "  "}, None),
        ({}, {"INSTANCE": " pod-7 "}, "pod-7"),
        ({"INSTANCE": "manual"}, {"INSTANCE": "pod-7"}, "manual"),
        ({}, {"INSTANCE": "Ноутбук ✓"}, "Ноутбук ✓"),
    ],
)
def test_instance(args: Args, environ: dict[str, str], expected: str | None) -> None:
    """INSTANCE / --instance sets the label; empty leaves it to the host name."""
    assert _load(args=args, environ=environ).instance == expected


@pytest.mark.parametrize("value", ["a\nb", "tab\there", "x" * 129])
def test_bad_instance(value: str) -> None:
    """Control characters and overlong values are refused."""
    [problem] = _problems(environ={"INSTANCE": value})
    assert problem.startswith("INSTANCE: expected at most 128 characters")


def test_instance_is_not_an_extra_label() -> None:
    """`instance` in EXTRA_LABELS would land on the cost series too: refused, with
    the setting to use instead."""
    [problem] = _problems(environ={"EXTRA_LABELS": "instance=pod-1"})
    assert "'instance' is a label the pusher sets itself" in problem
    assert "set INSTANCE instead" in problem


def test_instance_defaults_to_the_host_name() -> None:
    """The pusher's self-monitoring stats carry INSTANCE, else the host name."""
    args = argparse.Namespace(demo=True, dry_run=True)
    for environ, expected in (({}, socket.gethostname()), ({"INSTANCE": "m"}, "m")):
        pusher, client = _build(_load(environ=environ), args, threading.Event())
        assert client is None
        assert pusher.stats.instance == expected


def test_every_label_a_metric_family_sets_is_reserved() -> None:
    """No extra label can take the name of one the pusher sets on its families
    (usage dimensions, tools, the optional user and key dimensions), where it would
    be overwritten or overwrite."""
    from openai_cost_pusher import metrics

    usage = {
        *metrics._TOKEN_LABELS,
        *metrics._OPTIONAL_DIMS,
        "tool",
        *(label for _, labels in metrics._USAGE_FAMILIES.values() for label in labels),
        *(label for _, labels in metrics._TOOLS.values() for label in labels),
    }
    assert usage <= RESERVED_LABELS
    for label in ("tool", "context_level", "user_id"):
        problems = _problems(environ={"EXTRA_LABELS": f"{label}=x"})
        assert len(problems) == 1 and "a label the pusher sets itself" in problems[0]
