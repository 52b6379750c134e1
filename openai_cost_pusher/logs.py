"""Log formatting: key=value text or one JSON object per line, secrets redacted.

Only `cli` installs these on a handler. Every formatted line passes through the
redaction step last, so a secret that reached a message, a field or a traceback by
mistake is still printed as `***`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

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


class RedactingFormatter(logging.Formatter):
    """Base formatter that replaces every known secret with `***` in the output."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # also the JSON-escaped form: both formatters escape `"` and `\` (the text
        # one in quoted values), which would hide a secret from a plain search
        forms = {f for s in secrets if s for f in (s, _json_escaped(s))}
        self._secrets = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """Return `text` with every secret replaced by `***`."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

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


def make_formatter(kind: str, secrets: Iterable[str]) -> RedactingFormatter:
    """Return the formatter for LOG_FORMAT `text` or `json`."""
    return JsonFormatter(secrets) if kind == "json" else TextFormatter(secrets)
