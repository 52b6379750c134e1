"""`report`: the pure core (rows, rule math, renderers) and the command end to end.

The unit tests pin the numbers on hand-computed days, month boundaries included. The
integration tests push a tricky organization with the real pusher into a real
VictoriaMetrics, run `report` through `cli.main`, and compare every value with the
fake Admin API's daily sums and every summary with the shipped vmalert rules'
expressions evaluated by VictoriaMetrics itself.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import logging
import math
import signal
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml

from openai_cost_pusher import cli
from openai_cost_pusher.arguments import COMMAND_SETTINGS, build_parser
from openai_cost_pusher.config import OPTIONS, SECRET_FILE_SUFFIX
from openai_cost_pusher.demo import PROJECTS, DemoOrganization
from openai_cost_pusher.model import CostLine
from openai_cost_pusher.report import (
    BLOCKS,
    CSV_HEADER,
    NO_COST,
    DailyRow,
    bar,
    build_report,
    days_in_month,
    fetch_window,
    median,
    month_start,
    render_csv,
    render_json,
    render_text,
    rows_from_cost_lines,
    rows_from_series,
    shown_window,
    summarize_organization,
    summarize_projects,
)
from openai_cost_pusher.vmread import Series
from tests.alerting import RULES
from tests.fake_openai import FakeOpenAI
from tests.orgs import EXPECTED_LABEL, ODD_PROJECTS, seed_odd_org
from tests.test_cli import run_cli
from tests.vm import VictoriaMetrics

DAY = 86_400
REL = 1e-9
TEST_BUDGET_S = 120


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Return the Unix seconds of a UTC date and time."""
    return calendar.timegm((year, month, day, hour, minute, 0))


def close(a: float | None, b: float | None) -> bool:
    """Tell whether both are None or equal within 1e-9 relative."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= REL * max(abs(a), abs(b), 1e-12)


def columns(text: str) -> int:
    """Return the terminal columns of `text`, counted independently of the module."""
    return sum(
        0
        if unicodedata.combining(ch)
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


# ---------------------------------------------------------------- pure: the math


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([3.0], 3.0),
        ([5.0, 1.0], 3.0),
        ([5.0, 1.0, 3.0], 3.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5),
        ([7.0, 1.0, 2.0, 6.0, 3.0, 5.0, 4.0], 4.0),
        ([0.0, 0.0], 0.0),
    ],
)
def test_median_is_vm_quantile_half(
    values: list[float], expected: float | None
) -> None:
    """The baseline's median interpolates between the middle values, as VM does."""
    assert median(values) == expected


@pytest.mark.parametrize(
    ("day", "first", "length"),
    [
        (utc(2024, 2, 28), utc(2024, 2, 1), 29),
        (utc(2025, 2, 28), utc(2025, 2, 1), 28),
        (utc(2025, 4, 30, 23, 59), utc(2025, 4, 1), 30),
        (utc(2025, 12, 31, 12), utc(2025, 12, 1), 31),
        (utc(2026, 1, 1), utc(2026, 1, 1), 31),
    ],
)
def test_calendar(day: int, first: int, length: int) -> None:
    """Month start and length follow the UTC calendar, leap years included."""
    assert month_start(day) == first
    assert days_in_month(day) == length


def _rows(
    pid: str, name: str, days: Mapping[int, float], cur: str = "usd"
) -> list[DailyRow]:
    return [DailyRow(d, pid, name, cur, v) for d, v in days.items()]


