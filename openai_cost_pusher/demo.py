"""A simulated organization that answers like the Admin API, for `--demo`.

It has a handful of projects (one archived, one with a non-Latin name), several line
items, costs without a project, a month of history, a spend spike on the day it starts,
and spend limits and alerts (`SPEND_LIMITS`, `SPEND_ALERTS`), so the whole pipeline, the
dashboard and the alerts can be tried without an admin key. Values are a pure function
of the day (and of that start day), so re-fetching a day gives the same answer, and
today's costs grow with the hour as real late-arriving costs do. Every sample the pusher
makes from it carries `demo="true"`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence

from openai_cost_pusher.model import ApiKey, CostLine, Project, Rejected, UsageLine
from openai_cost_pusher.spend_limits import (
    ORGANIZATION,
    PROJECT,
    SpendAlert,
    SpendLimit,
    Unread,
)
from openai_cost_pusher.window import DAY, day_of

DEMO_LABEL = ("demo", "true")

PROJECTS = (
    Project("proj_demo_chat", "Customer Chat"),
    Project("proj_demo_search", "Search & Retrieval"),
    Project("proj_demo_eval", "Assistant Test/Eval"),
    Project("proj_demo_intl", "Ünïcode Проект ✓"),
    Project("proj_demo_legacy", "Legacy Batch Jobs", archived=True),
)

# project id -> (line item -> typical daily USD)
SPEND: dict[str, dict[str, float]] = {
    "proj_demo_chat": {
        "gpt-4o, input": 18.0,
        "gpt-4o, output": 27.0,
        "gpt-4o-mini, input": 2.5,
    },
    "proj_demo_search": {
        "text-embedding-3-small": 4.0,
        "gpt-4o-mini, input": 3.0,
        "gpt-4o-mini, output": 4.5,
        "file search tool calls": 1.2,
    },
    "proj_demo_eval": {"gpt-4o, input": 6.0, "gpt-4o, output": 8.0},
    "proj_demo_intl": {"gpt-4o-mini, input": 1.5, "gpt-4o-mini, output": 2.0},
    "proj_demo_legacy": {"gpt-4o, input": 9.0},
    "": {"fine-tuning training": 0.8},
}
SPIKE_PROJECT = "proj_demo_chat"
SPIKE_FACTOR = 5.0
LEGACY_ARCHIVED_DAYS_AGO = 12
# hard monthly spend limits in cents ("" = the organization), with their enforcement;
# the other projects have none
SPEND_LIMITS: dict[str, tuple[int, str]] = {
    "": (500_000, "enforcing"),
    "proj_demo_chat": (150_000, "enforcing"),
    "proj_demo_search": (50_000, "inactive"),
}
# spend alert thresholds in cents, by alert id ("" = the organization)
SPEND_ALERTS: dict[str, dict[str, int]] = {
    "": {"spend_alert_demo_org_1": 200_000, "spend_alert_demo_org_2": 400_000},
    "proj_demo_chat": {"spend_alert_demo_chat": 100_000},
}


def daily_cost(day: int, project_id: str, line_item: str, spike_day: int) -> float:
    """Return the simulated full-day cost of one line item on `day` (USD).

    `spike_day` is the day the demo started: the day of the spike, and the day the
    legacy project's archiving is counted from.
    """
    archived_since = spike_day - LEGACY_ARCHIVED_DAYS_AGO * DAY
    if project_id == "proj_demo_legacy" and day > archived_since:
        return 0.0
    rng = random.Random(f"{day}:{project_id}:{line_item}")
    weekday = ((day // DAY) + 3) % 7  # 0 = Monday
    weekend = 0.55 if weekday >= 5 else 1.0
    if day == spike_day and project_id == SPIKE_PROJECT:
        # a weekday-sized day times the factor, so that even at 00:00 UTC on a
        # weekend (half a day arrived) it is 2x the usual day: the alert fires
        weekend = SPIKE_FACTOR
    return SPEND[project_id][line_item] * weekend * rng.uniform(0.8, 1.2)


# line item -> (usage endpoint, model, token field, USD per million tokens)
TOKEN_PRICES: dict[str, tuple[str, str, str, float]] = {
    "gpt-4o, input": ("completions", "gpt-4o-2024-08-06", "input_tokens", 2.50),
    "gpt-4o, output": ("completions", "gpt-4o-2024-08-06", "output_tokens", 10.0),
    "gpt-4o-mini, input": ("completions", "gpt-4o-mini", "input_tokens", 0.15),
    "gpt-4o-mini, output": ("completions", "gpt-4o-mini", "output_tokens", 0.60),
    "text-embedding-3-small": (
        "embeddings",
        "text-embedding-3-small",
        "input_tokens",
        0.02,
    ),
}
TOKENS_PER_REQUEST = 1_500
_USAGE_DIMS = {
    "completions": (
        "project_id",
        "user_id",
        "api_key_id",
        "model",
        "batch",
        "service_tier",
    ),
    "embeddings": ("project_id", "user_id", "api_key_id", "model"),
    "web_search_calls": (
        "project_id",
        "user_id",
        "api_key_id",
        "model",
        "context_level",
    ),
    "file_search_calls": ("project_id", "user_id", "api_key_id", "vector_store_id"),
}
# tool call endpoint -> (line item whose spend drives the calls, model, calls per USD
# of that line item): file search at $2.50 per 1,000 calls; web search on about one
# gpt-4o-mini request in ten
TOOL_CALLS: dict[str, tuple[str, str, float]] = {
    "web_search_calls": ("gpt-4o-mini, input", "gpt-4o-mini", 40.0),
    "file_search_calls": ("file search tool calls", "", 400.0),
}


API_KEYS: dict[str, tuple[ApiKey, ...]] = {
    "proj_demo_chat": (
        ApiKey("key_demo_chat_web", "Chat Web Backend"),
        ApiKey("key_demo_chat_batch", "Chat Batch Worker"),
    ),
    "proj_demo_search": (ApiKey("key_demo_search", "Search Indexer"),),
    "proj_demo_eval": (ApiKey("key_demo_eval", "Eval Runner"),),
    "proj_demo_intl": (ApiKey("key_demo_intl", "Ünïcode App"),),
}
"""Each project's API key list; the legacy project's key is gone from its list."""
KEY_OF: dict[tuple[str, str], str] = {
    ("proj_demo_chat", "gpt-4o, input"): "key_demo_chat_web",
    ("proj_demo_chat", "gpt-4o, output"): "key_demo_chat_web",
    ("proj_demo_chat", "gpt-4o-mini, input"): "key_demo_chat_batch",
    ("proj_demo_search", "text-embedding-3-small"): "key_demo_search",
    ("proj_demo_search", "gpt-4o-mini, input"): "key_demo_search",
    ("proj_demo_search", "gpt-4o-mini, output"): "key_demo_search",
    ("proj_demo_eval", "gpt-4o, input"): "key_demo_eval",
    ("proj_demo_eval", "gpt-4o, output"): "key_demo_eval",
    ("proj_demo_intl", "gpt-4o-mini, input"): "key_demo_intl",
    ("proj_demo_intl", "gpt-4o-mini, output"): "key_demo_intl",
    ("proj_demo_legacy", "gpt-4o, input"): "key_demo_legacy",
}
"""The API key each line item's spend is made with; the others (file search, and
fine-tuning without a project) are made without a project key (`api_key="none"`)."""


def _quantity(line_item: str, value: float) -> tuple[float | None, str]:
    """Return the quantity and unit of a day's line item: tokens (as the usage has
    them) for token line items, calls for file search (no unit), else none."""
    price = TOKEN_PRICES.get(line_item)
    if price is not None:
        return float(round(value / price[3] * 1_000_000)), "tokens"
    if line_item == "file search tool calls":
        return float(round(value * TOOL_CALLS["file_search_calls"][2])), ""
    return None, ""


class DemoOrganization:
    """Answers like the Admin API (projects, costs, usage) from simulated data."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # Pinned at the first fetch: tied to the moving "today", yesterday's spike
        # would vanish at midnight and be reported as a downward revision.
        self._spike_day: int | None = None

    def fetch_projects(self) -> list[Project]:
        """Return the simulated projects, archived one included."""
        return list(PROJECTS)

    def fetch_spend_limit(self, project_id: str = "") -> SpendLimit | Unread:
        """Return the simulated hard monthly limit (`""`: the organization's)."""
        if project_id not in SPEND_LIMITS:
            return Unread.NOT_CONFIGURED
        cents, status = SPEND_LIMITS[project_id]
        scope = PROJECT if project_id else ORGANIZATION
        return SpendLimit(scope, project_id, cents, "usd", status)

    def fetch_spend_alerts(self, project_id: str = "") -> list[SpendAlert] | Unread:
        """Return the simulated spend alerts (`""`: the organization's)."""
        scope = PROJECT if project_id else ORGANIZATION
        return [
            SpendAlert(scope, project_id, alert_id, cents, "usd")
            for alert_id, cents in SPEND_ALERTS.get(project_id, {}).items()
        ]

    def _day_costs(self, day: int, now: float) -> Iterator[tuple[str, str, float]]:
        """Yield (project, line item, USD) of one day as known at `now`."""
        today = day_of(now)
        if self._spike_day is None:
            self._spike_day = today
        # today's costs arrive as the day goes on: half a day's worth at 00:00 UTC,
        # all of it by 24:00, so the spike shows (and alerts) at any hour
        arrived = 0.5 + 0.5 * (now - today) / DAY
        for project_id, items in SPEND.items():
            for line_item in items:
                value = daily_cost(day, project_id, line_item, self._spike_day)
                if day == today:
                    value *= arrived
                if value > 0:
                    yield project_id, line_item, round(value, 6)

    def fetch_api_keys(self, project_id: str) -> list[ApiKey]:
        """Return the simulated API keys of one project."""
        return list(API_KEYS.get(project_id, ()))

    def fetch_costs(
        self,
        start: int,
        end: int,
        rejected: list[Rejected] | None = None,
        group_by: Sequence[str] = ("project_id", "line_item"),
    ) -> Iterator[list[CostLine]]:
        """Yield one page per day of `[start, end)`; today grows with the hour.

        Grouped by line item, token line items carry their tokens as the quantity
        (the same tokens as the usage) and file search its calls (no unit); grouped
        by `api_key_id`, each project's line items are summed per key (`KEY_OF`).
        Simulated results are never malformed: nothing is added to `rejected`.
        """
        now = self._clock()
        by_key = "api_key_id" in group_by
        for day in range(start, min(end, day_of(now) + DAY), DAY):
            if by_key:
                per_key: dict[tuple[str, str], list[float]] = {}
                for project_id, line_item, value in self._day_costs(day, now):
                    key = KEY_OF.get((project_id, line_item), "")
                    per_key.setdefault((project_id, key), []).append(value)
                yield [
                    CostLine(day, pid, "", "usd", math.fsum(v), api_key_id=key)
                    for (pid, key), v in per_key.items()
                ]
                continue
            yield [
                CostLine(
                    day,
                    project_id,
                    line_item,
                    "usd",
                    value,
                    *_quantity(line_item, value),
                )
                for project_id, line_item, value in self._day_costs(day, now)
            ]

    def fetch_usage(
        self,
        kind: str,
        start: int,
        end: int,
        width: str,
        group_by: Sequence[str],
        rejected: list[Rejected] | None = None,
    ) -> Iterator[list[UsageLine]]:
        """Yield usage consistent with the costs: tokens = cost / price per token.

        A day's tokens are spread evenly over its buckets (for 1h or 1m widths), up
        to the current one. Only completions, embeddings and the web and file search
        tool calls (their calls in proportion to a line item's spend, `TOOL_CALLS`)
        have usage here. Nothing is ever added to `rejected`.
        """
        step = {"1d": DAY, "1h": 3600, "1m": 60}[width]
        now = self._clock()
        dims_of_kind = _USAGE_DIMS.get(kind)
        tool = TOOL_CALLS.get(kind)
        last = int(now // step) * step
        for day in range(day_of(start), min(end, last + step), DAY):
            if dims_of_kind is None:
                yield []
                continue
            totals: dict[tuple[str, str], dict[str, int]] = {}
            for project_id, line_item, value in self._day_costs(day, now):
                if tool is not None:
                    source, tool_model, calls_per_usd = tool
                    if line_item == source:
                        calls = {"num_requests": round(value * calls_per_usd)}
                        totals[(project_id, tool_model)] = calls
                    continue
                price = TOKEN_PRICES.get(line_item)
                if price is None or price[0] != kind:
                    continue
                _, model, token_field, usd_per_million = price
                tokens = round(value / usd_per_million * 1_000_000)
                counters = totals.setdefault((project_id, model), {})
                counters[token_field] = counters.get(token_field, 0) + tokens
            per_day = DAY // step
            buckets = range(max(day, start), min(day + DAY, end, last + step), step)
            page = []
            for bucket in buckets:
                k = (bucket - day) // step
                for (project_id, model), counters in totals.items():
                    share = {
                        name: total * (k + 1) // per_day - total * k // per_day
                        for name, total in counters.items()
                    }
                    if tool is not None:
                        if kind == "web_search_calls":
                            share["num_model_requests"] = share["num_requests"]
                    else:
                        share.setdefault("input_tokens", 0)
                        share.setdefault("output_tokens", 0)
                        if kind == "completions":
                            share["input_cached_tokens"] = share["input_tokens"] // 5
                        else:
                            del share["output_tokens"]
                        requests = sum(share.values()) // TOKENS_PER_REQUEST
                        share["num_model_requests"] = requests
                    dims = {
                        "project_id": project_id,
                        "model": model,
                        "batch": "false" if "batch" in group_by else "",
                        "context_level": (
                            "medium" if "context_level" in group_by else ""
                        ),
                    }
                    page.append(
                        UsageLine(
                            bucket,
                            kind,
                            tuple((d, dims.get(d, "")) for d in dims_of_kind),
                            tuple(share),
                            tuple(float(v) for v in share.values()),
                        )
                    )
            yield page
