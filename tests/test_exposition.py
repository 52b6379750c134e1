"""Test the Prometheus text renderer: golden bytes, escaping, values, chunks, parsing.

VictoriaMetrics answers 204 even when it drops a malformed line, so the renderer is
proven here against golden bytes and a real exposition parser
(`prometheus_client.parser`), with hypothesis over arbitrary label values and floats.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_pusher import exposition
from openai_cost_pusher.exposition import (
    DEFAULT_CHUNK_BYTES,
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


# The renderer takes samples in batches and renders most batches column by column;
# these tests hold it to a plain loop over the samples, byte for byte and chunk for
# chunk, with batches small enough that a few samples cross several of them.

_REFERENCE_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def _reference_chunks(
    samples: Iterable[Sample], max_bytes: int, *, timestamps: bool = True
) -> Iterator[bytes]:
    """Render the straightforward way: one line per sample, cut in UTF-8 bytes."""
    parts: list[bytes] = []
    size = 0
    for sample in samples:
        line = sample.name
        if sample.labels:
            line += (
                "{"
                + ",".join(
                    key
                    + '="'
                    + value.replace("\\", "\\\\")
                    .replace("\n", "\\n")
                    .replace('"', '\\"')
                    + '"'
                    for key, value in sample.labels
                )
                + "}"
            )
        text = repr(sample.value)
        line += " " + _REFERENCE_SPECIAL.get(text, text)
        if timestamps:
            line += f" {sample.ts_ms}"
        data = (line + "\n").encode()
        parts.append(data)
        size += len(data)
        if size >= max_bytes:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _assert_same_as_reference(
    samples: list[Sample], max_bytes: int, *, timestamps: bool = True
) -> None:
    """Assert that a list and an iterator of `samples` render to the reference's
    chunks (a list is cut into batches by slicing, an iterator by `islice`)."""
    expected = list(_reference_chunks(samples, max_bytes, timestamps=timestamps))
    assert list(render_chunks(samples, max_bytes, timestamps=timestamps)) == expected
    got = list(render_chunks(iter(samples), max_bytes, timestamps=timestamps))
    assert got == expected


_VALUES = st.one_of(
    st.floats(),  # NaN and both infinities included
    st.sampled_from([0.0, -0.0, 1e16, 1e-5, 0.1, 12.5, 5e-324, 1.7976931348623157e308]),
    st.integers(min_value=-(10**20), max_value=10**20),  # an int renders as itself
)


@st.composite
def _sample_lists(draw: st.DrawFn) -> list[Sample]:
    """Draw samples over a few series: label tuples shared by identity, equal but
    distinct tuples, one tuple under several names, non-ASCII values and escapes,
    timestamps in runs and scattered."""
    names = draw(st.lists(_METRIC_NAMES, min_size=1, max_size=3))
    label_sets: list[Labels] = [
        labels_of(draw(st.dictionaries(_LABEL_NAMES, st.text(), max_size=3)))
        for _ in range(draw(st.integers(1, 4)))
    ]
    stamps = draw(st.lists(_TIMESTAMPS, min_size=1, max_size=3))
    samples = []
    for _ in range(draw(st.integers(0, 40))):
        labels = draw(st.sampled_from(label_sets))
        if draw(st.booleans()):
            labels = tuple(list(labels))  # equal, not identical
        samples.append(
            Sample(
                draw(st.sampled_from(names)),
                labels,
                draw(_VALUES),
                draw(st.one_of(st.sampled_from(stamps), _TIMESTAMPS)),
            )
        )
    return samples


@settings(max_examples=300)
@given(
    _sample_lists(),
    st.integers(min_value=-1, max_value=400),
    st.sampled_from([1, 2, 3, 7, 2048]),
    st.booleans(),
)
def test_render_chunks_match_reference(
    samples: list[Sample], max_bytes: int, batch: int, timestamps: bool
) -> None:
    """Any samples, cap, batch size and timestamp mode give the reference's chunks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exposition, "_BATCH", batch)
        mp.setattr(exposition, "_STAMPS_MAX", 2)  # the cache is emptied often
        _assert_same_as_reference(samples, max_bytes, timestamps=timestamps)


