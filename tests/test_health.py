"""The health listener through a real HTTP client, in each state it can be in.

`/healthz` (readiness: are costs arriving?) and `/livez` (liveness: is the cycle
loop alive?) are checked as pure rules, then over HTTP against a real `Pusher`
driven by a fake clock, then in the running service. The listener's limits (idle
connections, a cap on held connections) are checked with real sockets on 127.0.0.1,
all closed by the test.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest
import requests

from openai_cost_pusher import app, health
from openai_cost_pusher.app import Pusher, run_forever
from openai_cost_pusher.config import Settings, load_settings
from openai_cost_pusher.errors import CostPusherError
from openai_cost_pusher.health import (
    MAX_CONNECTIONS,
    HealthServer,
    HealthSnapshot,
    Heartbeat,
    health_status,
    live_bound,
    liveness_status,
)
from openai_cost_pusher.logs import Redactor, make_formatter
from openai_cost_pusher.model import CostLine, Project, Rejected, UsageLine
from openai_cost_pusher.push import PushStats
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI, Fault
from tests.procs import ROOT, free_port
from tests.test_cli import running_cli
from tests.vm import VictoriaMetrics

NOW = 1_800_000_000.0
INTERVAL = 900.0
GRACE = 3 * INTERVAL  # 2700 s: /healthz's start-up grace and staleness bound
KEY = "sk-admin-TOPSECRET123"
USER, PASSWORD = "pusher", "vm-Pa55w0rd"
BEARER = "vm-bearer-T0KEN"
FAILED = "GET /organization/costs: HTTP 500"


def _snap(**changes: object) -> HealthSnapshot:
    fields: dict[str, object] = {
        "now": NOW,
        "interval_s": INTERVAL,
        "last_success": NOW - 60,
        "last_ok": True,
        "last_error": None,
        "metrics": b"openai_cost_pusher_build_info 1.0\n",
        "started": NOW - 86_400,
        "heartbeat_age_s": 1.0,
    }
    fields.update(changes)
    return HealthSnapshot(**fields)  # type: ignore[arg-type]


NEVER_RAN = {"last_ok": None, "last_success": None}
NEVER_SUCCEEDED = {"last_ok": False, "last_success": None, "last_error": FAILED}


@pytest.mark.parametrize(
    ("snap", "code", "reason"),
    [
        # before the first cycle: a grace of 3 intervals from start
        (
            _snap(**NEVER_RAN, started=NOW - 60),
            200,
            "starting: no cycle has finished yet (60s since start)",
        ),
        (
            _snap(**NEVER_RAN, started=NOW - GRACE),
            200,
            "starting: no cycle has finished yet (2700s since start)",
        ),
        (
            _snap(**NEVER_RAN, started=NOW - GRACE - 1),
            503,
            "no cycle has finished yet (2701s since start)",
        ),
        (
            _snap(**NEVER_SUCCEEDED, started=NOW - 60),
            200,
            f"starting: no cycle has succeeded yet (60s since start); "
            f"last cycle failed: {FAILED}",
        ),
        (
            _snap(**NEVER_SUCCEEDED, started=NOW - GRACE - 1),
            503,
            f"no cycle has succeeded yet (2701s since start); "
            f"last cycle failed: {FAILED}",
        ),
        # a snapshot without a start time has no grace
        (_snap(**NEVER_RAN, started=None), 503, "no cycle has finished yet"),
        # after a success: 200 until it is older than 3 intervals
        (_snap(), 200, "ok"),
        (_snap(last_success=NOW - GRACE), 200, "ok"),
        (_snap(last_success=NOW - GRACE - 1), 503, "stale: last success 2701s ago"),
        # one failed cycle after a success keeps 200, and says so
        (
            _snap(last_ok=False, last_error=FAILED, last_success=NOW - 900),
            200,
            f"ok: last success 900s ago; last cycle failed: {FAILED}",
        ),
        (
            _snap(last_ok=False, last_error=None),
            200,
            "ok: last success 60s ago; last cycle failed: unknown error",
        ),
        (
            _snap(last_ok=False, last_error=FAILED, last_success=NOW - GRACE - 1),
            503,
            f"stale: last success 2701s ago; last cycle failed: {FAILED}",
        ),
    ],
)
def test_health_status_rule(snap: HealthSnapshot, code: int, reason: str) -> None:
    """200 while the last success (or, before one, the start) is at most 3 intervals
    old; a failed cycle alone never turns it 503."""
    assert health_status(snap) == (code, reason)


@pytest.mark.parametrize(
    ("snap", "code", "reason"),
    [
        (_snap(), 200, "ok: cycle loop seen 1s ago"),
        (_snap(heartbeat_age_s=2 * INTERVAL), 200, "ok: cycle loop seen 1800s ago"),
        (
            _snap(heartbeat_age_s=2 * INTERVAL + 1),
            503,
            "stuck: cycle loop silent for 1801s (limit 1800s)",
        ),
        (
            _snap(interval_s=30.0, heartbeat_age_s=301.0),
            503,
            "stuck: cycle loop silent for 301s (limit 300s)",
        ),
        (_snap(heartbeat_age_s=5000.0, live_after_s=6000.0), 200, None),
        (_snap(heartbeat_age_s=None), 503, "no cycle loop"),
        # liveness does not care whether cycles succeed
        (_snap(**NEVER_SUCCEEDED, started=NOW - 10 * GRACE), 200, None),
    ],
)
def test_liveness_rule(snap: HealthSnapshot, code: int, reason: str | None) -> None:
    """/livez is 503 only when the loop's heartbeat is older than its bound."""
    got = liveness_status(snap)
    assert got[0] == code
    if reason is not None:
        assert got[1] == reason


