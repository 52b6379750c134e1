"""Spend limits and spend alerts: decoded answers in, records and samples out.

OpenAI lets an organization and each project set a hard monthly spend limit
(`GET /organization/spend_limit`, `/organization/projects/{id}/spend_limit`) and
email alerts at fixed thresholds (`GET /organization/spend_alerts`,
`/organization/projects/{id}/spend_alerts`). An enforcing limit makes the API answer
429 `project_spend_limit_exceeded`: traffic stops. This module parses those four
answers strictly and turns them into two gauges:

    openai_spend_limit{scope="project",project_id="proj_1",project="chat_bot",currency="usd",enforcement="enforcing"} 1500.0 1730460000000
    openai_spend_alert_threshold{scope="organization",project_id="",project="",alert_id="alrt_1",currency="usd"} 2000.0 1730460000000

Amounts come in cents (an integer) and go out in currency units; the currency is
lower-cased to match the cost series (`USD` -> `usd`). What counts as "no limit" (no
series) is decided here: a `threshold_amount` of null, or 0 on a limit that is not
enforcing. A 0 limit that is enforcing stops all traffic and is pushed. The client
maps a 404 answer to "not configured" as well (`Unread.NOT_CONFIGURED`).

Pure: no I/O, no clock; the client fetches and pages, the cycle decides when.
Every bad value raises `BadField` (a `BadResponse`) naming its JSON path in one line.
"""  # noqa: E501 - exposition lines are shown whole

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from openai_cost_pusher.metrics import (
    SPEND_ALERT_THRESHOLD,
    SPEND_LIMIT,
    fit_label_value,
    project_label,
)
from openai_cost_pusher.model import Labels, Sample
from openai_cost_pusher.parsers import BadField, check_cursor, utf8

ORGANIZATION = "organization"
PROJECT = "project"
MAX_THRESHOLD_CENTS = 10**12
"""The largest threshold accepted (10 billion currency units); larger is hostile."""
MAX_WORD_CHARS = 64
"""The longest currency code or enforcement status accepted as a label value."""
MAX_ID_CHARS = 256
"""The longest spend alert id accepted."""


class Unread(enum.Enum):
    """Why a read gave no records: not an error, a state."""

    NOT_CONFIGURED = "not_configured"
    """No limit (or no alert list) is set: 404, or a null / inactive zero threshold."""
    REFUSED = "refused"
    """HTTP 403: the admin key lacks the scope for this read."""


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """A hard monthly spend limit; `project_id` is ``""`` for the organization."""

    scope: str
    project_id: str
    threshold_cents: int
    currency: str
    enforcement: str


@dataclass(frozen=True, slots=True)
class SpendAlert:
    """One spend alert threshold; `project_id` is ``""`` for the organization."""

    scope: str
    project_id: str
    alert_id: str
    threshold_cents: int
    currency: str


def _object_name(scope: str, what: str) -> str:
    return f"{'organization' if scope == ORGANIZATION else 'project'}.{what}"


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadField(where, f"expected an object, got {type(value).__name__}")
    return value


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise BadField(f"{where}.{key}", "missing")
    return obj[key]


def _tag(value: Any, expected: str, where: str) -> None:
    if value != expected:
        raise BadField(where, f"expected {expected!r}, got {value!r:.60}")


