"""Test the metric contract: name normalization, project labels and the sample builders.

The rules are the metric contract of docs/design.md: `project` is the normalized name,
with `unattributed`, `unknown` and the id itself as fallbacks; `project_id` keeps
projects with alike names apart; daily costs are stamped at 00:00 UTC and the live
series at push time.
"""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
from collections.abc import Iterable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from openai_cost_pusher.app import Pusher, UsagePlan
from openai_cost_pusher.demo import DemoOrganization
from openai_cost_pusher.metrics import (
    API_REQUESTS,
    BUILD_INFO,
    COST_TODAY,
    CYCLE_DURATION,
    CYCLES_TOTAL,
    DAILY_COST,
    DOWNWARD_REVISIONS,
    LAST_SUCCESS,
    SAMPLES_PUSHED,
    UNATTRIBUTED,
    UNKNOWN,
    CostColumns,
    CostTable,
    LabelsByNumber,
    SelfStats,
    add_cost_lines,
    cost_samples,
    merge_names,
    normalize_name,
    project_label,
    self_samples,
    today_samples,
)
from openai_cost_pusher.model import (
    Columns,
    CostLine,
    Labels,
    Points,
    Project,
    Sample,
)
from openai_cost_pusher.push import PushStats, VmClient
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from tests.vm import VictoriaMetrics

DAY = 86_400
T0 = 1_730_419_200  # 2024-11-01 00:00 UTC
NOW_MS = (T0 + 10 * 3600) * 1000
JOB: Labels = (("job", "openai-cost-pusher"),)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Assistant Test/Eval", "assistant_test_eval"),
        ("Ünïcode Проект ✓", "ünïcode_проект"),
        ("U\u0308ni\u0308code Проект ✓", "ünïcode_проект"),  # decomposed input
        ("Customer Chat", "customer_chat"),
        ("Search & Retrieval", "search_retrieval"),
        ("chat_bot", "chat_bot"),
        ("a__b", "a_b"),
        ("a - b", "a_b"),
        ("Prod 2024", "prod_2024"),
        ("  --Chat Bot!!  ", "chat_bot"),
        ("__x__", "x"),
        ("✓ ok ✓", "ok"),
        ("日本語 チーム", "日本語_チーム"),
        ("ÀÉÎ", "àéî"),
        ("v2.0-beta", "v2_0_beta"),
        ("tab\tand\nnewline", "tab_and_newline"),
    ],
)
def test_normalize_name(name: str, expected: str) -> None:
    """Names lowercase, runs of non-letters/digits become one `_`, ends are stripped."""
    assert normalize_name(name) == expected


@pytest.mark.parametrize("name", ["", " ", "___", "!!!", "✓✓", "🙂", " - / - ", "\n"])
def test_normalize_name_to_nothing(name: str) -> None:
    """Names without a letter or digit normalize to the empty string."""
    assert normalize_name(name) == ""


@settings(max_examples=300)
@given(st.text())
def test_normalize_name_is_idempotent(name: str) -> None:
    """Normalizing a normalized name changes nothing."""
    once = normalize_name(name)
    assert normalize_name(once) == once


@settings(max_examples=300)
@given(st.text())
def test_normalize_name_charset(name: str) -> None:
    """Output holds only letters, digits and single `_`, never at either end."""
    out = normalize_name(name)
    assert all(ch.isalnum() or ch == "_" for ch in out)
    assert "__" not in out
    assert not out.startswith("_")
    assert not out.endswith("_")


@given(st.text(alphabet=st.characters(categories=["Ll", "Lo", "Nd"]), min_size=1))
def test_normalize_name_keeps_letters_and_digits(name: str) -> None:
    """A name of lowercase letters and digits only (NFC) comes back unchanged."""
    assume(unicodedata.normalize("NFC", name) == name and name.lower() == name)
    assert normalize_name(name) == name


NAMES: dict[str, str | None] = {
    "proj_a": "Chat Bot",
    "proj_none": None,
    "proj_empty": "",
    "proj_junk": "✓ ✓ ✓",
    "proj_intl": "Ünïcode Проект ✓",
}


@pytest.mark.parametrize(
    ("project_id", "expected"),
    [
        ("", UNATTRIBUTED),
        ("proj_a", "chat_bot"),
        ("proj_intl", "ünïcode_проект"),
        ("proj_missing", UNKNOWN),
        ("proj_none", "proj_none"),
        ("proj_empty", "proj_empty"),
        ("proj_junk", "proj_junk"),
    ],
)
def test_project_label(project_id: str, expected: str) -> None:
    """Empty id is unattributed, absent id unknown, unusable name falls back to id."""
    assert project_label(project_id, NAMES) == expected


