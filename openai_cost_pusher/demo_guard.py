"""The demo never writes beside real data, and says so where nothing answers.

`demo_refusal` asks, before the demo's first push, whether the store holds real
cost series; `DemoSink` asks it until it has answered, and turns a store that does
not answer into a cycle that pushed nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from openai_cost_pusher.clients import vm_reader
from openai_cost_pusher.config import Settings
from openai_cost_pusher.errors import PushRejected, PushUnavailable
from openai_cost_pusher.push import UNANSWERED, PushStats, VmClient
from openai_cost_pusher.vmread import query_root
from openai_cost_pusher.window import DAY

log = logging.getLogger(__name__)

DEMO_PUSH_BUDGET_S = 2.0
# The demo refuses a VictoriaMetrics holding real costs seen in this many days.
DEMO_REAL_DATA_DAYS = 400
REAL_COSTS = 'openai_daily_cost{demo!="true"}'


class DemoSink:
    """Push to VictoriaMetrics; where nothing answers, push nothing and say so.

    The cycle then reports `nothing answered` (and keeps its window unpushed), and
    the command shows the spend report computed from the simulated data instead.
    After a failed push it skips VictoriaMetrics for `RETRY_AFTER_S`, so that one
    cycle says once, not three times, that nothing answers. Until the server has
    answered `guard` once (see `demo_refusal`), every push asks it first, so a server
    that comes up holding real data later is refused too.
    """

    RETRY_AFTER_S = 60.0

    def __init__(
        self,
        client: VmClient,
        push_url: str,
        guard: Callable[[], str | None],
        *,
        checked: bool = False,
    ) -> None:
        self._client = client
        self._push_url = push_url
        self._guard = guard
        self._checked = checked
        self._down_since: float | None = None

    def begin_cycle(self) -> None:
        """Give the next pushes a fresh retry budget."""
        self._client.begin_cycle()

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Push, or drop the chunks when VictoriaMetrics does not answer; raise
        `PushRejected` when it holds real data."""
        down = self._down_since
        if down is not None and time.monotonic() - down < self.RETRY_AFTER_S:
            return PushStats(where=UNANSWERED)
        try:
            if not self._checked:
                refusal = self._guard()
                if refusal is not None:
                    raise PushRejected(refusal)
                self._checked = True
            stats = self._client.push(chunks)
        except PushUnavailable as exc:
            self._down_since = time.monotonic()
            log.warning(
                "demo: nothing answers at the push URL; nothing stored",
                extra={"push_url": self._push_url, "reason": str(exc)},
            )
            return PushStats(where=UNANSWERED)
        self._down_since = None
        return stats


def demo_refusal(settings: Settings, stop: threading.Event, now: float) -> str | None:
    """Return why the demo must not push to `settings.push_url`, or None.

    The demo never writes beside real data: before its first push it asks where the
    push URL's data is read (VM_QUERY_URL, else derived from the push URL) whether
    any openai_daily_cost series without demo="true" was seen in the last
    `DEMO_REAL_DATA_DAYS` days. Where nothing answers it raises `PushUnavailable`
    (nothing can be stored there either: ask again before the next push); where the
    question is refused or cannot be asked, it refuses too.
    """
    try:
        root = settings.query_url or query_root(settings.push_url)
    except ValueError as exc:
        return (
            f"VM_PUSH_URL: {exc}; the demo checks there first that it holds no real "
            "data (or use --dry-run)"
        )
    now_ms = int(now * 1000)
    reader = vm_reader(settings, root, stop, DEMO_PUSH_BUDGET_S)
    try:
        real = reader.has_series(
            REAL_COSTS, now_ms - DEMO_REAL_DATA_DAYS * DAY * 1000, now_ms
        )
    except PushRejected as exc:
        return (
            f"cannot tell whether {root} holds real openai_daily_cost series "
            f"({exc}); the demo never writes beside real data: set VM_QUERY_URL to "
            "where its data is read, or use --dry-run"
        )
    finally:
        reader.close()  # asked again only until it answers: no pool kept
    if real:
        return (
            f"{root} holds real openai_daily_cost series; the demo never writes "
            "beside real data: point VM_PUSH_URL at an empty VictoriaMetrics or use "
            "--dry-run"
        )
    return None