@settings(max_examples=200)
@given(
    _sample_lists(),
    st.lists(st.integers(min_value=0, max_value=40), max_size=4),
    st.sampled_from([1, 3, 2048]),
    st.booleans(),
    st.sampled_from([0, 2, exposition.PREFIXES_MAX]),
)
def test_a_cache_shared_by_several_renders_changes_nothing(
    samples: list[Sample], cuts: list[int], batch: int, timestamps: bool, kept: int
) -> None:
    """Samples rendered in parts with one shared `RenderCache` (the days of a
    cycle) give, part by part, what each part gives with a cache of its own, also
    when the cache keeps the texts of only a few series (or none)."""
    bounds = sorted({0, len(samples), *(min(c, len(samples)) for c in cuts)})
    parts = [samples[a:b] for a, b in itertools.pairwise(bounds)]
    cache = exposition.RenderCache()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exposition, "_BATCH", batch)
        mp.setattr(exposition, "PREFIXES_MAX", kept)
        for part in parts:
            shared = b"".join(
                exposition.render_chunks(part, 64, timestamps=timestamps, cache=cache)
            )
            plain = b"".join(_reference_chunks(part, 64, timestamps=timestamps))
            assert shared == plain


def _bench_like(n: int) -> list[Sample]:
    """Return `n` samples over 300 series, day after day, some labels non-ASCII or
    escaped, a NaN and infinities here and there."""
    rng = random.Random(7)
    series = [
        labels_of(
            {
                "currency": "usd",
                "line_item": f"model-{i}, input",
                "project": f'Проект "{p}" ✓' if p % 7 == 0 else f"project_{p}",
                "project_id": f"proj_{p:05d}" + ("\\\n" if p == 13 else ""),
            }
        )
        for p in range(30)
        for i in range(10)
    ]
    samples = []
    for k in range(n):
        value = rng.uniform(0.01, 100)
        if k % 4999 == 0:
            value = rng.choice([math.nan, math.inf, -math.inf])
        samples.append(
            Sample(
                "openai_daily_cost",
                series[k % len(series)],
                value,
                T0_MS + (k // len(series)) * DAY_MS,
            )
        )
    return samples


@pytest.mark.parametrize("max_bytes", [1, 4096, 65_536, 1 << 20])
@pytest.mark.parametrize("timestamps", [True, False])
def test_render_chunks_match_reference_at_scale(
    max_bytes: int, timestamps: bool
) -> None:
    """Tens of thousands of samples at the default batch size match the reference."""
    _assert_same_as_reference(_bench_like(20_000), max_bytes, timestamps=timestamps)


def test_render_chunks_default_cap_matches_reference() -> None:
    """Several 4 MiB chunks, cut where the plain loop cuts them."""
    samples = _bench_like(120_000)
    chunks = list(render_chunks(samples))
    assert len(chunks) >= 3
    assert chunks == list(_reference_chunks(samples, DEFAULT_CHUNK_BYTES))


@pytest.mark.parametrize("batch", [1, 2048])
def test_render_chunks_fresh_label_tuples(batch: int) -> None:
    """Label tuples made per sample and dropped at once are never confused: a
    tuple's id, once cached, is not reused by another while rendering runs."""

    def samples() -> Iterator[Sample]:
        for k in range(10_000):
            yield Sample("x", (("k", str(k % 1000)),), float(k), k // 100)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exposition, "_BATCH", batch)
        got = list(render_chunks(samples(), 10_000))
    assert got == list(_reference_chunks(samples(), 10_000))


def test_render_chunks_odd_timestamps_and_values() -> None:
    """Timestamps and values of other types render as a plain loop renders them:
    a float equal to an int timestamp keeps its own text."""
    samples = [
        Sample("x", (), 1.0, 1),
        Sample("x", (), 2, 1),
        Sample("x", (), 3.5, 1.0),  # type: ignore[arg-type]
        Sample("x", (), True, True),
        Sample("x", (), 4.0, 1),
    ]
    for batch in (1, 2, 5):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(exposition, "_BATCH", batch)
            _assert_same_as_reference(samples, 10**6)
    assert render(samples[2:3]) == b"x 3.5 1.0\n"


@pytest.mark.parametrize("as_input", [list, iter], ids=["list", "iterator"])
def test_render_chunks_raise_where_the_plain_loop_raises(
    as_input: Callable[[list[Sample]], Iterable[Sample]],
) -> None:
    """An invalid sample raises only after every chunk before it was yielded."""
    good = [Sample("a", (("k", "v"),), float(k), k) for k in range(50)]
    bad = Sample("a", (("k-1", "v"),), 1.0, 0)
    samples = [*good[:30], bad, *good[30:]]
    # the chunks the 30 lines before it fill; the last, unfilled one is never sent
    expected = [c for c in _reference_chunks(good[:30], 100) if len(c) >= 100]
    got: list[bytes] = []
    with pytest.raises(ValueError, match="invalid label name 'k-1' on a"):
        got.extend(render_chunks(as_input(samples), 100))
    assert got == expected
    assert len(got) >= 2


@pytest.mark.parametrize("as_input", [list, iter], ids=["list", "iterator"])
def test_render_chunks_lone_surrogate_raises_at_its_sample(
    as_input: Callable[[list[Sample]], Iterable[Sample]],
) -> None:
    """A label value UTF-8 cannot carry raises at its sample, after earlier chunks."""
    samples = [Sample("a", (), float(k), k) for k in range(10)]
    samples.insert(5, Sample("a", (("k", "\ud800"),), 1.0, 0))
    got: list[bytes] = []
    with pytest.raises(UnicodeEncodeError):
        got.extend(render_chunks(as_input(samples), 1))
    assert got == list(_reference_chunks(samples[:5], 1))


def test_a_run_of_the_kept_order_takes_one_slice_of_prefixes() -> None:
    """Prefixes are found as one slice where the ids run in the order first
    rendered, also past the end of the order into its start; any other order or an
    unknown first id finds none (the batch takes them one by one)."""
    kept = exposition._Prefixes()
    for n in range(5):
        kept.at[1000 + n] = n
        kept.ids.append(1000 + n)
        kept.texts.append(f"s{n} ")
    assert kept.run([1001, 1002, 1003]) == ["s1 ", "s2 ", "s3 "]
    assert kept.run([1003, 1004, 1000, 1001]) == ["s3 ", "s4 ", "s0 ", "s1 "]
    assert kept.run([1001, 1003]) is None
    assert kept.run([1004, 1000, 1002]) is None
    assert kept.run([999, 1000]) is None


def test_days_in_the_same_series_order_render_by_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The days of a backfill come in the same series order: after the first, each
    batch's prefixes are one slice of the kept ones (across a day's end too), and
    everything renders as the reference does, a day in another order included."""
    labels = [labels_of({"project_id": f"proj_{n}"}) for n in range(10)]

    def day(ts: int, order: Iterable[int]) -> list[Sample]:
        return [Sample("x", labels[n], n + ts / 8, ts) for n in order]

    found: list[bool] = []
    real = exposition._Prefixes.run

    def spy(self: exposition._Prefixes, ids: list[int]) -> list[str] | None:
        prefixes = real(self, ids)
        found.append(prefixes is not None)
        return prefixes

    monkeypatch.setattr(exposition._Prefixes, "run", spy)
    monkeypatch.setattr(exposition, "_BATCH", 4)
    samples = [s for ts in range(1, 5) for s in day(ts, range(10))]
    samples += day(5, [3, 1, 4, 0, 5, 9, 2, 6, 8, 7])
    assert list(render_chunks(samples, 64)) == list(_reference_chunks(samples, 64))
    # batches of 4: the first is of a new metric, the next two hold series not
    # rendered before; then days 2 to 4 run in the kept order (the batch of days
    # 3 and 4 across the order's end), and the shuffled day does not
    assert found == [False] * 2 + [True] * 7 + [False] * 3


def test_a_cache_of_far_more_series_than_it_holds_lets_its_texts_go() -> None:
    """Once the series not kept outnumber the renders of kept ones by
    `PREFIXES_MAX`, the cache lets its texts go and keeps none after; while the
    kept ones are rendered again as often, it keeps them. Either way the text is
    the plain rendering's."""

    def day(series: range, ts_ms: int) -> list[Sample]:
        return [Sample("m", labels[s], float(s), ts_ms) for s in series]

    labels = [labels_of({"project_id": f"proj_{s}"}) for s in range(12)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exposition, "PREFIXES_MAX", 4)
        few = exposition.RenderCache()  # 6 series: 2 missed a day, 4 found
        for d in range(5):
            samples = day(range(6), d * 1000)
            got = b"".join(exposition.render_chunks(samples, 64, cache=few))
            assert got == b"".join(_reference_chunks(samples, 64, timestamps=True))
        assert few.kept == 4
        many = exposition.RenderCache()  # 12 series: 8 missed, 4 found
        samples = day(range(12), 0)
        got = b"".join(exposition.render_chunks(samples, 64, cache=many))
        assert got == b"".join(_reference_chunks(samples, 64, timestamps=True))
        assert many.kept == 0
        samples = day(range(12), 1000)
        got = b"".join(exposition.render_chunks(samples, 64, cache=many))
        assert got == b"".join(_reference_chunks(samples, 64, timestamps=True))
        assert many.kept == 0
