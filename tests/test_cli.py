"""The command line as a user runs it: a real process, real servers, real signals.

Each test starts `python -m openai_cost_pusher` in a clean environment and a temporary
working directory (so no `.env` of the repository leaks in), against the fake Admin API
and a real VictoriaMetrics.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.fake_openai import FakeOpenAI, Fault
from tests.orgs import DAY, assert_equal_costs, fake_costs, seed_odd_org, vm_costs
from tests.procs import free_port
from tests.vm import VictoriaMetrics

KEY = "sk-admin-FAKE-key-0123456789"


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    env.update(extra or {})
    return env


def run_cli(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the command to completion and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "openai_cost_pusher", *args],
        cwd=cwd,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def running_cli(
    args: list[str], cwd: Path, env: Mapping[str, str]
) -> Iterator[subprocess.Popen[str]]:
    """Start the command in the background; kill it by pid and close its pipes after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "openai_cost_pusher", *args],
        cwd=cwd,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def _real_env(fake: FakeOpenAI, push_url: str, **more: str) -> dict[str, str]:
    return {
        "OPENAI_ADMIN_KEY": fake.admin_key,
        "OPENAI_BASE_URL": fake.base_url,
        "VM_PUSH_URL": push_url,
        "RETRY_BUDGET": "10s",
        "HTTP_TIMEOUT": "5s",
        **more,
    }


@pytest.fixture(name="live_fake")
def live_fake_fixture() -> Iterator[FakeOpenAI]:
    """Return a fake on the real clock, as a separate process would see it."""
    with FakeOpenAI(page_size=4) as fake:
        yield fake


def _samples(text: str, name: str) -> list[Sample]:
    """Return every sample of `name` parsed from exposition text."""
    return [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def _today() -> int:
    return int(time.time()) // DAY * DAY


def test_help_exits_zero_and_names_every_setting(tmp_path: Path) -> None:
    """`--help` exits 0 and names every environment variable of the settings table."""
    from openai_cost_pusher.config import OPTIONS

    result = run_cli(["--help"], tmp_path)
    assert result.returncode == 0
    for option in OPTIONS:
        assert option.env in result.stdout


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PUSH_INTERVAL": "15x"}, ["PUSH_INTERVAL: expected a duration like 30s"]),
        ({"VM_PUSH_URL": "localhost:8428"}, ["VM_PUSH_URL: expected an http"]),
        ({"OPENAI_BASE_URL": "http://u:p@host/v1"}, ["OPENAI_BASE_URL: credentials"]),
        (
            {"LOOKBACK_DAYS": "x", "LOG_FORMAT": "xml"},
            ["LOOKBACK_DAYS: expected a whole number", "LOG_FORMAT: expected one of"],
        ),
        (
            {"OPENAI_ADMIN_KEY_FILE": "/nonexistent/key"},
            ["OPENAI_ADMIN_KEY_FILE: cannot read"],
        ),
        ({"EXTRA_LABELS": "project=x"}, ["EXTRA_LABELS: 'project' is a label"]),
    ],
)
def test_bad_settings_exit_2_with_one_line_each_before_any_call(
    tmp_path: Path, live_fake: FakeOpenAI, env: dict[str, str], expected: list[str]
) -> None:
    """Invalid settings print one line each, exit 2, and make no network call."""
    full = {"OPENAI_ADMIN_KEY": KEY, "OPENAI_BASE_URL": live_fake.base_url, **env}
    if "OPENAI_ADMIN_KEY_FILE" in env:
        del full["OPENAI_ADMIN_KEY"]
    result = run_cli(["--once"], tmp_path, full)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(expected), result.stderr
    for line, text in zip(lines, expected, strict=True):
        assert line.startswith("openai-cost-pusher: error: " + text), line
    assert "Traceback" not in result.stderr
    assert live_fake.requests == []