def _cents(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(where, f"expected an integer amount in cents, got {value!r:.40}")
    if not 0 <= value <= MAX_THRESHOLD_CENTS:
        # never str() a huge integer: Python refuses more than 4,300 digits
        digits = int(abs(value).bit_length() * 0.30103) + 1
        shown = str(value) if digits <= 20 else f"a number of about {digits} digits"
        raise BadField(where, f"expected 0 to {MAX_THRESHOLD_CENTS} cents, got {shown}")
    return value


def _word(value: Any, where: str, what: str) -> str:
    """Return a short printable string (a currency, a status) fit for a label."""
    if not isinstance(value, str):
        raise BadField(where, f"expected {what} as a string, got {value!r:.40}")
    text = utf8(value).strip()
    if not text or len(text) > MAX_WORD_CHARS or not text.isprintable():
        raise BadField(
            where,
            f"expected {what} of 1 to {MAX_WORD_CHARS} printable characters, "
            f"got {value!r:.40}",
        )
    return text


def parse_spend_limit(
    body: Any, where: str, project_id: str = ""
) -> SpendLimit | Unread:
    """Return the limit in a `*SpendLimitResource`, or `Unread.NOT_CONFIGURED`.

    `project_id` ``""`` reads the organization's answer. A null `threshold_amount`
    (outside the spec, taken as "not set"), or 0 on a limit that is not enforcing,
    means no limit.
    """
    scope = PROJECT if project_id else ORGANIZATION
    obj = _object(body, where)
    _tag(
        _field(obj, "object", where),
        _object_name(scope, "spend_limit"),
        f"{where}.object",
    )
    raw = _field(obj, "threshold_amount", where)
    if raw is None:
        return Unread.NOT_CONFIGURED
    enforcement = _object(_field(obj, "enforcement", where), f"{where}.enforcement")
    status = _word(
        _field(enforcement, "status", f"{where}.enforcement"),
        f"{where}.enforcement.status",
        "a status",
    )
    cents = _cents(raw, f"{where}.threshold_amount")
    currency = _word(_field(obj, "currency", where), f"{where}.currency", "a currency")
    interval = _field(obj, "interval", where)
    if not isinstance(interval, str):
        raise BadField(f"{where}.interval", f"expected a string, got {interval!r:.40}")
    if cents == 0 and status != "enforcing":
        return Unread.NOT_CONFIGURED
    return SpendLimit(scope, project_id, cents, currency.lower(), status)


def parse_spend_alerts_page(
    body: Any, where: str, project_id: str = ""
) -> tuple[list[SpendAlert], bool, str | None]:
    """Return a `*SpendAlertListResource` page's alerts, `has_more` and `last_id`.

    `project_id` ``""`` reads the organization's list. `last_id` is checked as a
    cursor (the next page's `after`); None where the page gives none.
    """
    scope = PROJECT if project_id else ORGANIZATION
    obj = _object(body, where)
    _tag(_field(obj, "object", where), "list", f"{where}.object")
    data = _field(obj, "data", where)
    if not isinstance(data, list):
        raise BadField(f"{where}.data", f"expected an array, got {type(data).__name__}")
    has_more = _field(obj, "has_more", where)
    if not isinstance(has_more, bool):
        raise BadField(f"{where}.has_more", f"expected a boolean, got {has_more!r:.40}")
    last_id = obj.get("last_id")
    if last_id is not None:
        if not isinstance(last_id, str):
            raise BadField(
                f"{where}.last_id", f"expected a string, got {last_id!r:.40}"
            )
        check_cursor(last_id, f"{where}.last_id")
    tag = _object_name(scope, "spend_alert")
    alerts = []
    for i, item in enumerate(data):
        at = f"{where}.data[{i}]"
        alert = _object(item, at)
        _tag(_field(alert, "object", at), tag, f"{at}.object")
        alert_id = _field(alert, "id", at)
        if (
            not isinstance(alert_id, str)
            or not alert_id
            or len(alert_id) > MAX_ID_CHARS
            or not alert_id.isprintable()
        ):
            raise BadField(
                f"{at}.id",
                f"expected an id of 1 to {MAX_ID_CHARS} printable characters, "
                f"got {alert_id!r:.40}",
            )
        cents = _cents(_field(alert, "threshold_amount", at), f"{at}.threshold_amount")
        currency = _word(_field(alert, "currency", at), f"{at}.currency", "a currency")
        alerts.append(
            SpendAlert(scope, project_id, utf8(alert_id), cents, currency.lower())
        )
    return alerts, has_more, last_id


def _units(cents: int) -> float:
    """Return an amount in cents as currency units (correctly rounded)."""
    return cents / 100


def spend_samples(
    limits: Iterable[SpendLimit],
    alerts: Iterable[SpendAlert],
    names: Mapping[str, str | None],
    extra: Labels,
    now_ms: int,
) -> list[Sample]:
    """Return `openai_spend_limit` and `openai_spend_alert_threshold` samples, all
    stamped at `now_ms`, in currency units.

    `project` is the same normalized name the cost series carry; `project_id` and
    `project` are ``""`` (absent once stored) for the organization.
    """

    def labels(scope: str, project_id: str, **more: str) -> Labels:
        pairs = {
            **dict(extra),
            "scope": scope,
            "project_id": project_id,
            "project": project_label(project_id, names) if project_id else "",
            **more,
        }
        return tuple(sorted((k, fit_label_value(v)) for k, v in pairs.items()))

    out = [
        Sample(
            SPEND_LIMIT,
            labels(
                limit.scope,
                limit.project_id,
                currency=limit.currency,
                enforcement=limit.enforcement,
            ),
            _units(limit.threshold_cents),
            now_ms,
        )
        for limit in limits
    ]
    seen: set[Labels] = set()
    for alert in alerts:
        key = labels(
            alert.scope,
            alert.project_id,
            alert_id=alert.alert_id,
            currency=alert.currency,
        )
        if key in seen:
            continue  # an alert served twice (pages shifted between reads): once
        seen.add(key)
        out.append(
            Sample(SPEND_ALERT_THRESHOLD, key, _units(alert.threshold_cents), now_ms)
        )
    return out