def test_live_bound() -> None:
    """max(2 intervals, 5 minutes, 2 x one HTTP call with its retries)."""
    assert live_bound(900) == 1800
    assert live_bound(30) == 300
    assert live_bound(30, call_s=60 + 30) == 300
    assert live_bound(30, call_s=600 + 30) == 1260


# -- redaction -----------------------------------------------------------------------


def _settings(**environ: str) -> Settings:
    def no_files(path: str) -> str:
        raise OSError(path)

    return load_settings({}, environ, {}, no_files)


BASIC = _settings(OPENAI_ADMIN_KEY=KEY, VM_USERNAME=USER, VM_PASSWORD=PASSWORD)
BEARER_AUTH = _settings(OPENAI_ADMIN_KEY=KEY, VM_BEARER_TOKEN=BEARER)
PAIR_B64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
ECHOED = (
    f"GET /organization/costs: HTTP 400: bad header Authorization: Bearer {KEY}; "
    f"push to VictoriaMetrics: HTTP 401: got Authorization: Basic {PAIR_B64} "
    f"({USER}:{PASSWORD}); token\n{BEARER}"
)
BASIC_LEAKS = (KEY, PASSWORD, PAIR_B64, PAIR_B64.rstrip("="), f"{USER}:{PASSWORD}")
BEARER_LEAKS = (KEY, BEARER)


@pytest.mark.parametrize(
    ("settings", "leaks", "shown"),
    [
        (BASIC, BASIC_LEAKS, ["Bearer ***", "Basic ***", "(***)"]),
        (BEARER_AUTH, BEARER_LEAKS, ["Bearer ***", "token ***"]),
    ],
    ids=["basic", "bearer"],
)
def test_healthz_reason_is_redacted(
    settings: Settings, leaks: tuple[str, ...], shown: list[str]
) -> None:
    """Upstream text echoing the admin key, the base64 basic pair, the raw pair or a
    bearer token shows `***` in the reason, on one line."""
    redact = Redactor.for_settings(settings)
    _, reason = health_status(_snap(last_ok=False, last_error=ECHOED), redact)
    for leak in leaks:
        assert leak not in reason
    for text in shown:
        assert text in reason
    assert "\n" not in reason


def test_healthz_cut_never_leaves_part_of_a_secret() -> None:
    """The reason is cut to 300 characters after redaction, so a secret that
    straddles the cut is not shown in part."""
    # the key would start at character 290: cut first, its first 10 would show
    error = "x" * 237 + f" Bearer {KEY} " + "y" * 50
    code, reason = health_status(
        _snap(last_ok=False, last_error=error), Redactor([KEY])
    )
    assert code == 200
    assert len(reason) <= 300
    assert KEY[:6] not in reason
    assert reason.endswith("Bearer *** " + "y" * 6)


# -- over HTTP, against a real Pusher on a fake clock ---------------------------------


class _Source:
    """One project with one cost; every call fails with `error` while it is set.

    `during` runs inside each projects call, as a real client's requests would.
    """

    def __init__(self) -> None:
        self.error: str | None = None
        self.during: Callable[[], None] | None = None

    def fetch_projects(self) -> list[Project]:
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise CostPusherError(self.error)
        return [Project("proj_1", "One")]

    def fetch_costs(
        self, start: int, end: int, rejected: list[Rejected] | None = None
    ) -> Iterator[list[CostLine]]:
        yield [CostLine(start, "proj_1", "gpt-4o, input", "usd", 1.5)]

    def fetch_usage(
        self,
        kind: str,
        start: int,
        end: int,
        width: str,
        group_by: Sequence[str],
        rejected: list[Rejected] | None = None,
    ) -> Iterator[list[UsageLine]]:
        yield []