def test_project_label_unattributed_even_if_listed() -> None:
    """An empty project id is `unattributed` even if the names map has a "" key."""
    assert project_label("", {"": "Something"}) == UNATTRIBUTED


def test_unknown_needs_empty_names_map() -> None:
    """With no project list at all, every non-empty id is `unknown`."""
    assert project_label("proj_a", {}) == UNKNOWN


def test_merge_names_keeps_vanished_projects() -> None:
    """A project missing from the new list keeps its last name, not `unknown`."""
    known: dict[str, str | None] = {"proj_old": "Old Name", "proj_a": "A"}
    merged = merge_names(
        known, [Project("proj_a", "A2"), Project("proj_b", None, archived=True)]
    )
    assert merged == {"proj_old": "Old Name", "proj_a": "A2", "proj_b": None}
    assert known == {"proj_old": "Old Name", "proj_a": "A"}  # input not mutated
    assert project_label("proj_old", merged) == "old_name"
    assert project_label("proj_b", merged) == "proj_b"


def test_merge_names_with_empty_list_keeps_everything() -> None:
    """An empty project list changes no known name."""
    assert merge_names({"proj_a": "A"}, []) == {"proj_a": "A"}


def _line(
    day: int = T0,
    project_id: str = "proj_a",
    line_item: str = "gpt-4o, input",
    currency: str = "usd",
    value: float = 1.0,
) -> CostLine:
    return CostLine(day, project_id, line_item, currency, value)


def _table(raw: dict[tuple[str, str, str], dict[int, float]]) -> CostTable:
    """Return a cost table holding `raw`'s days and values."""
    table: CostTable = {}
    for key, days in raw.items():
        points = table[key] = Points(DAY)
        for day, value in days.items():
            points[day] = value
    return table


def test_add_cost_lines_sums_duplicates() -> None:
    """Lines that share project, line item, currency and day are summed."""
    table: CostTable = {}
    add_cost_lines(table, [_line(value=0.1), _line(value=0.2)])
    add_cost_lines(table, [_line(value=0.25)])  # a later page adds to the same day
    assert table == {
        ("proj_a", "gpt-4o, input", "usd"): {
            T0: math.fsum((math.fsum((0.1, 0.2)), 0.25))
        }
    }


def test_add_cost_lines_keeps_series_and_days_apart() -> None:
    """Different days, line items, currencies and projects stay separate entries."""
    table: CostTable = {}
    add_cost_lines(
        table,
        [
            _line(value=1.0),
            _line(day=T0 + DAY, value=2.0),
            _line(line_item="", value=3.0),
            _line(currency="eur", value=4.0),
            _line(project_id="", value=5.0),
        ],
    )
    assert table == {
        ("proj_a", "gpt-4o, input", "usd"): {T0: 1.0, T0 + DAY: 2.0},
        ("proj_a", "", "usd"): {T0: 3.0},
        ("proj_a", "gpt-4o, input", "eur"): {T0: 4.0},
        ("", "gpt-4o, input", "usd"): {T0: 5.0},
    }


def _by_series(samples: list[Sample]) -> dict[tuple[str, Labels, int], float]:
    out = {(s.name, s.labels, s.ts_ms): s.value for s in samples}
    assert len(out) == len(samples), "two samples share series and timestamp"
    return out


def test_cost_samples_labels_and_timestamps() -> None:
    """Each series and day gives one sample stamped at the day's 00:00 UTC in ms."""
    table = _table(
        {
            ("proj_a", "gpt-4o, input", "usd"): {T0: 1.5, T0 + DAY: 2.0},
            ("", "", "usd"): {T0: 0.25},
            ("proj_gone", "gpt-4o, output", "usd"): {T0: 3.0},
        }
    )
    samples = list(cost_samples(table, NAMES, JOB))
    a = (
        ("currency", "usd"),
        ("job", "openai-cost-pusher"),
        ("line_item", "gpt-4o, input"),
        ("project", "chat_bot"),
        ("project_id", "proj_a"),
    )
    unattributed = (
        ("currency", "usd"),
        ("job", "openai-cost-pusher"),
        ("line_item", ""),
        ("project", "unattributed"),
        ("project_id", ""),
    )
    gone = (
        ("currency", "usd"),
        ("job", "openai-cost-pusher"),
        ("line_item", "gpt-4o, output"),
        ("project", "unknown"),
        ("project_id", "proj_gone"),
    )
    assert _by_series(samples) == {
        (DAILY_COST, a, T0 * 1000): 1.5,
        (DAILY_COST, a, (T0 + DAY) * 1000): 2.0,
        (DAILY_COST, unattributed, T0 * 1000): 0.25,
        (DAILY_COST, gone, T0 * 1000): 3.0,
    }
    assert all(s.labels == tuple(sorted(s.labels)) for s in samples)
    assert T0 * 1000 == 1_730_419_200_000


