"""`verify`: the comparison rules, and the command against real servers."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from openai_cost_pusher.model import CostLine, UsageLine
from openai_cost_pusher.verify import Row, api_totals, compare, render_table, vm_totals
from openai_cost_pusher.vmread import Series, query_root, selector
from tests.fake_openai import FakeOpenAI
from tests.orgs import DAY, seed_odd_org
from tests.test_cli import run_cli
from tests.test_usage import seed_usage
from tests.vm import VictoriaMetrics

D0 = 1_730_419_200


@pytest.mark.parametrize(
    ("api", "vm", "status"),
    [
        (1.0, 1.0, "ok"),
        (1e12, 1e12 * (1 + 5e-10), "ok"),
        (1.0, 1.0 + 2e-9, "different"),
        (0.0, 0.0, "ok"),
        (0.0, 1e-300, "different"),
        (1.0, None, "missing"),
        (None, 1.0, "extra"),
    ],
)
def test_row_status(api: float | None, vm: float | None, status: str) -> None:
    """Values match within 1e-9 relative; one-sided values are missing or extra."""
    assert Row(D0, "p", "cost usd", api, vm).status == status


@pytest.mark.parametrize(
    ("api", "vm", "status"),
    [
        (2.0, 1.0, "arriving"),  # grew since the last push
        (1.0, None, "arriving"),  # appeared since the last push
        (1.0, 2.0, "different"),  # went down: never "arriving"
        (None, 1.0, "extra"),
        (1.0, 1.0, "ok"),
    ],
)
def test_moving_day_status(api: float | None, vm: float | None, status: str) -> None:
    """Today's value that grew since it was pushed is still arriving, not wrong."""
    assert Row(D0, "p", "cost usd", api, vm, moving=True).status == status


def test_compare_marks_only_days_from_moving_from() -> None:
    """Only days at or after `moving_from` may be arriving; older ones differ."""
    api = {(D0 - DAY, "p", "cost usd"): 2.0, (D0, "p", "cost usd"): 2.0}
    vm = {(D0 - DAY, "p", "cost usd"): 1.0, (D0, "p", "cost usd"): 1.0}
    assert [r.status for r in compare(api, vm, moving_from=D0)] == [
        "different",
        "arriving",
    ]
    assert [r.status for r in compare(api, vm)] == ["different", "different"]


def test_totals_group_by_day_project_and_what() -> None:
    """Costs sum over line items; tokens stay apart by endpoint and type."""
    costs = [
        CostLine(D0, "p", "a", "usd", 0.1),
        CostLine(D0, "p", "b", "usd", 0.2),
        CostLine(D0, "", "a", "usd", 1.0),
    ]
    usage = [
        UsageLine(
            D0 + 3600,
            "completions",
            (("project_id", "p"),),
            ("input_tokens", "num_model_requests"),
            (5.0, 1.0),
        ),
        UsageLine(
            D0 + 7200, "completions", (("project_id", "p"),), ("input_tokens",), (6.0,)
        ),
    ]
    assert api_totals(costs, usage) == {
        (D0, "p", "cost usd"): 0.1 + 0.2,
        (D0, "", "cost usd"): 1.0,
        (D0, "p", "tokens completions input"): 11.0,
    }
    series = [
        (
            (
                ("__name__", "openai_daily_cost"),
                ("currency", "usd"),
                ("project_id", "p"),
            ),
            {D0 * 1000: 0.3},
        ),
        (
            (
                ("__name__", "openai_usage_tokens"),
                ("operation", "completions"),
                ("project_id", "p"),
                ("type", "input"),
            ),
            {(D0 + 3600) * 1000: 5.0, (D0 + 7200) * 1000: 6.0},
        ),
        ((("__name__", "openai_usage_requests"),), {D0 * 1000: 1.0}),
    ]
    assert vm_totals(series) == {
        (D0, "p", "cost usd"): 0.3,
        (D0, "p", "tokens completions input"): 11.0,
    }


def test_table_shows_problems_only_unless_asked() -> None:
    """The table lists problem rows with project names; --all lists every row."""
    rows = compare(
        {(D0, "p", "cost usd"): 1.0, (D0, "q", "cost usd"): 2.0},
        {(D0, "p", "cost usd"): 1.0, (D0, "q", "cost usd"): 2.5},
    )
    text = render_table(rows, {"p": "P One", "q": "Q"}, show_all=False)
    assert "q (q)" in text
    assert "p_one" not in text
    assert "different" in text
    assert "+0.5" in text
    assert "p_one (p)" in render_table(rows, {"p": "P One"}, show_all=True)


@pytest.mark.parametrize(
    ("push_url", "root"),
    [
        ("http://vm:8428/api/v1/import/prometheus", "http://vm:8428"),
        ("http://vmauth:8427/api/v1/import/prometheus/", "http://vmauth:8427"),
        (
            "http://vminsert:8480/insert/0/prometheus/api/v1/import/prometheus",
            "http://vminsert:8480/select/0/prometheus",
        ),
    ],
)
def test_query_root(push_url: str, root: str) -> None:
    """The read URL follows from the push URL, cluster paths included."""
    assert query_root(push_url) == root