class _Sink:
    def push(self, chunks: Iterable[bytes]) -> PushStats:
        stats = PushStats()
        for chunk in chunks:
            stats.requests += 1
            stats.raw_bytes += len(chunk)
        return stats


class _Mono:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Service:
    """A Pusher on a fake clock with its listener, as `cli` wires them."""

    def __init__(self, settings: Settings, interval_s: float = INTERVAL) -> None:
        self.clock = Clock(NOW)
        self.mono = _Mono()
        self.source = _Source()
        self.pusher = Pusher(
            self.source,
            _Sink(),
            lookback_days=1,
            backfill_days=1,
            extra_labels=(("job", "test"),),
            clock=self.clock,
        )
        self.pusher.heartbeat = Heartbeat(self.mono)
        self.pusher.stats.on_request = self.pusher.heartbeat.beat
        self.server = HealthServer(
            ("127.0.0.1", 0),
            lambda: self.pusher.health(interval_s),
            redact=Redactor.for_settings(settings),
        )
        self.base = f"http://127.0.0.1:{self.server.port}"

    def get(self, path: str) -> tuple[int, str]:
        resp = requests.get(self.base + path, timeout=5)
        return resp.status_code, resp.text


@pytest.fixture(name="service")
def service_fixture() -> Iterator[_Service]:
    """A pusher and its listener; the listener is closed afterwards."""
    svc = _Service(BASIC)
    try:
        yield svc
    finally:
        svc.server.close()


def test_healthz_states_over_http(service: _Service) -> None:
    """never ran (grace) -> 200; grace over without a cycle -> 503; success -> 200;
    one failure after it -> still 200, saying so; 3 intervals without success ->
    503 stale; a success again -> 200."""
    assert service.get("/healthz") == (
        200,
        "starting: no cycle has finished yet (0s since start)\n",
    )
    service.clock.now += GRACE + 1
    assert service.get("/healthz") == (
        503,
        "no cycle has finished yet (2701s since start)\n",
    )
    assert service.pusher.run_cycle().ok
    assert service.get("/healthz") == (200, "ok\n")
    service.clock.now += INTERVAL
    service.source.error = "GET /organization/projects: HTTP 503"
    assert not service.pusher.run_cycle().ok
    assert service.get("/healthz") == (
        200,
        "ok: last success 900s ago; last cycle failed: "
        "GET /organization/projects: HTTP 503\n",
    )
    service.clock.now += GRACE - INTERVAL + 1
    assert not service.pusher.run_cycle().ok
    assert service.get("/healthz") == (
        503,
        "stale: last success 2701s ago; last cycle failed: "
        "GET /organization/projects: HTTP 503\n",
    )
    service.source.error = None
    assert service.pusher.run_cycle().ok
    assert service.get("/healthz") == (200, "ok\n")
    assert service.get("/livez")[0] == 200


@pytest.mark.parametrize("settings", [BASIC, BEARER_AUTH], ids=["basic", "bearer"])
def test_healthz_body_is_redacted_as_the_logs_are(settings: Settings) -> None:
    """An upstream error echoing secrets shows in the /healthz body exactly as in the
    log line of the failed cycle: every secret as `***`."""
    svc = _Service(settings)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter("text", Redactor.for_settings(settings)))
    logger = logging.getLogger("openai_cost_pusher.app")
    logger.addHandler(handler)
    try:
        svc.source.error = ECHOED
        assert not svc.pusher.run_cycle().ok
        code, body = svc.get("/healthz")
    finally:
        logger.removeHandler(handler)
        svc.server.close()
    assert code == 200
    for leak in BASIC_LEAKS if settings is BASIC else BEARER_LEAKS:
        assert leak not in body
        assert leak not in stream.getvalue()
    assert "Bearer ***" in body
    if settings is BASIC:
        assert "Basic ***" in body
    error = body.split("last cycle failed: ", 1)[1].strip()
    logged = stream.getvalue().split('msg="cycle failed: ', 1)[1].split('" ', 1)[0]
    assert error == " ".join(logged.replace("\\n", " ").split())


def test_metrics_and_unknown_paths(service: _Service) -> None:
    """/metrics serves the self-monitoring series; other paths are 404."""
    code, text = service.get("/metrics")
    assert code == 200
    assert 'openai_cost_pusher_cycles_total{job="test",result="success"} 0' in text
    assert service.get("/nope")[0] == 404


