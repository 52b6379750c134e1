"""Test the VictoriaMetrics push client against real servers and a recording server.

Real VictoriaMetrics 1.112, vmagent and vmauth (`tests.vm`) run on 127.0.0.1 with
workdirs under `tmp_path`; every server is stopped by pid in its fixture's finalizer.
What goes over the wire (gzip, headers, retries, error answers) is checked with a small
stdlib HTTP server that records each request and plays scripted answers.
"""

from __future__ import annotations

import base64
import gzip
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import requests

from openai_cost_pusher.config import Secret
from openai_cost_pusher.errors import PushRejected, PushUnavailable, Stopped
from openai_cost_pusher.push import GZIP_LEVEL, VmClient, auth_header
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from tests.procs import free_port
from tests.vm import ExportedSeries, VictoriaMetrics, VmAgent, VmAuth

DAY_MS = 86_400_000
USER = "pusher"
PASSWORD = "pw-Secret-123"
TOKEN = "tok-Secret-456"
WHAT = "push to VictoriaMetrics"


def _day_ms(days_ago: int) -> int:
    """Return 00:00 UTC `days_ago` days before today, in ms (inside VM's retention)."""
    return (int(time.time() * 1000) // DAY_MS - days_ago) * DAY_MS


# ---------------------------------------------------------------- the client


@dataclass
class Client:
    """A VmClient with its recorded retry waits."""

    vm: VmClient
    sleeps: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(name="session")
def _session() -> Iterator[requests.Session]:
    """Return the product's session, closed after the test."""
    with make_session() as session:
        yield session


def _client(
    session: requests.Session,
    push_url: str,
    *,
    authorization: Secret | None = None,
    max_attempts: int = 3,
    stop: threading.Event | None = None,
) -> Client:
    """Return a client whose retries record their waits instead of sleeping."""
    stop = stop or threading.Event()
    sleeps: list[float] = []
    vm = VmClient(
        session,
        push_url,
        authorization=authorization,
        timeouts=Timeouts(connect=2.0, read=5.0),
        retrying=lambda: retry_policy(
            60.0, stop, sleep=sleeps.append, max_attempts=max_attempts
        ),
        stop=stop,
    )
    return Client(vm, sleeps, stop)


# ------------------------------------------------------------ real servers


@pytest.fixture(name="victoria")
def _victoria(vm: VictoriaMetrics) -> VictoriaMetrics:
    """Return the shared single-node VictoriaMetrics with dedup on (conftest)."""
    return vm


@pytest.fixture(name="victoria_nodedup")
def _victoria_nodedup(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """Run a single-node VictoriaMetrics without dedup; stop it afterwards."""
    server = VictoriaMetrics(tmp_path, dedup=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="agent")
def _agent(tmp_path: Path, victoria: VictoriaMetrics) -> Iterator[VmAgent]:
    """Run a vmagent that forwards to `victoria`; stop it afterwards."""
    server = VmAgent(tmp_path, victoria)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="vmauth")
def _vmauth(tmp_path: Path, victoria: VictoriaMetrics) -> Iterator[VmAuth]:
    """Run a vmauth with one basic-auth and one bearer user; stop it afterwards."""
    server = VmAuth(
        tmp_path, victoria, username=USER, password=PASSWORD, bearer_token=TOKEN
    )
    try:
        yield server
    finally:
        server.stop()


def _series(
    name: str, values: list[float], start_ms: int
) -> tuple[bytes, dict[str, Any]]:
    """Return exposition text for one sample per label value, and what to read back."""
    lines = []
    expected: dict[str, Any] = {}
    for i, value in enumerate(values):
        ts = start_ms - i * DAY_MS + i  # day-aligned plus i ms: ms must survive
        lines.append(f'{name}{{i="{i}",job="t"}} {value!r} {ts}\n')
        expected[str(i)] = ([value], [ts])
    return "".join(lines).encode(), expected


def _read(victoria: VictoriaMetrics, name: str) -> dict[str, Any]:
    """Return the values and timestamps of every series of `name`, keyed by `i`."""
    series: list[ExportedSeries] = victoria.export(f'{{__name__="{name}"}}')
    return {s.metric["i"]: (s.values, s.timestamps) for s in series}


def _wait_for(
    victoria: VictoriaMetrics, name: str, count: int, timeout: float = 15.0
) -> dict[str, Any]:
    """Poll VictoriaMetrics until `count` series of `name` arrive, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        got = _read(victoria, name)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


# Values with at most 15 significant digits: VictoriaMetrics stores them exactly.
VALUES = [0.1, 123.456, 1e-9, 0.0, -3.75, 1234567.891234, 2.5e-300, 12.5]


def test_push_reads_back_exactly(
    victoria: VictoriaMetrics, session: requests.Session
) -> None:
    """Samples pushed to single-node VictoriaMetrics export with exact values and ms."""
    body, expected = _series("push_exact", VALUES, _day_ms(2))
    client = _client(session, victoria.push_url)
    stats = client.vm.push([body])
    assert _read(victoria, "push_exact") == expected
    assert stats.requests == 1
    assert stats.raw_bytes == len(body)
    assert stats.gzip_bytes == len(gzip.compress(body, GZIP_LEVEL, mtime=0))
    assert client.sleeps == []


def test_push_label_values_survive(
    victoria: VictoriaMetrics, session: requests.Session
) -> None:
    """Escaped quotes, backslashes, newlines and UTF-8 in label values come back."""
    ts = _day_ms(1)
    body = (
        f'push_labels{{i="0",project="a\\"b\\\\c\\nd"}} 1 {ts}\n'
        f'push_labels{{i="1",project="Ünïcode Проект ✓"}} 2 {ts}\n'
    ).encode()
    _client(session, victoria.push_url).vm.push([body])
    series = victoria.export('{__name__="push_labels"}')
    got = {s.metric["i"]: s.metric["project"] for s in series}
    assert got == {"0": 'a"b\\c\nd', "1": "Ünïcode Проект ✓"}


def test_several_chunks_reach_vm(
    victoria: VictoriaMetrics, session: requests.Session
) -> None:
    """Each chunk is one request, and every chunk's samples are stored."""
    start = _day_ms(3)
    chunks = [f'push_chunks{{i="{i}"}} {i}.5 {start + i}\n'.encode() for i in range(5)]
    stats = _client(session, victoria.push_url).vm.push(chunks)
    assert stats.requests == 5
    assert stats.raw_bytes == sum(map(len, chunks))
    assert _read(victoria, "push_chunks") == {
        str(i): ([i + 0.5], [start + i]) for i in range(5)
    }


def test_push_through_vmagent(
    agent: VmAgent, victoria: VictoriaMetrics, session: requests.Session
) -> None:
    """Samples pushed to vmagent reach VictoriaMetrics unchanged."""
    body, expected = _series("push_agent", VALUES[:4], _day_ms(1))
    stats = _client(session, agent.push_url).vm.push([body])
    assert stats.requests == 1
    assert _wait_for(victoria, "push_agent", len(expected)) == expected


@pytest.mark.parametrize("kind", ["basic", "bearer"])
def test_push_through_vmauth(
    vmauth: VmAuth, victoria: VictoriaMetrics, session: requests.Session, kind: str
) -> None:
    """vmauth accepts basic auth and a bearer token and forwards the samples."""
    authorization = (
        auth_header(USER, Secret(PASSWORD), None)
        if kind == "basic"
        else auth_header(None, None, Secret(TOKEN))
    )
    body, expected = _series(f"push_vmauth_{kind}", VALUES[:3], _day_ms(1))
    client = _client(session, vmauth.push_url, authorization=authorization)
    client.vm.push([body])
    assert _read(victoria, f"push_vmauth_{kind}") == expected
    assert client.sleeps == []


@pytest.mark.parametrize(
    "authorization",
    [
        auth_header(USER, Secret("wrong"), None),
        auth_header("nobody", Secret(PASSWORD), None),
        auth_header(None, None, Secret("wrong-token")),
        None,
    ],
    ids=["bad-password", "bad-user", "bad-token", "none"],
)
def test_vmauth_wrong_credentials(
    vmauth: VmAuth,
    victoria: VictoriaMetrics,
    session: requests.Session,
    authorization: Secret | None,
) -> None:
    """Credentials vmauth refuses give PushRejected at once, without a retry."""
    client = _client(session, vmauth.push_url, authorization=authorization)
    with pytest.raises(PushRejected) as info:
        client.vm.push([f"push_denied 1 {_day_ms(1)}\n".encode()])
    assert str(info.value) == (
        f"{WHAT}: credentials rejected (HTTP 401) by {vmauth.push_url}; "
        "check VM_USERNAME/VM_PASSWORD or VM_BEARER_TOKEN"
    )
    for secret in (PASSWORD, TOKEN, "wrong"):
        assert secret not in str(info.value)
    assert client.sleeps == []
    assert _read(victoria, "push_denied") == {}


def test_real_4xx_message(victoria: VictoriaMetrics, session: requests.Session) -> None:
    """A 400 from VictoriaMetrics gives PushRejected with its message, on one line."""
    client = _client(session, victoria.push_url + "?extra_label=bad")
    with pytest.raises(PushRejected) as info:
        client.vm.push([b"push_bad 1\n"])
    message = str(info.value)
    assert message.startswith(f"{WHAT}: HTTP 400: ")
    assert "`extra_label` query arg must have the format `name=value`" in message
    assert "\n" not in message
    assert client.sleeps == []


def test_vm_down_is_unavailable(session: requests.Session) -> None:
    """A refused connection gives PushUnavailable after every attempt is used."""
    url = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"
    client = _client(session, url)
    with pytest.raises(PushUnavailable) as info:
        client.vm.push([b"x 1\n"])
    assert str(info.value) == (
        f"{WHAT}: cannot connect (connection refused) to {url}; check that the "
        "server runs and the URL's host and port"
    )
    assert len(client.sleeps) == 2


# ---------------------------------------------------------- recording server


@dataclass(frozen=True)
class Seen:
    """One request the recording server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    """One scripted answer."""

    status: int = 204
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


class Recorder(ThreadingHTTPServer):
    """Record every request and answer from a script (default: 204 No Content)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.seen: list[Seen] = []
        self.script: list[Answer] = []
        self.routes: dict[str, Answer] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """Return the server's root URL."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def push_url(self) -> str:
        """Return a single-node import URL on this server."""
        return self.url + "/api/v1/import/prometheus"

    def next_answer(self, seen: Seen) -> Answer:
        """Record `seen` and return the answer for it."""
        with self.lock:
            self.seen.append(seen)
            path = seen.path.split("?")[0]
            if path in self.routes:
                return self.routes[path]
            return self.script.pop(0) if self.script else Answer()


class _RecordingHandler(BaseHTTPRequestHandler):
    """Hand each request to the Recorder."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, dict(self.headers.items()), body)
        answer = cast(Recorder, self.server).next_answer(seen)
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


@pytest.fixture(name="recorder")
def _recorder() -> Iterator[Recorder]:
    """Run a recording HTTP server on 127.0.0.1 in a thread; shut it down afterwards."""
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    ("authorization", "header"),
    [
        (None, None),
        (
            auth_header(USER, Secret(PASSWORD), None),
            "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        ),
        (auth_header(None, None, Secret(TOKEN)), f"Bearer {TOKEN}"),
        (auth_header(USER, Secret(PASSWORD), Secret(TOKEN)), f"Bearer {TOKEN}"),
    ],
    ids=["none", "basic", "bearer", "bearer-wins"],
)
def test_body_is_gzipped_with_headers(
    recorder: Recorder,
    session: requests.Session,
    authorization: Secret | None,
    header: str | None,
) -> None:
    """The body is gzip with `Content-Encoding: gzip` and the configured auth header."""
    chunk = b'push_gzip{i="0"} 1.5 1700000000000\n' * 50
    _client(session, recorder.push_url, authorization=authorization).vm.push([chunk])
    assert len(recorder.seen) == 1
    seen = recorder.seen[0]
    assert seen.method == "POST"
    assert seen.path == "/api/v1/import/prometheus"
    assert seen.headers["Content-Encoding"] == "gzip"
    assert seen.headers["Content-Type"] == "text/plain; version=0.0.4"
    assert seen.body[:2] == b"\x1f\x8b"
    assert gzip.decompress(seen.body) == chunk
    assert len(seen.body) < len(chunk)
    assert seen.headers.get("Authorization") == header


def test_push_url_query_is_kept(recorder: Recorder, session: requests.Session) -> None:
    """A query on the push URL (such as extra_label) is sent unchanged."""
    url = recorder.push_url + "?extra_label=env=prod"
    _client(session, url).vm.push([b"x 1\n"])
    assert recorder.seen[0].path == "/api/v1/import/prometheus?extra_label=env=prod"


def test_chunks_are_separate_requests(
    recorder: Recorder, session: requests.Session
) -> None:
    """Several chunks go out as several requests, in order, each gzipped alone."""
    chunks = [f"push_many {i} 1700000000000\n".encode() * (i + 1) for i in range(4)]
    stats = _client(session, recorder.push_url).vm.push(chunks)
    assert [gzip.decompress(s.body) for s in recorder.seen] == chunks
    assert stats.requests == 4
    assert stats.gzip_bytes == sum(len(s.body) for s in recorder.seen)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_4xx_rejected_with_trimmed_message(
    recorder: Recorder, session: requests.Session, status: int
) -> None:
    """A 4xx gives PushRejected with the server's message on one line, trimmed."""
    text = "cannot parse line\n\t'x{'  :  unexpected end   \n" * 20
    recorder.script = [Answer(status, text.encode())]
    client = _client(session, recorder.push_url)
    with pytest.raises(PushRejected) as info:
        client.vm.push([b"x 1\n"])
    trimmed = " ".join(text.split())[:200]
    assert str(info.value) == f"{WHAT}: HTTP {status}: {trimmed}"
    assert len(recorder.seen) == 1
    assert client.sleeps == []


def test_4xx_without_body(recorder: Recorder, session: requests.Session) -> None:
    """A 4xx without a body gives a message with the status only."""
    recorder.script = [Answer(400)]
    with pytest.raises(PushRejected, match=rf"^{WHAT}: HTTP 400$"):
        _client(session, recorder.push_url).vm.push([b"x 1\n"])


@pytest.mark.parametrize("status", [401, 403])
def test_auth_status_rejected(
    recorder: Recorder, session: requests.Session, status: int
) -> None:
    """401 and 403 name the credential settings and are not retried."""
    recorder.script = [Answer(status, b"Unauthorized")]
    client = _client(session, recorder.push_url)
    with pytest.raises(PushRejected, match=rf"credentials rejected \(HTTP {status}\)"):
        client.vm.push([b"x 1\n"])
    assert len(recorder.seen) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_rejected(
    recorder: Recorder, session: requests.Session, status: int
) -> None:
    """A redirect is not followed: PushRejected names its host, asks for the URL."""
    location = f"https://elsewhere.example:8443/api/v1/import/prometheus?t={TOKEN}"
    recorder.script = [Answer(status, headers=(("Location", location),))]
    authorization = auth_header(None, None, Secret(TOKEN))
    client = _client(session, recorder.push_url, authorization=authorization)
    with pytest.raises(PushRejected) as info:
        client.vm.push([b"x 1\n"])
    assert str(info.value) == (
        f"{WHAT}: HTTP {status} redirect to elsewhere.example:8443, not followed "
        "(credentials go to no other host); set VM_PUSH_URL to the final import URL"
    )
    assert len(recorder.seen) == 1
    assert client.sleeps == []


def test_relative_redirect_names_the_same_host(
    recorder: Recorder, session: requests.Session
) -> None:
    """A relative Location points to the push URL's own host and port."""
    recorder.script = [Answer(302, headers=(("Location", "/other"),))]
    with pytest.raises(PushRejected) as info:
        _client(session, recorder.push_url).vm.push([b"x 1\n"])
    assert f"redirect to 127.0.0.1:{recorder.server_address[1]}," in str(info.value)
    assert len(recorder.seen) == 1


def test_413_names_the_size_and_the_limit(
    recorder: Recorder, session: requests.Session
) -> None:
    """A 413 says how large the body was and which limit to raise; no retry."""
    recorder.script = [Answer(413, b"<html>413 Request Entity Too Large</html>")]
    chunk = b"".join(
        f'push_big{{i="{i}"}} 1 1700000000000\n'.encode() for i in range(3000)
    )
    client = _client(session, recorder.push_url)
    with pytest.raises(PushRejected) as info:
        client.vm.push([chunk])
    gzipped = len(recorder.seen[0].body)
    assert str(info.value) == (
        f"{WHAT}: HTTP 413, body too large: the server refused "
        f"{gzipped / 1024:.1f} KiB of gzip ({len(chunk) / 1024:.1f} KiB of text); "
        "raise the request size limit of what answered (a proxy's body limit such "
        "as nginx client_max_body_size, or VictoriaMetrics -maxInsertRequestSize): "
        "<html>413 Request Entity Too Large</html>"
    )
    assert len(recorder.seen) == 1
    assert client.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_unavailable_after_retries(
    recorder: Recorder, session: requests.Session, status: int
) -> None:
    """A server that keeps failing gives PushUnavailable after every attempt."""
    recorder.script = [Answer(status, b"down")] * 10
    client = _client(session, recorder.push_url, max_attempts=3)
    with pytest.raises(PushUnavailable, match=rf"^{WHAT}: HTTP {status}$"):
        client.vm.push([b"x 1\n"])
    assert len(recorder.seen) == 3
    assert len(client.sleeps) == 2
    assert len({s.body for s in recorder.seen}) == 1


def test_5xx_then_success(recorder: Recorder, session: requests.Session) -> None:
    """A chunk is re-sent after a 503 and the push succeeds."""
    recorder.script = [Answer(503), Answer(204)]
    client = _client(session, recorder.push_url)
    stats = client.vm.push([b"x 1\n"])
    assert stats.requests == 1  # chunks pushed, not HTTP attempts
    assert len(recorder.seen) == 2
    assert recorder.seen[0].body == recorder.seen[1].body
    assert len(client.sleeps) == 1


@pytest.mark.parametrize("retry_after", [2, 9])
def test_429_waits_retry_after(
    recorder: Recorder, session: requests.Session, retry_after: int
) -> None:
    """A 429 is retried after at least its Retry-After."""
    recorder.script = [Answer(429, headers=(("Retry-After", str(retry_after)),))]
    client = _client(session, recorder.push_url)
    client.vm.push([b"x 1\n"])
    assert len(recorder.seen) == 2
    assert len(client.sleeps) == 1
    assert client.sleeps[0] >= retry_after


def test_failed_chunk_stops_the_push(
    recorder: Recorder, session: requests.Session
) -> None:
    """When a chunk is rejected the later chunks are not sent."""
    recorder.script = [Answer(204), Answer(400, b"bad")]
    with pytest.raises(PushRejected):
        _client(session, recorder.push_url).vm.push([b"a 1\n", b"b 1\n", b"c 1\n"])
    assert [gzip.decompress(s.body) for s in recorder.seen] == [b"a 1\n", b"b 1\n"]


def test_stop_set_sends_nothing(recorder: Recorder, session: requests.Session) -> None:
    """With the stop Event set, push raises Stopped before any request."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        _client(session, recorder.push_url, stop=stop).vm.push([b"x 1\n"])
    assert recorder.seen == []


# ------------------------------------------------------------------ dedup check


def test_dedup_ok(victoria: VictoriaMetrics, session: requests.Session) -> None:
    """A single-node server run with -dedup.minScrapeInterval reports ok."""
    assert _client(session, victoria.push_url).vm.check_dedup() == "ok"


def test_dedup_missing_warns(
    victoria_nodedup: VictoriaMetrics,
    session: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A single-node server without dedup reports missing and logs one WARNING."""
    with caplog.at_level(logging.INFO, logger="openai_cost_pusher.push"):
        result = _client(session, victoria_nodedup.push_url).vm.check_dedup()
    assert result == "missing"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "openai_cost_pusher.push"
    assert "-dedup.minScrapeInterval=1ms" in warnings[0].getMessage()


def test_dedup_unknown_through_vmagent(
    agent: VmAgent, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    """Through vmagent the storage cannot be asked: unknown, without a WARNING."""
    with caplog.at_level(logging.INFO, logger="openai_cost_pusher.push"):
        assert _client(session, agent.push_url).vm.check_dedup() == "unknown"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_dedup_unknown_through_vmauth(
    vmauth: VmAuth, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    """vmauth serves its own /flags, so the answer is unknown, not a false WARNING."""
    basic = auth_header(USER, Secret(PASSWORD), None)
    client = _client(session, vmauth.push_url, authorization=basic)
    with caplog.at_level(logging.INFO, logger="openai_cost_pusher.push"):
        assert client.vm.check_dedup() == "unknown"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "path",
    [
        "/insert/0/prometheus/api/v1/import/prometheus",
        "/insert/42:7/prometheus/api/v1/import/prometheus",
        "/api/v1/import",
        "/api/v1/write",
    ],
)
def test_dedup_unknown_for_other_paths(
    recorder: Recorder, session: requests.Session, path: str
) -> None:
    """A cluster-style or other path is not asked at all: unknown."""
    assert _client(session, recorder.url + path).vm.check_dedup() == "unknown"
    assert recorder.seen == []


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ('-dedup.minScrapeInterval="1ms"\n-retentionPeriod="5y"\n', "ok"),
        ("-dedup.minScrapeInterval=30s\n", "ok"),
        ('-dedup.minScrapeInterval="0s"\n', "missing"),
        ('-dedup.minScrapeInterval="0"\n', "missing"),
        ('-retentionPeriod="5y"\n', "missing"),
        ("", "missing"),
        ('-auth.config="/etc/vmauth.yml"\n', "unknown"),
        ('-remoteWrite.url="secret"\n', "unknown"),
    ],
)
def test_dedup_from_flags(
    recorder: Recorder, session: requests.Session, flags: str, expected: str
) -> None:
    """The answer follows the server's /flags list; proxies' flags mean unknown."""
    recorder.routes = {
        "/api/v1/status/buildinfo": Answer(200, b'{"status":"success"}'),
        "/flags": Answer(200, flags.encode()),
    }
    assert _client(session, recorder.push_url).vm.check_dedup() == expected