def test_query_root_needs_an_import_path() -> None:
    """A push URL without the import path asks for --query-url."""
    with pytest.raises(ValueError, match="--query-url"):
        query_root("http://vm:8428/something")


def test_selector_quotes_values() -> None:
    """Label values are quoted safely in the selector."""
    assert selector("a|b", {"job": 'x"y', "demo": ""}) == (
        '{__name__=~"a|b",demo="",job="x\\"y"}'
    )


@pytest.fixture(name="live_fake")
def live_fake_fixture() -> Iterator[FakeOpenAI]:
    """Return a fake on the real clock, with small pages."""
    with FakeOpenAI(page_size=3) as fake:
        yield fake


def _env(fake: FakeOpenAI, vm: VictoriaMetrics) -> dict[str, str]:
    return {
        "OPENAI_ADMIN_KEY": fake.admin_key,
        "OPENAI_BASE_URL": fake.base_url,
        "VM_PUSH_URL": vm.push_url,
        "RETRY_BUDGET": "5s",
    }


def test_verify_after_once_then_after_damage(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """verify exits 0 after a clean push, and 1 naming rows after data is damaged."""
    today = int(time.time()) // DAY * DAY
    seed_odd_org(live_fake, today, days_back=10)
    seed_usage(live_fake, today, days=10)
    env = _env(live_fake, vm)
    assert run_cli(["--once"], tmp_path, env).returncode == 0
    vm.flush()
    clean = run_cli(["verify", "--include-today", "--days", "8"], tmp_path, env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 different, 0 missing in VictoriaMetrics, 0 not in the API" in clean.stdout
    equal = int(clean.stdout.split(" values: ")[1].split(" equal")[0])
    assert equal > 8 * 7  # costs of 7 projects, plus tokens, for 8 days

    vm.delete_series('{__name__="openai_daily_cost",project_id="proj_intl"}')
    day = today - 3 * DAY
    line = (
        f'openai_daily_cost{{job="openai-cost-pusher",project_id="proj_quote",'
        f'project="quote_q_back_slash",line_item="gpt-4o, input",currency="usd"}} '
        f"1000000 {day * 1000}\n"
    )
    resp = requests.post(
        vm.push_url,
        data=gzip.compress(line.encode()),
        headers={"Content-Encoding": "gzip"},
        timeout=10,
    )
    assert resp.status_code == 204
    vm.flush()
    damaged = run_cli(["verify", "--include-today", "--days", "8"], tmp_path, env)
    assert damaged.returncode == 1
    rows = [
        ln
        for ln in damaged.stdout.splitlines()
        if ln.endswith(("missing", "different", "extra"))
    ]
    missing = [r for r in rows if "(proj_intl)" in r and r.endswith("missing")]
    assert len(missing) == 8
    assert all("cost usd" in r for r in missing)
    different = [r for r in rows if r.endswith("different")]
    assert len(different) == 1
    assert time.strftime("%Y-%m-%d", time.gmtime(day)) in different[0]
    assert "(proj_quote)" in different[0]
    assert len(rows) == 9


def test_verify_fails_cleanly_when_victoriametrics_is_down(
    tmp_path: Path, live_fake: FakeOpenAI
) -> None:
    """An unreachable read URL is one error line and exit 1, never a traceback."""
    env = {
        "OPENAI_ADMIN_KEY": live_fake.admin_key,
        "OPENAI_BASE_URL": live_fake.base_url,
        "RETRY_BUDGET": "1s",
        "VM_PUSH_URL": "http://127.0.0.1:9/api/v1/import/prometheus",
    }
    result = run_cli(["verify"], tmp_path, env)
    assert result.returncode == 1
    assert "read from VictoriaMetrics: cannot connect" in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_reports_todays_growth_as_still_arriving(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """Today's cost that grew since the push is "still arriving" (exit 0); a cost
    that went down is a difference (exit 1)."""
    today = int(time.time()) // DAY * DAY
    seed_odd_org(live_fake, today, days_back=3)
    env = _env(live_fake, vm)
    assert run_cli(["--once"], tmp_path, env).returncode == 0
    vm.flush()
    costs = live_fake.costs()
    (key, value) = next((k, v) for k, v in costs.items() if k[0] == today)
    day, pid, item, currency = key
    live_fake.set_cost(day, pid, item, value + 5.0, currency)
    grown = run_cli(["verify", "--include-today", "--days", "2"], tmp_path, env)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    # the project's cost, and its per-key sum (`api_keys usd`), both grew
    assert "2 still arriving (today)" in grown.stdout
    assert "arriving" in grown.stdout.splitlines()[-2]  # the row is shown
    without_today = run_cli(["verify", "--days", "2"], tmp_path, env)
    assert without_today.returncode == 0, without_today.stdout
    assert "arriving" not in without_today.stdout
    live_fake.set_cost(day, pid, item, value / 2, currency)
    shrunk = run_cli(["verify", "--include-today", "--days", "2"], tmp_path, env)
    assert shrunk.returncode == 1, shrunk.stdout
    assert "2 different" in shrunk.stdout  # the cost, and its per-key sum


@pytest.mark.parametrize("days", ["1", "30"])
def test_verify_passes_right_after_a_default_demo_backfill(
    tmp_path: Path, vm: VictoriaMetrics, days: str
) -> None:
    """The default backfill is 30 complete days plus today: `verify --days N`
    passes for every N up to 30, with or without today."""
    env = {"VM_PUSH_URL": vm.push_url}
    assert run_cli(["--demo", "--once"], tmp_path, env).returncode == 0
    vm.flush()
    for extra in ([], ["--include-today", "--all"]):
        result = run_cli(["verify", "--demo", "--days", days, *extra], tmp_path, env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert " 0 different, 0 missing in VictoriaMetrics" in result.stdout


def _cost_series(
    project: str, points: dict[int, float], item: str = "a"
) -> tuple[tuple[tuple[str, str], ...], dict[int, float]]:
    labels = {
        "__name__": "openai_daily_cost",
        "currency": "usd",
        "job": "j",
        "line_item": item,
        "project": project,
        "project_id": "p",
    }
    return tuple(sorted(labels.items())), points


def test_vm_totals_count_a_renamed_projects_day_once() -> None:
    """Series that differ only in `project` are one series: per day the newest
    name's value counts (the one holding the latest sample), never the sum."""
    ms = 1000
    series = [
        _cost_series("old", {(D0 - DAY) * ms: 5.0, D0 * ms: 6.0}),
        _cost_series("new", {D0 * ms: 7.0, (D0 + DAY) * ms: 8.0}),
        _cost_series("new", {D0 * ms: 1.0}, item="b"),
    ]
    assert vm_totals(series) == {
        (D0 - DAY, "p", "cost usd"): 5.0,  # only the old name holds it
        (D0, "p", "cost usd"): 7.0 + 1.0,  # the new name's, summed over items
        (D0 + DAY, "p", "cost usd"): 8.0,
    }


def test_vm_totals_count_a_renamed_projects_token_bucket_once() -> None:
    """Token buckets follow the same rule, per bucket: an hourly series renamed
    in the middle of a day counts each bucket once."""

    def tokens(project: str, points: dict[int, float]) -> Series:
        labels = {
            "__name__": "openai_usage_tokens",
            "operation": "completions",
            "project": project,
            "project_id": "p",
            "type": "input",
        }
        return tuple(sorted(labels.items())), points

    hour = 3600 * 1000
    d0 = D0 * 1000
    series = [
        tokens("unknown", {d0: 1.0, d0 + hour: 2.0}),
        tokens("named", {d0 + hour: 2.0, d0 + 2 * hour: 4.0}),
    ]
    assert vm_totals(series) == {(D0, "p", "tokens completions input"): 7.0}


def test_verify_counts_a_renamed_projects_days_once(
    tmp_path: Path, live_fake: FakeOpenAI, vm: VictoriaMetrics
) -> None:
    """A project renamed, and one first pushed as `unknown`, hold every backfilled
    day under two names in VictoriaMetrics; verify counts each day once (exit 0)."""
    today = int(time.time()) // DAY * DAY
    live_fake.add_project("proj_renamed", "Before Rename")
    for day in range(today - 5 * DAY, today + DAY, DAY):
        live_fake.set_cost(day, "proj_renamed", "gpt-4o, input", 6.5)
        live_fake.set_cost(day, "proj_renamed", "gpt-4o, output", 3.25)
        live_fake.set_cost(day, "proj_late", "gpt-4o, input", 1.5)
    env = {**_env(live_fake, vm), "BACKFILL_DAYS": "5", "USAGE_BUCKET_WIDTH": "off"}
    assert run_cli(["--once"], tmp_path, env).returncode == 0  # proj_late: unknown
    live_fake.add_project("proj_renamed", "After Rename")
    live_fake.add_project("proj_late", "Late Project")
    assert run_cli(["--once"], tmp_path, env).returncode == 0
    vm.flush()
    names = {
        (s.metric["project_id"], s.metric["project"])
        for s in vm.export('{__name__="openai_daily_cost"}')
    }
    assert names == {
        ("proj_renamed", "before_rename"),
        ("proj_renamed", "after_rename"),
        ("proj_late", "unknown"),
        ("proj_late", "late_project"),
    }
    result = run_cli(["verify", "--days", "5", "--all"], tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    # each day's cost and per-key sum (`api_keys usd`) of both projects, once each
    assert "20 values: 20 equal, 0 different" in result.stdout
    rows = [ln for ln in result.stdout.splitlines() if "(proj_renamed)" in ln]
    assert len(rows) == 10
    assert all(" 9.750000 " in row and row.endswith("ok") for row in rows)
