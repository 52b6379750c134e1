"""`verify --repair`: the plan's rules, and the repair against a real VictoriaMetrics.

The integration test seeds 60 days of costs (twice the default backfill), pushes them
as an older pusher would have (a renamed project's first days under its old name, and
one project's day missing), revises one day downwards in the fake Admin API, and
checks that `verify --repair` plans without changing anything and that `--yes`
restores the whole history of exactly the wrong series, value by value.
"""

from __future__ import annotations

import gzip
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from openai_cost_pusher.exposition import render
from openai_cost_pusher.metrics import CostTable, add_cost_lines, cost_samples
from openai_cost_pusher.model import CostLine
from openai_cost_pusher.repair import (
    DEFAULT_RETENTION_DAYS,
    find_retention,
    line_problems,
    own_label_names,
    parse_retention_period,
    series_match,
)
from openai_cost_pusher.verify import Row, Verdict, api_totals, compare, vm_totals
from openai_cost_pusher.vmread import Series
from tests.fake_openai import FakeOpenAI
from tests.test_cli import run_cli
from tests.vm import ExportedSeries, VictoriaMetrics, VmAuth

DAY = 86_400
D0 = 1_730_419_200
NOW = D0 + 12 * 3600  # noon UTC


# ---------------------------------------------------------------- retention


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("5y", 5 * 365),
        ("100d", 100),
        ("2w", 14),
        ("48h", 2),
        ("1", 31),  # no suffix: months of 31 days
        ("12", 12 * 31),
        ("1.5d", 1.5),
    ],
)
def test_retention_period_values(value: str, days: float) -> None:
    """-retentionPeriod reads as VictoriaMetrics does: suffixes, or months."""
    assert parse_retention_period(value) == days * DAY


@pytest.mark.parametrize("value", ["", "abc", "5x", "-1d", "0"])
def test_retention_period_rejects_nonsense(value: str) -> None:
    """What VictoriaMetrics would not start with is not guessed at."""
    with pytest.raises(ValueError, match="retentionPeriod"):
        parse_retention_period(value)


def test_retention_from_flags_default_and_option() -> None:
    """/flags' -retentionPeriod wins; unlisted means the 31-day default;
    --repair-days overrides both; the start is the first whole day inside."""
    root = "http://vm:8428"
    listed = find_retention('-retentionPeriod="100d"\n-x="y"\n', root, NOW)
    assert listed.start == D0 - 99 * DAY  # D0 - 100d + 12h is inside D0 - 100d
    assert listed.known
    assert '-retentionPeriod="100d"' in listed.source
    unlisted = find_retention('-dedup.minScrapeInterval="1ms"\n', root, NOW)
    assert unlisted.start == D0 - (DEFAULT_RETENTION_DAYS - 1) * DAY
    assert "default" in unlisted.source
    option = find_retention('-retentionPeriod="5y"\n', root, NOW, repair_days=90)
    assert option.start == D0 - 90 * DAY
    assert option.source == "--repair-days 90"


@pytest.mark.parametrize(
    ("flags", "root"),
    [
        ('-auth.config="/etc/auth.yml"\n-retentionPeriod="5y"\n', "http://vmauth"),
        ('-remoteWrite.url="http://vm"\n', "http://vmagent:8429"),
        ('-retentionPeriod="5y"\n', "http://vmselect:8481/select/0/prometheus"),
        (None, "http://vm:8428"),
    ],
)
def test_retention_behind_a_proxy_is_the_default_and_says_so(
    flags: str | None, root: str
) -> None:
    """vmauth, vmagent and vmselect do not know the storage's retention: the plan
    assumes the default and names --repair-days."""
    found = find_retention(flags, root, NOW)
    assert not found.known
    assert found.start == D0 - (DEFAULT_RETENTION_DAYS - 1) * DAY
    assert "--repair-days" in found.source


# ---------------------------------------------------------------- series identity