def test_alike_names_stay_apart_by_project_id() -> None:
    """Two projects whose names normalize alike give two series, not one sum."""
    names: dict[str, str | None] = {"proj_1": "Chat Bot", "proj_2": "chat-bot"}
    table: CostTable = {}
    add_cost_lines(
        table,
        [_line(project_id="proj_1", value=1.0), _line(project_id="proj_2", value=2.0)],
    )
    samples = list(cost_samples(table, names, ()))
    assert len(samples) == 2
    assert {dict(s.labels)["project"] for s in samples} == {"chat_bot"}
    assert {(dict(s.labels)["project_id"], s.value) for s in samples} == {
        ("proj_1", 1.0),
        ("proj_2", 2.0),
    }
    today = today_samples(table, names, (), T0, NOW_MS)
    assert {(dict(s.labels)["project_id"], s.value) for s in today} == {
        ("proj_1", 1.0),
        ("proj_2", 2.0),
    }


def test_today_samples_sum_today_per_project_and_currency() -> None:
    """`openai_cost_today` sums today's line items per project and currency only."""
    table = _table(
        {
            ("proj_a", "gpt-4o, input", "usd"): {T0 - DAY: 100.0, T0: 1.25},
            ("proj_a", "gpt-4o, output", "usd"): {T0: 2.5},
            ("proj_a", "gpt-4o, input", "eur"): {T0: 7.0},
            ("proj_old", "gpt-4o, input", "usd"): {T0 - DAY: 50.0},  # nothing today
            ("", "", "usd"): {T0: 0.5},
        }
    )
    samples = today_samples(table, NAMES, JOB, T0, NOW_MS)
    assert {s.name for s in samples} == {COST_TODAY}
    assert {s.ts_ms for s in samples} == {NOW_MS}
    got = {
        (dict(s.labels)["project_id"], dict(s.labels)["currency"]): s.value
        for s in samples
    }
    assert got == {("proj_a", "usd"): 3.75, ("proj_a", "eur"): 7.0, ("", "usd"): 0.5}
    for s in samples:
        labels = dict(s.labels)
        assert set(labels) == {"currency", "job", "project", "project_id"}
        assert labels["project"] == project_label(labels["project_id"], NAMES)
        assert s.labels == tuple(sorted(s.labels))


def test_today_samples_empty_without_today() -> None:
    """No cost today gives no live sample."""
    table = _table({("proj_a", "x", "usd"): {T0 - DAY: 1.0}})
    assert today_samples(table, NAMES, JOB, T0, NOW_MS) == []


def test_self_samples_cover_design_3_4() -> None:
    """Every self-monitoring series of DESIGN 3.4 is built, with its labels, at now."""
    stats = SelfStats(version="1.2.3")
    stats.last_success["costs"] = 1_730_455_200.5
    stats.cycle_duration_s = 1.5
    stats.cycles["success"] = 2
    stats.cycles["failure"] = 1
    stats.count_request("costs", "200")
    stats.count_request("costs", "200")
    stats.count_request("projects", "429")
    stats.samples_pushed = 7
    stats.downward_revisions = 3
    samples = self_samples(stats, JOB, NOW_MS)
    assert {s.ts_ms for s in samples} == {NOW_MS}
    got = {
        (s.name, tuple((k, v) for k, v in s.labels if k != "job")): s.value
        for s in samples
    }
    assert len(got) == len(samples)
    assert got == {
        (LAST_SUCCESS, (("dataset", "costs"),)): 1_730_455_200.5,
        (CYCLE_DURATION, ()): 1.5,
        (CYCLES_TOTAL, (("result", "success"),)): 2,
        (CYCLES_TOTAL, (("result", "failure"),)): 1,
        (API_REQUESTS, (("code", "200"), ("endpoint", "costs"))): 2,
        (API_REQUESTS, (("code", "429"), ("endpoint", "projects"))): 1,
        (SAMPLES_PUSHED, ()): 7,
        (DOWNWARD_REVISIONS, ()): 3,
        (BUILD_INFO, (("version", "1.2.3"),)): 1,
    }
    assert all(dict(s.labels)["job"] == "openai-cost-pusher" for s in samples)
    assert all(s.labels == tuple(sorted(s.labels)) for s in samples)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (DAILY_COST, "openai_daily_cost"),
        (COST_TODAY, "openai_cost_today"),
        (LAST_SUCCESS, "openai_cost_pusher_last_success_timestamp_seconds"),
        (CYCLE_DURATION, "openai_cost_pusher_cycle_duration_seconds"),
        (CYCLES_TOTAL, "openai_cost_pusher_cycles_total"),
        (API_REQUESTS, "openai_cost_pusher_api_requests_total"),
        (SAMPLES_PUSHED, "openai_cost_pusher_samples_pushed"),
        (DOWNWARD_REVISIONS, "openai_cost_pusher_downward_revisions_total"),
        (BUILD_INFO, "openai_cost_pusher_build_info"),
    ],
)
def test_metric_names_are_the_contract(name: str, expected: str) -> None:
    """Metric names match DESIGN 3 exactly: renaming one breaks dashboards."""
    assert name == expected


