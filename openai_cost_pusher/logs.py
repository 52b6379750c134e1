"""Log formatting: key=value text or one JSON object per line, secrets redacted.

Only `cli` installs these on a handler. Every formatted line passes through the
redaction step last, so a secret that reached a message, a field or a traceback by
mistake is still printed as `***`.

`Redactor` is the one redaction step: the log formatters and the health listener's
`/healthz` body both use it, so a secret is hidden alike everywhere the pusher prints.
It knows every form in which a secret may travel (`secret_forms`): the value itself,
its JSON-escaped and URL-encoded forms, and for basic auth the `user:password` pair
and its base64 (standard and URL-safe, with or without `=` padding), which is what an
`Authorization: Basic ...` header echoed by a server shows. A bearer token or the
admin key echoed as `Bearer ...` is hidden through the value itself.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from openai_cost_pusher.config import Settings

REDACTED = "***"

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the `extra=` fields of a record."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _json_escaped(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _basic_pair_forms(username: str, password: str) -> set[str]:
    """Return `user:password` and the base64 forms a Basic auth header carries."""
    pair = f"{username}:{password}"
    raw = pair.encode()
    encoded = {
        enc(raw).decode().rstrip("=")
        for enc in (base64.b64encode, base64.urlsafe_b64encode)
    }
    return {pair, *encoded}


def secret_forms(
    secrets: Iterable[str], *, basic_auth: tuple[str, str] | None = None
) -> list[str]:
    """Return every printed form of `secrets`, longest first, empty ones dropped.

    Each secret counts as itself, JSON-escaped (both formatters escape quotes and
    backslashes, which would hide it from a plain search; `ensure_ascii` or not), and
    URL-encoded.
    `basic_auth` (user, password) adds the `user:password` pair and its base64: the
    unpadded base64 is a substring of the padded one, so either is hidden whole.
    """
    values = {s for s in secrets if s}
    if basic_auth is not None and basic_auth[1]:
        values |= _basic_pair_forms(*basic_auth)
    forms = {
        form
        for value in values
        for form in (
            value,
            _json_escaped(value),
            json.dumps(value)[1:-1],
            quote(value, safe=""),
            quote_plus(value, safe=""),
        )
        if form
    }
    # longest first: a secret that contains another is hidden whole
    return sorted(forms, key=lambda f: (-len(f), f))


class Redactor:
    """Replace every form of every known secret with `***`; the one redaction step."""

    def __init__(
        self, secrets: Iterable[str] = (), *, basic_auth: tuple[str, str] | None = None
    ) -> None:
        self._forms = secret_forms(secrets, basic_auth=basic_auth)

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        """Return the redactor of every secret in `settings`, basic-auth pair too."""
        password = settings.vm_password
        pair = None
        if password is not None and password.reveal():
            pair = (settings.vm_username or "", password.reveal())
        return cls(settings.secrets(), basic_auth=pair)

    def __call__(self, text: str) -> str:
        """Return `text` with every secret replaced by `***`."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


class RedactingFormatter(logging.Formatter):
    """Base formatter that replaces every known secret with `***` in the output."""

    def __init__(self, secrets: Iterable[str] | Redactor = ()) -> None:
        super().__init__()
        self.redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)

    def redact(self, text: str) -> str:
        """Return `text` with every secret replaced by `***`."""
        return self.redactor(text)

    def render(self, record: logging.LogRecord) -> str:
        """Return the line for `record` before redaction."""
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        """Format and redact one record."""
        return self.redact(self.render(record))


class TextFormatter(RedactingFormatter):
    """`2026-11-01T10:00:00.000Z level=info msg="cycle done" key=value ...`."""

    def render(self, record: logging.LogRecord) -> str:
        """Return the key=value line for `record`."""
        parts = [
            _timestamp(record),
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_text_value(record.getMessage())}",
        ]
        parts.extend(f"{k}={_text_value(v)}" for k, v in _fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(RedactingFormatter):
    """One JSON object per line with a UTC ISO timestamp."""

    def render(self, record: logging.LogRecord) -> str:
        """Return the JSON line for `record`."""
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def make_formatter(kind: str, secrets: Iterable[str] | Redactor) -> RedactingFormatter:
    """Return the formatter for LOG_FORMAT `text` or `json`; `secrets` may be the
    values or a `Redactor` (`Redactor.for_settings`, which knows derived forms)."""
    return JsonFormatter(secrets) if kind == "json" else TextFormatter(secrets)
