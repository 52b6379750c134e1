"""Test the log formatters: UTC timestamps, fields, one JSON object per line, redaction.

Records go through a real `logging.Logger` into a `StringIO` handler, so the tests see
exactly what `cli` would print, tracebacks included.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from urllib.parse import quote, quote_plus

import pytest

from openai_cost_pusher.config import Settings, load_settings
from openai_cost_pusher.logs import (
    JsonFormatter,
    RedactingFormatter,
    Redactor,
    TextFormatter,
    make_formatter,
)

CREATED = 1_730_419_200.5  # 2024-11-01 00:00:00.500 UTC
SECRET = "sk-admin-TOPSECRET123"


class _Capture:
    """A logger whose output, formatted by the formatter under test, is kept."""

    def __init__(self, formatter: logging.Formatter, name: str) -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(formatter)
        self.logger = logging.getLogger(name)
        self.logger.handlers[:] = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    @property
    def text(self) -> str:
        """Return everything written so far."""
        return self.stream.getvalue()


@pytest.fixture(name="capture")
def capture_fixture(request: pytest.FixtureRequest) -> Iterator[_Capture]:
    """Yield a text-format capture on a per-test logger, detached afterwards."""
    name = f"tests.logs.{request.node.name}"
    cap = _Capture(TextFormatter(), name)
    yield cap
    cap.logger.handlers.clear()


def _format(
    formatter: logging.Formatter,
    msg: str,
    *args: object,
    level: int = logging.INFO,
    **extra: object,
) -> str:
    """Format one record created at CREATED with `extra` fields."""
    record = logging.LogRecord(
        "openai_cost_pusher.app", level, __file__, 1, msg, args or None, None
    )
    record.created = CREATED
    record.__dict__.update(extra)
    return formatter.format(record)


def test_text_line() -> None:
    """Text lines start with a UTC ISO timestamp ending in Z, then key=value pairs."""
    line = _format(
        TextFormatter(),
        "cycle done",
        result="success",
        days=3,
        window="2024-10-30..2024-11-01",
        duration_s=0.25,
        note=None,
    )
    assert line == (
        "2024-11-01T00:00:00.500Z level=info logger=openai_cost_pusher.app "
        'msg="cycle done" result=success days=3 window=2024-10-30..2024-11-01 '
        "duration_s=0.25 note=None"
    )


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("k=v", '"k=v"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("Проект", "Проект"),
        (42, "42"),
        (1.5, "1.5"),
    ],
)
def test_text_field_quoting(value: object, rendered: str) -> None:
    """Field values with spaces, quotes, `=` or newlines are quoted; others are bare."""
    line = _format(TextFormatter(), "m", field=value)
    assert line.endswith(f" field={rendered}")
    assert "\n" not in line


def test_text_message_args_and_level() -> None:
    """Lazy % arguments are merged and the level is lowercase."""
    line = _format(TextFormatter(), "cycle failed: %s", "boom", level=logging.ERROR)
    assert " level=error " in line
    assert 'msg="cycle failed: boom"' in line


def test_json_line() -> None:
    """JSON lines are one object with ts, level, logger, msg and the extra fields."""
    line = _format(
        JsonFormatter(),
        "cycle done",
        result="success",
        days=3,
        duration_s=0.25,
        path=PurePosixPath("/x"),
        note=None,
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2024-11-01T00:00:00.500Z",
        "level": "info",
        "logger": "openai_cost_pusher.app",
        "msg": "cycle done",
        "result": "success",
        "days": 3,
        "duration_s": 0.25,
        "path": "/x",
        "note": None,
    }


def test_json_one_object_per_line(capture: _Capture) -> None:
    """Several records, one with a traceback, give one parseable object per line."""
    capture.logger.handlers[0].setFormatter(JsonFormatter())
    capture.logger.info("first", extra={"n": 1})
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        capture.logger.exception("second")
    capture.logger.warning("third: %s", "Проект ✓")
    lines = capture.text.splitlines()
    assert len(lines) == 3
    docs = [json.loads(line) for line in lines]
    assert [d["msg"] for d in docs] == ["first", "second", "third: Проект ✓"]
    assert [d["level"] for d in docs] == ["info", "error", "warning"]
    assert "ValueError: line one\nline two" in docs[1]["exc"]
    assert "Проект ✓" in lines[2]  # UTF-8 is written as is, not \u-escaped
    for doc in docs:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"])


def test_text_traceback_follows_line(capture: _Capture) -> None:
    """In text format, a traceback follows its log line."""
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        capture.logger.exception("cycle failed on an unexpected error")
    first, *rest = capture.text.splitlines()
    assert 'msg="cycle failed on an unexpected error"' in first
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: bad"


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_730_419_199.999, "2024-10-31T23:59:59.999Z"),
        (1_730_419_200.0, "2024-11-01T00:00:00.000Z"),
    ],
)
@pytest.mark.parametrize("kind", ["text", "json"])
def test_timestamps_are_utc(ts: float, expected: str, kind: str) -> None:
    """Timestamps are UTC with millisecond precision and a Z suffix."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created = ts
    line = make_formatter(kind, []).format(record)
    stamp = json.loads(line)["ts"] if kind == "json" else line.split(" ", 1)[0]
    assert stamp == expected


def test_make_formatter() -> None:
    """LOG_FORMAT picks the JSON or the text formatter."""
    assert isinstance(make_formatter("json", []), JsonFormatter)
    assert isinstance(make_formatter("text", []), TextFormatter)


SECRETS = [SECRET, 'pa"ss\\word', "Пароль-✓"]


