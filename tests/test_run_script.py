"""`scripts/run.sh`, the README's run command, as a new user runs it.

With no admin key and nothing listening, it starts a local VictoriaMetrics with its
data in a folder it keeps, pushes the demo there, prints the spend report, and stops
the server again; a later run reuses the data. With a push URL configured, or
something answering at the local address, it starts nothing. Each run is bounded.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.procs import ROOT, free_port
from tests.vm import VictoriaMetrics

pytestmark = pytest.mark.slow

RUN = ROOT / "scripts" / "run.sh"
DEMO_PROJECTS = (
    "customer_chat",
    "search_retrieval",
    "assistant_test_eval",
    "ünïcode_проект",
    "unattributed",
)
STARTED = re.compile(r"started a local VictoriaMetrics at \S+ \(process (\d+)\)")


def _env(port: int, data: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "VM_")) and k != "BACKFILL_DAYS"
    }
    env.update(LOCAL_VM_PORT=str(port), LOCAL_VM_DATA=str(data), **extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if (ROOT / ".env").exists():
        pytest.skip("a .env in the checkout would configure the run")
    return subprocess.run(
        ["bash", str(RUN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is a process that has ended
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _started_pid(stderr: str) -> int:
    match = STARTED.search(stderr)
    assert match, stderr
    return int(match.group(1))


def test_demo_once_starts_a_local_store_shows_the_report_and_stops_it(
    tmp_path: Path,
) -> None:
    """`scripts/run.sh --once` without a key: the demo month lands in a local
    VictoriaMetrics whose data stays; the report shows each demo project; the
    server is gone afterwards; a second run and `report` reuse the data."""
    port, data = free_port(), tmp_path / "vm"
    env = _env(port, data)
    first = _run(["--once"], env)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) + len(first.stderr.splitlines()) < 100
    assert "using the demo organization" in first.stderr
    assert "result=success" in first.stderr
    for project in DEMO_PROJECTS:
        assert project in first.stdout
    assert not _alive(_started_pid(first.stderr))
    assert (data / "data").is_dir()

    second = _run(["--once"], env)
    assert second.returncode == 0, second.stderr
    assert not _alive(_started_pid(second.stderr))

    report = _run(["report", "--days", "30", "--format", "csv"], env)
    assert report.returncode == 0, report.stderr
    assert not _alive(_started_pid(report.stderr))
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    days = {row["day"] for row in rows}
    assert len(days) == 31  # the backfill: 30 complete days and today
    assert {row["project"] for row in rows} >= set(DEMO_PROJECTS)

    verify = _run(["verify", "--days", "30"], env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_configured_push_url_or_a_server_at_the_local_port_starts_nothing(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    """A port-forward at the local address, or VM_PUSH_URL, is used as it is."""
    answering = _run(["--once"], _env(vm.port, tmp_path / "unused"))
    assert answering.returncode == 0, answering.stderr
    assert "answers at" in answering.stderr
    assert not STARTED.search(answering.stderr)
    configured = _run(
        ["--once"], _env(free_port(), tmp_path / "unused", VM_PUSH_URL=vm.push_url)
    )
    assert configured.returncode == 0, configured.stderr
    assert "starting no VictoriaMetrics" in configured.stderr
    assert not STARTED.search(configured.stderr)
    assert not (tmp_path / "unused").exists()


def test_sigterm_stops_the_pusher_and_the_local_store(tmp_path: Path) -> None:
    """The looping pusher stops on SIGTERM to the script, and so does the server it
    started; the script exits 0."""
    if (ROOT / ".env").exists():
        pytest.skip("a .env in the checkout would configure the run")
    env = _env(free_port(), tmp_path / "vm")
    err_path = tmp_path / "stderr"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            ["bash", str(RUN)], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            deadline = time.monotonic() + 180
            while "result=success" not in err_path.read_text():
                assert proc.poll() is None, err_path.read_text()
                assert time.monotonic() < deadline, err_path.read_text()
                time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    stderr = err_path.read_text()
    assert not _alive(_started_pid(stderr))
