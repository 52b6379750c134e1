"""The demo never writes beside real data: `--demo` checks VictoriaMetrics first.

Before its first push, `openai-cost-pusher --demo` asks where the push URL's data is
read (`VmReader.has_series`, `/api/v1/series`) whether any openai_daily_cost series
without demo="true" exists, and refuses with exit 2 when one does. These tests run the
command in-process (`cli.main`) against a real VictoriaMetrics.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from openai_cost_pusher import cli, clients, demo_guard
from openai_cost_pusher.config import OPTIONS, SECRET_FILE_SUFFIX
from openai_cost_pusher.errors import PushRejected, PushUnavailable
from openai_cost_pusher.push import UNANSWERED, PushStats
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from openai_cost_pusher.vmread import VmReader
from tests.cost_histories import push_text
from tests.procs import free_port
from tests.vm import VictoriaMetrics, VmAgent

DAY_S = 86_400
REAL = 'openai_daily_cost{demo!="true"}'


def _cost_line(days_ago: int, *, demo: bool) -> str:
    """Return one openai_daily_cost sample `days_ago` UTC days before today."""
    day = (int(time.time()) // DAY_S - days_ago) * DAY_S
    labels = 'project_id="proj_a",project="alpha",line_item="gpt-4o",currency="usd"'
    if demo:
        labels += ',demo="true"'
    return f"openai_daily_cost{{{labels}}} 12.5 {day * 1000}\n"


def _reader(root: str) -> VmReader:
    stop = threading.Event()
    return VmReader(
        make_session(),
        root,
        authorization=None,
        timeouts=Timeouts.from_read(5),
        stop=stop,
        retrying=lambda: retry_policy(1.0, stop),
    )


def _has_real(reader: VmReader) -> bool:
    now_ms = int(time.time() * 1000)
    return reader.has_series(REAL, now_ms - 400 * DAY_S * 1000, now_ms)


@pytest.mark.vm
def test_has_series_tells_real_costs_from_demo_costs(vm: VictoriaMetrics) -> None:
    """Empty, then demo data only: no real series; a real day 300 days ago: found."""
    reader = _reader(vm.url)
    assert not _has_real(reader)
    push_text(vm.push_url, _cost_line(0, demo=True) + _cost_line(1, demo=True))
    vm.flush()
    assert not _has_real(reader)
    push_text(vm.push_url, _cost_line(300, demo=False))
    vm.flush()
    assert _has_real(reader)


@pytest.mark.vm
def test_has_series_raises_when_refused_or_unanswered(vm: VictoriaMetrics) -> None:
    """A path that serves no series API is refused; a closed port is unavailable."""
    with pytest.raises(PushRejected, match="HTTP 4"):
        _has_real(_reader(vm.url + "/no/such/prefix"))
    with pytest.raises(PushUnavailable):
        _has_real(_reader(f"http://127.0.0.1:{free_port()}"))


@pytest.fixture(name="main")
def main_fixture(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[list[str]], int]]:
    """Return `cli.main` run in a clean environment and folder (no `.env` leaks in);
    the logging and signal handlers it installs are put back afterwards."""
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
        monkeypatch.delenv(option.env + SECRET_FILE_SUFFIX, raising=False)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield cli.main
    root.handlers[:] = handlers
    root.setLevel(level)
    for signum, handler in signals.items():
        signal.signal(signum, handler)


@pytest.mark.vm
def test_demo_refuses_a_victoriametrics_holding_real_costs(
    vm: VictoriaMetrics,
    main: Callable[[list[str]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a real cost series stored, `--demo --once` exits 2 with one line on stderr
    and pushes nothing: no demo="true" sample lands."""
    push_text(vm.push_url, _cost_line(2, demo=False))
    vm.flush()
    code = main(["--demo", "--once", "--push-url", vm.push_url])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("openai-cost-pusher: error: http://127.0.0.1:")
    assert "holds real openai_daily_cost series" in lines[0]
    assert "never writes beside real data" in lines[0] and "--dry-run" in lines[0]
    assert captured.out == ""
    vm.flush()
    assert vm.export('{demo="true"}') == []
    assert len(vm.export('{__name__=~".+"}')) == 1


