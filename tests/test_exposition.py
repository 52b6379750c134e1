"""Test the Prometheus text renderer: golden bytes, escaping, values, chunks, parsing.

VictoriaMetrics answers 204 even when it drops a malformed line, so the renderer is
proven here against golden bytes and a real exposition parser
(`prometheus_client.parser`), with hypothesis over arbitrary label values and floats.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_pusher.exposition import (
    escape_label_value,
    format_value,
    render,
    render_chunks,
    series_prefix,
)
from openai_cost_pusher.model import Labels, Sample, labels_of

DAY_MS = 86_400_000
T0_MS = 1_730_419_200_000  # 2024-11-01 00:00 UTC

Parsed = tuple[str, dict[str, str], float, float | None]


def _parse(body: bytes) -> list[Parsed]:
    """Parse an exposition body with prometheus_client, one tuple per sample."""
    return [
        (
            s.name,
            dict(s.labels),
            float(s.value),
            None if s.timestamp is None else float(s.timestamp),
        )
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for s in family.samples
    ]


def _assert_round_trip(samples: list[Sample]) -> None:
    """Assert that `samples` come back from the parser with equal fields."""
    parsed = _parse(render(samples))
    assert len(parsed) == len(samples)
    for sample, (name, labels, value, ts) in zip(samples, parsed, strict=True):
        assert name == sample.name
        assert labels == dict(sample.labels)
        if math.isnan(sample.value):
            assert math.isnan(value)
        else:
            assert value == sample.value
        # the parser reports the timestamp as float seconds: ms / 1000
        assert ts == sample.ts_ms / 1000
        assert ts is not None
        assert round(ts * 1000) == sample.ts_ms


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], b""),
        ([Sample("up", (), 1.0, 0)], b"up 1.0 0\n"),
        (
            [
                Sample(
                    "openai_daily_cost",
                    labels_of(
                        {
                            "currency": "usd",
                            "line_item": "gpt-4o, input",
                            "project": "chat_bot",
                            "project_id": "proj_1",
                        }
                    ),
                    12.5,
                    T0_MS,
                )
            ],
            b'openai_daily_cost{currency="usd",line_item="gpt-4o, input",'
            b'project="chat_bot",project_id="proj_1"} 12.5 1730419200000\n',
        ),
        (
            [
                Sample("a", (("k", "v"),), 1.0, T0_MS),
                Sample("a", (("k", "v"),), 2.0, T0_MS + DAY_MS),
                Sample("b:c", (("k", ""),), 0.0, 5),
            ],
            b'a{k="v"} 1.0 1730419200000\n'
            b'a{k="v"} 2.0 1730505600000\n'
            b'b:c{k=""} 0.0 5\n',
        ),
        (
            [Sample("x", (("v", 'a\\b"c\nd'),), float("inf"), 1)],
            b'x{v="a\\\\b\\"c\\nd"} +Inf 1\n',
        ),
        (
            [Sample("x", (("p", "Ünïcode Проект ✓ 日本 🙂"),), -1.5, 2)],
            'x{p="Ünïcode Проект ✓ 日本 🙂"} -1.5 2\n'.encode(),
        ),
    ],
    ids=["empty", "no-labels", "cost-line", "several", "escaped", "utf8"],
)
def test_render_golden_bytes(samples: list[Sample], expected: bytes) -> None:
    """Small sample lists render to exactly the expected bytes."""
    assert render(samples) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("back\\slash", "back\\\\slash"),
        ('double"quote', 'double\\"quote'),
        ("new\nline", "new\\nline"),
        ("\\n", "\\\\n"),
        ('\\"', '\\\\\\"'),
        ("trailing\\", "trailing\\\\"),
        ("\n\n", "\\n\\n"),
        ("tab\there\rcr", "tab\there\rcr"),
        ("Ünïcode Проект ✓ 🙂", "Ünïcode Проект ✓ 🙂"),
        ('{a="b",c}', '{a=\\"b\\",c}'),
    ],
)
def test_escape_label_value(value: str, expected: str) -> None:
    """Backslash, double quote and newline are escaped; other UTF-8 passes through."""
    assert escape_label_value(value) == expected


@pytest.mark.parametrize(
    "name", ["", "1abc", "a-b", "a b", "ü", "a\n", "a{", "a.b", "a\tb", "_\n"]
)
def test_invalid_metric_name_raises(name: str) -> None:
    """A metric name outside the Prometheus charset is refused, not rendered."""
    with pytest.raises(ValueError, match="invalid metric name"):
        series_prefix(name, ())
    with pytest.raises(ValueError, match="invalid metric name"):
        render([Sample(name, (("k", "v"),), 1.0, 0)])


@pytest.mark.parametrize(
    "label", ["", "1a", "a-b", "a:b", "a b", "ü", "a\n", "a=b", 'a"b']
)
def test_invalid_label_name_raises(label: str) -> None:
    """A label name outside the Prometheus charset is refused, naming the metric."""
    with pytest.raises(ValueError, match=r"invalid label name .* on up"):
        series_prefix("up", ((label, "v"),))


@pytest.mark.parametrize(
    "name", ["a", "_", ":", "a:b", "openai_daily_cost", "A_9:z", "__name"]
)
def test_valid_metric_names_render(name: str) -> None:
    """Names in the Prometheus charset, colons included, render unchanged."""
    assert series_prefix(name, ()) == name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0.0"),
        (3, "3.0"),
        (-7, "-7.0"),
        (10**20, "1e+20"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (12.5, "12.5"),
        (1 / 3, "0.3333333333333333"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-300, "1e-300"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_format_value(value: float, expected: str) -> None:
    """Values render in the shortest round-tripping form, or +Inf, -Inf, NaN."""
    assert format_value(value) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_value_round_trips(value: float) -> None:
    """Every finite float parses back from its text to the same float."""
    assert float(format_value(value)) == value


def _series(n: int, label_value: str) -> list[Sample]:
    """Return `n` daily samples of one series whose label holds `label_value`."""
    labels = (("project", label_value),)
    return [
        Sample("openai_daily_cost", labels, float(i), T0_MS + i * DAY_MS)
        for i in range(n)
    ]


@pytest.mark.parametrize("max_bytes", [1, 50, 100, 333, 1000, 10**9])
@pytest.mark.parametrize(
    "label_value", ["chat_bot", "проект_✓" * 10], ids=["ascii", "utf8"]
)
def test_render_chunks_split_at_line_ends(max_bytes: int, label_value: str) -> None:
    """Chunks end at line ends, join to render(), and pass the byte cap by one line."""
    samples = _series(40, label_value)
    chunks = list(render_chunks(samples, max_bytes))
    assert b"".join(chunks) == render(samples)
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        lines = chunk.splitlines(keepends=True)
        # the cap is in bytes: a chunk is cut as soon as it reaches max_bytes
        assert len(chunk) - len(lines[-1]) < max_bytes


def test_render_chunks_empty() -> None:
    """No samples give no chunks, so nothing is pushed."""
    assert list(render_chunks([], 100)) == []


def test_render_chunks_default_size_is_one_chunk_for_small_bodies() -> None:
    """A small body fits in one chunk at the default cap."""
    samples = _series(30, "chat_bot")
    assert list(render_chunks(samples)) == [render(samples)]


_METRIC_NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]*", fullmatch=True)
_LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]*", fullmatch=True).filter(
    lambda name: not name.startswith("__")
)
_TIMESTAMPS = st.integers(min_value=0, max_value=4_102_444_800_000)  # up to 2100


@st.composite
def _samples(draw: st.DrawFn) -> Sample:
    """Draw a sample with arbitrary label values and a finite value."""
    labels: Labels = labels_of(
        draw(st.dictionaries(_LABEL_NAMES, st.text(), max_size=4))
    )
    value = draw(st.floats(allow_nan=False, allow_infinity=False))
    return Sample(draw(_METRIC_NAMES), labels, value, draw(_TIMESTAMPS))


@pytest.mark.parametrize(
    "samples",
    [
        [Sample("up", (), 1.0, 0)],
        [
            Sample(
                "openai_daily_cost",
                labels_of(
                    {
                        "currency": "usd",
                        "line_item": "gpt-4o, input",
                        "project": "ünïcode_проект",
                        "project_id": "proj_1",
                        "job": "openai-cost-pusher",
                    }
                ),
                12.5,
                T0_MS,
            )
        ],
        [
            Sample("x", (("v", 'a\\b"c\nd}{,= '),), 0.1, T0_MS),
            Sample("x", (("v", "\\"),), -0.0, T0_MS + 1),
            Sample("x", (("v", '\\"\\n'),), 1e-300, T0_MS + 2),
        ],
        [
            Sample(
                "openai_cost_pusher_cycles_total", (("result", "success"),), 4.0, T0_MS
            ),
            Sample(
                "openai_cost_pusher_build_info", (("version", "0.1.0"),), 1.0, T0_MS
            ),
        ],
        [
            Sample("x", (), float("inf"), 1),
            Sample("y", (), float("-inf"), 2),
            Sample("z", (), float("nan"), 3),
        ],
    ],
    ids=["bare", "cost", "escapes", "self", "special-values"],
)
def test_round_trip_fixed_cases(samples: list[Sample]) -> None:
    """Fixed cases parse back with equal names, labels, values and timestamps."""
    _assert_round_trip(samples)


@settings(max_examples=200)
@given(st.lists(_samples(), min_size=1, max_size=5))
def test_round_trip_arbitrary_samples(samples: list[Sample]) -> None:
    """Arbitrary label values and finite floats parse back equal, timestamps too."""
    _assert_round_trip(samples)


@settings(max_examples=300)
@given(st.text())
def test_round_trip_arbitrary_label_value(value: str) -> None:
    """Any text as a label value survives rendering and parsing unchanged."""
    _assert_round_trip([Sample("openai_daily_cost", (("project", value),), 1.0, 0)])


@given(st.lists(_samples(), max_size=8), st.integers(min_value=1, max_value=300))
def test_render_chunks_join_to_render(samples: list[Sample], max_bytes: int) -> None:
    """For any samples and cap, chunks end at line ends and join to render()."""
    chunks = list(render_chunks(samples, max_bytes))
    assert b"".join(chunks) == render(samples)
    assert all(chunk.endswith(b"\n") for chunk in chunks)
