"""Real vmalert and Alertmanager processes for tests, and the alert back-test.

Built on `procs.py` (process lifetime) and `vm.py` (VictoriaMetrics). Everything
listens on 127.0.0.1 and a free port, and is stopped by its process id. The back-test
replays the shipped rules over the seeded histories of `cost_histories.py` with
vmalert's replay mode and reads the ALERTS series back; `scripts/backtest-alerts.py`
prints its table and `docs/alerting.md` shows it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

import requests
import yaml

from tests.cost_histories import (
    SCENARIOS,
    CostLine,
    Scenario,
    new_project,
    push_text,
    render_cost_today,
    render_costs,
    render_self_monitoring,
    render_spend_limits,
    tiny,
    week_then_spike,
)
from tests.fake_slack import FakeSlackServer
from tests.procs import ROOT, ServerProcess, binary, free_port
from tests.vm import VictoriaMetrics

RULES = ROOT / "deploy" / "vmalert" / "openai-cost-rules.yml"
OVERRIDES = ROOT / "deploy" / "vmalert" / "openai-cost-overrides.yml"
DEMO_SWITCH = ROOT / "deploy" / "vmalert" / "openai-cost-demo.yml"
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
AM_TEMPLATE = ROOT / "deploy" / "alertmanager" / "openai-cost.tmpl"

# The back-test covers March 2025: 30 days of history ending on Monday the 31st.
BACKTEST_LAST_DAY = date(2025, 3, 31)
# Evaluations run hourly at half past, from Mar 2 00:30 to Mar 31 23:30 UTC.
BACKTEST_FROM = datetime(2025, 3, 2, 0, 30, tzinfo=UTC)
BACKTEST_TO = datetime(2025, 3, 31, 23, 30, tzinfo=UTC)


class VmAlert:
    """A vmalert evaluating rule files against one VictoriaMetrics."""

    def __init__(
        self,
        workdir: Path,
        vm: VictoriaMetrics,
        rule_files: Sequence[Path],
        *,
        notifier_url: str,
        evaluation_interval: str = "2s",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            binary("vmalert"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-datasource.url={vm.url}",
            f"-remoteWrite.url={vm.url}",
            "-remoteWrite.flushInterval=200ms",
            f"-notifier.url={notifier_url}",
            f"-evaluationInterval={evaluation_interval}",
            "-rule.evalDelay=0s",
            "-loggerLevel=WARN",
            *(f"-rule={path}" for path in rule_files),
        ]
        self.process = ServerProcess(
            "vmalert", args, workdir / f"vmalert-{self.port}.log"
        )
        self.process.wait_http(f"{self.url}/health")

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts vmalert holds (pending and firing)."""
        resp = requests.get(f"{self.url}/api/v1/alerts", timeout=10)
        resp.raise_for_status()
        alerts: list[dict[str, Any]] = resp.json()["data"]["alerts"]
        return alerts

    def stop(self) -> None:
        """Stop vmalert by its process id."""
        self.process.stop()


# Debian's alertmanager loads its default templates (default.tmpl, email.tmpl)
# from this fixed folder.
AM_DEFAULT_TEMPLATES = Path("/usr/share/prometheus/alertmanager")


def require_alertmanager_default_template() -> None:
    """Fail with the fix when Debian's alertmanager cannot find its templates.

    The package unpacked by scripts/fetch-victoriametrics.sh holds the files, but
    the binary only reads them from /usr/share (an installed package has them there).
    """
    cached = ROOT / ".cache/vm/root" / AM_DEFAULT_TEMPLATES.relative_to("/")
    missing = [
        p.name
        for p in sorted(cached.glob("*.tmpl")) or [cached / "default.tmpl"]
        if not (AM_DEFAULT_TEMPLATES / p.name).exists()
    ]
    if missing:
        msg = (
            f"{AM_DEFAULT_TEMPLATES} lacks {', '.join(missing)} and Debian's "
            "alertmanager refuses to start without them: run `sudo install -D -m 0644 "
            f"-t {AM_DEFAULT_TEMPLATES} {cached}/*.tmpl` (or apt-get install "
            "prometheus-alertmanager)"
        )
        raise RuntimeError(msg)