@pytest.mark.vm
def test_demo_runs_where_only_demo_data_is_stored(
    vm: VictoriaMetrics, main: Callable[[list[str]], int]
) -> None:
    """Demo data alone is no reason to refuse: a second demo run pushes again."""
    push_text(vm.push_url, _cost_line(1, demo=True))
    vm.flush()
    assert main(["--demo", "--once", "--push-url", vm.push_url]) == 0
    vm.flush()
    series = vm.export('{__name__="openai_daily_cost"}')
    assert len(series) > 1
    assert all(s.metric.get("demo") == "true" for s in series)


@pytest.mark.vm
def test_demo_dry_run_asks_nothing(
    vm: VictoriaMetrics,
    main: Callable[[list[str]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--dry-run` pushes nothing, so real data there does not stop it."""
    push_text(vm.push_url, _cost_line(2, demo=False))
    vm.flush()
    assert main(["--demo", "--once", "--dry-run", "--push-url", vm.push_url]) == 0
    assert 'demo="true"' in capsys.readouterr().out
    assert vm.export('{demo="true"}') == []


@pytest.mark.vm
def test_demo_behind_vmagent_refuses_unless_told_where_to_read(
    vm: VictoriaMetrics,
    main: Callable[[list[str]], int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """vmagent accepts pushes but cannot be asked what is stored: the demo refuses
    until VM_QUERY_URL names the VictoriaMetrics behind it, then checks that one."""
    agent = VmAgent(tmp_path, vm)
    try:
        code = main(["--demo", "--once", "--push-url", agent.push_url])
        err = capsys.readouterr().err
        assert code == 2, err
        assert len(err.splitlines()) == 1, err
        assert "cannot tell whether" in err and "VM_QUERY_URL" in err
        push_text(vm.push_url, _cost_line(2, demo=False))
        vm.flush()
        args = ["--demo", "--once", "--push-url", agent.push_url]
        assert main([*args, "--query-url", vm.url]) == 2
        assert "holds real openai_daily_cost series" in capsys.readouterr().err
        vm.flush()
        assert vm.export('{demo="true"}') == []
    finally:
        agent.stop()


class _Recorder:
    """A push client that records what it was asked to push."""

    def __init__(self) -> None:
        self.pushed: list[bytes] = []

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        self.pushed += list(chunks)
        return PushStats(requests=1)


def test_a_demo_started_before_its_server_checks_before_the_first_push() -> None:
    """While nothing answered the check, every push asks again first: a server that
    comes up holding real data is refused and gets nothing; one that comes up
    empty is checked once, then pushed to."""
    answers: list[str | Exception | None] = [
        PushUnavailable("nothing answers"),
        "holds real openai_daily_cost series",
        None,
    ]

    def guard() -> str | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = _Recorder()
    url = "http://vm/api/v1/import/prometheus"
    sink = demo_guard.DemoSink(client, url, guard)  # type: ignore[arg-type]
    assert sink.push([b"a"]).where == UNANSWERED
    sink._down_since = None  # the next cycle, a minute later
    with pytest.raises(PushRejected, match="holds real"):
        sink.push([b"b"])
    assert client.pushed == []
    assert sink.push([b"c"]).where == "stored"
    assert sink.push([b"d"]).where == "stored"  # checked once: no more answers asked
    assert client.pushed == [b"c", b"d"]


@pytest.mark.vm
@pytest.mark.parametrize("real", [False, True])
def test_the_guard_closes_its_reader_whatever_it_finds(
    vm: VictoriaMetrics,
    main: Callable[[list[str]], int],
    monkeypatch: pytest.MonkeyPatch,
    real: bool,
) -> None:
    """The reader the demo's question takes is closed once answered, whether the
    answer lets the demo push or refuses it: no connection pool is left behind."""
    if real:
        push_text(vm.push_url, _cost_line(2, demo=False))
        vm.flush()
    made: list[VmReader] = []
    closed: list[VmReader] = []
    real_reader = clients.vm_reader

    def reader(*args: object) -> VmReader:
        made.append(real_reader(*args))  # type: ignore[arg-type]
        session_close = made[-1]._session.close

        def close() -> None:
            closed.append(made[-1])
            session_close()

        monkeypatch.setattr(made[-1]._session, "close", close)
        return made[-1]

    monkeypatch.setattr(demo_guard, "vm_reader", reader)
    assert main(["--demo", "--once", "--push-url", vm.push_url]) == (2 if real else 0)
    guards = [r for r in made if r in closed]
    assert guards, "the guard's reader was never closed"
