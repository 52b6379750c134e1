"""Tests for the alerting pipeline: vmalert rules, Alertmanager config, VMRule, Slack.

Everything runs on real binaries (VictoriaMetrics 1.112's vmalert, vmalert-tool and
Alertmanager 0.28, see scripts/fetch-victoriametrics.sh) on 127.0.0.1. A missing
binary fails the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
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
from tests.procs import ROOT, binary

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