def test_summary_mid_month_with_the_baseline_across_a_month_boundary() -> None:
    """2025-03-03: the 7 days before reach back into February; month to date does not.

    p: history Feb 24..Mar 2 = 4, -, 2, 10, 6, 8, 1 -> median of 6 days (4+6)/2 = 5;
    today 12 -> ratio 2.4; month to date 8 + 1 + 12 = 21; 7-day sum 31, 28 days left
    after the 3rd -> forecast 21 + 31 / 7 x 28 = 145.
    """
    now = utc(2025, 3, 3, 15)
    p = {
        utc(2025, 2, 20): 100.0,  # before the 7 days and the month: shown only
        utc(2025, 2, 24): 4.0,
        utc(2025, 2, 26): 2.0,
        utc(2025, 2, 27): 10.0,
        utc(2025, 2, 28): 6.0,
        utc(2025, 3, 1): 8.0,
        utc(2025, 3, 2): 1.0,
        utc(2025, 3, 3): 12.0,
    }
    q = {utc(2025, 2, 25): 3.0, utc(2025, 2, 27): 1.0, utc(2025, 3, 2): 2.0}
    zero = {utc(2025, 3, 1): 0.0, utc(2025, 3, 2): 0.0, utc(2025, 3, 3): 4.0}
    new = {utc(2025, 3, 3): 9.5}
    rows = [
        *_rows("p", "p_name", p),
        *_rows("q", "q_name", q),
        *_rows("z", "z_name", zero),
        *_rows("n", "n_name", new),
    ]
    shown = shown_window(now, 14)
    got = {s.project_id: s for s in summarize_projects(rows, now, shown)}
    assert got["p"].today == 12.0
    assert got["p"].baseline == 5.0
    assert got["p"].history_days == 6
    assert got["p"].ratio == pytest.approx(2.4, rel=1e-15)
    assert got["p"].month_to_date == 21.0
    assert got["p"].forecast == pytest.approx(145.0, rel=1e-15)
    assert got["p"].total == 143.0
    # q: no data today, median of 3 days = 2; 7-day sum 6 -> 0 + 6 / 7 x 28 = 24
    assert (got["q"].today, got["q"].baseline, got["q"].ratio) == (0.0, 2.0, 0.0)
    assert got["q"].month_to_date == 2.0
    assert got["q"].forecast == pytest.approx(2.0 + 24.0, rel=1e-15)
    # z: a baseline of 0 has no ratio (the rule divides by `baseline > 0`)
    assert (got["z"].baseline, got["z"].ratio, got["z"].history_days) == (0.0, None, 2)
    # n: no history at all
    assert (got["n"].baseline, got["n"].ratio, got["n"].history_days) == (None, None, 0)
    assert got["n"].forecast == 9.5
    order = [s.project_id for s in summarize_projects(rows, now, shown)]
    assert order == ["p", "n", "q", "z"]  # by spend over the shown days

    (org,) = summarize_organization(rows, now, shown)
    assert org.today == 12.0 + 4.0 + 9.5
    assert org.month_to_date == 21.0 + 2.0 + 4.0 + 9.5
    assert org.daily_avg7d == pytest.approx((31.0 + 6.0) / 7, rel=1e-15)
    assert org.forecast == pytest.approx(36.5 + 37.0 / 7 * 28, rel=1e-15)
    assert org.forecast == pytest.approx(
        math.fsum(s.forecast for s in got.values()), rel=1e-12
    )


def test_summary_on_the_first_and_the_last_day_of_a_month() -> None:
    """On the 1st, month to date is today alone and all 7 days are last month's; on
    the last day (29 Feb 2024) no day is left, so the forecast is month to date."""
    days = {
        utc(2024, 2, 20) + i * DAY: float(i + 1) for i in range(11)
    }  # Feb 20..Mar 1
    rows = _rows("p", "p", days)
    first = utc(2024, 3, 1, 0, 30)
    (s,) = summarize_projects(rows, first, shown_window(first, 3))
    assert s.today == 11.0
    assert s.month_to_date == 11.0
    assert s.baseline == 7.0  # Feb 23..29 = 4..10
    assert s.forecast == pytest.approx(11.0 + 49.0 / 7 * 30, rel=1e-15)
    assert s.daily == (8.0, 9.0, 10.0, 11.0)

    last = utc(2024, 2, 29, 23, 59)
    (s,) = summarize_projects(rows, last, shown_window(last, 3))
    assert s.today == 10.0
    assert s.month_to_date == math.fsum(range(1, 11))  # Feb 20..29
    assert s.baseline == 6.0  # Feb 22..28 = 3..9
    assert s.forecast == s.month_to_date
    assert build_report(rows, last, 3).rows[-1].day == utc(2024, 2, 29)  # no Mar 1