def test_missing_key_exits_2_and_suggests_demo(tmp_path: Path) -> None:
    """Without a key and without --demo the command refuses to run."""
    result = run_cli(["--once"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    for word in ("OPENAI_ADMIN_KEY", "OPENAI_ADMIN_KEY_FILE", "--demo"):
        assert word in result.stderr


def test_settings_come_from_dotenv_below_environment(
    tmp_path: Path, live_fake: FakeOpenAI
) -> None:
    """A .env file supplies settings; the environment and flags win over it."""
    (tmp_path / ".env").write_text("PUSH_INTERVAL=oops\nLOOKBACK_DAYS=nope\n")
    result = run_cli(
        ["--once"], tmp_path, {"OPENAI_ADMIN_KEY": KEY, "LOOKBACK_DAYS": "2"}
    )
    assert result.returncode == 2
    assert "PUSH_INTERVAL: expected a duration" in result.stderr
    assert "LOOKBACK_DAYS" not in result.stderr
    result = run_cli(
        ["--once", "--interval", "1m", "--lookback-days", "x"],
        tmp_path,
        {"OPENAI_ADMIN_KEY": KEY},
    )
    assert "PUSH_INTERVAL" not in result.stderr
    assert "LOOKBACK_DAYS: expected a whole number" in result.stderr


def test_once_lands_exact_data_and_a_restart_changes_nothing(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """Two processes in a row store every day exactly once with the API's values."""
    seed_odd_org(live_fake, _today())
    live_fake.inject(Fault.rate_limited(retry_after=1), path_prefix="/v1/organization")
    live_fake.inject(Fault.server_error(), path_prefix="/v1/organization/costs")
    env = _real_env(live_fake, vm.push_url)
    first = run_cli(["--once"], tmp_path, env)
    assert first.returncode == 0, first.stderr
    expected = fake_costs(live_fake, _today() - 30 * DAY, _today() + DAY)
    assert_equal_costs(expected, vm_costs(vm))
    second = run_cli(["--once", "--log-format", "json"], tmp_path, env)
    assert second.returncode == 0, second.stderr
    assert_equal_costs(expected, vm_costs(vm))
    rows = vm.query(
        "max(count_over_time(openai_daily_cost[1d]))", at=_today() + DAY - 1
    )
    assert rows[0]["value"][1] == "1"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault.unauthorized(), "admin key rejected (HTTP 401)"),
        (Fault.malformed(), "GET /organization/projects: the answer is not valid JSON"),
        (
            Fault.wrong_shape({"object": "list", "data": "nope", "has_more": False}),
            "GET /organization/projects.data: expected an array",
        ),
        (Fault(status=404), "GET /organization/projects: HTTP 404"),
    ],
)
def test_api_failures_end_once_with_exit_1_and_one_clear_line(
    tmp_path: Path,
    live_fake: FakeOpenAI,
    vm: VictoriaMetrics,
    fault: Fault,
    message: str,
) -> None:
    """Rejected keys, bad JSON and wrong shapes fail the cycle with a one-line error."""
    live_fake.inject(fault, path_prefix="/v1/organization/projects", times=10)
    result = run_cli(["--once"], tmp_path, _real_env(live_fake, vm.push_url))
    assert result.returncode == 1
    errors = [ln for ln in result.stderr.splitlines() if "level=error" in ln]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert "Traceback" not in result.stderr
    assert len(live_fake.requests_to("/organization/projects")) == 1  # no retry
    assert vm.export('{__name__="openai_daily_cost"}') == []


