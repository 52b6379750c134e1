"""Hostile servers: every call ends, memory stays bounded, nothing kills the process.

Each test runs a tiny stdlib HTTP server on 127.0.0.1 that misbehaves on purpose
(trickles, loops its cursors, sends huge or deeply nested bodies, redirects, asks for
an hour of patience, breaks a page off half-way) and checks that the real clients end
with one of the package's errors, quickly, with a message that says what to change,
and that what they hand on is never counted twice. Servers are stopped by the
fixture; every server loop is bounded in count and time, and every test in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import requests

from openai_cost_pusher import jsonstream, openai_api
from openai_cost_pusher.app import Pusher, UsagePlan
from openai_cost_pusher.config import Secret
from openai_cost_pusher.errors import (
    BadResponse,
    PushUnavailable,
    RequestRejected,
    Stopped,
    Transient,
)
from openai_cost_pusher.exposition import render
from openai_cost_pusher.metrics import DAILY_COST
from openai_cost_pusher.model import CostLine, Rejected, Sample
from openai_cost_pusher.openai_api import AdminApi
from openai_cost_pusher.parsers import CostBucket
from openai_cost_pusher.push import PushStats, VmClient
from openai_cost_pusher.transport import (
    CHUNK_BYTES,
    Timeouts,
    make_session,
    retry_policy,
)
from tests.fake_openai import live_cost_result

DAY = 86_400
T0 = 1_730_419_200  # 2024-11-01 00:00 UTC
KEY = "sk-admin-HOSTILE-test-0123456789"
FAST = Timeouts(connect=1.0, read=0.25)
"""Reads time out after 0.25 s and a whole call after 1.25 s (4 reads, at least
connect plus read)."""
TRICKLE_S = 0.02
"""One byte every 20 ms: far inside the 0.25 s read timeout, even on a busy host."""
ROOT = Path(__file__).resolve().parent.parent

Answer = Callable[["_Handler"], None]


# ------------------------------------------------------------------ the servers


class Hostile(ThreadingHTTPServer):
    """Answer every request with `answer(handler)` and record the paths asked."""

    daemon_threads = True

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.paths: list[str] = []
        self.done = threading.Event()

    @property
    def url(self) -> str:
        """Return the root URL."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def hostile(self) -> Hostile:
        return cast(Hostile, self.server)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.hostile.paths.append(self.path)
        with contextlib.suppress(OSError):  # the client hung up: what tests want
            self.hostile.answer(self)
        self.close_connection = True

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def whole(
        self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Send a complete answer."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def trickle(self, data: bytes, *, max_s: float = 20.0) -> None:
        """Send `data` one byte at a time, until done, the client leaves or `max_s`."""
        ends = time.monotonic() + max_s
        for byte in data:
            if self.hostile.done.is_set() or time.monotonic() > ends:
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(TRICKLE_S)

    def huge(self, status: int, size: int, *, max_s: float = 30.0) -> None:
        """Send `size` bytes of `x`s in 1 MiB blocks, until the client leaves."""
        self.send_response(status)
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"x" * (1 << 20)
        ends = time.monotonic() + max_s
        for _ in range(size >> 20):
            if self.hostile.done.is_set() or time.monotonic() > ends:
                return
            self.wfile.write(block)


@pytest.fixture(name="serve")
def _serve() -> Iterator[Callable[[Answer], Hostile]]:
    """Start hostile servers on demand; stop each one afterwards."""
    servers: list[Hostile] = []

    def start(answer: Answer) -> Hostile:
        server = Hostile(answer)
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.done.set()
        server.shutdown()
        server.server_close()


def _json(status: int, doc: object) -> Answer:
    body = json.dumps(doc).encode()
    return lambda h: h.whole(status, body, (("Content-Type", "application/json"),))


def _raw(body: bytes) -> Answer:
    return lambda h: h.whole(200, body, (("Content-Type", "application/json"),))


# ------------------------------------------------------------------ the clients


def _api(
    base: str,
    *,
    timeouts: Timeouts = FAST,
    budget: float = 60.0,
    max_attempts: int = 1,
    stop: threading.Event | None = None,
    key: str = KEY,
) -> tuple[AdminApi, list[float]]:
    """Return an Admin API client of `base` whose retries record their waits."""
    stop = stop or threading.Event()
    sleeps: list[float] = []
    api = AdminApi(
        make_session(),
        base + "/v1",
        Secret(key),
        timeouts=timeouts,
        retrying=lambda: retry_policy(
            budget, stop, sleep=sleeps.append, max_attempts=max_attempts
        ),
        stop=stop,
    )
    return api, sleeps


def _vm(
    base: str, *, max_attempts: int = 1, budget: float = 60.0
) -> tuple[VmClient, list[float]]:
    """Return a push client of `base` whose retries record their waits."""
    stop = threading.Event()
    sleeps: list[float] = []
    client = VmClient(
        make_session(),
        base + "/api/v1/import/prometheus",
        authorization=None,
        timeouts=FAST,
        retrying=lambda: retry_policy(
            budget, stop, sleep=sleeps.append, max_attempts=max_attempts
        ),
        stop=stop,
    )
    return client, sleeps


def _costs(api: AdminApi, days: int = 1) -> list[Any]:
    return [line for page in api.fetch_costs(T0, T0 + days * DAY) for line in page]


DEADLINE = (
    "no complete answer within 1.25s, the deadline of one call (4 x HTTP_TIMEOUT): "
    "the server sends too slowly; raise HTTP_TIMEOUT if it is only slow"
)


# ------------------------------------------------------- 1. a deadline per call


def _trickled_page(h: _Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.trickle(b'{"object": "page", "data": [' + b" " * 99_000)


def test_trickling_page_is_cut_at_the_deadline_and_retried(
    serve: Callable[[Answer], Hostile],
) -> None:
    """A body sent one byte per 20 ms (never a read timeout) ends at the deadline as
    Transient, and is retried while RETRY_BUDGET lasts: 2 attempts in a 3 s budget."""
    server = serve(_trickled_page)
    api, sleeps = _api(server.url, budget=3.0, max_attempts=8)
    started = time.monotonic()
    with pytest.raises(Transient) as info:
        _costs(api)
    elapsed = time.monotonic() - started
    assert str(info.value) == f"GET /organization/costs: {DEADLINE}"
    assert len(server.paths) == 2
    assert len(sleeps) == 1
    assert 2.4 < elapsed < 6


def test_trickling_headers_are_cut_at_the_deadline(
    serve: Callable[[Answer], Hostile],
) -> None:
    """A status line and headers sent one byte at a time end at the deadline too."""
    server = serve(lambda h: h.trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 500))
    api, _ = _api(server.url)
    started = time.monotonic()
    with pytest.raises(Transient) as info:
        api.fetch_projects()
    assert str(info.value) == f"GET /organization/projects: {DEADLINE}"
    assert time.monotonic() - started < 3


def test_trickling_push_answer_is_cut_at_the_deadline(
    serve: Callable[[Answer], Hostile],
) -> None:
    """VictoriaMetrics' side has the same deadline: PushUnavailable, retryable."""
    server = serve(lambda h: h.trickle(b"HTTP/1.1 204 No Content\r\nX: " + b"a" * 500))
    client, _ = _vm(server.url)
    started = time.monotonic()
    with pytest.raises(PushUnavailable) as info:
        client.push([b"x 1\n"])
    assert str(info.value) == f"push to VictoriaMetrics: {DEADLINE}"
    assert time.monotonic() - started < 3


def test_stop_interrupts_a_trickle(serve: Callable[[Answer], Hostile]) -> None:
    """The stop Event ends a trickling call at once, long before its deadline."""
    server = serve(_trickled_page)
    stop = threading.Event()
    api, _ = _api(server.url, timeouts=Timeouts(5.0, 5.0), stop=stop)
    timer = threading.Timer(0.3, stop.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Stopped, match=r"^GET /organization/costs: stop requested$"):
            _costs(api)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2


def test_a_slow_but_steady_answer_within_the_deadline_lands(
    serve: Callable[[Answer], Hostile],
) -> None:
    """The deadline cuts only what is too slow: 0.5 s of trickle in 1.25 s lands."""
    body = b'{"object":"list","data":[],"has_more":false}'

    def answer(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.trickle(body[:25])  # 25 bytes, 20 ms apart
        h.wfile.write(body[25:])

    server = serve(answer)
    api, _ = _api(server.url)
    assert api.fetch_projects() == []


# ------------------------------------------------ 2. pagination cannot run away


def _endless_cursor() -> Answer:
    count = [0]

    def answer(h: _Handler) -> None:
        count[0] += 1
        page = {"object": "page", "data": [], "has_more": True}
        h.whole(200, json.dumps({**page, "next_page": f"c{count[0]}"}).encode())

    return answer


def test_fresh_cursors_forever_stop_after_the_pages_a_window_can_need(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Ever new cursors on empty pages stop after buckets + 3 pages, not 10,001."""
    server = serve(_endless_cursor())
    api, _ = _api(server.url)
    with pytest.raises(BadResponse) as info:
        _costs(api, days=2)
    assert str(info.value) == (
        f"GET /organization/costs: more than 5 pages for 2 buckets "
        f"({T0}..{T0 + 2 * DAY}); the API keeps paginating, stopped"
    )
    assert len(server.paths) == 5


def test_a_cursor_cycle_stops_at_the_first_repeat(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Cursors A, B, A: the third page's cursor was seen, so the query stops."""
    cursors = iter(["A", "B", "A", "B", "A"])
    server = serve(
        lambda h: h.whole(
            200,
            json.dumps(
                {
                    "object": "page",
                    "data": [],
                    "has_more": True,
                    "next_page": next(cursors),
                }
            ).encode(),
        )
    )
    api, _ = _api(server.url)
    with pytest.raises(BadResponse) as info:
        _costs(api, days=30)
    assert str(info.value) == (
        "GET /organization/costs.next_page: the cursor repeats after 3 pages; the "
        "API is paginating in a loop, stopped"
    )
    assert len(server.paths) == 3


def test_a_project_cursor_cycle_stops(serve: Callable[[Answer], Hostile]) -> None:
    """Project pages whose `last_id` goes p1, p2, p1 stop at the repeat."""
    ids = iter(["p1", "p2", "p1", "p2"])

    def answer(h: _Handler) -> None:
        pid = next(ids)
        doc = {
            "object": "list",
            "data": [{"id": pid}],
            "last_id": pid,
            "has_more": True,
        }
        h.whole(200, json.dumps(doc).encode())

    server = serve(answer)
    api, _ = _api(server.url)
    with pytest.raises(BadResponse) as info:
        api.fetch_projects()
    assert str(info.value) == (
        "GET /organization/projects.last_id: repeats 'p1' after 3 pages; the API is "
        "paginating in a loop, stopped"
    )
    assert len(server.paths) == 3


def test_projects_stop_after_max_pages(
    serve: Callable[[Answer], Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ever new project ids stop at MAX_PAGES (lowered here from 10,000 to 4)."""
    monkeypatch.setattr(openai_api, "MAX_PAGES", 4)
    count = [0]

    def answer(h: _Handler) -> None:
        count[0] += 1
        doc = {"object": "list", "data": [{"id": f"p{count[0]}"}], "has_more": True}
        h.whole(200, json.dumps(doc).encode())

    server = serve(answer)
    api, _ = _api(server.url)
    with pytest.raises(BadResponse, match=r"more than 4 pages; the API keeps"):
        api.fetch_projects()
    assert len(server.paths) == 4


def test_an_overlong_cursor_is_refused(serve: Callable[[Answer], Hostile]) -> None:
    """A `next_page` of 5,000 characters is not sent back: the page is refused."""
    doc = {"object": "page", "data": [], "has_more": True, "next_page": "c" * 5000}
    server = serve(_json(200, doc))
    api, _ = _api(server.url)
    with pytest.raises(BadResponse, match=r"next_page: longer than 4096 characters$"):
        _costs(api)
    assert len(server.paths) == 1


# ------------------------------------------------ 3. bodies read within a cap


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys, threading
    from openai_cost_pusher.config import Secret
    from openai_cost_pusher.errors import CostPusherError
    from openai_cost_pusher.openai_api import AdminApi
    from openai_cost_pusher.push import VmClient
    from openai_cost_pusher.transport import Timeouts, make_session, retry_policy

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise SystemExit("no VmHWM")

    base = sys.argv[1]
    stop = threading.Event()
    timeouts = Timeouts(5.0, 5.0)
    retrying = lambda: retry_policy(60, stop, max_attempts=1)
    api = AdminApi(make_session(), base + "/v1", Secret("sk-admin-x"),
                   timeouts=timeouts, retrying=retrying, stop=stop)
    vm = VmClient(make_session(), base + "/api/v1/import/prometheus",
                  authorization=None, timeouts=timeouts, retrying=retrying,
                  stop=stop)
    out = {"start": hwm()}
    for name, call in (
        ("api_error", lambda: list(api.fetch_costs(1730419200, 1730505600))),
        ("push_error", lambda: vm.push([b"x 1\\n"])),
        ("projects", api.fetch_projects),
    ):
        try:
            call()
            out[name + "_error"] = None
        except CostPusherError as exc:
            out[name + "_error"] = type(exc).__name__ + ": " + str(exc)
        out[name] = hwm()
    print(json.dumps(out))
    """
)


def _huge_answers(h: _Handler) -> None:
    if h.path.startswith("/v1/organization/costs"):
        h.huge(400, 300_000_000)
    elif h.path.startswith("/api/v1/import"):
        h.huge(413, 300_000_000)
    else:
        h.huge(200, 300_000_000)


def test_huge_bodies_cost_no_memory(serve: Callable[[Answer], Hostile]) -> None:
    """300 MB error bodies (Admin API 400, VictoriaMetrics 413) and a 300 MB project
    list are read up to their caps (64 KiB, 16 MiB) in a separate process whose peak
    RSS (VmHWM) is compared before and after; before the caps, 1.23 GB."""
    server = serve(_huge_answers)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    mib = 1 << 20
    assert (
        got["api_error_error"] == "RequestRejected: GET /organization/costs: HTTP 400"
    )
    assert got["push_error_error"].startswith(
        "PushRejected: push to VictoriaMetrics: HTTP 413, body too large"
    )
    assert got["projects_error"] == (
        "BadResponse: GET /organization/projects: the answer is larger than 16 MiB; "
        "refused"
    )
    assert got["push_error"] - got["start"] < 16 * mib, got
    assert got["projects"] - got["push_error"] < 48 * mib, got


# ----------------------------------------------------------------- 4. JSON limits


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"object": "list", "data": ' + b"[" * 100_000,
        json.dumps({"object": "list", "data": [], "has_more": False, "x": [[[[]]]]})
        .replace("[[[[]]]]", "[" * 70 + "]" * 70)
        .encode(),
    ],
    ids=["100k-brackets", "100k-in-data", "70-deep-valid"],
)
def test_deep_project_list_is_a_bad_answer(
    serve: Callable[[Answer], Hostile], body: bytes
) -> None:
    """Nesting past 64 levels is BadResponse, never RecursionError."""
    server = serve(_raw(body))
    api, _ = _api(server.url)
    with pytest.raises(BadResponse) as info:
        api.fetch_projects()
    assert str(info.value) == (
        "GET /organization/projects: the answer is refused: the JSON nests deeper "
        "than 64 levels"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"object": "page", "data": [' + b"[" * 100_000,
        b'{"object": "page", "x": ' + b"[" * 100_000,
        b'{"object": "page", "data": [' + b"[" * 63 + b"]" * 63 + b"]}",
    ],
    ids=["100k-in-data", "100k-in-envelope", "65-deep-valid"],
)
def test_deep_costs_page_is_a_bad_answer(
    serve: Callable[[Answer], Hostile], body: bytes
) -> None:
    """The streaming decoder caps nesting at 64 levels too."""
    server = serve(_raw(body))
    api, _ = _api(server.url)
    with pytest.raises(BadResponse) as info:
        _costs(api)
    assert str(info.value) == (
        "GET /organization/costs: the answer is refused: the JSON nests deeper than "
        "64 levels"
    )


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        (b'{"object": "page", "x": "', b'", "data": []}'),
        (
            b'{"object": "page", "data": [{"start_time": 0, "results": [{}, {"a": "',
            b'"}]}]}',
        ),
    ],
    ids=["envelope", "result"],
)
def test_a_huge_single_value_is_a_bad_answer(
    serve: Callable[[Answer], Hostile], head: bytes, tail: bytes
) -> None:
    """One 3 MiB string in a costs page, in the envelope or in one result, is
    refused once it passes 1 Mi chars: a day streams result by result, so no value
    need be larger than one result (about 300 characters)."""
    body = head + b"a" * (3 << 20) + tail
    server = serve(_raw(body))
    api, _ = _api(server.url, timeouts=Timeouts(5.0, 5.0))
    with pytest.raises(BadResponse) as info:
        _costs(api)
    assert str(info.value) == (
        "GET /organization/costs: the answer is refused: a single JSON value is "
        "longer than 1,048,576 characters"
    )


