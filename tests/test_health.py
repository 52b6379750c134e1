"""The health listener through a real HTTP client, in each state it can be in."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from openai_cost_pusher.health import HealthServer, HealthSnapshot, health_status
from tests.fake_openai import FakeOpenAI, Fault
from tests.procs import free_port
from tests.test_cli import running_cli
from tests.vm import VictoriaMetrics

NOW = 1_800_000_000.0


def _snap(**changes: object) -> HealthSnapshot:
    fields: dict[str, object] = {
        "now": NOW,
        "interval_s": 900.0,
        "last_success": NOW - 60,
        "last_ok": True,
        "last_error": None,
        "metrics": b"openai_cost_pusher_build_info 1.0\n",
    }
    fields.update(changes)
    return HealthSnapshot(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("snap", "code", "reason"),
    [
        (_snap(last_ok=None, last_success=None), 503, "no cycle has finished yet"),
        (_snap(), 200, "ok"),
        (_snap(last_success=NOW - 3 * 900 + 1), 200, "ok"),
        (_snap(last_success=NOW - 3 * 900 - 1), 503, "stale: last success 2701s ago"),
        (
            _snap(last_ok=False, last_error="GET /organization/costs: HTTP 500"),
            503,
            "last cycle failed: GET /organization/costs: HTTP 500",
        ),
    ],
)
def test_health_status_rule(snap: HealthSnapshot, code: int, reason: str) -> None:
    """The status is 200 only after a recent successful cycle."""
    assert health_status(snap) == (code, reason)


@pytest.fixture(name="served")
def served_fixture() -> Iterator[tuple[HealthServer, list[HealthSnapshot]]]:
    """Serve a snapshot the test replaces at will."""
    current = [_snap(last_ok=None, last_success=None)]
    server = HealthServer(("127.0.0.1", 0), lambda: current[0])
    try:
        yield server, current
    finally:
        server.close()


@pytest.mark.parametrize(
    ("snap", "code", "text"),
    [
        (_snap(last_ok=None, last_success=None), 503, "no cycle has finished yet\n"),
        (_snap(), 200, "ok\n"),
        (_snap(last_success=NOW - 10_000), 503, "stale: last success 10000s ago\n"),
        (
            _snap(last_ok=False, last_error="push to VictoriaMetrics: HTTP 503"),
            503,
            "last cycle failed: push to VictoriaMetrics: HTTP 503\n",
        ),
    ],
)
def test_healthz_over_http(
    served: tuple[HealthServer, list[HealthSnapshot]],
    snap: HealthSnapshot,
    code: int,
    text: str,
) -> None:
    """/healthz answers each state with its status code and reason."""
    server, current = served
    current[0] = snap
    resp = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
    assert (resp.status_code, resp.text) == (code, text)


def test_metrics_and_unknown_paths(
    served: tuple[HealthServer, list[HealthSnapshot]],
) -> None:
    """/metrics serves the snapshot's exposition; other paths are 404."""
    server, _ = served
    base = f"http://127.0.0.1:{server.port}"
    resp = requests.get(base + "/metrics", timeout=5)
    assert resp.status_code == 200
    assert resp.text == "openai_cost_pusher_build_info 1.0\n"
    assert requests.get(base + "/nope", timeout=5).status_code == 404


def test_listener_in_the_running_service(tmp_path: Path, vm: VictoriaMetrics) -> None:
    """The service's listener turns healthy after a cycle, and 503 when cycles fail."""
    port = free_port()
    with FakeOpenAI(page_size=4) as fake:
        fake.add_project("proj_1", "One")
        env = {
            "OPENAI_ADMIN_KEY": fake.admin_key,
            "OPENAI_BASE_URL": fake.base_url,
            "VM_PUSH_URL": vm.push_url,
            "LISTEN": f"127.0.0.1:{port}",
            "RETRY_BUDGET": "1s",
        }
        fake.inject(Fault.hang(3), path_prefix="/v1/organization/projects")
        with running_cli(["--interval", "1s"], tmp_path, env) as proc:
            url = f"http://127.0.0.1:{port}/healthz"
            answers: list[tuple[int, str]] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (200, "ok\n") not in answers:
                try:
                    resp = requests.get(url, timeout=2)
                except requests.ConnectionError:
                    time.sleep(0.05)
                    continue
                answers.append((resp.status_code, resp.text))
                time.sleep(0.1)
            assert answers[0] == (503, "no cycle has finished yet\n")
            assert (200, "ok\n") in answers
            fake.inject(Fault.unauthorized(), times=100)
            deadline = time.monotonic() + 20
            resp = requests.get(url, timeout=2)
            while time.monotonic() < deadline and resp.status_code == 200:
                time.sleep(0.1)
                resp = requests.get(url, timeout=2)
            assert resp.status_code == 503
            assert "admin key rejected" in resp.text
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            assert (
                'openai_cost_pusher_cycles_total{job="openai-cost-pusher",' in metrics
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