def test_self_samples_fresh_stats() -> None:
    """Before any cycle, counters are zero and no success or duration is claimed."""
    samples = self_samples(SelfStats(version="0.1.0"), (), NOW_MS)
    got = {(s.name, s.labels): s.value for s in samples}
    assert got == {
        (CYCLES_TOTAL, (("result", "success"),)): 0,
        (CYCLES_TOTAL, (("result", "failure"),)): 0,
        (SAMPLES_PUSHED, ()): 0,
        (DOWNWARD_REVISIONS, ()): 0,
        (BUILD_INFO, (("version", "0.1.0"),)): 1,
    }


def test_samples_carry_extra_labels() -> None:
    """Extra labels such as `demo="true"` appear on cost, live and self samples."""
    extra: Labels = (("demo", "true"), ("job", "openai-cost-pusher"))
    table = _table({("proj_a", "x", "usd"): {T0: 1.0}})
    samples = [
        *cost_samples(table, NAMES, extra),
        *today_samples(table, NAMES, extra, T0, NOW_MS),
        *self_samples(SelfStats(version="v"), extra, NOW_MS),
    ]
    for s in samples:
        labels = dict(s.labels)
        assert labels["demo"] == "true"
        assert labels["job"] == "openai-cost-pusher"


# -- the instance label: self-monitoring only -----------------------------------------


def test_self_samples_carry_instance() -> None:
    """With an instance, every self-monitoring sample carries it; without, none."""
    stats = SelfStats(version="v", instance="pod-1")
    stats.last_success["costs"] = 1.0
    stats.cycle_duration_s = 0.5
    stats.count_request("costs", "200")
    samples = self_samples(stats, JOB, NOW_MS)
    assert {s.name for s in samples} == {
        LAST_SUCCESS,
        CYCLE_DURATION,
        CYCLES_TOTAL,
        API_REQUESTS,
        SAMPLES_PUSHED,
        DOWNWARD_REVISIONS,
        BUILD_INFO,
    }
    for s in samples:
        assert s.name.startswith("openai_cost_pusher_")
        assert dict(s.labels)["instance"] == "pod-1", s
        assert s.labels == tuple(sorted(s.labels))
    bare = self_samples(SelfStats(version="v"), JOB, NOW_MS)
    assert all("instance" not in dict(s.labels) for s in bare)