def test_series_match_selects_every_project_name_and_nothing_more() -> None:
    """The selector names every label but `project`, requires a project, and
    requires the labels of foreign look-alike series to be absent."""
    labels = {"job": "openai-cost-pusher", "demo": ""}
    match = series_match(("p1", 'gpt-4o, "in"', "usd"), labels, ["env"])
    assert match == (
        '{__name__="openai_daily_cost",project!="",currency="usd",demo="",env="",'
        'job="openai-cost-pusher",line_item="gpt-4o, \\"in\\"",project_id="p1"}'
    )
    unattributed = series_match(("", "", "usd"), labels)
    assert 'project_id=""' in unattributed
    assert 'line_item=""' in unattributed
    assert own_label_names(("", "", "usd"), labels) == {
        "__name__",
        "project",
        "currency",
        "job",
    }


# ---------------------------------------------------------------- which series


def _series(project: str, item: str, points: dict[int, float]) -> Series:
    labels = {
        "__name__": "openai_daily_cost",
        "currency": "usd",
        "line_item": item,
        "project": project,
        "project_id": "p",
    }
    return tuple(sorted(labels.items())), points


def _verdict(costs: list[CostLine], series: list[Series]) -> Verdict:
    rows = compare(api_totals(costs, []), vm_totals(series))
    return Verdict(rows, {"p": "P"}, costs, series)


def test_only_the_wrong_line_items_are_repaired() -> None:
    """A day lower in the API and a missing day name their line items; a line
    item equal on those days, and a day that matches, are left alone."""
    ms = 1000
    costs = [
        CostLine(D0, "p", "a", "usd", 1.0),  # revised down from 2.0
        CostLine(D0, "p", "b", "usd", 5.0),  # equal
        CostLine(D0 + DAY, "p", "a", "usd", 3.0),  # missing in VM
        CostLine(D0 + DAY, "p", "b", "usd", 4.0),  # equal
        CostLine(D0 + 2 * DAY, "p", "c", "usd", 1.0),  # equal
    ]
    series = [
        _series("p", "a", {D0 * ms: 2.0}),
        _series("p", "b", {D0 * ms: 5.0, (D0 + DAY) * ms: 4.0}),
        _series("p", "c", {(D0 + 2 * DAY) * ms: 1.0}),
    ]
    found, left = line_problems(_verdict(costs, series))
    assert left == []
    assert found == {
        ("p", "a", "usd"): [
            Row(D0, "p", "a", 1.0, 2.0),
            Row(D0 + DAY, "p", "a", 3.0, None),
        ]
    }


def test_a_renamed_series_is_judged_by_its_newest_name() -> None:
    """The old name's stale value does not make a series wrong when the newest
    name holds the right one; a downward revision under the newest name does."""
    ms = 1000
    costs = [CostLine(D0, "p", "a", "usd", 1.0), CostLine(D0, "p", "b", "usd", 1.0)]
    series = [
        _series("old", "a", {D0 * ms: 9.0}),
        _series("new", "a", {D0 * ms: 1.0, (D0 + DAY) * ms: 0.0}),
        _series("old", "b", {D0 * ms: 1.0}),
        _series("new", "b", {D0 * ms: 2.0, (D0 + DAY) * ms: 0.0}),
    ]
    verdict = _verdict(costs, series)
    found, _ = line_problems(verdict)
    assert list(found) == [("p", "b", "usd")]


def test_today_growing_is_not_a_problem_and_tokens_are_left() -> None:
    """A moving day's growth is arriving; token differences are only reported."""
    ms = 1000
    costs = [CostLine(D0, "p", "a", "usd", 3.0), CostLine(D0, "p", "b", "usd", 1.0)]
    series = [
        _series("p", "a", {D0 * ms: 2.0}),  # grew: arriving
        _series("p", "b", {D0 * ms: 3.0}),  # went down: wrong, and the sum too
    ]
    rows = compare(api_totals(costs, []), vm_totals(series), moving_from=D0)
    token_row = Row(D0, "p", "tokens completions input", 5.0, 4.0)
    verdict = Verdict([*rows, token_row], {}, costs, series)
    found, left = line_problems(verdict, moving_from=D0)
    assert list(found) == [("p", "b", "usd")]
    assert left == [token_row]


# ---------------------------------------------------------------- real servers