def test_summary_across_new_year() -> None:
    """On 2 Jan the month is January only; the baseline reaches into December."""
    days = {utc(2025, 12, 27) + i * DAY: 10.0 * (i + 1) for i in range(7)}  # ..Jan 2
    now = utc(2026, 1, 2, 8)
    (s,) = summarize_projects(_rows("p", "p", days), now, shown_window(now, 1))
    assert s.month_to_date == 60.0 + 70.0
    assert s.baseline == 35.0  # Dec 26..Jan 1: 6 days with data, 10..60
    assert s.forecast == pytest.approx(130.0 + 210.0 / 7 * 29, rel=1e-15)


def test_fetch_window_covers_the_shown_days_the_baseline_and_the_month() -> None:
    """The read reaches back to the 1st of the month, 7 days, or N days: the oldest."""
    late = utc(2025, 3, 31, 9)
    assert fetch_window(late, 1).start == utc(2025, 3, 1)
    assert fetch_window(late, 40).start == utc(2025, 2, 19)
    early = utc(2025, 3, 2, 9)
    assert fetch_window(early, 1).start == utc(2025, 2, 23)
    assert fetch_window(early, 1).end == utc(2025, 3, 3)
    assert shown_window(early, 14).days == 15


# ---------------------------------------------------------------- pure: the rows


def _series(
    pid: str | None,
    project: str,
    item: str,
    points: Mapping[int, float],
    currency: str = "usd",
    name: str = "openai_daily_cost",
) -> Series:
    labels = {
        "__name__": name,
        "job": "openai-cost-pusher",
        "project": project,
        "line_item": item,
        "currency": currency,
    }
    if pid is not None:  # VictoriaMetrics drops empty labels
        labels["project_id"] = pid
    return (tuple(sorted(labels.items())), {d * 1000: v for d, v in points.items()})


D = utc(2025, 3, 10)


def test_rows_sum_line_items_exactly_per_day_project_and_currency() -> None:
    """Line items are summed with fsum; a missing project id is `unattributed`;
    currencies stay apart; other metrics and non-finite samples are skipped."""
    rows = rows_from_series(
        [
            _series("p", "chat", "a", {D: 0.1, D - DAY: 1.0}),
            _series("p", "chat", "b", {D: 0.2}),
            _series("p", "chat", "c", {D: 0.3, D + 3600: math.nan}),
            _series("p", "chat", "a", {D: 5.0}, currency="eur"),
            _series(None, "unattributed", "", {D: 2.5}),
            _series("p", "chat", "a", {D: 99.0}, name="openai_cost_today"),
        ]
    )
    assert rows == [
        DailyRow(D - DAY, "p", "chat", "usd", 1.0),
        DailyRow(D, "", "unattributed", "usd", 2.5),
        DailyRow(D, "p", "chat", "eur", 5.0),
        DailyRow(D, "p", "chat", "usd", math.fsum([0.1, 0.2, 0.3])),
    ]
    assert rows[-1].cost == 0.6  # fsum; 0.1 + 0.2 + 0.3 is 0.6000000000000001


def test_a_renamed_project_shows_its_newest_name_and_counts_each_day_once() -> None:
    """Days pushed under both names count the newest name's value only; days only
    the old name holds still count, under the new name."""
    rows = rows_from_series(
        [
            _series("p", "old_name", "a", {D - i * DAY: 1.0 for i in range(1, 6)}),
            _series("p", "old_name", "b", {D - 2 * DAY: 0.5}),
            _series("p", "new_name", "a", {D - i * DAY: 2.0 for i in range(3)}),
            _series("q", "other", "a", {D - 9 * DAY: 7.0}),
        ]
    )
    by_day = {(r.project_id, r.day): r for r in rows}
    assert {r.project for r in rows if r.project_id == "p"} == {"new_name"}
    assert [by_day[("p", D - i * DAY)].cost for i in range(6)] == [
        2.0,  # today: new name only
        2.0,  # both names held `a`: not 3.0
        2.5,  # new `a` and old `b` (no newer value of `b`)
        1.0,
        1.0,
        1.0,
    ]
    assert by_day[("q", D - 9 * DAY)].project == "other"


def test_the_newest_name_is_the_one_with_the_latest_sample() -> None:
    """An old name with more history loses to the name that holds the latest day."""
    rows = rows_from_series(
        [
            _series("p", "zz_old", "a", {D - i * DAY: 1.0 for i in range(3, 30)}),
            _series("p", "aa_new", "a", {D - DAY: 1.0}),
        ]
    )
    assert {r.project for r in rows} == {"aa_new"}
    assert len(rows) == 28