class _Recorder:
    """A sink that keeps every pushed exposition line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        stats = PushStats()
        for chunk in chunks:
            self.lines.extend(chunk.decode().splitlines())
            stats.requests += 1
        return stats


def _demo_pusher(instance: str, sink: _Recorder, now: float) -> Pusher:
    return Pusher(
        DemoOrganization(lambda: now),
        sink,
        lookback_days=2,
        backfill_days=3,
        extra_labels=JOB,
        usage=UsagePlan.build(
            "1d",
            lookback_days=2,
            backfill_days=3,
            lookback_hours=24,
            backfill_hours=24,
        ),
        clock=lambda: now,
        stats=SelfStats(version="v", instance=instance),
    )


def _families(lines: list[str]) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for line in lines:
        by_name.setdefault(re.split(r"[{ ]", line, maxsplit=1)[0], []).append(line)
    return by_name


def test_instance_only_on_self_monitoring_series() -> None:
    """A cycle pushes `instance` on every `openai_cost_pusher_*` series and on none
    of the cost, live or usage series: those stay the same series (byte for byte)
    whichever pusher pushes them, so deduplication merges them."""
    now = T0 + 10 * 3600.0
    pushed: dict[str, dict[str, list[str]]] = {}
    for instance in ("pod-a", "laptop"):
        sink = _Recorder()
        assert _demo_pusher(instance, sink, now).run_cycle().ok
        pushed[instance] = _families(sink.lines)
    families = pushed["pod-a"]
    own = {name for name in families if name.startswith("openai_cost_pusher_")}
    data = set(families) - own
    assert {DAILY_COST, COST_TODAY, "openai_usage_tokens"} <= data
    assert {CYCLES_TOTAL, LAST_SUCCESS, BUILD_INFO, SAMPLES_PUSHED} <= own
    for name in own:
        for line in families[name]:
            assert 'instance="pod-a"' in line, line
    for name in data:
        for line in families[name]:
            assert "instance=" not in line, line
        assert families[name] == pushed["laptop"][name], name


def test_two_pushers_keep_two_counter_series(vm: VictoriaMetrics) -> None:
    """A manual run beside the service (distinct instances) leaves the service's
    counter alone: `increase()` reads each pusher's own cycles. Without the label
    the two processes interleave one series and `increase()` reads resets."""
    stop = threading.Event()
    base = float(int(time.time()) - 3600)

    def pusher(instance: str, job: str, at: list[float]) -> Pusher:
        client = VmClient(
            make_session(),
            vm.push_url,
            authorization=None,
            timeouts=Timeouts(2.0, 5.0),
            stop=stop,
            retrying=lambda: retry_policy(5, stop, max_attempts=2),
        )
        return Pusher(
            DemoOrganization(lambda: at[0]),
            client,
            lookback_days=1,
            backfill_days=1,
            extra_labels=(("job", job),),
            clock=lambda: at[0],
            stats=SelfStats(version="v", instance=instance),
        )

    for job, instances in (("apart", ("svc", "manual")), ("shared", ("h", "h"))):
        at = [base]
        service, manual = pusher(instances[0], job, at), pusher(instances[1], job, at)
        for n in range(25):
            at[0] = base + 60 * n
            assert service.run_cycle().ok
            if n in (5, 15):  # a manual `--once` pushes its own fresh counters
                at[0] += 30
                assert manual.run_cycle().ok
    vm.flush()
    end = base + 60 * 25
    expr = 'increase(openai_cost_pusher_cycles_total{job="%s",result="success"}[2h])'
    apart = vm.query(expr % "apart", at=end)
    assert {row["metric"]["instance"] for row in apart} == {"svc", "manual"}
    reads = {row["metric"]["instance"]: float(row["value"][1]) for row in apart}
    # the service ran 25 cycles; the manual series holds 1, then 1 again (a reset)
    # VictoriaMetrics counts a series' first value from 0: 25 service cycles; the
    # manual series holds 1, then 1 again (the second run's reset): 2 runs
    assert reads == {"svc": 25, "manual": 2}
    # the pusher-health rules aggregate `by (job, demo)`, dropping `instance`:
    # increase() is taken per series first, so OpenAICostPusherFailing's sum reads
    # the true total, and OpenAICostPusherStale's max the newest success of any
    failing = vm.query(
        "sum by (job, demo) (increase(openai_cost_pusher_cycles_total"
        '{job="apart",result="success",demo!="true"}[2h]))',
        at=end,
    )
    assert [float(row["value"][1]) for row in failing] == [27]
    stale = vm.query(
        "max by (job, demo) (max_over_time(openai_cost_pusher_last_success_"
        'timestamp_seconds{job="apart",dataset="costs",demo!="true"}[1d]))',
        at=end,
    )
    assert [float(row["value"][1]) for row in stale] == [base + 60 * 24]
    shared = vm.query(expr % "shared", at=end)
    assert len(shared) == 1
    # the bug the label prevents: 27 cycles read as 47 (every switch is a reset)
    assert float(shared[0]["value"][1]) > 27


def test_series_share_their_equal_label_pairs() -> None:
    """Equal label pairs of different series are one shared tuple (memory: a large
    organization's series hold hundreds of thousands of pairs), and the labels are
    still each series' own, sorted."""
    table: CostTable = {}
    lines = [
        CostLine(0, pid, item, "usd", 1.0)
        for pid in ("proj_a", "proj_b")
        for item in ("gpt-4o, input", "gpt-4o, output")
    ]
    add_cost_lines(table, lines)
    names = {"proj_a": "Alpha", "proj_b": "Beta"}
    samples = list(cost_samples(table, names, (("job", "x"),)))
    by_series = {
        (dict(s.labels)["project_id"], dict(s.labels)["line_item"]): s.labels
        for s in samples
    }
    a_in, a_out = (
        by_series["proj_a", "gpt-4o, input"],
        by_series["proj_a", "gpt-4o, output"],
    )
    b_in = by_series["proj_b", "gpt-4o, input"]
    assert a_in == tuple(sorted(a_in))
    pair = {p[0]: p for p in a_in}
    other = {p[0]: p for p in a_out}
    assert pair["project_id"] is other["project_id"]
    assert pair["currency"] is other["currency"]
    assert pair["line_item"] is not other["line_item"]
    assert dict(b_in)["line_item"] == "gpt-4o, input"
    assert {p[0]: p for p in b_in}["line_item"] is pair["line_item"]


@given(
    st.dictionaries(
        st.tuples(st.sampled_from(["proj_a", "proj_b"]), st.sampled_from("xyz")),
        st.dictionaries(st.integers(0, 5), st.floats(0, 100), min_size=1),
        max_size=6,
    ),
    st.integers(-2 * 86_400, 7 * 86_400),
    st.integers(1, 3 * 86_400),
)
def test_daily_samples_of_any_window_are_the_points_inside_it(
    points: dict[tuple[str, str], dict[int, float]], start: int, width: int
) -> None:
    """A window of one aligned day (how the cycle asks) and any other window give
    the samples of exactly the points in `[start, end)`, series by series, from a
    table of `Points` and from the same table packed by day (`Columns`, day by
    day)."""
    day0 = 1_730_419_200
    table: CostTable = {}
    packed: CostColumns = Columns()
    for (project_id, item), days in points.items():
        held = table[project_id, item, "usd"] = Points(86_400)
        for day, value in days.items():
            held[day0 + day * 86_400] = value
            packed.add((project_id, item, "usd"), day0 + day * 86_400, value)
    for lo, hi in (
        (day0 + start, day0 + start + width),
        (day0 + start - start % 86_400, day0 + start - start % 86_400 + 86_400),
    ):
        got = [
            (dict(s.labels)["line_item"], s.ts_ms, s.value)
            for s in cost_samples(table, {}, (), lo, hi)
        ]
        want = [
            (item, ts * 1000, value)
            for (_, item, _), held in table.items()
            for ts, value in held.items()
            if lo <= ts < hi
        ]
        assert got == want
        by_day = [
            (dict(s.labels)["line_item"], s.ts_ms, s.value)
            for s in cost_samples(packed, {}, (), lo, hi)
        ]
        assert by_day == sorted(want, key=lambda row: row[1])  # stable: series order


def test_labels_are_built_once_per_series_and_kept_by_number() -> None:
    """A labels cache passed to every call of the cycles holds one labels tuple per
    series, at its number in the table's index: later calls yield the very same
    tuples (none built again), and a series added later gets its own."""
    index: dict[tuple[str, str, str], int] = {}
    day = 1_700_006_400 - 1_700_006_400 % 86_400
    names = {"proj_a": "Alpha", "proj_b": "Beta"}
    cache: LabelsByNumber = []

    def cycle(lines: list[CostLine]) -> dict[tuple[str, str], Labels]:
        table: CostColumns = Columns(index)
        add_cost_lines(table, lines)
        return {
            (dict(s.labels)["project_id"], dict(s.labels)["line_item"]): s.labels
            for s in cost_samples(table, names, (), labels_cache=cache)
        }

    first = cycle(
        [
            CostLine(day, "proj_a", "in", "usd", 1.0),
            CostLine(day, "proj_b", "out", "usd", 2.0),
        ]
    )
    assert len(cache) == 2
    second = cycle(
        [
            CostLine(day, "proj_b", "out", "usd", 3.0),
            CostLine(day, "proj_a", "new", "usd", 4.0),
        ]
    )
    assert second[("proj_b", "out")] is first[("proj_b", "out")]
    assert dict(second[("proj_a", "new")]) == {
        "project_id": "proj_a",
        "project": "alpha",
        "line_item": "new",
        "currency": "usd",
    }
    assert cache == [
        first[("proj_a", "in")],
        first[("proj_b", "out")],
        second[("proj_a", "new")],
    ]