def test_push_rejected_logs_the_server_message(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """A 4xx from VictoriaMetrics is not retried and its message is shown trimmed."""
    seed_odd_org(live_fake, _today(), days_back=2)
    bad_url = vm.url + "/nope"
    result = run_cli(["--once"], tmp_path, _real_env(live_fake, bad_url))
    assert result.returncode == 1
    assert "push to VictoriaMetrics: HTTP 400" in result.stderr
    assert "unsupported path" in result.stderr
    assert "retrying" not in result.stderr


def test_push_unavailable_retries_then_fails(
    tmp_path: Path, live_fake: FakeOpenAI
) -> None:
    """Connection refused by VictoriaMetrics is retried, then the run exits 1."""
    seed_odd_org(live_fake, _today(), days_back=2)
    url = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"
    started = time.monotonic()
    result = run_cli(["--once"], tmp_path, _real_env(live_fake, url, RETRY_BUDGET="3s"))
    assert result.returncode == 1
    assert "retrying: push to VictoriaMetrics: cannot connect" in result.stderr
    assert "cannot connect (connection refused)" in result.stderr
    assert time.monotonic() - started < 30


def _wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_a_request_hangs_exits_0_within_5_seconds(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics, sig: signal.Signals
) -> None:
    """SIGTERM or Ctrl+C during a hanging request stops the process cleanly, fast."""
    live_fake.inject(Fault.hang(60), path_prefix="/v1/organization/projects")
    env = _real_env(live_fake, vm.push_url, HTTP_TIMEOUT="60s")
    with running_cli([], tmp_path, env) as proc:
        _wait_for(lambda: live_fake.requests_to("/organization/projects"), 15)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5


def test_sigterm_during_backoff_exits_0_quickly(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """A stop during a long Retry-After wait ends the process without another call."""
    live_fake.inject(Fault.rate_limited(retry_after=50), path_prefix="/v1/organization")
    env = _real_env(live_fake, vm.push_url, RETRY_BUDGET="120s")
    with running_cli([], tmp_path, env) as proc:
        _wait_for(lambda: live_fake.requests_to("/organization/projects"), 15)
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert len(live_fake.requests_to("/organization/projects")) == 1


def test_loop_runs_cycles_on_schedule_until_stopped(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """The service runs a cycle at start and then every interval until SIGTERM."""
    seed_odd_org(live_fake, _today(), days_back=3)
    env = _real_env(live_fake, vm.push_url)
    with running_cli(["--interval", "1s"], tmp_path, env) as proc:
        _wait_for(lambda: len(live_fake.requests_to("/organization/projects")) >= 3, 20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        _out, err = proc.communicate(timeout=10)
    assert err.count('msg="cycle done"') >= 2  # the third may be cut by the stop
    rows = vm.query(
        'last_over_time(openai_cost_pusher_cycles_total{result="success"}[1h])'
    )
    assert float(rows[0]["value"][1]) >= 2


def test_admin_key_never_appears_in_output(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """At debug level, through failures and retries, the key is never printed."""
    seed_odd_org(live_fake, _today(), days_back=2)
    for fault in (Fault.rate_limited(1), Fault.server_error(), Fault.malformed()):
        live_fake.inject(fault, path_prefix="/v1/organization/costs")
    outputs = []
    for fmt in ("text", "json"):
        result = run_cli(
            ["--once"],
            tmp_path,
            _real_env(live_fake, vm.push_url, LOG_LEVEL="debug", LOG_FORMAT=fmt),
        )
        outputs.append(result.stdout + result.stderr)
    live_fake.inject(Fault.unauthorized(), times=5)
    result = run_cli(
        ["--once", "--dry-run"],
        tmp_path,
        _real_env(live_fake, vm.push_url, LOG_LEVEL="debug"),
    )
    outputs.append(result.stdout + result.stderr)
    joined = "\n".join(outputs)
    assert "level=debug" in joined
    assert live_fake.admin_key not in joined
    assert live_fake.admin_key[-8:] not in joined
    exported = vm.export()
    assert all(live_fake.admin_key not in str(s.metric) for s in exported)


def test_dry_run_prints_parseable_exposition(
    tmp_path: Path, live_fake: FakeOpenAI
) -> None:
    """--dry-run writes the exposition to stdout and pushes nothing."""
    seed_odd_org(live_fake, _today(), days_back=5)
    result = run_cli(
        ["--once", "--dry-run"],
        tmp_path,
        _real_env(
            live_fake, f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"
        ),
    )
    assert result.returncode == 0, result.stderr
    daily = _samples(result.stdout, "openai_daily_cost")
    assert len(daily) == len(fake_costs(live_fake, _today() - 30 * DAY, _today() + DAY))
    projects = {s.labels["project"] for s in daily}
    assert {"quote_q_back_slash", "ünïcode_проект", "unattributed"} <= projects


def test_demo_without_victoriametrics_shows_the_report_not_exposition(
    tmp_path: Path,
) -> None:
    """--demo with nothing at the push URL says so once, logs no success, and shows
    the spend report of what it would have stored, never raw exposition."""
    url = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"
    result = run_cli(["--demo", "--once", "--push-url", url], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "DEMO MODE: simulated organization" in result.stderr
    assert result.stderr.count("nothing answers at the push URL") == 1
    assert "result=success" not in result.stderr
    assert "result=not_stored" in result.stderr
    assert 'where="nothing answered"' in result.stderr
    assert "openai_daily_cost{" not in result.stdout
    for project in ("customer_chat", "search_retrieval", "ünïcode_проект"):
        assert project in result.stdout
    assert len(result.stdout.splitlines()) + len(result.stderr.splitlines()) < 100


def test_show_report_after_the_first_stored_cycle(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    """--show-report prints the report read back from VictoriaMetrics, with the
    cycle's summary saying where the data went."""
    result = run_cli(
        ["--demo", "--once", "--show-report", "--push-url", vm.push_url], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "result=success" in result.stderr
    assert "where=stored" in result.stderr
    assert "customer_chat" in result.stdout
    assert all(len(line) <= 100 for line in result.stdout.splitlines())


def test_demo_lands_in_victoriametrics_marked_as_demo(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    """--demo pushes a month of simulated data, every sample labelled demo="true"."""
    result = run_cli(["--demo", "--once", "--push-url", vm.push_url], tmp_path)
    assert result.returncode == 0, result.stderr
    series = vm.export('{__name__=~"openai_.*"}')
    assert series and all(s.metric.get("demo") == "true" for s in series)
    days = {
        ts
        for s in series
        if s.metric["__name__"] == "openai_daily_cost"
        for ts in s.timestamps
    }
    assert len(days) == 31  # 30 complete days and today
    assert "nothing answers" not in result.stderr


def test_demo_loop_stops_cleanly_on_ctrl_c(tmp_path: Path, vm: VictoriaMetrics) -> None:
    """The demo service loop stops on SIGINT with exit 0."""
    with running_cli(["--demo", "--push-url", vm.push_url], tmp_path, {}) as proc:
        _wait_for(lambda: bool(vm.export('{__name__="openai_daily_cost"}')), 20)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