class Alertmanager:
    """An Alertmanager with clustering off, reading one configuration file."""

    def __init__(self, workdir: Path, config: Path) -> None:
        require_alertmanager_default_template()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            binary("alertmanager"),
            f"--config.file={config}",
            f"--storage.path={workdir / f'am-{self.port}'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        self.process = ServerProcess(
            "alertmanager", args, workdir / f"alertmanager-{self.port}.log"
        )
        self.process.wait_http(f"{self.url}/-/ready")

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts Alertmanager holds, with their state (`/api/v2/alerts`:
        `status.state` is `active` or `suppressed`, `status.inhibitedBy` the
        fingerprints of the alerts inhibiting one)."""
        response = requests.get(f"{self.url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        return cast(list[dict[str, Any]], response.json())

    def stop(self) -> None:
        """Stop Alertmanager by its process id."""
        self.process.stop()


# Replay stages: each stage reads only series that earlier stages recorded, and the
# server is flushed between stages. In one replay run, a range query that reads a
# series recorded a moment earlier can miss it (seen on 1.112: the miss then sticks
# in VictoriaMetrics' index cache until restart), which would hide alerts.
REPLAY_STAGES = (
    ("openai-cost-1-thresholds", "openai-cost-1-overrides", "openai-cost-2-daily"),
    ("openai-cost-3-derived",),
    ("openai-cost-4-alerts", "openai-cost-4-pusher-health"),
)


def replay_rule_file(
    rule_files: Sequence[Path], groups: Sequence[str], out: Path
) -> Path:
    """Write the named groups of `rule_files` to `out`, without alert annotations.

    Replay mode rejects the `query` template function that the Slack annotations
    use; annotations never change when an alert fires, so the back-test drops them.
    """
    selected = []
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            if group["name"] in groups:
                for rule in group["rules"]:
                    rule.pop("annotations", None)
                selected.append(group)
    out.write_text(yaml.safe_dump({"groups": selected}, sort_keys=False))
    return out


def replay(
    workdir: Path,
    vm: VictoriaMetrics,
    rule_files: Sequence[Path],
    time_from: datetime,
    time_to: datetime,
    *,
    evaluation_interval: str = "1h",
) -> None:
    """Replay the rules over a time range, stage by stage; ALERTS land in `vm`."""
    for index, groups in enumerate(REPLAY_STAGES):
        rules = replay_rule_file(
            rule_files, groups, workdir / f"replay-stage-{index}.yml"
        )
        log = workdir / f"replay-{vm.port}-{index}.log"
        args = [
            binary("vmalert"),
            f"-httpListenAddr=127.0.0.1:{free_port()}",
            f"-datasource.url={vm.url}",
            f"-remoteWrite.url={vm.url}",
            "-remoteWrite.flushInterval=100ms",
            f"-evaluationInterval={evaluation_interval}",
            f"-replay.timeFrom={time_from.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            f"-replay.timeTo={time_to.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "-replay.rulesDelay=200ms",
            "-replay.disableProgressBar",
            "-rule.evalDelay=0s",
            "-loggerLevel=WARN",
            f"-rule={rules}",
        ]
        with log.open("wb") as out:
            done = subprocess.run(
                args, stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            msg = f"vmalert replay failed ({done.returncode}):\n{tail}"
            raise RuntimeError(msg)
        vm.flush()


@dataclass(frozen=True)
class FiredRow:
    """One line of the back-test table: an alert, its project and its firing days."""

    scenario: str
    alertname: str
    project: str
    days: tuple[date, ...]


def fired_days(vm: VictoriaMetrics) -> dict[tuple[str, str], list[date]]:
    """Return the UTC days on which each (alertname, project) was firing."""
    out: dict[tuple[str, str], set[date]] = {}
    for series in vm.export('ALERTS{alertstate="firing"}'):
        key = (series.metric["alertname"], series.metric.get("project", "-"))
        for ts in series.timestamps:
            out.setdefault(key, set()).add(
                datetime.fromtimestamp(ts / 1000, UTC).date()
            )
    return {key: sorted(days) for key, days in out.items()}


def seed_scenario(vm: VictoriaMetrics, scenario: Scenario, last_day: date) -> None:
    """Push a scenario's cost history and the pusher's self-monitoring into `vm`."""
    push_text(vm.push_url, render_costs(scenario.costs(last_day)))
    start = datetime(2025, 2, 20, tzinfo=UTC)
    end = datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC) + timedelta(
        days=1
    )
    push_text(
        vm.push_url, render_self_monitoring(start, end, scenario.outages(last_day))
    )
    limits = scenario.limits(last_day)
    if limits:
        push_text(vm.push_url, render_spend_limits(limits, start, end))


def backtest(workdir: Path) -> list[FiredRow]:
    """Replay the shipped rules over every seeded scenario; return what fired when."""
    rows: list[FiredRow] = []
    for index, scenario in enumerate(SCENARIOS):
        scenario_dir = workdir / f"scenario-{index}"
        scenario_dir.mkdir(parents=True, exist_ok=True)
        vm = VictoriaMetrics(scenario_dir)
        try:
            seed_scenario(vm, scenario, BACKTEST_LAST_DAY)
            vm.flush()
            replay(scenario_dir, vm, [RULES, OVERRIDES], BACKTEST_FROM, BACKTEST_TO)
            fired = fired_days(vm)
        finally:
            vm.stop()
        if not fired:
            rows.append(FiredRow(scenario.name, "none", "", ()))
        for (alertname, project), days in sorted(fired.items()):
            rows.append(FiredRow(scenario.name, alertname, project, tuple(days)))
    return rows


def _day_ranges(days: Sequence[date]) -> str:
    """Format sorted days as compact ranges: `Mar 9-12, Mar 31`."""
    parts: list[str] = []
    start = prev = None
    for day in [*days, None]:
        if day is not None and prev is not None and day - prev == timedelta(days=1):
            prev = day
            continue
        if start is not None and prev is not None:
            label = start.strftime("%b %-d")
            if prev != start:
                end = prev.strftime("%b %-d" if prev.month != start.month else "%-d")
                label += f"-{end}"
            parts.append(label)
        start = prev = day
    return ", ".join(parts)


def render_table(rows: Sequence[FiredRow]) -> str:
    """Render the back-test rows as a Markdown table."""
    out = [
        "| scenario | alert | project | firing on (UTC days) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if row.alertname == "none":
            out.append(f"| {row.scenario} | none | | |")
        else:
            out.append(
                f"| {row.scenario} | {row.alertname} | {row.project} "
                f"| {_day_ranges(row.days)} |"
            )
    return "\n".join(out) + "\n"


def alertmanager_test_config(workdir: Path, webhook_url: str) -> Path:
    """Write a test copy of the shipped Alertmanager config; return its path.

    Only what a test must change changes: the webhook URL file points at a temporary
    file holding the fake Slack URL, the template path is absolute, and the waits are
    seconds instead of minutes: a group waits 1s where the shipped config waits its
    default minute, and as many seconds as a route that waits longer has minutes (so
    the budget alert still waits for the limit alert that inhibits it).
    """
    url_file = workdir / "slack-webhook-url"
    url_file.write_text(webhook_url + "\n")
    config = yaml.safe_load(AM_CONFIG.read_text())
    config["templates"] = [str(AM_TEMPLATE)]
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(url_file)
    for route in [config["route"], *config["route"].get("routes", [])]:
        minutes = int(str(route.get("group_wait", "1m")).removesuffix("m"))
        route.update({"group_wait": f"{minutes}s", "group_interval": "2s"})
    out = workdir / "alertmanager.yml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def e2e_costs(today: date) -> list[CostLine]:
    """Return the end-to-end history: alpha spikes today, nobody else should alert.

    alpha: 10 a day for a week, 40 today; beta: a steady 20; tiny: 4x but under the
    floor; newbie: two days of history then 60. All stay under the daily budget and
    the organization stays under the monthly one.
    """
    return [*week_then_spike(today), *tiny(today), *new_project(today)]


def seed_e2e(vm: VictoriaMetrics, now: datetime) -> None:
    """Push the end-to-end history for `now`'s UTC day and a healthy pusher."""
    costs = e2e_costs(now.date())
    push_text(vm.push_url, render_costs(costs))
    push_text(vm.push_url, render_cost_today(costs, now))
    push_text(vm.push_url, render_self_monitoring(now - timedelta(hours=2), now))
    vm.flush()