def test_a_day_of_3300_projects_in_the_live_form_is_read(
    serve: Callable[[Answer], Hostile],
) -> None:
    """A day of 3,300 projects x 20 line items, each result with its quantity and
    `organization_id` as live answers carry them (over 16 Mi characters), is one JSON
    value the client reads whole: no size limit fails a large organization."""
    results = [
        {
            "object": "organization.costs.result",
            "amount": {"value": 0.1739150000000000 + p, "currency": "usd"},
            "line_item": f"model-{i}, input",
            "project_id": f"proj_{p:05d}",
            "organization_id": "org-0123456789abcdefghijklm",
            "api_key_id": None,
            "quantity": 12345678.0,
            "quantity_unit": "tokens",
        }
        for p in range(3300)
        for i in range(20)
    ]
    bucket = {"object": "bucket", "start_time": T0, "end_time": T0 + DAY}
    body, _ = _page_body([{**bucket, "results": results}])
    assert len(body) > 16 << 20
    del results
    server = serve(_raw(body))
    api, _ = _api(server.url, timeouts=Timeouts(5.0, 30.0))
    days = list(api.fetch_costs(T0, T0 + DAY))
    assert len(days) == 1 and len(days[0]) == 66_000
    assert days[0][-1].project_id == "proj_03299"
    assert days[0][-1].quantity == 12345678.0