def test_rows_from_cost_lines_use_the_pushed_project_label() -> None:
    """Cost lines become the rows the pusher's series would give."""
    lines = [
        CostLine(D, "p", "a", "usd", 0.1),
        CostLine(D, "p", "b", "usd", 0.2),
        CostLine(D, "p", "c", "usd", 0.3),
        CostLine(D, "", "a", "usd", 1.0),
        CostLine(D, "gone", "a", "usd", 2.0),
        CostLine(D - DAY, "p", "a", "usd", 4.0),
    ]
    rows = rows_from_cost_lines(lines, {"p": "Ünïcode Проект ✓"})
    assert rows == [
        DailyRow(D - DAY, "p", "ünïcode_проект", "usd", 4.0),
        DailyRow(D, "", "unattributed", "usd", 1.0),
        DailyRow(D, "gone", "unknown", "usd", 2.0),
        DailyRow(D, "p", "ünïcode_проект", "usd", 0.6),
    ]


# ---------------------------------------------------------------- pure: renderers


def test_bar_scales_to_the_largest_day_and_marks_days_without_cost() -> None:
    """Eight levels, at least the lowest for any cost; `·` for no data or zero."""
    assert bar([None, 0.0, 1.0, 8.0]) == f"{NO_COST}{NO_COST}▁█"
    assert bar([4.0, 8.0, 0.001]) == "▄█▁"
    assert bar([None, None]) == NO_COST * 2
    assert bar([1.0 * i for i in range(1, 9)]) == BLOCKS


LONG_NAMES = {
    "p_long": "a" * 150,
    "p_cjk": "日本語のとても長いプロジェクト名前テスト" * 3,
    "p_cyr": "ünïcode_проект_" * 10,
    "p_mix": "x日y本z語" * 20,
    "p_ctl": "tab\there\nnew\u200bline\u0301e",
}


def _sample_report_rows(now: int, days: int) -> list[DailyRow]:
    rows = []
    today = now // DAY * DAY
    for k, (pid, name) in enumerate(LONG_NAMES.items()):
        for i in range(days + 40):
            if (i + k) % 5:
                rows.append(
                    DailyRow(today - i * DAY, pid, name, "usd", 1.5 * (i % 9) + k)
                )
    rows.append(DailyRow(today, "", "unattributed", "usd", 1_234_567_890.25))
    rows.append(DailyRow(today - DAY, "p_cjk", LONG_NAMES["p_cjk"], "eur", 3.0))
    return rows


@pytest.mark.parametrize("days", [1, 14, 31, 90, 400])
def test_text_fits_100_columns_with_long_and_non_latin_names(days: int) -> None:
    """Every line fits 100 terminal columns (wide letters count 2); names are cut."""
    now = utc(2025, 3, 10, 13, 45)
    report = build_report(_sample_report_rows(now, days), now, days)
    text = render_text(report)
    lines = text.splitlines()
    assert all(columns(line) <= 100 for line in lines), max(lines, key=columns)
    assert all(ch.isprintable() for line in lines for ch in line)
    first = time.strftime("%Y-%m-%d", time.gmtime(report.shown.start))
    assert first in lines[0] and "2025-03-10" in lines[0]
    project_lines = [ln for ln in lines if ln.startswith(("aaa", "日本", "ünï", "x日"))]
    assert len(project_lines) == 5  # the CJK project twice: usd and eur
    assert any(ln.startswith("unattributed") for ln in lines)
    assert sum(ln.startswith("organization") for ln in lines) == 2  # eur, usd
    assert "…" in text
    assert any(ch in text for ch in BLOCKS)
    assert NO_COST in text
    assert "1.2G" in text or "1234567890" in text


