"""Costs per project and API key end to end: the fake Admin API, a real VictoriaMetrics.

`openai_daily_cost_by_api_key` is its own data set: each day's cost per project and
API key, named from the projects' key lists. Its sum per project and day equals the
project's `openai_daily_cost` sum; days the API keeps no per-key data for are left
out without failing a cycle.
"""

from __future__ import annotations

import gzip
import logging
import math
import random
import time
from pathlib import Path

import pytest
import requests

from openai_cost_pusher import app
from openai_cost_pusher.app import UsagePlan
from openai_cost_pusher.config import load_settings
from openai_cost_pusher.demo import DemoOrganization
from openai_cost_pusher.metrics import api_key_label
from openai_cost_pusher.model import ApiKey
from openai_cost_pusher.openai_api import KEY_COSTS_FROM
from openai_cost_pusher.parsers import BadField, parse_api_keys_page
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI, Fault, RecordedRequest
from tests.orgs import DAY, make_pusher, seed_odd_org, spy_on_parsed_cost_batches
from tests.test_cli import run_cli
from tests.vm import VictoriaMetrics

BY_KEY = "openai_daily_cost_by_api_key"
KEYS = "/api_keys"
PROJECTS = {"proj_web": "Web Shop", "proj_ml": "ML Lab"}
KEY_LISTS = {
    "proj_web": {
        "key_front": "Front End",
        "key_batch": "Batch/Worker ✓",
        "key_ops": "Ops",
    },
    "proj_ml": {"key_train": "Trainer"},
}
EXPECTED_NAME = {
    "key_front": "front_end",
    "key_batch": "batch_worker",
    "key_ops": "ops",
    "key_train": "trainer",
    "key_ghost": "unknown",  # made costs, but in no key list
    "": "none",  # usage not made with a project key
}


def seed_keyed_org(fake: FakeOpenAI, today: int, days_back: int = 5) -> None:
    """Fill `fake` with two projects whose costs are split over keys, no key, and a
    key that no list holds, plus costs without a project."""
    for project_id, name in PROJECTS.items():
        fake.add_project(project_id, name)
        for key_id, key_name in KEY_LISTS[project_id].items():
            fake.add_api_key(project_id, key_id, key_name)
    rng = random.Random(11)
    owners: dict[str, tuple[str | None, ...]] = {
        "proj_web": ("key_front", "key_batch", "key_ops", None, "key_ghost"),
        "proj_ml": ("key_train", None),
    }
    for day in range(today - days_back * DAY, today + DAY, DAY):
        for project_id, keys in owners.items():
            for item in ("gpt-4o, input", "gpt-4o, output"):
                shares = {k: round(rng.uniform(0.01, 40.0), 6) for k in keys}
                fake.set_cost(
                    day, project_id, item, math.fsum(shares.values()), api_keys=shares
                )
        fake.set_cost(day, None, "fine-tuning", round(rng.uniform(1, 9), 6))


def _today(clock: Clock) -> int:
    return int(clock.now) // DAY * DAY


def _per_key(vm: VictoriaMetrics) -> dict[tuple[str, str, str, int], float]:
    """Return every stored per-key value by (project id, key id, key name, ms)."""
    out: dict[tuple[str, str, str, int], float] = {}
    for series in vm.export(f'{{__name__="{BY_KEY}"}}'):
        m = series.metric
        assert len(series.timestamps) == len(set(series.timestamps)), series
        for ts, value in zip(series.timestamps, series.values, strict=True):
            key = (m.get("project_id", ""), m.get("api_key_id", ""), m["api_key"], ts)
            out[key] = value
    return out


def _key_sums(fake: FakeOpenAI, start: int) -> dict[tuple[str, str, int], float]:
    """Return the fake's cost per project, key id and day (ms) from `start` on."""
    parts: dict[tuple[str, str, int], list[float]] = {}
    for (day, pid, _item, _cur), value in fake.costs().items():
        if day < start:
            continue
        split = fake._cost_keys.get((day, pid, _item, _cur)) or {None: value}
        for key_id, share in split.items():
            parts.setdefault((pid or "", key_id or "", day * 1000), []).append(share)
    return {k: math.fsum(v) for k, v in parts.items()}


def _key_requests(fake: FakeOpenAI) -> list[RecordedRequest]:
    return [
        r
        for r in fake.requests_to("/organization/costs")
        if "api_key_id" in r.values("group_by")
    ]


