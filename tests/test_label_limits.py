"""Label values VictoriaMetrics would drop are shortened, deterministically.

VictoriaMetrics ignores a series whose label value is longer than `-maxLabelValueLen`
(4,096 bytes by default) and still answers 204, so the pusher would report success
for data that never landed. `metrics.fit_label_value` shortens such values to a
prefix cut at a UTF-8 character boundary, `_` and 8 hex digits of the whole value's
SHA-256. The last test pushes through a real VictoriaMetrics 1.112.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_cost_pusher.exposition import render
from openai_cost_pusher.metrics import (
    DAILY_COST,
    MAX_LABEL_VALUE_BYTES,
    CostTable,
    add_cost_lines,
    cost_samples,
    fit_label_value,
    normalize_name,
    project_label,
)
from openai_cost_pusher.model import CostLine, Labels
from openai_cost_pusher.push import VmClient
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from tests.vm import VictoriaMetrics

LIMIT = MAX_LABEL_VALUE_BYTES
JOB: Labels = (("job", "openai-cost-pusher"),)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def test_the_limit_is_victoriametrics_default() -> None:
    """`-maxLabelValueLen` defaults to 4096 (victoria-metrics -help, 1.112)."""
    assert LIMIT == 4096


@pytest.mark.parametrize(
    "value", ["", "chat_bot", "a" * LIMIT, "é" * (LIMIT // 2), "€" * (LIMIT // 3)]
)
def test_values_within_the_limit_are_unchanged(value: str) -> None:
    """Up to 4,096 UTF-8 bytes a value is left as it is."""
    assert _size(value) <= LIMIT
    assert fit_label_value(value) is value


def test_a_long_ascii_value_becomes_prefix_and_hash() -> None:
    """4,097 bytes become a 4,087-byte prefix, `_` and 8 hex digits: 4,096 bytes."""
    value = "a" * (LIMIT + 1)
    fitted = fit_label_value(value)
    assert fitted == "a" * (LIMIT - 9) + "_" + _digest(value)
    assert _size(fitted) == LIMIT


@pytest.mark.parametrize("char", ["é", "€", "😀", "п"])
def test_the_cut_never_splits_a_character(char: str) -> None:
    """Multi-byte characters are never cut in half; the result is valid UTF-8."""
    value = "x" + char * 5000
    fitted = fit_label_value(value)
    assert _size(fitted) <= LIMIT
    prefix, _, digest = fitted.rpartition("_")
    assert value.startswith(prefix)
    assert digest == _digest(value)
    assert _size(prefix) > LIMIT - 9 - 4  # no more cut than one character
    assert prefix.rstrip(char) == "x"


def test_distinct_long_values_stay_distinct() -> None:
    """Two values that differ only after the cut get different hashes."""
    common = "p" * 9000
    a, b = fit_label_value(common + "a"), fit_label_value(common + "b")
    assert a != b
    assert a.rpartition("_")[0] == b.rpartition("_")[0]


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=3000), st.integers(min_value=10, max_value=200))
def test_any_value_fits_any_limit(value: str, limit: int) -> None:
    """Whatever the text and the limit, the result fits, is stable, and is the value
    itself when it already fit."""
    fitted = fit_label_value(value, limit)
    assert _size(fitted) <= limit
    assert fit_label_value(value, limit) == fitted
    if _size(value) <= limit:
        assert fitted == value
    else:
        assert fitted.endswith("_" + _digest(value))
        assert fit_label_value(fitted, limit) == fitted


def test_project_label_is_shortened_in_the_normalized_charset() -> None:
    """A 10,000-byte project name gives a `project` of letters, digits and `_`."""
    name = "Team " + "Ünïcode Проект " * 400
    label = project_label("proj_long", {"proj_long": name})
    assert _size(normalize_name(name)) > LIMIT
    assert _size(label) <= LIMIT
    assert label == fit_label_value(normalize_name(name))
    assert normalize_name(label) == label


def _wait_for_series(vm: VictoriaMetrics, count: int) -> list[dict[str, str]]:
    deadline = time.monotonic() + 15
    while True:
        found = [s.metric for s in vm.export(f'{{__name__="{DAILY_COST}"}}')]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_10000_byte_project_name_lands_in_victoriametrics(
    vm: VictoriaMetrics,
) -> None:
    """Through a real VictoriaMetrics: the series with the shortened name lands and
    reads back under that name, next to a sibling that differs only at its end;
    the same label unshortened is silently dropped (the reason for all this)."""
    day = (int(time.time()) // 86_400 - 1) * 86_400
    long_name = "n" * 9_999 + "A"
    sibling = "n" * 9_999 + "B"
    names: dict[str, str | None] = {"proj_long": long_name, "proj_sib": sibling}
    table: CostTable = {}
    add_cost_lines(
        table,
        [
            CostLine(day, "proj_long", "gpt-4o, input", "usd", 1.5),
            CostLine(day, "proj_sib", "gpt-4o, input", "usd", 2.5),
        ],
    )
    samples = list(cost_samples(table, names, JOB))
    stop = threading.Event()
    client = VmClient(
        make_session(),
        vm.push_url,
        authorization=None,
        timeouts=Timeouts(2.0, 5.0),
        retrying=lambda: retry_policy(10.0, stop, max_attempts=2),
        stop=stop,
    )
    dropped = f'{DAILY_COST}{{job="raw",project="{"n" * 5000}"}} 9 {day * 1000}\n'
    client.push([render(samples), dropped.encode()])
    got = {m["project_id"]: m for m in _wait_for_series(vm, 2)}
    assert set(got) == {"proj_long", "proj_sib"}  # the raw 5,000-byte one is gone
    for pid, name in names.items():
        assert name is not None
        stored = got[pid]["project"]
        assert stored == fit_label_value(normalize_name(name))
        assert LIMIT - 9 - 4 < _size(stored) <= LIMIT
        assert stored.endswith("_" + _digest(normalize_name(name)))
    assert got["proj_long"]["project"] != got["proj_sib"]["project"]