PROJECTS = {"proj_alpha": "Alpha", "proj_beta": "Beta", "proj_gamma": "Gamma"}
ITEMS = ("gpt-4o, input", "gpt-4o, output")
HISTORY_DAYS = 60
JOB = (("job", "openai-cost-pusher"),)


@pytest.fixture(name="org")
def org_fixture() -> Iterator[FakeOpenAI]:
    """Return a fake on the real clock holding 60 days of history plus today."""
    with FakeOpenAI(page_size=31) as fake:
        today = int(time.time()) // DAY * DAY
        for pid, name in PROJECTS.items():
            fake.add_project(pid, name)
        rng = random.Random(11)
        for day in range(today - HISTORY_DAYS * DAY, today + DAY, DAY):
            for pid in PROJECTS:
                for item in ITEMS:
                    fake.set_cost(day, pid, item, rng.uniform(0.01, 50.0))
        yield fake


def _push(vm: VictoriaMetrics, lines: list[CostLine], names: dict[str, str]) -> None:
    """Push cost lines as the pusher renders them (default job label)."""
    table: CostTable = {}
    add_cost_lines(table, lines)
    body = render(cost_samples(table, dict(names), JOB))
    resp = requests.post(
        vm.push_url,
        data=gzip.compress(body),
        headers={"Content-Encoding": "gzip"},
        timeout=30,
    )
    assert resp.status_code == 204


def _raw(vm: VictoriaMetrics, line: str) -> None:
    resp = requests.post(
        vm.push_url,
        data=gzip.compress(line.encode()),
        headers={"Content-Encoding": "gzip"},
        timeout=30,
    )
    assert resp.status_code == 204


def _snapshot(vm: VictoriaMetrics) -> dict[tuple[tuple[str, str], ...], list[float]]:
    return {
        tuple(sorted(s.metric.items())): [*s.values, *map(float, s.timestamps)]
        for s in vm.export('{__name__="openai_daily_cost"}')
    }


def _of(series: list[ExportedSeries], pid: str, item: str) -> list[ExportedSeries]:
    return [
        s
        for s in series
        if s.metric.get("project_id") == pid and s.metric.get("line_item") == item
    ]