def test_snapshot_error_is_500_and_the_listener_survives() -> None:
    """A bug in the snapshot answers 500; the next request is served."""
    calls: list[int] = []

    def snapshot() -> HealthSnapshot:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return _snap()

    server = HealthServer(("127.0.0.1", 0), snapshot)
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert requests.get(url, timeout=5).status_code == 500
        assert requests.get(url, timeout=5).status_code == 200
    finally:
        server.close()


# -- /livez ----------------------------------------------------------------------------


def test_livez_follows_the_loop(
    service: _Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop beats while it waits (an hour without a cycle keeps /livez 200);
    once the loop has stopped, /livez turns 503 past its bound."""
    monkeypatch.setattr(app, "HEARTBEAT_TICK_S", 0.02)
    stop = threading.Event()
    loop = threading.Thread(
        target=run_forever, args=(service.pusher, INTERVAL, stop), daemon=True
    )
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while service.pusher.last_report is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.pusher.last_report is not None
        assert service.get("/livez") == (200, "ok: cycle loop seen 0s ago\n")
        service.mono.now += 3600  # an hour of waiting between cycles
        time.sleep(0.3)  # many ticks of the waiting loop
        assert service.get("/livez") == (200, "ok: cycle loop seen 0s ago\n")
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    service.mono.now += 2 * INTERVAL
    assert service.get("/livez")[0] == 200  # at the bound
    service.mono.now += 1
    assert service.get("/livez") == (
        503,
        "stuck: cycle loop silent for 1801s (limit 1800s)\n",
    )
    assert service.get("/healthz")[0] == 200  # readiness is another question


def test_livez_stays_up_through_a_long_retrying_call() -> None:
    """An outage where one call retries for 20 minutes (every attempt is a counted
    request) never fails /livez, whose bound here is 5 minutes; a cycle that goes
    silent for longer does. The listener answers while the cycle runs."""
    svc = _Service(BASIC, interval_s=60.0)
    seen: list[tuple[int, str]] = []

    def retrying() -> None:
        for _ in range(20):
            svc.mono.now += 60
            svc.pusher.stats.count_request("projects", "503")
            seen.append(svc.get("/livez"))

    try:
        svc.source.during = retrying
        svc.source.error = "GET /organization/projects: HTTP 503"
        assert not svc.pusher.run_cycle().ok
        assert seen == [(200, "ok: cycle loop seen 0s ago\n")] * 20

        def silent() -> None:
            svc.mono.now += 301
            seen.append(svc.get("/livez"))

        svc.source.during = silent
        svc.pusher.run_cycle()
        assert seen[-1] == (503, "stuck: cycle loop silent for 301s (limit 300s)\n")
    finally:
        svc.server.close()


# -- the listener's limits ------------------------------------------------------------


@pytest.fixture(name="listener")
def listener_fixture() -> Iterator[HealthServer]:
    """A listener answering a healthy snapshot, closed afterwards."""
    server = HealthServer(("127.0.0.1", 0), _snap)
    try:
        yield server
    finally:
        server.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_idle_connections_do_not_lock_out_probes(listener: HealthServer) -> None:
    """64 idle connections (the count that exhausted a 64-descriptor limit) leave
    /healthz answering within a second; the listener holds at most 16 of them."""
    socks: list[socket.socket] = []
    try:
        for _ in range(64):
            socks.append(socket.create_connection(("127.0.0.1", listener.port), 2))
        for _ in range(3):
            started = time.monotonic()
            resp = requests.get(f"http://127.0.0.1:{listener.port}/healthz", timeout=2)
            assert (resp.status_code, resp.text) == (200, "ok\n")
            assert time.monotonic() - started < 1.0
        time.sleep(0.2)
        held = [s for s in socks if not _closed_by_peer(s)]
        assert len(held) <= MAX_CONNECTIONS
    finally:
        for sock in socks:
            sock.close()


_SERVE_WITH_64_DESCRIPTORS = """
import resource, sys
from openai_cost_pusher.health import HealthServer, HealthSnapshot
snap = HealthSnapshot(0.0, 900.0, 0.0, True, None, b"", 0.0, 0.0)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
server = HealthServer(("127.0.0.1", int(sys.argv[1])), lambda: snap)
print("ready", flush=True)
sys.stdin.read()
server.close()
"""


def test_idle_connections_under_a_64_descriptor_limit() -> None:
    """The measured failure: a listener in a process limited to 64 descriptors,
    with 64 idle connections open to it, still answers /healthz at once."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE_WITH_64_DESCRIPTORS, str(port)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for _ in range(64):
            socks.append(socket.create_connection(("127.0.0.1", port), 2))
        time.sleep(0.2)
        for _ in range(3):
            started = time.monotonic()
            resp = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert (resp.status_code, resp.text) == (200, "ok\n")
            assert time.monotonic() - started < 1.0
    finally:
        for sock in socks:
            sock.close()
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()


def test_idle_connection_is_closed_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, listener: HealthServer
) -> None:
    """A connection that sends nothing is closed after CONNECTION_TIMEOUT_S."""
    monkeypatch.setattr(health, "CONNECTION_TIMEOUT_S", 0.3)
    with socket.create_connection(("127.0.0.1", listener.port), 2) as sock:
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < 2.0


