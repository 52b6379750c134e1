"""The API key names of the per-key series (`api_key`), kept between cycles.

Names come from each project's key list, fetched again at most once an hour
(`KEY_LIST_REFRESH_S`), and, once before the first per-key labels, from the
`api_key` labels already stored, so that a key deleted before a restart keeps its
name. A key that leaves its list keeps its last name; a key never named is `unknown`.
A key list the API refuses is an optional read: said once, never a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from openai_cost_pusher.errors import AuthRejected, CostPusherError, RequestRejected
from openai_cost_pusher.metrics import (
    DAILY_COST_BY_API_KEY,
    NO_API_KEY,
    UNKNOWN,
    UsageTable,
    name_usage_keys,
)
from openai_cost_pusher.model import ApiKey, Labels
from openai_cost_pusher.ports import Reader
from openai_cost_pusher.vmread import selector
from openai_cost_pusher.window import DAY

log = logging.getLogger(__name__)

KEY_COSTS = "costs_by_api_key"
"""The data set of costs per project and API key (`COSTS_BY_API_KEY`)."""
KEY_LIST_REFRESH_S = 3600.0
"""A project's API key list is fetched again at most this often."""


@dataclass(slots=True)
class KeyNames:
    """The API key names learned from the projects' key lists, kept between cycles:
    a key that leaves its list keeps its last name."""

    lister: Callable[[str], list[ApiKey]] | None
    """The source's key list of one project; None: every key is `unknown`."""
    learn_days: int
    """How far back `learn` looks for key names already stored."""
    names: dict[str, str] = field(default_factory=dict)
    listed: dict[str, float] = field(default_factory=dict)
    """Project id to the clock time its key list was last fetched."""
    said: set[str] = field(default_factory=set)
    """What was logged once already."""
    learned: bool = False

    def name_usage_keys(
        self,
        table: UsageTable,
        clock: Callable[[], float],
        reader: Reader | None,
        extra: Labels,
    ) -> UsageTable:
        """Return the usage table with the `api_key` label on every series, after
        refreshing the key lists of the projects it holds keys of."""
        pairs = set()
        for _, labels in table:
            pairs.add(
                (
                    next((v for k, v in labels if k == "project_id"), ""),
                    next((v for k, v in labels if k == "api_key_id"), ""),
                )
            )
        self.learn(clock(), reader, extra)
        self.refresh(pairs, clock())
        return name_usage_keys(table, self.names)

    def refresh(self, pairs: Iterable[tuple[str, str]], now: float) -> None:
        """Fetch the key list (all pages) of each project that has a key among
        `pairs` (project id, key id), unless it was fetched within the hour.

        A list the API refuses (401, 403, another 4xx: the admin key may lack the
        scope) is an optional read: said once, its keys keep the names known (or are
        `unknown`), and it is asked again an hour later; other failures raise.
        """
        if self.lister is None:
            return
        for project_id in sorted({pid for pid, kid in pairs if pid and kid}):
            last = self.listed.get(project_id)
            if last is not None and 0 <= now - last < KEY_LIST_REFRESH_S:
                continue
            try:
                listed = self.lister(project_id)
            except (AuthRejected, RequestRejected) as exc:
                self.say_once(
                    f"keys {type(exc).__name__}",
                    "cannot read API key lists; keys keep the names known, or are "
                    "`unknown`: %s",
                    exc,
                    level=logging.WARNING,
                )
                listed = []
            for key in listed:
                self.names[key.id] = key.name
            self.listed[project_id] = now

    def learn(self, now: float, reader: Reader | None, extra: Labels) -> None:
        """Once, before the first per-key labels, learn the `api_key` names already
        stored (read from `reader`), so that a key deleted before a restart keeps
        its name."""
        if self.learned:
            return
        self.learned = True
        if reader is None:
            return
        now_ms = int(now * 1000)
        start_ms = now_ms - self.learn_days * DAY * 1000
        try:
            found = reader.series(
                selector(DAILY_COST_BY_API_KEY, dict(extra)), start_ms, now_ms
            )
        except CostPusherError as exc:
            log.info("cannot learn stored API key names", extra={"reason": str(exc)})
            return
        for labels in found:
            key_id, name = labels.get("api_key_id", ""), labels.get("api_key", "")
            if key_id and name and name not in (UNKNOWN, NO_API_KEY):
                self.names.setdefault(key_id, name)

    def say_once(
        self,
        what: str,
        message: str,
        *args: object,
        level: int = logging.INFO,
        **fields: str,
    ) -> None:
        """Log `message` (at INFO unless `level`) the first time `what` happens in
        this process."""
        if what in self.said:
            return
        self.said.add(what)
        log.log(level, message, *args, extra={"dataset": KEY_COSTS, **fields})