def _log_everywhere(logger: logging.Logger, secret: str, where: str) -> None:
    """Log `secret` in the message, in an extra field or in a traceback."""
    if where == "message":
        logger.info("using key %s now", secret)
    elif where == "field":
        logger.warning(
            "push refused", extra={"auth": f"Bearer {secret}", "raw": secret}
        )
    else:
        try:
            raise RuntimeError(f"server said: invalid key {secret}")
        except RuntimeError:
            logger.exception("cycle failed")


@pytest.mark.parametrize("secret", SECRETS, ids=["key", "quote-backslash", "utf8"])
@pytest.mark.parametrize("where", ["message", "field", "traceback"])
@pytest.mark.parametrize("kind", ["text", "json"])
def test_secret_is_redacted(
    capture: _Capture, kind: str, where: str, secret: str
) -> None:
    """A secret in a message, an extra field or a traceback is printed as ***."""
    capture.logger.handlers[0].setFormatter(make_formatter(kind, [secret, ""]))
    _log_everywhere(capture.logger, secret, where)
    out = capture.text
    assert "***" in out
    assert secret not in out
    # nor in the escaped forms the formatters themselves produce
    assert json.dumps(secret, ensure_ascii=False)[1:-1] not in out
    assert json.dumps(secret)[1:-1] not in out
    if kind == "json":
        for line in out.splitlines():
            assert secret not in json.dumps(json.loads(line), ensure_ascii=False)
            assert secret not in str(json.loads(line))


def test_longer_secret_redacted_first() -> None:
    """A secret that contains another is hidden whole, leaving no tail behind."""
    formatter = RedactingFormatter(["abc", "abcdef"])
    assert formatter.redact("x abcdef y abc") == "x *** y ***"


def test_no_secrets_changes_nothing() -> None:
    """Without secrets the text is unchanged; empty strings are not secrets."""
    formatter = RedactingFormatter(["", ""])
    assert formatter.redact("nothing to hide") == "nothing to hide"


# -- derived forms: what a server echoes back ---------------------------------------

USER, PASSWORD = "pusher", "vm-Pa55:w/rd+"
PAIR = f"{USER}:{PASSWORD}"
PAIR_B64 = base64.b64encode(PAIR.encode()).decode()
BEARER = "vm-token-XYZ"


def _settings(**environ: str) -> Settings:
    def no_files(path: str) -> str:
        raise OSError(path)

    return load_settings({}, environ, {}, no_files)


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Basic {PAIR_B64}",
        f"echo: {PAIR_B64.rstrip('=')}",
        f"url-safe: {base64.urlsafe_b64encode(PAIR.encode()).decode()}",
        f"raw pair {PAIR}",
        f"url-encoded {quote(PASSWORD, safe='')} and {quote_plus(PAIR)}",
        f'json "{json.dumps(PAIR)[1:-1]}"',
    ],
)
def test_basic_auth_pair_is_redacted_in_every_encoding(text: str) -> None:
    """The VM basic-auth pair is hidden raw, base64 (padded, unpadded, URL-safe),
    URL-encoded and JSON-escaped: a server echoing the header shows `Basic ***`."""
    redact = Redactor.for_settings(
        _settings(VM_USERNAME=USER, VM_PASSWORD=PASSWORD, OPENAI_ADMIN_KEY=SECRET)
    )
    out = redact(text)
    assert "***" in out
    for leaked in (PASSWORD, PAIR, PAIR_B64, PAIR_B64.rstrip("=")):
        assert leaked not in out


def test_measured_basic_header_is_redacted() -> None:
    """The header that leaked in the field, `Basic dXNlcjpwYXNz` (user:pass)."""
    redact = Redactor(["pass"], basic_auth=("user", "pass"))
    assert redact("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic ***"


def test_bearer_and_admin_key_are_redacted_in_header_form() -> None:
    """`Bearer <token>` and `Bearer <admin key>` echoed back show `Bearer ***`."""
    redact = Redactor.for_settings(
        _settings(OPENAI_ADMIN_KEY=SECRET, VM_BEARER_TOKEN=BEARER)
    )
    text = (
        f"Authorization: Bearer {SECRET}; upstream said Authorization: Bearer {BEARER}"
    )
    assert redact(text) == (
        "Authorization: Bearer ***; upstream said Authorization: Bearer ***"
    )


@pytest.mark.parametrize("kind", ["text", "json"])
def test_formatter_redacts_derived_forms(capture: _Capture, kind: str) -> None:
    """The log formatters use the same redactor: the base64 pair never reaches a log
    line, in a message, a field or a traceback."""
    redact = Redactor.for_settings(_settings(VM_USERNAME=USER, VM_PASSWORD=PASSWORD))
    capture.logger.handlers[0].setFormatter(make_formatter(kind, redact))
    header = f"Basic {PAIR_B64}"
    capture.logger.warning("push refused: %s", header, extra={"auth": header})
    try:
        raise RuntimeError(f"server echoed {header}")
    except RuntimeError:
        capture.logger.exception("cycle failed")
    assert PAIR_B64.rstrip("=") not in capture.text
    assert PASSWORD not in capture.text
    assert "Basic ***" in capture.text


def test_redactor_without_password_hides_no_pair() -> None:
    """A user name alone is no secret: `user:` and its base64 stay as they are."""
    redact = Redactor.for_settings(_settings(VM_USERNAME=USER))
    plain = base64.b64encode(f"{USER}:".encode()).decode()
    assert redact(f"user {USER} {plain}") == f"user {USER} {plain}"