def test_text_lists_projects_by_shown_spend_with_their_numbers() -> None:
    """One line per project, largest spend over the shown days first."""
    now = utc(2025, 3, 3, 15)
    rows = [
        *_rows("small", "small", {utc(2025, 3, 3): 1.0}),
        *_rows(
            "big",
            "big",
            {utc(2025, 2, 27) + i * DAY: v for i, v in enumerate([4, 4, 2, 6, 12])},
        ),
    ]
    lines = render_text(build_report(rows, now, 14)).splitlines()
    big, small = (ln for ln in lines if ln.startswith(("big", "small")))
    assert lines.index(big) < lines.index(small)
    # today 12, baseline median(4, 4, 2, 6) = 4, ratio 3x, month 8 + 12, forecast
    # 20 + 16 / 7 x 28 = 84
    assert big.split()[2:] == ["12.00", "4.00", "3.00x", "20.00", "84.00", "usd"]
    # Feb 27 .. Mar 3: 4, 4, 2, 6, 12 of 12 -> levels ceil(8 x v / 12) of 8
    assert big.split()[1] == NO_COST * 10 + "▃▃▂▄█"
    assert small.split()[2:] == ["1.00", "-", "-", "1.00", "1.00", "usd"]


def test_text_tells_projects_with_alike_names_apart_by_id() -> None:
    """Two projects whose names normalize alike show their ids; a renamed project
    shows once, under its newest name."""
    now = utc(2025, 3, 3, 15)
    day = utc(2025, 3, 3)
    rows = rows_from_series(
        [
            _series("proj_a1", "team_a", "x", {day: 2.0}),
            _series("proj_a2", "team_a", "x", {day: 1.0}),
            _series("proj_r", "before", "x", {day - DAY: 1.0, day: 1.0}),
            _series("proj_r", "after", "x", {day: 3.0}),
        ]
    )
    lines = render_text(build_report(rows, now, 14)).splitlines()
    assert [ln.split()[0] for ln in lines[2:5]] == ["after", "team_a", "team_a"]
    assert "team_a (proj_a1)" in lines[3] and "team_a (proj_a2)" in lines[4]
    assert not any(ln.startswith("before") for ln in lines)
    assert lines[2].split()[2] == "3.00"  # today counted once, the newest value


def test_csv_has_one_row_per_day_project_and_currency() -> None:
    """Exact header, ISO days, `repr` costs, sorted by day then project id."""
    now = utc(2025, 3, 10, 12)
    rows = [
        DailyRow(utc(2025, 3, 10), "b", 'odd, "name"', "usd", 0.1 + 0.2),
        DailyRow(utc(2025, 3, 10), "a", "a", "usd", 1e-300),
        DailyRow(utc(2025, 3, 9), "b", 'odd, "name"', "usd", 2.0),
        DailyRow(utc(2025, 2, 20), "a", "a", "usd", 5.0),  # not shown with 14 days
    ]
    text = render_csv(build_report(rows, now, 14))
    assert text.splitlines()[0] == ",".join(CSV_HEADER)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1:] == [
        ["2025-03-09", "b", 'odd, "name"', "usd", "2.0"],
        ["2025-03-10", "a", "a", "usd", "1e-300"],
        ["2025-03-10", "b", 'odd, "name"', "usd", repr(0.1 + 0.2)],
    ]
    assert float(parsed[3][4]) == 0.1 + 0.2


def test_json_holds_rows_projects_and_organization() -> None:
    """Rows as in the CSV; project summaries with every rule value; null for none."""
    now = utc(2025, 3, 3, 15)
    rows = [
        *_rows("p", "p", {utc(2025, 3, 2): 2.0, utc(2025, 3, 3): 3.0}),
        *_rows("q", "q", {utc(2025, 3, 3): 1.0}),
    ]
    doc = json.loads(render_json(build_report(rows, now, 1)))
    assert doc["rows"] == [
        {
            "day": "2025-03-02",
            "project_id": "p",
            "project": "p",
            "currency": "usd",
            "cost": 2.0,
        },
        {
            "day": "2025-03-03",
            "project_id": "p",
            "project": "p",
            "currency": "usd",
            "cost": 3.0,
        },
        {
            "day": "2025-03-03",
            "project_id": "q",
            "project": "q",
            "currency": "usd",
            "cost": 1.0,
        },
    ]
    p, q = doc["projects"]
    assert p == {
        "project_id": "p",
        "project": "p",
        "currency": "usd",
        "today": 3.0,
        "baseline": 2.0,
        "history_days": 1,
        "ratio": 1.5,
        "month_to_date": 5.0,
        "forecast": 5.0 + 2.0 / 7 * 28,
        "total": 5.0,
    }
    assert (q["baseline"], q["ratio"]) == (None, None)
    assert doc["organization"][0]["currency"] == "usd"
    assert doc["organization"][0]["month_to_date"] == 6.0
    assert (doc["from"], doc["to"]) == ("2025-03-02", "2025-03-03")