def test_repair_restores_the_whole_history_of_the_wrong_series(
    tmp_path: Path, org: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """verify finds a downward revision and a missing day; --repair plans and
    changes nothing; --repair --yes deletes exactly the wrong series (under every
    project name), pushes their 60-day history again and verifies clean."""
    today = int(time.time()) // DAY * DAY
    down_day, missing_day = today - 45 * DAY, today - 40 * DAY
    history = [
        CostLine(day, pid or "", item or "", currency, value)
        for (day, pid, item, currency), value in org.costs().items()
    ]
    # an older pusher: proj_beta's missing_day never landed ...
    _push(
        vm,
        [ln for ln in history if (ln.day, ln.project_id) != (missing_day, "proj_beta")],
        PROJECTS,
    )
    # ... proj_alpha's first ten days were pushed under its old name too ...
    old_days = [
        ln
        for ln in history
        if ln.project_id == "proj_alpha" and ln.day < today - 50 * DAY
    ]
    _push(vm, old_days, {**PROJECTS, "proj_alpha": "Old Alpha"})
    # ... and series that only look alike must survive: another job's, the demo's,
    # and one with a label more (outside the compared days, so verify ignores it)
    old = today - 58 * DAY
    alike = 'project_id="proj_alpha",project="alpha",line_item="gpt-4o, input"'
    _raw(vm, f'openai_daily_cost{{job="other",{alike},currency="usd"}} 99 {old}000\n')
    own = 'job="openai-cost-pusher",currency="usd"'
    _raw(vm, f'openai_daily_cost{{{own},demo="true",{alike}}} 98 {old}000\n')
    _raw(vm, f'openai_daily_cost{{{own},env="x",{alike}}} 97 {old}000\n')
    # then OpenAI revises one of proj_alpha's days downwards
    value = org.costs()[(down_day, "proj_alpha", "gpt-4o, input", "usd")]
    org.set_cost(down_day, "proj_alpha", "gpt-4o, input", value / 2)
    vm.flush()

    env = {
        "OPENAI_ADMIN_KEY": org.admin_key,
        "OPENAI_BASE_URL": org.base_url,
        "VM_PUSH_URL": vm.push_url,
        "RETRY_BUDGET": "5s",
        "USAGE_BUCKET_WIDTH": "off",
        "COSTS_BY_API_KEY": "false",  # the older pusher stored no per-key costs
    }
    checked = run_cli(["verify", "--days", "50"], tmp_path, env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "1 different, 1 missing in VictoriaMetrics, 0 not in the API" in (
        checked.stdout
    )

    before = _snapshot(vm)
    dry = run_cli(["verify", "--days", "50", "--repair"], tmp_path, env)
    assert dry.returncode == 1, dry.stdout + dry.stderr
    out = dry.stdout
    assert "repair: 3 openai_daily_cost series wrong in the 50 days compared" in out
    assert 'alpha (proj_alpha), line item "gpt-4o, input", usd: stored as alpha, ' in (
        out
    )
    assert "old_alpha since " in out
    assert "lower in the API, revised downwards" in out
    assert 'beta (proj_beta), line item "gpt-4o, output", usd' in out
    assert "missing in VictoriaMetrics" in out
    first, last = (
        time.strftime("%Y-%m-%d", time.gmtime(d))
        for d in (today - HISTORY_DAYS * DAY, today)
    )
    assert f"its 61 days from {first} to {last} are pushed again" in out
    assert (
        f'(-retentionPeriod="5y" in /flags); these series hold nothing before {first}'
        in out
    )
    assert "dry run: nothing changed" in out
    assert org.admin_key not in out + dry.stderr
    vm.flush()
    assert _snapshot(vm) == before

    done = run_cli(["verify", "--days", "50", "--repair", "--yes"], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "repair: deleted 4 stored series (3 cost series under every project name), "
        "pushed 183 samples (61 days from "
    ) in done.stdout
    assert (
        done.stdout.rstrip()
        .splitlines()[-1]
        .endswith("0 different, 0 missing in VictoriaMetrics, 0 not in the API")
    )
    assert org.admin_key not in done.stdout + done.stderr

    after = vm.export('{__name__="openai_daily_cost"}')
    api = org.costs()
    for pid, item in [
        ("proj_alpha", "gpt-4o, input"),
        ("proj_beta", "gpt-4o, input"),
        ("proj_beta", "gpt-4o, output"),
    ]:
        ours = [
            s
            for s in _of(after, pid, item)
            if set(s.metric)
            == {"__name__", "job", "project_id", "project", "line_item", "currency"}
            and s.metric["job"] == "openai-cost-pusher"
        ]
        assert [s.metric["project"] for s in ours] == [PROJECTS[pid].lower()]
        stored = dict(zip(ours[0].timestamps, ours[0].values, strict=True))
        expected = {
            day * 1000: v for (day, p, i, _), v in api.items() if (p, i) == (pid, item)
        }
        assert len(expected) == HISTORY_DAYS + 1
        # the whole history, value by value (VictoriaMetrics keeps 12 digits)
        assert stored == pytest.approx(expected, rel=1e-9, abs=0)
    # the look-alikes survive; the old name of a series that was right stays
    alike_left = {
        (s.metric["job"], s.metric.get("demo"), s.metric.get("env"))
        for s in _of(after, "proj_alpha", "gpt-4o, input")
        if s.metric["job"] != "openai-cost-pusher" or len(s.metric) > 6
    }
    assert alike_left == {
        ("other", None, None),
        ("openai-cost-pusher", "true", None),
        ("openai-cost-pusher", None, "x"),
    }
    kept = {s.metric["project"] for s in _of(after, "proj_alpha", "gpt-4o, output")}
    assert kept == {"alpha", "old_alpha"}
    # and series that were right are untouched
    assert {
        k: v for k, v in _snapshot(vm).items() if ("project_id", "proj_gamma") in k
    } == {k: v for k, v in before.items() if ("project_id", "proj_gamma") in k}


def test_repair_options_need_repair(tmp_path: Path) -> None:
    """--yes and --repair-days mean nothing without --repair: exit 2."""
    env = {
        "OPENAI_ADMIN_KEY": "sk-admin-x",
        "VM_PUSH_URL": "http://127.0.0.1:9/api/v1/import/prometheus",
    }
    for args in (["--yes"], ["--repair-days", "5"]):
        result = run_cli(["verify", *args], tmp_path, env)
        assert result.returncode == 2
        assert "only with --repair" in result.stderr
    result = run_cli(["verify", "--repair", "--repair-days", "0"], tmp_path, env)
    assert result.returncode == 2
    assert "--repair-days: expected 1 to" in result.stderr


def test_demo_repair_touches_only_demo_series(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    """With --demo the repair deletes and pushes demo="true" series only: a real
    series with the same labels otherwise is left alone."""
    env = {"VM_PUSH_URL": vm.push_url, "USAGE_BUCKET_WIDTH": "off"}
    assert run_cli(["--demo", "--once"], tmp_path, env).returncode == 0
    vm.flush()
    today = int(time.time()) // DAY * DAY
    day = today - 5 * DAY
    demo = next(
        s
        for s in vm.export('{__name__="openai_daily_cost",demo="true"}')
        if day * 1000 in s.timestamps
    )
    labels = dict(demo.metric)
    labels.pop("__name__")
    pairs = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    real = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "demo")
    _raw(vm, f"openai_daily_cost{{{pairs}}} 1000000 {day}000\n")  # stale, higher
    _raw(vm, f"openai_daily_cost{{{real}}} 5 {day}000\n")
    vm.flush()
    args = ["verify", "--demo", "--days", "7", "--repair"]
    dry = run_cli(args, tmp_path, env)
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "repair: 1 openai_daily_cost series wrong" in dry.stdout
    done = run_cli([*args, "--yes"], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    after = {
        s.metric.get("demo"): dict(zip(s.timestamps, s.values, strict=True))
        for s in vm.export(
            f'{{__name__="openai_daily_cost",project_id="{labels["project_id"]}",'
            f'line_item="{labels["line_item"]}"}}'
        )
    }
    assert after[None] == {day * 1000: 5.0}
    assert after["true"][day * 1000] == demo.values[demo.timestamps.index(day * 1000)]
    assert len(after["true"]) == len(demo.timestamps)


def test_repair_through_vmauth_uses_the_credentials_and_the_default_retention(
    tmp_path: Path, org: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """Behind vmauth the plan assumes the 31-day default (vmauth answers /flags
    itself) and says so; delete, push and reads carry the basic-auth credentials,
    which are never printed."""
    password = "s3cret-Passw0rd"
    auth = VmAuth(tmp_path, vm, username="u", password=password, bearer_token="t0k")
    try:
        today = int(time.time()) // DAY * DAY
        env = {
            "OPENAI_ADMIN_KEY": org.admin_key,
            "OPENAI_BASE_URL": org.base_url,
            "VM_PUSH_URL": auth.push_url,
            "VM_USERNAME": "u",
            "VM_PASSWORD": password,
            "RETRY_BUDGET": "5s",
            "USAGE_BUCKET_WIDTH": "off",
            "BACKFILL_DAYS": "10",
        }
        assert run_cli(["--once"], tmp_path, env).returncode == 0
        key = (today - 3 * DAY, "proj_gamma", "gpt-4o, output", "usd")
        org.set_cost(*key[:3], org.costs()[key] / 3)
        vm.flush()
        result = run_cli(["verify", "--repair", "--yes"], tmp_path, env)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "repair: 1 openai_daily_cost series wrong" in out
        assert "cannot be read behind this URL" in out
        assert "pass --repair-days N" in out
        assert "its 11 days from" in out  # its history: the 10-day backfill + today
        assert password not in out + result.stderr
        assert org.admin_key not in out + result.stderr
        series = vm.export(
            '{__name__="openai_daily_cost",project_id="proj_gamma",'
            'line_item="gpt-4o, output"}'
        )
        assert len(series) == 1
        assert series[0].values[series[0].timestamps.index(key[0] * 1000)] == (
            pytest.approx(org.costs()[key], rel=1e-9)
        )
    finally:
        auth.stop()