def test_full_listener_closes_new_connections_at_once(listener: HealthServer) -> None:
    """When every held connection is busy (16 clients sending a request slowly), a
    new connection is closed at once, not queued; once they go, probes are served."""
    slow: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", listener.port), 2)
            sock.sendall(b"GET /healthz HTTP/1.0\r\n")  # never finished
            slow.append(sock)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", listener.port), 2) as extra:
            extra.settimeout(1.0)
            started = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert extra.recv(1) == b""
            assert time.monotonic() - started < 1.0
    finally:
        for sock in slow:
            sock.close()
    deadline = time.monotonic() + 3
    while True:
        try:
            resp = requests.get(f"http://127.0.0.1:{listener.port}/healthz", timeout=2)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert resp.status_code == 200


# -- the running service --------------------------------------------------------------


def test_listener_in_the_running_service(tmp_path: Path, vm: VictoriaMetrics) -> None:
    """The service's listener is 200 from start (grace), 200 `ok` after a cycle, and
    503 once cycles have failed for longer than 3 intervals; /livez stays 200 all
    along; /metrics carries the instance label."""
    port = free_port()
    with FakeOpenAI(page_size=4) as fake:
        fake.add_project("proj_1", "One")
        env = {
            "OPENAI_ADMIN_KEY": fake.admin_key,
            "OPENAI_BASE_URL": fake.base_url,
            "VM_PUSH_URL": vm.push_url,
            "LISTEN": f"127.0.0.1:{port}",
            "RETRY_BUDGET": "1s",
            "INSTANCE": "test-pusher",
        }
        fake.inject(Fault.hang(2), path_prefix="/v1/organization/projects")
        with running_cli(["--interval", "1s"], tmp_path, env) as proc:
            base = f"http://127.0.0.1:{port}"
            answers: list[tuple[int, str]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (200, "ok\n") not in answers:
                assert proc.poll() is None, "the pusher exited"
                try:
                    resp = requests.get(base + "/healthz", timeout=2)
                except requests.ConnectionError:
                    time.sleep(0.05)
                    continue
                answers.append((resp.status_code, resp.text))
                time.sleep(0.1)
            assert answers, "the listener never answered"
            assert answers[0][0] == 200
            assert answers[0][1].startswith("starting: no cycle has finished yet (")
            assert (200, "ok\n") in answers
            fake.inject(Fault.unauthorized(), times=100)
            deadline = time.monotonic() + 20
            resp = requests.get(base + "/healthz", timeout=2)
            while time.monotonic() < deadline and resp.status_code == 200:
                time.sleep(0.1)
                resp = requests.get(base + "/healthz", timeout=2)
            assert resp.status_code == 503
            assert resp.text.startswith("stale: last success ")
            assert "admin key rejected" in resp.text
            assert fake.admin_key not in resp.text
            live = requests.get(base + "/livez", timeout=2)
            assert live.status_code == 200
            metrics = requests.get(base + "/metrics", timeout=2).text
            assert (
                'openai_cost_pusher_cycles_total{instance="test-pusher",'
                'job="openai-cost-pusher",result="failure"}'
            ) in metrics
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_healthz_names_unconfirmed_values_and_withheld_days() -> None:
    """What waits for the store's confirmation and which days are withheld show in
    the body, without changing the status."""
    notes = (
        "costs: 12 values not yet confirmed by the store",
        "withheld 2026-11-16: malformed /organization/costs at data[3].results[0]",
    )
    code, body = health_status(_snap(notes=notes))
    assert code == 200
    assert body.startswith("ok: last success 60s ago; costs: 12 values not yet")
    assert "withheld 2026-11-16" in body
    stale = _snap(notes=notes, last_success=NOW - 4 * INTERVAL)
    assert health_status(stale)[0] == 503