# ---------------------------------------------------------------- the command line


def test_help_lists_only_the_options_each_command_uses() -> None:
    """report and verify list their own settings, not the pusher's 15+."""
    report = build_parser("report").format_help()
    verify = build_parser("verify").format_help()
    pusher = build_parser().format_help()
    for flag in ("--push-url", "--query-url", "--extra-label", "--retry-budget"):
        assert flag in report and flag in verify
    for name in ("VM_USERNAME", "VM_PASSWORD_FILE", "VM_BEARER_TOKEN", "LOG_FORMAT"):
        assert name in report and name in verify
    for flag in ("--days", "--format", "--demo"):
        assert flag in report
    for flag in ("--openai-base-url", "--usage-bucket-width", "OPENAI_ADMIN_KEY"):
        assert flag in verify and flag not in report
    for flag in ("--interval", "--lookback-days", "--backfill-days", "--listen"):
        assert flag in pusher and flag not in report and flag not in verify
    for option in OPTIONS:
        assert option.env in pusher
    envs = {o.env for o in OPTIONS}
    for names in COMMAND_SETTINGS.values():
        assert names <= envs


@pytest.fixture(name="in_process")
def in_process_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[list[str], Mapping[str, str]], int]]:
    """Run `cli.main` in this process with a clean environment and no `.env`,
    bounded in time; restore the signal handlers and logging it replaces."""
    monkeypatch.chdir(tmp_path)
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
        monkeypatch.delenv(option.env + SECRET_FILE_SUFFIX, raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the command ran longer than {TEST_BUDGET_S}s")

    previous_alarm = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_BUDGET_S)

    def run(argv: list[str], env: Mapping[str, str]) -> int:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return cli.main(argv)

    try:
        yield run
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_alarm)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        root.handlers[:] = handlers
        root.setLevel(level)