def test_per_key_costs_land_with_key_names(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Every project, key and day lands once with the key's normalized name; `none`
    for costs without a key, `unknown` for a key no list holds; the key list is read
    across its pages, and answers in the live forms are read exactly."""
    today = _today(clock)
    seed_keyed_org(fake, today)
    fake.api_key_page_size = 1  # three pages for proj_web's three keys
    fake.omit_null_optionals = True
    fake.decimal_amounts = True
    pusher = make_pusher(fake, vm.push_url, clock, costs_by_api_key=True)
    report = pusher.run_cycle()
    assert report.ok, report.error
    assert report.get(app.KEY_COSTS).landed_days == 31
    stored = _per_key(vm)
    expected = _key_sums(fake, today - 30 * DAY)
    assert {(p, k, ts) for p, k, _, ts in stored} == set(expected)
    for (project_id, key_id, name, ts), value in stored.items():
        assert name == EXPECTED_NAME[key_id], (key_id, name)
        want = expected[(project_id, key_id, ts)]
        assert abs(value - want) <= 1e-9 * want, (project_id, key_id, ts)
    listed = fake.requests_to(KEYS)
    web = [r for r in listed if r.path.endswith("/proj_web/api_keys")]
    assert [r.param("after") for r in web] == [None, "key_front", "key_batch"]
    assert {r.param("limit") for r in listed} == {"100"}
    # the projects with per-key costs only: never the unattributed costs
    assert {r.path.split("/")[-2] for r in listed} == {"proj_web", "proj_ml"}
    grouped = {tuple(r.values("group_by")) for r in _key_requests(fake)}
    assert grouped == {("project_id", "api_key_id")}


def test_per_key_sum_equals_the_projects_daily_cost_day_by_day(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """For every project and day, the per-key values sum to the `openai_daily_cost`
    sum, as VictoriaMetrics answers it."""
    today = _today(clock)
    seed_keyed_org(fake, today)
    seed_odd_org(fake, today, days_back=4)  # more projects, none with key splits
    pusher = make_pusher(fake, vm.push_url, clock, costs_by_api_key=True)
    assert pusher.run_cycle().ok
    checked = 0
    for day in range(today - 4 * DAY, today + DAY, DAY):
        at = day + DAY - 1
        costs = vm.query(
            "sum by (project_id) (last_over_time(openai_daily_cost[1d]))", at
        )
        keyed = vm.query(f"sum by (project_id) (last_over_time({BY_KEY}[1d]))", at)
        by_cost = {
            r["metric"].get("project_id", ""): float(r["value"][1]) for r in costs
        }
        by_key = {
            r["metric"].get("project_id", ""): float(r["value"][1]) for r in keyed
        }
        assert by_cost.keys() == by_key.keys(), day
        for project_id, value in by_cost.items():
            assert math.isclose(by_key[project_id], value, rel_tol=1e-9), project_id
            checked += 1
    assert checked >= 5 * 8


def test_a_key_that_disappears_keeps_its_name_and_lists_are_read_hourly(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """The key lists are read again at most once an hour; a key deleted from its
    list keeps the name it had, a key created since is `unknown` until the next
    read, then named."""
    today = _today(clock)
    seed_keyed_org(fake, today, days_back=2)
    pusher = make_pusher(
        fake, vm.push_url, clock, lookback_days=2, costs_by_api_key=True
    )
    assert pusher.run_cycle().ok
    assert len(fake.requests_to(KEYS)) == 2  # one page per project
    fake.remove_api_key("proj_web", "key_ops")
    fake.set_cost(
        today, "proj_ml", "gpt-4o, input", 3.0, api_keys={"key_new": 1.0, None: 2.0}
    )
    fake.add_api_key("proj_ml", "key_new", "Fresh Key")
    clock.now += 1800  # half an hour: the lists are not read again
    assert pusher.run_cycle().ok
    assert len(fake.requests_to(KEYS)) == 2
    names = {(k, n) for _, k, n, ts in _per_key(vm) if ts == today * 1000}
    assert ("key_new", "unknown") in names
    clock.now += 1801  # an hour after the first read: read again, both projects
    assert pusher.run_cycle().ok
    assert len(fake.requests_to(KEYS)) == 4
    names = {(k, n) for _, k, n, ts in _per_key(vm) if ts == today * 1000}
    assert ("key_new", "fresh_key") in names
    assert ("key_ops", "ops") in names  # gone from the list, still named
    assert not any(k == "key_ops" and n == "unknown" for k, n in names)


def test_per_key_costs_sent_again_are_not_parsed(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady cycle parses none of the per-key costs (nor the costs) it was sent
    before byte for byte; a day whose split changed is parsed, and lands."""
    today = _today(clock)
    seed_keyed_org(fake, today)
    parsed = spy_on_parsed_cost_batches(monkeypatch)
    pusher = make_pusher(fake, vm.push_url, clock, costs_by_api_key=True)
    assert pusher.run_cycle().ok
    assert len(pusher.tables.kept_costs[app.KEY_COSTS].batches) == 3  # the lookback
    parsed.clear()
    clock.now += 60
    assert pusher.run_cycle().ok
    assert parsed == []
    fake.set_cost(
        today - DAY,
        "proj_ml",
        "gpt-4o, input",
        90.0,
        api_keys={"key_train": 50.0, None: 40.0},
    )
    clock.now += 60
    assert pusher.run_cycle().ok
    assert parsed == [today - DAY] * 2  # the day's costs, then its per-key costs
    stored = {(p, k, ts): v for (p, k, _, ts), v in _per_key(vm).items()}
    assert stored == pytest.approx(_key_sums(fake, today - 30 * DAY), rel=1e-9)
    assert pusher.stats.downward_revisions == 0


def test_days_the_api_refuses_are_no_failure_and_said_once(
    tmp_path: Path,
    vm: VictoriaMetrics,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Days before 2025-12-06 are never asked for (said once); a grouping the API
    refuses (400, as it answers for those days) leaves the window without per-key
    data, logged once over several cycles, and the cycle succeeds."""
    clock = Clock(KEY_COSTS_FROM + 3 * DAY + 12 * 3600)  # 2025-12-09 12:00 UTC
    today = _today(clock)
    with FakeOpenAI(page_size=4, now=clock) as fake:
        seed_keyed_org(fake, today, days_back=10)
        pusher = make_pusher(fake, vm.push_url, clock, costs_by_api_key=True)
        with caplog.at_level(logging.INFO, logger="openai_cost_pusher"):
            report = pusher.run_cycle()
            assert report.ok, report.error
            assert pusher.run_cycle().ok
        asked = _key_requests(fake)
        assert min(int(r.param("start_time") or 0) for r in asked) == KEY_COSTS_FROM
        days = {ts // 1000 for _, _, _, ts in _per_key(vm)}
        assert days == set(range(KEY_COSTS_FROM, today + DAY, DAY))
        before = [r for r in caplog.records if "before 2025-12-06" in r.getMessage()]
        assert len(before) == 1
        # the API refusing the days asked for: no data, no failure, said once
        monkeypatch.setattr(app, "KEY_COSTS_FROM", KEY_COSTS_FROM - 5 * DAY)
        fake.clear_requests()
        caplog.clear()
        pusher = make_pusher(
            fake, vm.push_url, clock, lookback_days=30, costs_by_api_key=True
        )
        with caplog.at_level(logging.INFO, logger="openai_cost_pusher"):
            for _ in range(3):
                report = pusher.run_cycle()
                assert report.ok, report.error
                assert report.get(app.KEY_COSTS).samples == 0
                clock.now += 900
        refused = [r for r in caplog.records if "refuses" in r.getMessage()]
        assert len(refused) == 1
        assert "HTTP 400" in refused[0].__dict__["reason"]
        assert len(_key_requests(fake)) == 3  # asked each cycle, refused each time
        assert report.get("costs").landed_days > 0  # the costs go on
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_costs_by_api_key_false_makes_no_per_key_request(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Off, the cycle asks for no per-key costs and no key list."""
    seed_keyed_org(fake, _today(clock))
    settings = load_settings({}, {"COSTS_BY_API_KEY": "false"}, {}, lambda path: "")
    assert settings.costs_by_api_key is False
    assert load_settings({}, {}, {}, lambda path: "").costs_by_api_key is True
    pusher = make_pusher(
        fake, vm.push_url, clock, costs_by_api_key=settings.costs_by_api_key
    )
    assert pusher.run_cycle().ok
    assert fake.requests_to("/organization/costs")
    assert not _key_requests(fake)
    assert not fake.requests_to(KEYS)
    assert not vm.export(f'{{__name__="{BY_KEY}"}}')


def test_usage_series_carry_the_key_name(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """With USAGE_GROUP_BY_API_KEY the usage series carry `api_key` beside
    `api_key_id`: the key's name, `none` without a key, `unknown` for no list's."""
    today = _today(clock)
    seed_keyed_org(fake, today, days_back=1)
    for key_id in ("key_front", None, "key_ghost"):
        fake.add_usage(
            "completions",
            today + 3600,
            project_id="proj_web",
            api_key_id=key_id,
            model="gpt-4o",
            input_tokens=100,
            output_tokens=10,
            num_model_requests=1,
        )
    plan = UsagePlan.build(
        "1d",
        lookback_days=2,
        backfill_days=1,
        lookback_hours=24,
        backfill_hours=24,
        by_api_key=True,
    )
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=1, usage=plan)
    report = pusher.run_cycle()
    assert report.ok, report.error
    names = {
        (s.metric.get("api_key_id", ""), s.metric["api_key"])
        for s in vm.export('{__name__="openai_usage_tokens"}')
    }
    assert names == {("key_front", "front_end"), ("", "none"), ("key_ghost", "unknown")}
    assert [r.path.split("/")[-2] for r in fake.requests_to(KEYS)] == ["proj_web"]


def test_verify_checks_the_per_key_sums(tmp_path: Path, vm: VictoriaMetrics) -> None:
    """`verify` passes after a push, compares each project's per-key sum with its
    cost per day, and fails naming the row once a per-key value is wrong."""
    with FakeOpenAI(page_size=4) as fake:
        today = int(time.time()) // DAY * DAY
        seed_keyed_org(fake, today, days_back=8)
        env = {
            "OPENAI_ADMIN_KEY": fake.admin_key,
            "OPENAI_BASE_URL": fake.base_url,
            "VM_PUSH_URL": vm.push_url,
            "RETRY_BUDGET": "5s",
            "USAGE_BUCKET_WIDTH": "off",
        }
        assert run_cli(["--once"], tmp_path, env).returncode == 0
        vm.flush()
        clean = run_cli(["verify", "--days", "7", "--all"], tmp_path, env)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        keyed = [line for line in clean.stdout.splitlines() if "api_keys usd" in line]
        # two projects and the costs without a project, for 7 days
        assert len(keyed) == 7 * 3 and all(line.endswith("ok") for line in keyed)
        day = today - 2 * DAY
        line = (
            f'{BY_KEY}{{job="openai-cost-pusher",project_id="proj_ml",project="ml_lab",'
            f'api_key_id="key_train",api_key="trainer",currency="usd"}} '
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
        damaged = run_cli(["verify", "--days", "7"], tmp_path, env)
        assert damaged.returncode == 1, damaged.stdout + damaged.stderr
        assert "ml_lab (proj_ml)  api_keys usd" in damaged.stdout
        # switched off, neither the pusher nor verify asks for per-key data
        fake.clear_requests()
        off_env = {**env, "COSTS_BY_API_KEY": "false"}
        assert run_cli(["--once"], tmp_path, off_env).returncode == 0
        off = run_cli(["verify", "--days", "7"], tmp_path, off_env)
        assert off.returncode == 0, off.stdout + off.stderr
        assert "api_keys" not in off.stdout
        assert fake.requests_to("/organization/costs")
        assert not _key_requests(fake) and not fake.requests_to(KEYS)


def test_demo_per_key_costs_sum_to_the_projects_costs() -> None:
    """The demo's per-key answer sums, per project and day, to its line items; its
    keys are named from their lists but for one that left its list (`unknown`)."""
    demo = DemoOrganization(lambda: 1_790_000_000.0)
    start = 1_790_000_000 // DAY * DAY - 20 * DAY  # the legacy project's days too
    end = start + 21 * DAY
    costs: dict[tuple[int, str], list[float]] = {}
    for page in demo.fetch_costs(start, end):
        for line in page:
            costs.setdefault((line.day, line.project_id), []).append(line.value)
    keyed: dict[tuple[int, str], list[float]] = {}
    keys: set[str] = set()
    for page in demo.fetch_costs(start, end, None, ("project_id", "api_key_id")):
        for line in page:
            assert line.line_item == "" and line.quantity is None
            keyed.setdefault((line.day, line.project_id), []).append(line.value)
            keys.add(line.api_key_id)
    assert keyed.keys() == costs.keys()
    for cell, values in costs.items():
        assert math.isclose(math.fsum(keyed[cell]), math.fsum(values), rel_tol=1e-12)
    names = {
        key.id: key.name
        for project in demo.fetch_projects()
        for key in demo.fetch_api_keys(project.id)
    }
    labels = {api_key_label(k, names) for k in keys}
    assert {"none", "unknown", "chat_web_backend", "ünïcode_app"} <= labels


def test_repair_pushes_a_projects_per_key_history_again(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    """A per-key cost revised downwards stays high in VictoriaMetrics (deduplication
    keeps the largest): verify names the day, and `--repair --yes` deletes that
    project's per-key series and pushes them again, names and all, so that verify
    passes; a key gone from its list keeps the name it was stored with."""
    with FakeOpenAI(page_size=4) as fake:
        today = int(time.time()) // DAY * DAY
        seed_keyed_org(fake, today, days_back=8)
        env = {
            "OPENAI_ADMIN_KEY": fake.admin_key,
            "OPENAI_BASE_URL": fake.base_url,
            "VM_PUSH_URL": vm.push_url,
            "RETRY_BUDGET": "5s",
            "USAGE_BUCKET_WIDTH": "off",
        }
        assert run_cli(["--once"], tmp_path, env).returncode == 0
        day = today - 3 * DAY
        key = (day, "proj_web", "gpt-4o, input", "usd")
        shares = dict(fake._cost_keys[key])
        shares["key_front"] = round(shares["key_front"] / 2, 6)
        fake.set_cost(*key[:3], math.fsum(shares.values()), api_keys=shares)
        fake.remove_api_key("proj_web", "key_ops")
        # the daily cost too was revised down: its series are repaired as well
        vm.flush()
        found = run_cli(["verify", "--days", "7"], tmp_path, env)
        assert found.returncode == 1, found.stdout + found.stderr
        assert "web_shop (proj_web)  api_keys usd" in found.stdout
        done = run_cli(["verify", "--days", "7", "--repair", "--yes"], tmp_path, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{BY_KEY}, usd: 5 series deleted and pushed again" in done.stdout
        stored = _per_key(vm)
        front = {ts: v for (p, k, _, ts), v in stored.items() if k == "key_front"}
        assert front[day * 1000] == pytest.approx(
            _key_sums(fake, day)[("proj_web", "key_front", day * 1000)], rel=1e-9
        )
        assert {n for _, k, n, _ in stored if k == "key_ops"} == {"ops"}
        assert {p for p, _, _, _ in stored} == {"proj_web", "proj_ml", ""}


def test_a_refused_key_list_is_said_once_and_fails_nothing(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An admin key without the scope for key lists (403): the per-key costs land
    with their keys `unknown`, one WARNING says so, and the list is asked again only
    an hour later."""
    today = _today(clock)
    seed_keyed_org(fake, today, days_back=1)
    fake.inject(Fault(status=403), path_prefix="/organization/projects/proj_web/")
    pusher = make_pusher(
        fake, vm.push_url, clock, backfill_days=1, costs_by_api_key=True
    )
    with caplog.at_level(logging.INFO, logger="openai_cost_pusher"):
        assert pusher.run_cycle().ok
        clock.now += 900
        assert pusher.run_cycle().ok
    said = [r for r in caplog.records if "cannot read API key lists" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "HTTP 403" in said[0].getMessage()
    names = {(p, n) for p, _, n, _ in _per_key(vm)}
    assert ("proj_web", "unknown") in names and ("proj_web", "front_end") not in names
    assert ("proj_ml", "trainer") in names
    assert len(fake.requests_to(KEYS)) == 2  # once per project, not every cycle


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"data": [{"name": "x"}], "has_more": False}, "w.data[0].id"),
        ({"data": [{"id": "", "name": "x"}], "has_more": False}, "w.data[0].id"),
        ({"data": [{"id": "k", "name": 5}], "has_more": False}, "w.data[0].name"),
        ({"data": [], "has_more": "no"}, "w.has_more"),
        ({"data": {}, "has_more": False}, "w.data"),
        ([], "w"),
    ],
)
def test_a_bad_key_list_names_the_field(body: object, path: str) -> None:
    """A key list page of the wrong shape is refused naming the bad value; a null
    name reads as empty (the key is then labelled by its id)."""
    with pytest.raises(BadField) as info:
        parse_api_keys_page(body, "w")
    assert info.value.path == path
    keys, more = parse_api_keys_page(
        {
            "data": [{"id": "k", "name": None, "redacted_value": "sk-..."}],
            "has_more": False,
        },
        "w",
    )
    assert (keys, more) == ([ApiKey("k", "")], False)
    assert api_key_label("k", {"k": ""}) == "k"
