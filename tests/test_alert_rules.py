"""Tests for the alerting pipeline: vmalert rules, Alertmanager config, VMRule, Slack.

Everything runs on real binaries (VictoriaMetrics 1.112's vmalert, vmalert-tool and
Alertmanager 0.28, see scripts/fetch-victoriametrics.sh) on 127.0.0.1. A missing
binary fails the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import calendar
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.alerting import (
    AM_CONFIG,
    DEMO_SWITCH,
    OVERRIDES,
    RULES,
    Stoppable,
    alertmanager_test_config,
    backtest,
    deliver_to_slack,
    render_table,
)
from tests.cost_histories import (
    CostLine,
    SpendLimit,
    push_text,
    render_costs,
    render_self_monitoring,
    render_spend_limits,
)
from tests.procs import ROOT, binary
from tests.vm import VictoriaMetrics

RULE_TESTS = ROOT / "deploy" / "vmalert" / "tests"
VMRULE = ROOT / "deploy" / "kubernetes" / "vm-k8s-stack" / "openai-cost-vmrule.yaml"
DOC = ROOT / "docs" / "alerting.md"
VMALERT_TOOL_PORT = 8880  # hard-coded in vmalert-tool 1.112, on all interfaces


def _run_vmalert_tool(files: list[Path], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run `vmalert-tool unittest` with its storage under `tmp`."""
    with socket.socket() as probe:
        busy = probe.connect_ex(("127.0.0.1", VMALERT_TOOL_PORT)) == 0
    assert not busy, (
        f"port {VMALERT_TOOL_PORT} is in use: vmalert-tool needs it and it cannot be "
        "changed; stop whatever listens there"
    )
    env = {**os.environ, "TMPDIR": str(tmp)}  # vmalert-tool keeps its data there
    return subprocess.run(
        [binary("vmalert-tool"), "unittest", *(f"--files={f}" for f in files)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.mark.vm
@pytest.mark.parametrize(
    "name",
    [
        "spike.yml",
        "forecast.yml",
        "pusher.yml",
        "data-integrity.yml",
        "demo.yml",
        "demo-switch.yml",
        "limits.yml",
        "spend-alerts.yml",
    ],
    ids=lambda n: n[:-4],
)
def test_vmalert_tool_unittests_pass(name: str, tmp_path: Path) -> None:
    """The seeded-history rule tests in deploy/vmalert/tests pass under vmalert-tool."""
    done = _run_vmalert_tool([RULE_TESTS / name], tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "SUCCESS" in output and "FAILED" not in output, output


@pytest.mark.vm
def test_vmalert_tool_harness_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """A copy of the spike test expecting the wrong spend makes vmalert-tool fail."""
    case = yaml.safe_load((RULE_TESTS / "spike.yml").read_text())
    case["rule_files"] = [str(RULE_TESTS / f) for f in case["rule_files"]]
    alert = case["tests"][0]["alert_rule_test"][1]["exp_alerts"][0]
    assert alert["exp_annotations"]["spend_today"] == "40.00"
    alert["exp_annotations"]["spend_today"] = "41.00"
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(yaml.safe_dump(case, sort_keys=False))
    done = _run_vmalert_tool([wrong], tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "FAILED" in output and 'spend_today="40.00"' in output, output


@pytest.mark.vm
def test_rules_pass_vmalert_dry_run() -> None:
    """vmalert parses the shipped rules, overrides, demo switch and templates."""
    done = subprocess.run(
        [
            binary("vmalert"),
            f"-rule={RULES}",
            f"-rule={OVERRIDES}",
            f"-rule={DEMO_SWITCH}",
            "-dryRun",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_read_demo_data_only_behind_the_switch() -> None:
    """Every alert keeps its input to series without demo="true", or with it only
    where openai-cost-demo.yml records the switch; Kubernetes never ships it."""
    switch = "openai_cost:alert_on_demo:enabled"
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    alerts = [r for r in rules if "alert" in r]
    for alert in alerts:
        expr = alert["expr"]
        assert 'demo!="true"' in expr and f"and on() {switch}" in expr, alert["alert"]
        assert "group_left() " + switch not in expr  # VictoriaMetrics rejects it
    # Recording rules never sum demo and real spend into one series.
    for rule in rules:
        if "record" in rule and "openai_daily_cost" in rule["expr"]:
            groupings = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
            assert groupings, rule["record"]
            for labels in groupings:
                assert "demo" in labels.replace(" ", "").split(","), rule["record"]
    (group,) = yaml.safe_load(DEMO_SWITCH.read_text())["groups"]
    assert group["rules"] == [{"record": switch, "expr": "vector(1)"}]
    shipped = [
        rule.get("record")
        for doc in yaml.safe_load_all(VMRULE.read_text())
        for g in doc["spec"]["groups"]
        for rule in g["rules"]
    ]
    assert shipped and switch not in shipped


def test_every_alert_has_severity_and_slack_annotations() -> None:
    """Each alert has a severity and a summary; the spike has the Slack fields."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} == {
        "OpenAICostSpendSpike",
        "OpenAICostDailyBudgetExceeded",
        "OpenAICostMonthlyForecastOverBudget",
        "OpenAICostSpendLimitForecast",
        "OpenAICostSpendLimitNear",
        "OpenAICostSpendAlertThresholdCrossed",
        "OpenAICostPusherStale",
        "OpenAICostPusherFailing",
        "OpenAICostDataUnconfirmed",
        "OpenAICostDataRejected",
        "OpenAICostDownwardRevision",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert "summary" in alert["annotations"], alert["alert"]
    spike = next(a for a in alerts if a["alert"] == "OpenAICostSpendSpike")
    for key in ("project", "spend_today", "baseline", "ratio", "currency", "dashboard"):
        assert key in spike["annotations"], key
    assert (
        "logs"
        in next(a for a in alerts if a["alert"] == "OpenAICostPusherFailing")[
            "annotations"
        ]["description"]
    )
    # The hard-limit forecast names the limit, the spend so far, the forecast and
    # the UTC day on which the limit is reached.
    limit = next(a for a in alerts if a["alert"] == "OpenAICostSpendLimitForecast")
    for key in ("limit", "month_to_date", "forecast", "limit_reached_on"):
        assert key in limit["annotations"], key
    assert 'enforcement="enforcing"' in limit["expr"]


def _duration_hours(text: str) -> float:
    """Return a Prometheus duration such as `12h` or `1d` in hours."""
    units = {"m": 1 / 60, "h": 1, "d": 24}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([mhd])", text))


def test_spend_alert_thresholds_reach_slack_once_per_threshold_and_month() -> None:
    """OpenAI's spend alerts get a route of their own: one group per threshold, an
    alert that fires for a shorter time than the repeat interval (so no repeat),
    and a repeat interval within Alertmanager's default 120h notification log."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    (route,) = [
        r
        for r in config["route"]["routes"]
        if 'alertname = "OpenAICostSpendAlertThresholdCrossed"' in r["matchers"]
    ]
    assert {"alertname", "alert_id", "project_id"} <= set(route["group_by"])
    repeat = _duration_hours(route["repeat_interval"])
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alert = next(
        r
        for g in groups
        for r in g["rules"]
        if r.get("alert") == "OpenAICostSpendAlertThresholdCrossed"
    )
    (window,) = set(re.findall(r"offset (\w+)\)", alert["expr"]))
    assert 0 < _duration_hours(window) < repeat <= 120
    assert f"month(time() - {int(_duration_hours(window) * 3600)})" in alert["expr"]
    # The budget alert gives way to the hard-limit forecast of the same scope.
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['alertname = "OpenAICostSpendLimitForecast"']
    assert inhibit["target_matchers"] == [
        'alertname = "OpenAICostMonthlyForecastOverBudget"'
    ]
    assert inhibit["equal"] == ["project_id", "currency", "demo"]


@pytest.mark.vm
def test_amtool_accepts_the_shipped_config() -> None:
    """`amtool check-config` passes on deploy/alertmanager/alertmanager.yml."""
    done = subprocess.run(
        [binary("amtool"), "check-config", str(AM_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alertmanager_config_reads_the_webhook_from_a_file() -> None:
    """Every Slack receiver uses api_url_file and no URL is written in the config."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    slack = [s for r in config["receivers"] for s in r.get("slack_configs", [])]
    assert slack
    for entry in slack:
        assert "api_url" not in entry and entry["api_url_file"].startswith("/")
    assert "hooks.slack.com" not in AM_CONFIG.read_text()
    route = config["route"]
    assert route["group_by"] == ["alertname", "project"]
    assert route["repeat_interval"] == "24h"


@pytest.mark.vm
def test_amtool_accepts_the_test_copy(tmp_path: Path) -> None:
    """The e2e copy of the config (temp webhook file, short waits) is valid too."""
    config = alertmanager_test_config(tmp_path, "http://127.0.0.1:9/hook")
    done = subprocess.run(
        [binary("amtool"), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_vmrule_is_generated_from_the_rules_file() -> None:
    """The committed VMRule equals what scripts/gen-vmrule.py generates now."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-vmrule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    docs = list(yaml.safe_load_all(VMRULE.read_text()))
    plain = yaml.safe_load(RULES.read_text())
    assert docs[0]["kind"] == "VMRule"
    assert docs[0]["spec"]["groups"] == plain["groups"]


@pytest.mark.vm
@pytest.mark.slow
def test_spike_reaches_slack_for_that_project_only(
    tmp_path: Path, started: list[Stoppable]
) -> None:
    """VM -> vmalert -> Alertmanager -> fake Slack carries alpha's spike only."""
    delivery = deliver_to_slack(tmp_path, started)
    assert delivery.payloads, "no Slack message arrived within 60 s"
    texts = []
    for payload in delivery.payloads:
        attachment = payload["attachments"][0]
        texts.append(attachment["title"] + "\n" + attachment["text"])
    assert all("OpenAICostSpendSpike: alpha" in t for t in texts), texts
    first = texts[0]
    assert "*Spend today (UTC):* 40.00 usd" in first, first
    assert "*Baseline (median of the 7 previous days):* 10.00 usd" in first, first
    assert "*Ratio:* 4.00x" in first, first
    firing = {(a["name"], a["labels"].get("project")) for a in delivery.firing}
    assert firing == {("OpenAICostSpendSpike", "alpha")}
    assert len(delivery.payloads) == 1, "the group must not repeat within the day"


class _LimitCase:
    """A project at 20 a day for 8 days whose enforcing hard limit its pace reaches
    on the month's last day, with three of OpenAI's spend alerts crossed (two of the
    project's, one of the organization's) and one not crossed."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        today = now.date()
        days = [today - timedelta(days=i) for i in range(8)]
        self.costs = [
            CostLine("proj_steady", "steady", "gpt-4o", d, 20.0) for d in days
        ]
        self.month_to_date = 20.0 * sum(d.month == today.month for d in days)
        last = calendar.monthrange(today.year, today.month)[1]
        # The median of the 7 days before today is 20.
        self.forecast = self.month_to_date + 20.0 * (last - today.day)
        self.limit = self.forecast - 10.0
        self.reached = date(today.year, today.month, last)
        mtd = self.month_to_date
        self.limits = [
            SpendLimit("proj_steady", "steady", self.limit),
            SpendLimit("proj_steady", "steady", mtd - 5, alert_id="sa_low"),
            SpendLimit("proj_steady", "steady", mtd - 1, alert_id="sa_high"),
            SpendLimit("proj_steady", "steady", mtd + 100, alert_id="sa_later"),
            SpendLimit("", "", mtd - 2, alert_id="sa_org"),
        ]

    def seed(self, vm: VictoriaMetrics) -> None:
        """Push the costs, the limits (every 15 min for an hour), a healthy pusher."""
        push_text(vm.push_url, render_costs(self.costs))
        hour_ago = self.now - timedelta(hours=1)
        every = timedelta(minutes=15)
        push_text(
            vm.push_url,
            render_spend_limits(self.limits, hour_ago, self.now, every=every),
        )
        push_text(
            vm.push_url, render_self_monitoring(self.now - timedelta(hours=2), self.now)
        )


@pytest.mark.vm
@pytest.mark.slow
def test_spend_limit_and_openai_spend_alerts_reach_slack(
    tmp_path: Path, started: list[Stoppable]
) -> None:
    """VM -> vmalert -> Alertmanager -> fake Slack: one message per crossed spend
    alert, one for the hard-limit forecast naming the limit, the spend so far, the
    forecast and the day; the budget alert of the same project is inhibited."""
    case = _LimitCase(datetime.now(UTC))
    near = case.month_to_date >= 0.8 * case.limit
    # settle past the budget alert's group wait (30s here, 30m shipped), which
    # lets the limit alert fire first: its message would have come by then
    delivery = deliver_to_slack(
        tmp_path, started, seed=case.seed, expect=5 if near else 4, settle=30.0
    )
    texts = []
    for payload in delivery.payloads:
        attachment = payload["attachments"][0]
        texts.append(attachment["title"] + "\n" + attachment["text"])
    titles = sorted(t.splitlines()[0] for t in texts)
    want = [
        ":rotating_light: OpenAICostSpendAlertThresholdCrossed: organization",
        ":rotating_light: OpenAICostSpendAlertThresholdCrossed: steady",
        ":rotating_light: OpenAICostSpendAlertThresholdCrossed: steady",
        ":rotating_light: OpenAICostSpendLimitForecast: steady",
    ]
    if near:
        want.append(":rotating_light: OpenAICostSpendLimitNear: steady")
    assert titles == sorted(want), texts
    crossed = [t for t in texts if "ThresholdCrossed" in t.splitlines()[0]]
    thresholds = sorted(
        t.split("*OpenAI spend alert:* ")[1].split()[0] for t in crossed
    )
    mtd = case.month_to_date
    assert thresholds == sorted(f"{v:.2f}" for v in (mtd - 5, mtd - 1, mtd - 2))
    (limit,) = [t for t in texts if "SpendLimitForecast" in t.splitlines()[0]]
    assert f"*Hard limit at OpenAI:* {case.limit:.2f} usd" in limit, limit
    assert f"*Month to date:* {mtd:.2f} usd" in limit, limit
    assert f"*Forecast for the month:* {case.forecast:.2f} usd" in limit, limit
    assert f"*Limit reached on (UTC):* {case.reached.isoformat()}" in limit, limit
    assert case.reached.strftime("%a %-d %b") in limit.splitlines()[1], limit
    firing = {(a["name"], a["labels"].get("project")) for a in delivery.firing}
    assert ("OpenAICostMonthlyForecastOverBudget", "steady") in firing
    # held by Alertmanager, inhibited by the limit alert
    (budget,) = [
        a
        for a in delivery.held
        if a["labels"]["alertname"] == "OpenAICostMonthlyForecastOverBudget"
    ]
    assert budget["status"]["state"] == "suppressed", budget
    assert budget["status"]["inhibitedBy"], budget


@pytest.mark.vm
@pytest.mark.slow
def test_backtest_table_matches_the_docs(tmp_path: Path) -> None:
    """Replaying the seeded histories gives the table shown in docs/alerting.md."""
    rows = backtest(tmp_path)
    table = render_table(rows)
    assert table in DOC.read_text(), (
        "docs/alerting.md is out of date: run scripts/backtest-alerts.py --write\n"
        + table
    )
    fired = {(r.scenario.split(",")[0], r.alertname, r.project) for r in rows}
    assert ("normal week", "OpenAICostSpendSpike", "alpha") in fired
    assert not any(
        r.alertname == "OpenAICostSpendSpike"
        for r in rows
        if r.scenario.startswith(("gradual", "tiny", "new project"))
    )
    # The hard limits: the forecast fires at least 3 days before the day the
    # limit is reached (Mar 29); a limit out of reach or not enforcing never makes
    # a limit alert; an OpenAI spend alert fires on one day only.
    (capped,) = [
        r
        for r in rows
        if r.scenario.startswith("pace to an enforcing hard limit")
        and r.alertname == "OpenAICostSpendLimitForecast"
    ]
    assert capped.days[0] <= date(2025, 3, 26), capped
    assert [r.alertname for r in rows if r.scenario.startswith("a hard limit it")] == [
        "none"
    ]
    assert not any(
        r.alertname.startswith("OpenAICostSpendLimit")
        for r in rows
        if r.scenario.startswith("a hard limit not enforced")
    )
    (crossed,) = [r for r in rows if r.scenario.startswith("an OpenAI spend alert")]
    assert crossed.alertname == "OpenAICostSpendAlertThresholdCrossed"
    assert len(crossed.days) == 1, crossed