def _error_lines(err: str) -> list[str]:
    return [
        ln for ln in err.splitlines() if ln.startswith("openai-cost-pusher: error:")
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "0"], "--days: expected 1 to 400, got 0"),
        (["--days", "401"], "--days: expected 1 to 400, got 401"),
        (["--days", "x"], "--days: expected a whole number of days"),
        (["--format", "xml"], "--format: invalid choice: 'xml'"),
        (["--interval", "1m"], "unrecognized arguments: --interval"),
    ],
)
def test_bad_arguments_are_one_error_line_and_exit_2(
    in_process: Callable[[list[str], Mapping[str, str]], int],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    """argparse's complaint is one `openai-cost-pusher: error:` line, no usage."""
    assert in_process(["report", *argv], {}) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == _error_lines(captured.err)
    (line,) = captured.err.splitlines()
    assert message in line


def test_unreachable_victoriametrics_is_exit_1_without_a_key_or_traceback(
    in_process: Callable[[list[str], Mapping[str, str]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No admin key is needed, settings report does not use cannot break it, and a
    failed read is one error line and exit 1."""
    env = {
        "VM_PUSH_URL": "http://127.0.0.1:9/api/v1/import/prometheus",
        "RETRY_BUDGET": "1s",
        "HTTP_TIMEOUT": "2s",
        "PUSH_INTERVAL": "not a duration",  # the pusher's, not report's
        "OPENAI_ADMIN_KEY_FILE": "/nonexistent/key",  # never read by report
    }
    started = time.monotonic()
    assert in_process(["report", "--format", "csv"], env) == 1
    assert time.monotonic() - started < 30
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = _error_lines(captured.err)
    assert "read from VictoriaMetrics: cannot connect" in line
    assert "Traceback" not in captured.err


def test_a_push_url_without_the_import_path_asks_for_the_query_url(
    in_process: Callable[[list[str], Mapping[str, str]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Where the read URL cannot be derived, report says which setting to pass."""
    assert in_process(["report"], {"VM_PUSH_URL": "http://vm:8428/else"}) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "--query-url" in line


# ---------------------------------------------------------------- against real VM


def _not_near_midnight() -> int:
    """Return today (UTC); skip when the day ends before the test would."""
    now = time.time()
    if DAY - now % DAY < 300:
        pytest.skip("too close to 00:00 UTC: the pushed today would be yesterday")
    return int(now) // DAY * DAY


def _report(
    run: Callable[[list[str], Mapping[str, str]], int],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: Mapping[str, str],
) -> str:
    capsys.readouterr()
    code = run(["report", *argv], env)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    return captured.out


def _fake_daily(
    fake: FakeOpenAI, start: int, end: int
) -> dict[tuple[str, str, str], float]:
    """Return the fake's costs summed per (ISO day, project id, currency)."""
    parts: dict[tuple[str, str, str], list[float]] = {}
    for (day, pid, _item, currency), value in fake.costs().items():
        if start <= day < end:
            iso = time.strftime("%Y-%m-%d", time.gmtime(day))
            parts.setdefault((iso, pid or "", currency), []).append(value)
    return {key: math.fsum(values) for key, values in parts.items()}


def _assert_same(expected: Mapping[Any, float], actual: Mapping[Any, float]) -> None:
    assert set(actual) == set(expected), (
        sorted(set(expected) - set(actual))[:5],
        sorted(set(actual) - set(expected))[:5],
    )
    for key, value in expected.items():
        assert close(actual[key], value), (key, value, actual[key])


def _rule_expr(record: str) -> str:
    """Return a recording rule's expression from the shipped rule file, with the
    recorded series it reads replaced by their own expressions."""
    rules = {
        r["record"]: r["expr"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for r in group["rules"]
        if "record" in r
    }
    expr: str = rules[record]
    for name, body in rules.items():
        if name != record and name in expr:
            expr = expr.replace(name, f"({body})")
    return expr


def _rule_values(
    vm: VictoriaMetrics, record: str, at: float, by: tuple[str, ...]
) -> dict[tuple[str, ...], float]:
    return {
        tuple(r["metric"].get(k, "") for k in by): float(r["value"][1])
        for r in vm.query(_rule_expr(record), at=at)
    }


@pytest.mark.vm
def test_report_matches_the_api_and_the_alert_rules(
    tmp_path: Path,
    vm: VictoriaMetrics,
    in_process: Callable[[list[str], Mapping[str, str]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After a real `--once` push of an odd organization (quoted, non-Latin, alike
    and null names, an archived project, unattributed costs, many pages), the CSV
    and JSON rows equal the API's daily sums and the summaries equal what the rules
    compute in VictoriaMetrics."""
    today = _not_near_midnight()
    with FakeOpenAI(page_size=4) as fake:
        seed_odd_org(fake, today, days_back=40)
        env = {
            "OPENAI_ADMIN_KEY": fake.admin_key,
            "OPENAI_BASE_URL": fake.base_url,
            "VM_PUSH_URL": vm.push_url,
            "BACKFILL_DAYS": "40",
            "USAGE_BUCKET_WIDTH": "off",
            "RETRY_BUDGET": "5s",
        }
        pushed = run_cli(["--once"], tmp_path, env, timeout=TEST_BUDGET_S)
        assert pushed.returncode == 0, pushed.stderr
        assert len(fake.requests_to("/organization/costs")) > 5  # many pages
    vm.flush()
    read_env = {"VM_PUSH_URL": vm.push_url, "RETRY_BUDGET": "5s"}
    expected = _fake_daily(fake, today - 14 * DAY, today + DAY)
    assert len({pid for _, pid, _ in expected}) == len(ODD_PROJECTS) + 1

    out = _report(in_process, capsys, ["--format", "csv"], read_env)
    lines = out.splitlines()
    assert lines[0] == "day,project_id,project,currency,cost"
    parsed = list(csv.DictReader(io.StringIO(out)))
    keys = [(r["day"], r["project_id"]) for r in parsed]
    assert keys == sorted(keys)
    assert all(r["project"] == EXPECTED_LABEL[r["project_id"]] for r in parsed)
    assert all(repr(float(r["cost"])) == r["cost"] for r in parsed)
    _assert_same(
        expected,
        {(r["day"], r["project_id"], r["currency"]): float(r["cost"]) for r in parsed},
    )

    doc = json.loads(_report(in_process, capsys, ["--format", "json"], read_env))
    _assert_same(
        expected,
        {(r["day"], r["project_id"], r["currency"]): r["cost"] for r in doc["rows"]},
    )
    at = calendar.timegm(time.strptime(doc["now"], "%Y-%m-%dT%H:%M:%SZ"))
    by = ("project_id", "currency")
    spend_today = _rule_values(vm, "openai_cost:project_spend_today:sum", at, by)
    baseline = _rule_values(vm, "openai_cost:project_spend_baseline:median7d", at, by)
    history = _rule_values(vm, "openai_cost:project_history_days:count7d", at, by)
    assert len(baseline) == len(ODD_PROJECTS) + 1
    for p in doc["projects"]:
        key = (p["project_id"], p["currency"])
        assert close(p["today"], spend_today.get(key, 0.0)), p
        assert close(p["baseline"], baseline.get(key)), p
        assert p["history_days"] == history.get(key, 0), p
        if p["baseline"]:
            assert close(p["ratio"], p["today"] / p["baseline"]), p
    assert {(p["project_id"], p["currency"]) for p in doc["projects"]} >= set(baseline)

    month = _rule_values(
        vm, "openai_cost:org_spend_month_to_date:sum", at, ("currency",)
    )
    forecast = _rule_values(
        vm, "openai_cost:org_spend_month_forecast:sum", at, ("currency",)
    )
    (org,) = doc["organization"]
    assert close(org["month_to_date"], month[("usd",)])
    assert close(org["forecast"], forecast[("usd",)])
    assert close(org["forecast"], math.fsum(p["forecast"] for p in doc["projects"]))

    text = _report(in_process, capsys, [], read_env)
    assert all(columns(line) <= 100 for line in text.splitlines())
    assert sum(ln.startswith("organization") for ln in text.splitlines()) == 1
    for label in set(EXPECTED_LABEL.values()):
        assert label[:12] in text


@pytest.mark.vm
def test_demo_shows_only_demo_series_and_default_only_real_ones(
    tmp_path: Path,
    vm: VictoriaMetrics,
    in_process: Callable[[list[str], Mapping[str, str]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With demo and real data in one VictoriaMetrics, `--demo` shows the demo's
    projects only (its complete days equal the demo's cost lines), the default the
    real ones only."""
    today = _not_near_midnight()
    assert (
        run_cli(
            ["--demo", "--once"], tmp_path, {"VM_PUSH_URL": vm.push_url}, TEST_BUDGET_S
        ).returncode
        == 0
    )
    with FakeOpenAI(page_size=4) as fake:
        seed_odd_org(fake, today, days_back=5)
        env = {
            "OPENAI_ADMIN_KEY": fake.admin_key,
            "OPENAI_BASE_URL": fake.base_url,
            "VM_PUSH_URL": vm.push_url,
            "BACKFILL_DAYS": "5",
            "USAGE_BUCKET_WIDTH": "off",
        }
        assert run_cli(["--once"], tmp_path, env, TEST_BUDGET_S).returncode == 0
    vm.flush()
    read_env = {"VM_PUSH_URL": vm.push_url, "RETRY_BUDGET": "5s"}
    demo_ids = {p.id for p in PROJECTS} | {""}
    real_ids = set(ODD_PROJECTS) | {""}

    demo = json.loads(
        _report(in_process, capsys, ["--demo", "--format", "json"], read_env)
    )
    real = json.loads(_report(in_process, capsys, ["--format", "json"], read_env))
    demo_seen = {r["project_id"] for r in demo["rows"]}
    real_seen = {r["project_id"] for r in real["rows"]}
    assert demo_seen <= demo_ids and len(demo_seen) >= 4
    assert real_seen == real_ids

    names = {p.id: p.name for p in PROJECTS}
    lines = [
        line
        for page in DemoOrganization(time.time).fetch_costs(today - 14 * DAY, today)
        for line in page
    ]
    expected = {
        (time.strftime("%Y-%m-%d", time.gmtime(r.day)), r.project_id, r.project): r.cost
        for r in rows_from_cost_lines(lines, names)
    }
    _assert_same(
        expected,
        {
            (r["day"], r["project_id"], r["project"]): r["cost"]
            for r in demo["rows"]
            if r["day"] != time.strftime("%Y-%m-%d", time.gmtime(today))
        },
    )