def test_unknown_envelope_keys_are_not_kept(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Thousands of unknown top-level keys are decoded one by one and dropped."""
    extra = ", ".join(f'"k{i}": {i}' for i in range(20_000))
    body = f'{{"object": "page", {extra}, "data": [], "has_more": false}}'.encode()
    server = serve(_raw(body))
    api, _ = _api(server.url)
    assert _costs(api) == []


def test_an_unexpected_error_while_parsing_is_a_bad_answer(
    serve: Callable[[Answer], Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever goes wrong inside parsing (here a KeyError) fails the page cleanly."""
    bucket = {"object": "bucket", "start_time": T0, "end_time": T0 + DAY, "results": []}
    doc = {"object": "page", "data": [bucket], "has_more": False}
    server = serve(_json(200, doc))

    class Broken(CostBucket):
        def finish(self) -> Any:
            raise KeyError("surprise")

    monkeypatch.setattr(openai_api, "CostBucket", Broken)
    api, _ = _api(server.url)
    with pytest.raises(BadResponse) as info:
        _costs(api)
    assert str(info.value) == (
        "GET /organization/costs: the answer cannot be read (KeyError); it is not "
        "the documented shape"
    )


def test_lone_surrogates_are_repaired(serve: Callable[[Answer], Hostile]) -> None:
    """`\\ud800` is valid JSON but not UTF-8: it becomes `?`, and renders."""
    body = b'{"object":"list","data":[{"id":"p1","name":"a\\ud800b"}],"has_more":false}'
    server = serve(_raw(body))
    api, _ = _api(server.url)
    (project,) = api.fetch_projects()
    assert project.name == "a?b"
    sample = Sample(DAILY_COST, (("project", project.name),), 1.0, T0 * 1000)
    assert render([sample]).decode() == f'{DAILY_COST}{{project="a?b"}} 1.0 {T0}000\n'


# ------------------------------------ 5. pages handed on day by day, never twice


def _cost_bucket(day: int, base: float = 1.0, results: int = 3) -> dict[str, Any]:
    """Return the costs bucket of day number `day`: `results` projects, `base + k`."""
    start = T0 + day * DAY
    return {
        "object": "bucket",
        "start_time": start,
        "end_time": start + DAY,
        "results": [
            {
                "object": "organization.costs.result",
                "amount": {"value": base + k, "currency": "usd"},
                "line_item": "gpt-4o, input",
                "project_id": f"proj_{k}",
            }
            for k in range(results)
        ],
    }


def _lines(bucket: dict[str, Any]) -> list[CostLine]:
    """Return the cost lines a valid bucket stands for."""
    return [
        CostLine(
            bucket["start_time"],
            r["project_id"],
            r["line_item"],
            "usd",
            r["amount"]["value"],
        )
        for r in bucket["results"]
    ]


def _page_body(
    buckets: list[dict[str, Any]], next_page: str | None = None
) -> tuple[bytes, list[int]]:
    """Return a costs page and the offset just past each of its buckets."""
    head = b'{"object": "page", "data": ['
    parts = [json.dumps(b).encode() for b in buckets]
    tail = json.dumps({"has_more": next_page is not None, "next_page": next_page})
    body = head + b", ".join(parts) + b"], " + tail[1:].encode()
    ends, at = [], len(head)
    for part in parts:
        at += len(part)
        ends.append(at)
        at += 2
    return body, ends


PADDING = 300_000
"""Bytes of an unknown field that make a bucket outlast the client's first read."""


def _padded(bucket: dict[str, Any]) -> dict[str, Any]:
    """Return `bucket` with an unknown field of `PADDING` bytes (ignored)."""
    return {**bucket, "padding": "x" * PADDING}


def _broken_off(body: bytes, cut: int) -> Answer:
    """Promise `body` whole, send `cut` bytes of it, then close the connection.

    The client reads 256 KiB at a time, and a read that meets the early end is lost
    with the connection: cut inside a `_padded` bucket, past the first read, so that
    what comes before it has arrived.
    """

    def answer(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[:cut])

    return answer


def _in_turn(*answers: Answer, path: str = "/organization/costs") -> Answer:
    """Answer the requests to `path` with `answers` in turn, the project list with
    two projects, any other costs or usage request with an empty last page."""
    queue = list(answers)
    empty = json.dumps({"object": "page", "data": [], "has_more": False}).encode()
    projects = json.dumps(
        {
            "object": "list",
            "data": [{"id": "proj_0", "name": "Zero"}, {"id": "proj_1", "name": "One"}],
            "has_more": False,
        }
    ).encode()

    def answer(h: _Handler) -> None:
        if "/organization/projects" in h.path:
            h.whole(200, projects)
        elif f"{path}?" not in h.path:
            h.whole(200, empty)
        elif queue:
            queue.pop(0)(h)
        else:
            h.whole(500, b"{}")

    return answer


def test_a_day_is_handed_on_before_its_page_has_arrived(
    serve: Callable[[Answer], Hostile],
) -> None:
    """The first day of a page comes out while the server still holds back the
    rest of the page: a page is never waited for whole.

    The client reads whole 256 KiB blocks, so the server sends exactly two of
    them (the first, padded day and part of the second) and then waits; the rest
    is sent only once the test has seen the first day, or after 10 s.
    """
    released = threading.Event()
    rest_sent = threading.Event()
    buckets = [_padded(_cost_bucket(0)), _padded(_cost_bucket(1))]
    body, ends = _page_body(buckets)
    held_at = 2 * CHUNK_BYTES
    assert ends[0] < held_at < ends[1]

    def answer(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[:held_at])
        h.wfile.flush()
        released.wait(10)
        rest_sent.set()
        h.wfile.write(body[held_at:])

    server = serve(answer)
    api, _ = _api(server.url, timeouts=Timeouts(5.0, 30.0))
    days = api.fetch_costs(T0, T0 + 2 * DAY)
    first = next(days)
    assert not rest_sent.is_set(), "the first day waited for the rest of the page"
    released.set()
    assert first == _lines(buckets[0])
    assert list(days) == [_lines(buckets[1])]


def test_a_page_broken_off_is_read_again_and_no_day_comes_twice(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Page two breaks off inside its third day, after a day handed on and a
    malformed one: it is retried with the same cursor, the day already handed on is
    not handed on again (its first copy stands, though the retry revised it), the
    malformed day is listed once, and the rest of the page follows."""
    page_one = [_cost_bucket(d) for d in range(3)]
    first_try = [_cost_bucket(3, 1.0), _cost_bucket(4), _padded(_cost_bucket(5))]
    first_try[1]["results"][1]["amount"]["value"] = "abc"
    retry = [_cost_bucket(3, 9.0), first_try[1], _cost_bucket(5, 5.0)]
    one, _ = _page_body(page_one, next_page="p2")
    broken, ends = _page_body(first_try)
    whole, _ = _page_body(retry)
    server = serve(
        _in_turn(
            _raw(one),
            _broken_off(broken, ends[1] + PADDING - 10_000),
            _raw(whole),
        )
    )
    api, sleeps = _api(server.url, max_attempts=3)
    rejected: list[Rejected] = []
    handed = list(api.fetch_costs(T0, T0 + 6 * DAY, rejected))
    assert handed == [
        *map(_lines, page_one),
        _lines(first_try[0]),
        _lines(retry[2]),
    ]
    assert rejected == [
        Rejected(
            T0 + 4 * DAY,
            "/organization/costs",
            "data[1].results[1].amount.value",
            "expected a number or a decimal string, got 'abc'",
        )
    ]
    assert len(server.paths) == 3
    assert server.paths[1] == server.paths[2]
    assert "page=p2" in server.paths[2]
    assert len(sleeps) == 1


def test_a_retry_that_pages_differently_hands_on_no_day_twice(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Days handed on before a page broke off are skipped wherever the API serves
    them again, even on a later page: the retry of page two serves one day and
    moves the others to a page three. No day is counted twice, none is refused as
    served twice."""
    buckets = [_cost_bucket(d, 1.0 + d) for d in range(5)]
    revised = [_cost_bucket(d, 100.0 + d) for d in range(5)]
    one, _ = _page_body(buckets[:2], next_page="p2")
    broken, ends = _page_body([*buckets[2:4], _padded(buckets[4])])
    two, _ = _page_body(revised[2:3], next_page="p3")
    three, _ = _page_body(revised[3:])
    cut = ends[1] + PADDING - 10_000
    server = serve(
        _in_turn(_raw(one), _broken_off(broken, cut), _raw(two), _raw(three))
    )
    api, _ = _api(server.url, max_attempts=3)
    handed = list(api.fetch_costs(T0, T0 + 5 * DAY))
    assert handed == [*map(_lines, buckets[:4]), _lines(revised[4])]
    assert "page=p3" in server.paths[3]


class _Recorder:
    """A push target that keeps the daily cost and the usage lines pushed to it."""

    def __init__(self) -> None:
        self.daily: list[str] = []
        self.usage: list[str] = []

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        for chunk in chunks:
            for line in chunk.decode().splitlines():
                if line.startswith(DAILY_COST):
                    self.daily.append(line)
                elif line.startswith("openai_usage_"):
                    self.usage.append(line)
        return PushStats()


def _cycle(server: Hostile, usage: UsagePlan | None = None) -> tuple[Pusher, _Recorder]:
    """Return a pusher of the hostile server's costs (and `usage`) for the days
    T0..T0+5 (today)."""
    api, _ = _api(server.url, max_attempts=3)
    sink = _Recorder()
    pusher = Pusher(
        api,
        sink,
        lookback_days=3,
        backfill_days=5,
        extra_labels=(("job", "test"),),
        clock=lambda: T0 + 5 * DAY + 3600,
        usage=usage,
    )
    return pusher, sink


def test_a_cycle_pushes_each_day_once_after_a_page_broke_off(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Through the whole cycle: a page broken off after some of its days were
    handed on, then retried, pushes each series' day once, with the value of the
    answer it was taken from."""
    buckets = [_cost_bucket(d, 1.0 + d, results=2) for d in range(6)]
    one, _ = _page_body(buckets[:3], next_page="p2")
    broken, ends = _page_body([buckets[3], _padded(buckets[4]), buckets[5]])
    retry = [_cost_bucket(3, 50.0, results=2), *buckets[4:]]
    whole, _ = _page_body(retry)
    cut = ends[0] + PADDING - 10_000
    server = serve(_in_turn(_raw(one), _broken_off(broken, cut), _raw(whole)))
    pusher, sink = _cycle(server)
    report = pusher.run_cycle()
    assert report.ok, report.error
    pushed = sorted(sink.daily)
    assert len(pushed) == len(set(pushed)) == 12
    for d in range(6):
        for k in range(2):
            value = 1.0 + d + k
            assert any(
                f'project_id="proj_{k}"' in line
                and line.endswith(f" {value!r} {(T0 + d * DAY) * 1000}")
                for line in pushed
            ), (d, k, pushed)


@pytest.mark.parametrize("broken", [False, True])
def test_the_time_a_day_lands_is_not_the_pages(
    serve: Callable[[Answer], Hostile], broken: bool
) -> None:
    """The time the caller holds a bucket (a day landing) counts against neither the
    call's deadline nor the retry budget, though it outlasts both: a whole page is
    read once; a page that breaks off after it is read again, once; either way its
    days come whole, each once."""
    buckets = [_cost_bucket(d, results=2) for d in range(3)]
    body, ends = _page_body([buckets[0], _padded(buckets[1]), buckets[2]])
    whole, _ = _page_body(buckets)
    cut = ends[0] + PADDING - 10_000
    first_answer = _broken_off(body, cut) if broken else _raw(body)
    server = serve(_in_turn(first_answer, _raw(whole)))
    timeouts = Timeouts(0.5, 0.2)  # a deadline of 0.8 s
    api, sleeps = _api(server.url, timeouts=timeouts, budget=1.5, max_attempts=3)
    days = api.fetch_costs(T0, T0 + 3 * DAY)
    first = next(days)
    time.sleep(2.0)  # a day landing, longer than the deadline and the budget
    assert [first, *days] == [*map(_lines, buckets)]
    assert len(sleeps) == int(broken)  # one retry where the page broke off
    assert len([p for p in server.paths if "/costs" in p]) == 1 + int(broken)


def test_a_stop_while_the_days_land_ends_the_cycle(
    serve: Callable[[Answer], Hostile],
) -> None:
    """A stop requested while a data set's days land (here by the push target,
    during the first day) ends the cycle at the next request of the answers read as
    the days land, as it does at any other request: `Stopped` leaves `run_cycle`."""
    one, _ = _page_body([_cost_bucket(d) for d in range(3)], next_page="p2")
    two, _ = _page_body([_cost_bucket(d) for d in range(3, 6)])
    server = serve(_in_turn(_raw(one), _raw(two)))
    stop = threading.Event()
    api, _ = _api(server.url, max_attempts=3, stop=stop)

    class Stopping(_Recorder):
        def push(self, chunks: Iterable[bytes]) -> PushStats:
            stop.set()
            return super().push(chunks)

    pusher = Pusher(
        api,
        Stopping(),
        lookback_days=3,
        backfill_days=5,
        extra_labels=(("job", "test"),),
        clock=lambda: T0 + 5 * DAY + 3600,
    )
    with pytest.raises(Stopped):
        pusher.run_cycle()
    assert not any("page=p2" in path for path in server.paths)


def test_a_page_broken_after_its_days_were_handed_on_fails_the_data_set(
    serve: Callable[[Answer], Hostile],
) -> None:
    """A page whose envelope turns out broken after its days were handed on fails
    the costs data set: the days the answer had moved past landed whole, as
    answered, the last one (which the broken end could still have added to) did
    not, and today's spend is not pushed."""
    body, _ = _page_body([_cost_bucket(d) for d in range(6)])
    server = serve(_in_turn(_raw(body.replace(b'"has_more": false', b'"x": 0'))))
    pusher, sink = _cycle(server)
    report = pusher.run_cycle()
    costs = report.get("costs")
    assert not costs.ok
    assert costs.error == "GET /organization/costs.has_more: missing"
    assert costs.landed_days == 5
    landed = sorted({int(line.rsplit(" ", 1)[1]) for line in sink.daily})
    assert landed == [(T0 + d * DAY) * 1000 for d in range(5)]
    assert len(sink.daily) == 5 * 3  # each day whole: its three results


def test_buckets_out_of_time_order_fail_the_data_set_and_lose_no_day(
    serve: Callable[[Answer], Hostile],
) -> None:
    """An answer whose buckets come newest first fails the costs data set at its
    second bucket: the days before the first one it handed on seemed passed, and
    landed empty, so the next cycle fetches the whole window again and, answered
    in order, lands every day."""
    buckets = [_cost_bucket(d) for d in range(6)]
    backwards, _ = _page_body(buckets[::-1])
    in_order, _ = _page_body(buckets)
    server = serve(_in_turn(_raw(backwards), _raw(in_order)))
    pusher, sink = _cycle(server)
    costs = pusher.run_cycle().get("costs")
    assert not costs.ok
    assert costs.error == (
        f"GET /organization/costs: data[1].start_time: {T0 + 4 * DAY} comes after "
        f"bucket {T0 + 5 * DAY}: the buckets are not in time order"
    )
    assert sink.daily == []
    assert pusher.costs.unpushed_from == T0
    assert pusher.run_cycle().get("costs").ok
    landed = sorted({int(line.rsplit(" ", 1)[1]) for line in sink.daily})
    assert landed == [(T0 + d * DAY) * 1000 for d in range(6)]
    assert len(sink.daily) == 6 * 3


class _FailingSecondPush(_Recorder):
    """A push target whose second push fails."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        self.calls += 1
        if self.calls == 2:
            raise PushUnavailable("push to VictoriaMetrics: HTTP 503")
        return super().push(chunks)


@pytest.mark.parametrize("in_order", [True, False])
def test_a_push_failing_mid_answer_heals_from_its_day_only_if_the_answer_was_whole(
    serve: Callable[[Answer], Hostile], in_order: bool
) -> None:
    """A day that fails to land while the answer is still being read: the rest of
    the answer is read, without landing it, to tell whether the days before are
    whole. In time order, the next cycle reaches back to the failed day only; out of
    order (day 2 before day 1, so day 1 seemed passed and landed empty), to the
    window's start."""
    buckets = [_cost_bucket(d) for d in range(6)]
    order = (
        buckets if in_order else [buckets[0], buckets[2], *buckets[1:2], *buckets[3:]]
    )
    body, _ = _page_body(order)
    server = serve(_in_turn(_raw(body)))
    pusher, _ = _cycle(server)
    sink = _FailingSecondPush()
    pusher.sink = sink
    costs = pusher.run_cycle().get("costs")
    assert not costs.ok
    assert costs.landed_days == 1
    assert pusher.costs.unpushed_from == (T0 + DAY if in_order else T0)
    assert len(server.paths) == 2  # the project list, one costs page read whole


def test_a_cycle_pushes_each_usage_bucket_once_after_a_page_broke_off(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Usage is handed on bucket by bucket too: a completions page broken off after
    its first day, then retried, pushes each series' bucket once, from the answer it
    was taken from; every endpoint's buckets add up in one table."""

    def bucket(day: int, tokens: int, padded: bool = False) -> dict[str, Any]:
        start = T0 + day * DAY
        results = [
            {
                "object": "organization.usage.completions.result",
                "input_tokens": tokens + k,
                "output_tokens": 1,
                "num_model_requests": 1,
                "project_id": f"proj_{k}",
                "model": "gpt-4o",
                "batch": False,
            }
            for k in range(2)
        ]
        page = {"start_time": start, "end_time": start + DAY, "results": results}
        return _padded(page) if padded else page

    one, _ = _page_body([bucket(d, 100 * d) for d in range(3)], next_page="p2")
    broken, ends = _page_body([bucket(3, 300), bucket(4, 400, padded=True)])
    whole, _ = _page_body([bucket(3, 9_999), bucket(4, 400), bucket(5, 500)])
    usage_path = "/organization/usage/completions"
    cut = ends[0] + PADDING - 10_000
    server = serve(
        _in_turn(_raw(one), _broken_off(broken, cut), _raw(whole), path=usage_path)
    )
    plan = UsagePlan.build(
        "1d", lookback_days=3, backfill_days=5, lookback_hours=24, backfill_hours=24
    )
    pusher, sink = _cycle(server, plan)
    report = pusher.run_cycle()
    assert report.ok, report.error
    inputs = sorted(x for x in sink.usage if 'type="input"' in x)
    assert len(inputs) == len(set(inputs)) == 12
    for d in range(6):
        for k in range(2):
            assert any(
                f'project_id="proj_{k}"' in line
                and line.endswith(f" {float(100 * d + k)!r} {(T0 + d * DAY) * 1000}")
                for line in inputs
            ), (d, k, inputs)


def test_a_long_page_is_never_held_whole(serve: Callable[[Answer], Hostile]) -> None:
    """A page of 180 days (the largest `limit`) of 250 results each, 6 MiB of
    JSON, is fetched with a peak of Python allocations (tracemalloc) under 2.5 MiB,
    as the caller takes each day as it comes; held whole it took 5.6 MiB."""
    buckets = [_cost_bucket(d, results=250) for d in range(180)]
    body, _ = _page_body(buckets)
    server = serve(_raw(body))
    api, _ = _api(server.url, timeouts=Timeouts(5.0, 10.0))
    lines = 0
    tracemalloc.start()
    try:
        for day in api.fetch_costs(T0, T0 + 180 * DAY):
            lines += len(day)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == 180 * 250
    assert peak < 2.5 * (1 << 20), peak


def _live_day(day: int, results: int) -> dict[str, Any]:
    """Return a costs bucket of `results` results in the live form."""
    bucket = _cost_bucket(day, results=0)
    bucket["results"] = [live_cost_result(k) for k in range(results)]
    return bucket


def test_a_large_day_is_never_held_decoded(
    serve: Callable[[Answer], Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of 12,000 results (3.4 MiB of JSON) is decoded and parsed batch by
    batch (64 KiB here): the peak of Python allocations (tracemalloc) is its lines
    and one batch, under 4 MiB (2.5 MiB); decoded whole, the day took 14 MiB."""
    monkeypatch.setattr(jsonstream, "BATCH_BYTES", 64 * 1024)
    body, _ = _page_body([_live_day(0, 12_000)])
    server = serve(_raw(body))
    api, _ = _api(server.url, timeouts=Timeouts(5.0, 30.0))
    tracemalloc.start()
    try:
        days = [len(day) for day in api.fetch_costs(T0, T0 + DAY)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert days == [12_000]
    assert peak < 4 << 20, peak


def test_a_bad_result_late_in_a_day_withholds_that_day_only(
    serve: Callable[[Answer], Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed result in a later batch of a day withholds the whole day, named
    by its index in the day; the days around it, one with its results before its
    `start_time`, are handed on whole."""
    monkeypatch.setattr(jsonstream, "BATCH_BYTES", 16 * 1024)
    days = [_live_day(0, 500), _live_day(1, 2000), _live_day(2, 700)]
    days[1]["results"][1500]["amount"]["value"] = "abc"
    days[2] = {"results": days[2]["results"], **days[2]}  # the results first
    body, _ = _page_body(days)
    server = serve(_raw(body))
    api, _ = _api(server.url, timeouts=Timeouts(5.0, 30.0))
    rejected: list[Rejected] = []
    handed = list(api.fetch_costs(T0, T0 + 3 * DAY, rejected))
    expected = [
        CostLine(
            day["start_time"],
            r["project_id"],
            r["line_item"],
            "usd",
            r["amount"]["value"],
            12345678.0,
            "tokens",
        )
        for day in (days[0], days[2])
        for r in day["results"]
    ]
    assert handed == [expected[:500], expected[500:]]
    assert rejected == [
        Rejected(
            T0 + DAY,
            "/organization/costs",
            "data[1].results[1500].amount.value",
            "expected a number or a decimal string, got 'abc'",
        )
    ]


# ------------------------------------------------ 6. messages that say what to do


def test_redirect_to_another_host_is_not_followed(
    serve: Callable[[Answer], Hostile],
) -> None:
    """A 302 to another host is a redirect error naming the host; the key stays."""
    target = serve(_json(200, {"object": "list", "data": [], "has_more": False}))
    other = f"localhost:{target.server_address[1]}"
    server = serve(
        lambda h: h.whole(302, b"", (("Location", f"http://{other}{h.path}"),))
    )
    api, sleeps = _api(server.url, max_attempts=3)
    with pytest.raises(RequestRejected) as info:
        api.fetch_projects()
    assert str(info.value) == (
        f"GET /organization/projects: HTTP 302 redirect to {other}, not followed "
        "(the admin key goes to no other host); set OPENAI_BASE_URL to the API root "
        "that answers directly"
    )
    assert "admin key rejected" not in str(info.value)
    assert target.paths == []
    assert len(server.paths) == 1
    assert sleeps == []


def test_429_past_the_budget_gives_up_at_once(
    serve: Callable[[Answer], Hostile],
) -> None:
    """Retry-After: 3600 with a 60 s budget ends the call now, naming both."""
    server = serve(
        lambda h: h.whole(429, b"{}", (("Retry-After", "3600"),)),
    )
    api, sleeps = _api(server.url, max_attempts=8, budget=60.0)
    started = time.monotonic()
    with pytest.raises(Transient) as info:
        api.fetch_projects()
    assert str(info.value) == (
        "GET /organization/projects: HTTP 429; the server asks to retry after 3600s "
        "(Retry-After), more than the 60s left of RETRY_BUDGET (60s): gave up; raise "
        "RETRY_BUDGET above 3600s to wait it out"
    )
    assert sleeps == []
    assert len(server.paths) == 1
    assert time.monotonic() - started < 2


def test_push_429_past_the_budget_gives_up_at_once(
    serve: Callable[[Answer], Hostile],
) -> None:
    """The same for VictoriaMetrics (or vmagent, vmauth) asking for an hour."""
    server = serve(lambda h: h.whole(429, b"", (("Retry-After", "3600"),)))
    client, sleeps = _vm(server.url, max_attempts=8, budget=60.0)
    with pytest.raises(PushUnavailable, match=r"RETRY_BUDGET above 3600s"):
        client.push([b"x 1\n"])
    assert sleeps == []
    assert len(server.paths) == 1


def test_tls_to_a_plain_http_server_says_tls(
    serve: Callable[[Answer], Hostile],
) -> None:
    """https:// to a server that speaks plain HTTP is a TLS error naming the URL."""
    server = serve(_json(200, {}))
    base = server.url.replace("http://", "https://")
    api, _ = _api(base)
    with pytest.raises(Transient) as info:
        api.fetch_projects()
    message = str(info.value)
    assert message.startswith(
        "GET /organization/projects: cannot connect (TLS error: "
    ), message
    assert message.endswith(
        f") to {base}/v1/organization/projects; check the URL's scheme (http or "
        "https) and port, and the server's certificate"
    )


def test_unknown_host_says_dns() -> None:
    """A host that does not resolve (`.invalid`, RFC 2606) is named as such."""
    api, _ = _api("http://pusher-test.invalid")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            api.fetch_projects()
        except BaseException as exc:  # handed over to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)  # a resolver that never answers must not hang the suite
    assert outcome, "the lookup did not end within 20 s"
    assert isinstance(outcome[0], Transient)
    assert str(outcome[0]) == (
        "GET /organization/projects: cannot connect (unknown host: DNS lookup "
        "failed) to http://pusher-test.invalid/v1/organization/projects; check the "
        "host name in the URL"
    )


def test_a_key_http_cannot_carry_is_a_clean_error(
    serve: Callable[[Answer], Hostile],
) -> None:
    """A key that slipped past validation with a non-Latin-1 character fails the
    call with a clean error, never a UnicodeEncodeError, and is never shown."""
    server = serve(_json(200, {"object": "list", "data": [], "has_more": False}))
    api, _ = _api(server.url, key="sk-admin-ключ")
    with pytest.raises(RequestRejected) as info:
        api.fetch_projects()
    assert str(info.value) == (
        "GET /organization/projects: a request header holds characters HTTP cannot "
        "carry; check that the secrets (OPENAI_ADMIN_KEY, VM_BEARER_TOKEN) are plain "
        "ASCII"
    )
    assert "ключ" not in str(info.value)
    assert server.paths == []


# ----------------------------------------------- 5. a bad key ends the command line


@pytest.mark.parametrize(
    ("env", "files", "problem"),
    [
        (
            {"OPENAI_ADMIN_KEY": "\ufeffsk-admin-BOMKEY"},
            {},
            "OPENAI_ADMIN_KEY: the value holds a byte order mark (BOM); save it "
            "without one",
        ),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin-\u043a\u043b\u044e\u0447KEY"},
            {},
            "OPENAI_ADMIN_KEY: the value holds non-ASCII characters; copy the plain "
            "ASCII value again",
        ),
        (
            {"OPENAI_ADMIN_KEY_FILE": "key.txt"},
            {"key.txt": "\ufeffsk-admin-BOMKEY\n"},
            "OPENAI_ADMIN_KEY_FILE: the value holds a byte order mark (BOM); save it "
            "without one",
        ),
        (
            {"OPENAI_ADMIN_KEY": " sk-admin-SPACEKEY"},
            {},
            "OPENAI_ADMIN_KEY: the value starts or ends with whitespace; remove it",
        ),
        (
            {"OPENAI_ADMIN_KEY": "sk-admin-x", "VM_BEARER_TOKEN": "tök-KEY"},
            {},
            "VM_BEARER_TOKEN: the value holds non-ASCII characters; copy the plain "
            "ASCII value again",
        ),
    ],
    ids=["bom", "non-ascii", "file-bom", "leading-space", "bearer-non-ascii"],
)
def test_a_bad_key_exits_2_with_one_line(
    tmp_path: Path, env: dict[str, str], files: dict[str, str], problem: str
) -> None:
    """The command line exits 2 naming the setting, and never shows the value."""
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "openai_cost_pusher", "--once"],
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            "VM_PUSH_URL": "http://127.0.0.1:9/api/v1/import/prometheus",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert problem in lines[0]
    assert "KEY" not in lines[0].replace("ADMIN_KEY", "").replace("_KEY_FILE", "")
    assert "Traceback" not in result.stderr


def test_the_session_works_after_a_capped_error_body(
    serve: Callable[[Answer], Hostile],
) -> None:
    """After a capped error body the connection is closed, and the next call
    opens a new one that works (the session is not left broken)."""
    answers = iter([lambda h: h.huge(500, 50_000_000)])

    def answer(h: _Handler) -> None:
        nxt = next(answers, None)
        if nxt is not None:
            nxt(h)
        else:
            h.whole(200, b'{"object":"list","data":[],"has_more":false}')

    server = serve(answer)
    api, sleeps = _api(server.url, max_attempts=2)
    assert api.fetch_projects() == []
    assert len(server.paths) == 2
    assert len(sleeps) == 1


def test_a_plain_session_still_has_a_body_deadline(
    serve: Callable[[Answer], Hostile],
) -> None:
    """With a session not made by make_session, a trickled body still ends."""
    server = serve(_trickled_page)
    stop = threading.Event()
    api = AdminApi(
        requests.Session(),
        server.url + "/v1",
        Secret(KEY),
        timeouts=FAST,
        retrying=lambda: retry_policy(60, stop, max_attempts=1),
        stop=stop,
    )
    started = time.monotonic()
    with pytest.raises(Transient, match="the deadline of one call"):
        _costs(api)
    assert time.monotonic() - started < 3