@dataclass
class SlackDelivery:
    """What reached the fake Slack, how long the first message took, what fired."""

    payloads: list[dict[str, Any]]
    firing: list[dict[str, Any]]
    first_after: float  # seconds from vmalert being ready to the first message
    held: list[dict[str, Any]]  # the alerts Alertmanager holds, with their state


class Stoppable(Protocol):
    """A server that can be stopped by its process id."""

    def stop(self) -> None:
        """Stop the server."""


def seed_e2e_now(vm: VictoriaMetrics) -> None:
    """Seed the end-to-end history for the current UTC day (see `seed_e2e`)."""
    seed_e2e(vm, datetime.now(UTC))


def deliver_to_slack(
    workdir: Path,
    started: list[Stoppable],
    *,
    settle: float = 8.0,
    seed: Callable[[VictoriaMetrics], None] = seed_e2e_now,
    rule_files: Sequence[Path] = (RULES, OVERRIDES),
    wait: float = 60.0,
    expect: int | Callable[[], int] = 1,
) -> SlackDelivery:
    """Run VictoriaMetrics, vmalert, Alertmanager and a fake Slack on seeded data.

    `seed` fills the fresh VictoriaMetrics before vmalert starts (by default the e2e
    history; a test may run the real pusher instead); vmalert loads `rule_files`.
    Every server is appended to `started` as soon as it runs; the caller stops them
    (a fixture finalizer in tests). Waits up to `wait` seconds for the first Slack
    message and for `expect` messages in all (a number, or a function called once
    `seed` has run: alerts that read series recorded from recorded series arrive some
    evaluations later), then `settle` seconds more so that any other alert would
    have had several evaluations and group flushes to arrive.
    """
    slack = FakeSlackServer()
    started.append(slack)
    vm = VictoriaMetrics(workdir)
    started.append(vm)
    seed(vm)
    vm.flush()
    am = Alertmanager(workdir, alertmanager_test_config(workdir, slack.url))
    started.append(am)
    vmalert = VmAlert(workdir, vm, rule_files, notifier_url=am.url)
    started.append(vmalert)
    ready = time.monotonic()
    slack.wait_for(1, timeout=wait)
    first_after = time.monotonic() - ready
    count = expect() if callable(expect) else expect
    if count > 1:
        slack.wait_for(count, timeout=max(0.0, wait - first_after))
    time.sleep(settle)
    firing = [a for a in vmalert.alerts() if a["state"] == "firing"]
    return SlackDelivery(slack.payloads, firing, first_after, am.alerts())