@pytest.mark.parametrize(("buildinfo", "flags"), [(400, 200), (200, 404), (401, 401)])
def test_dedup_unknown_when_not_answered(
    recorder: Recorder, session: requests.Session, buildinfo: int, flags: int
) -> None:
    """Without a 200 for both buildinfo and /flags the answer is unknown."""
    recorder.routes = {
        "/api/v1/status/buildinfo": Answer(buildinfo),
        "/flags": Answer(flags, b'-dedup.minScrapeInterval="0s"\n'),
    }
    assert _client(session, recorder.push_url).vm.check_dedup() == "unknown"


def test_dedup_unknown_when_down(session: requests.Session) -> None:
    """An unreachable server gives unknown, never an exception."""
    url = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"
    assert _client(session, url).vm.check_dedup() == "unknown"


def test_dedup_sends_auth(recorder: Recorder, session: requests.Session) -> None:
    """The dedup check sends the configured Authorization header."""
    client = _client(
        session, recorder.push_url, authorization=auth_header(None, None, Secret(TOKEN))
    )
    client.vm.check_dedup()
    assert [s.headers.get("Authorization") for s in recorder.seen] == [
        f"Bearer {TOKEN}"
    ] * 2


# -------------------------------------------------------------------- auth_header


@pytest.mark.parametrize(
    ("username", "password", "bearer", "expected"),
    [
        (None, None, None, None),
        ("", Secret("x"), None, None),
        ("u", Secret("p"), None, "Basic " + base64.b64encode(b"u:p").decode()),
        ("u", None, None, "Basic " + base64.b64encode(b"u:").decode()),
        (
            "ü",
            Secret("pässwörd"),
            None,
            "Basic " + base64.b64encode("ü:pässwörd".encode()).decode(),
        ),
        (None, None, Secret("t"), "Bearer t"),
        ("u", Secret("p"), Secret("t"), "Bearer t"),
    ],
)
def test_auth_header(
    username: str | None,
    password: Secret | None,
    bearer: Secret | None,
    expected: str | None,
) -> None:
    """Bearer wins over basic; basic needs a user; the result stays a Secret."""
    header = auth_header(username, password, bearer)
    if expected is None:
        assert header is None
    else:
        assert isinstance(header, Secret)
        assert header.reveal() == expected
        assert str(header) == "***"
