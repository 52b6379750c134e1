"""Turn API records into samples: metric names, label normalization, the cost series.

Pure: results, project names, extra labels and `now` come in as arguments, samples go
out. Metric names and label keys are stable API for dashboards and alerts and are
defined here only.

Exposition of the families built here (extra labels such as `job` omitted):

    openai_daily_cost{currency="usd",line_item="gpt-4o, input",project="chat_bot",project_id="proj_1"} 12.5 1730419200000
    openai_cost_today{currency="usd",project="chat_bot",project_id="proj_1"} 31.25 1730460000000
    openai_daily_cost_quantity{line_item="gpt-4o, input",project="chat_bot",project_id="proj_1",unit="tokens"} 5000000.0 1730419200000
    openai_daily_cost_by_api_key{api_key="web_backend",api_key_id="key_1",currency="usd",project="chat_bot",project_id="proj_1"} 9.5 1730419200000
    openai_cost_pusher_last_success_timestamp_seconds{dataset="costs",instance="pod-1"} 1730460000.0 1730460000000
    openai_cost_pusher_cycles_total{instance="pod-1",result="success"} 4.0 1730460000000
"""  # noqa: E501 - exposition lines are shown whole

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType

from openai_cost_pusher.model import (
    Columns,
    CostLine,
    Labels,
    Points,
    Project,
    Sample,
    UsageLine,
)

DAILY_COST = "openai_daily_cost"
DAILY_COST_QUANTITY = "openai_daily_cost_quantity"
DAILY_COST_BY_API_KEY = "openai_daily_cost_by_api_key"
COST_TODAY = "openai_cost_today"
LAST_SUCCESS = "openai_cost_pusher_last_success_timestamp_seconds"
CYCLE_DURATION = "openai_cost_pusher_cycle_duration_seconds"
CYCLES_TOTAL = "openai_cost_pusher_cycles_total"
API_REQUESTS = "openai_cost_pusher_api_requests_total"
SAMPLES_PUSHED = "openai_cost_pusher_samples_pushed"
DOWNWARD_REVISIONS = "openai_cost_pusher_downward_revisions_total"
BUILD_INFO = "openai_cost_pusher_build_info"
INSTANCE_LABEL = "instance"
"""The label that tells pushers apart on the self-monitoring series only."""
USAGE_TOKENS = "openai_usage_tokens"
USAGE_REQUESTS = "openai_usage_requests"
USAGE_IMAGES = "openai_usage_images"
USAGE_AUDIO_CHARACTERS = "openai_usage_audio_characters"
USAGE_AUDIO_SECONDS = "openai_usage_audio_seconds"
USAGE_CODE_INTERPRETER_SESSIONS = "openai_usage_code_interpreter_sessions"
USAGE_VECTOR_STORE_BYTES = "openai_usage_vector_store_bytes"
USAGE_TOOL_CALLS = "openai_usage_tool_calls"
USAGE_METRICS = "openai_usage_.*"
"""A regular expression of every usage metric name."""
UNCONFIRMED_SAMPLES = "openai_cost_pusher_unconfirmed_samples"
UNCONFIRMED_AGE = "openai_cost_pusher_unconfirmed_oldest_seconds"
REJECTED_BUCKETS = "openai_cost_pusher_rejected_buckets"
SPEND_LIMIT = "openai_spend_limit"
"""A hard monthly spend limit in currency units (`spend_limits` builds it)."""
SPEND_ALERT_THRESHOLD = "openai_spend_alert_threshold"
"""A spend alert's monthly threshold in currency units (`spend_limits` builds it)."""

_USAGE_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "num_model_requests": (USAGE_REQUESTS, ("operation", "model", "batch")),
    "images": (USAGE_IMAGES, ("model", "size", "source")),
    "characters": (USAGE_AUDIO_CHARACTERS, ("model",)),
    "seconds": (USAGE_AUDIO_SECONDS, ("model",)),
    "num_sessions": (USAGE_CODE_INTERPRETER_SESSIONS, ()),
    "usage_bytes": (USAGE_VECTOR_STORE_BYTES, ()),
}
"""Usage counter field to metric name and its labels besides project_id/project."""
_TOOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "web_search_calls": ("web_search", ("model", "context_level")),
    "file_search_calls": ("file_search", ()),
}
"""Tool call endpoint to its `tool` label and the labels its `num_requests` has."""
_TOKEN_LABELS = ("operation", "model", "type", "batch")
_OPTIONAL_DIMS = ("user_id", "api_key_id")

DAY_SECONDS = 86_400
UNATTRIBUTED = "unattributed"
UNKNOWN = "unknown"
NO_API_KEY = "none"
"""The `api_key` label of costs and usage made without a project API key."""

_NOT_ALNUM = re.compile(r"[\W_]+")

MAX_LABEL_VALUE_BYTES = 4096
"""VictoriaMetrics' `-maxLabelValueLen` default: a series with a longer label value
(in UTF-8 bytes) is dropped while the import still answers 204."""
_HASH_HEX = 8


def fit_label_value(value: str, limit: int = MAX_LABEL_VALUE_BYTES) -> str:
    """Return `value`, or a shortened one of at most `limit` UTF-8 bytes.

    A longer value becomes its longest prefix that ends on a character boundary
    (without trailing `_`), `_` and the first 8 hex digits of the SHA-256 of the whole
    value: deterministic, so every cycle pushes the same series, and distinct long
    values stay apart. A `project` label stays normalized (letters, digits, single
    `_`).
    """
    if len(value) * 4 <= limit:  # fast path: a character is at most 4 bytes
        return value
    data = value.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return value
    digest = hashlib.sha256(data).hexdigest()[:_HASH_HEX]
    end = limit - 1 - _HASH_HEX
    while end > 0 and data[end] & 0xC0 == 0x80:  # inside a character: back off
        end -= 1
    prefix = data[:end].decode("utf-8", "surrogatepass").rstrip("_")
    return f"{prefix}_{digest}"


_SHARED_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}
_SHARED_PAIRS_MAX = 1 << 20
"""Label pairs are shared by every series that has them (`currency="usd"` by all, a
project's id and name by its line items, keys and quantities): a pair tuple and its
strings are about 100 bytes, and 3,000 projects hold some 700,000 pairs in their
series' labels. Emptied when it holds this many, so it stays bounded."""


def _fitted(pairs: Mapping[str, str]) -> Labels:
    """Return label pairs, sorted, with every value fit for VictoriaMetrics; equal
    pairs are the same shared tuple (see `_SHARED_PAIRS`)."""
    shared = _SHARED_PAIRS
    if len(shared) >= _SHARED_PAIRS_MAX:
        shared.clear()
    out = []
    for key, value in sorted(pairs.items()):
        pair = (key, fit_label_value(value))
        out.append(shared.setdefault(pair, pair))
    return tuple(out)


def normalize_name(name: str) -> str:
    """Return a project name fit for queries: lowercase, runs of other chars as `_`.

    Letters and digits of any script are kept (`ü`, `п`); every run of anything else
    becomes one `_`, and `_` at either end is stripped.
    """
    folded = unicodedata.normalize("NFC", name).lower()
    return _NOT_ALNUM.sub("_", folded).strip("_")


def project_label(project_id: str, names: Mapping[str, str | None]) -> str:
    """Return the `project` label value for a project id, per the metric contract."""
    if not project_id:
        return UNATTRIBUTED
    if project_id not in names:
        return UNKNOWN
    name = names[project_id]
    return fit_label_value((normalize_name(name) if name else "") or project_id)


def api_key_label(key_id: str, key_names: Mapping[str, str]) -> str:
    """Return the `api_key` label value for an API key id: its name normalized like
    project names; `none` for no key, `unknown` for an id never seen in a key list,
    the id itself where the name normalizes to nothing."""
    if not key_id:
        return NO_API_KEY
    name = key_names.get(key_id)
    if name is None:
        return UNKNOWN
    return fit_label_value(normalize_name(name) or key_id)


def merge_names(
    known: Mapping[str, str | None], projects: Iterable[Project]
) -> dict[str, str | None]:
    """Return `known` updated with the current project list.

    A project that no longer appears keeps its last name, so its history never turns
    into `unknown`.
    """
    merged = dict(known)
    for project in projects:
        merged[project.id] = project.name
    return merged


CostKey = tuple[str, str, str]
"""A cost series in API terms: project id, line item, currency."""

CostTable = dict[CostKey, Points]
"""Daily amounts per cost series: day (00:00 UTC, Unix seconds) to value.

Grouped by series, packed in `Points`, so that a 30-day window of a large organization
costs one small array per series instead of one object per sample.
"""


QuantityTable = dict[CostKey, Points]
"""Daily quantities per project id, line item and unit (`quantity_unit`, `""` when
null): day (00:00 UTC, Unix seconds) to the day's quantity."""

CostColumns = Columns[CostKey]
"""A `CostTable` or `QuantityTable` packed by day (see `Columns`): what a cycle
holds, letting go of each day once it has landed."""

AnyTable = CostTable | CostColumns


def _adder(table: AnyTable) -> Callable[[CostKey, int, float], None]:
    """Return how to add a value to a series' day of `table`."""
    if isinstance(table, Columns):
        return table.add

    def add(key: CostKey, day: int, value: float) -> None:
        points = table.get(key)
        if points is None:
            points = table[key] = Points(DAY_SECONDS)
        points.add(day, value)

    return add


def add_cost_lines(
    table: AnyTable,
    lines: Iterable[CostLine],
    quantities: AnyTable | None = None,
) -> None:
    """Add parsed cost lines to `table`, summing lines that share series and day;
    with `quantities`, add each line's quantity too (lines without one add none)."""
    add = _adder(table)
    add_quantity = None if quantities is None else _adder(quantities)
    for line in lines:
        add((line.project_id, line.line_item, line.currency), line.day, line.value)
        if line.quantity is not None and add_quantity is not None:
            qkey = (line.project_id, line.line_item, line.quantity_unit)
            add_quantity(qkey, line.day, line.quantity)


def add_key_cost_lines(table: AnyTable, lines: Iterable[CostLine]) -> None:
    """Add cost lines grouped by project and API key to `table`, keyed by project id,
    API key id (`""`: no key) and currency, summing lines that share series and day."""
    add = _adder(table)
    for line in lines:
        add((line.project_id, line.api_key_id, line.currency), line.day, line.value)


def _series_labels(
    extra: Labels, names: Mapping[str, str | None], project_id: str, **more: str
) -> Labels:
    labels = {
        **dict(extra),
        "project_id": project_id,
        "project": project_label(project_id, names),
        **more,
    }
    return _fitted(labels)


LabelsByNumber = list[Labels | None]
"""Each series' labels by its number in a table's index (None: not built yet)."""


def daily_labels(
    name: str,
    key: CostKey,
    names: Mapping[str, str | None],
    key_names: Mapping[str, str],
    extra: Labels,
) -> Labels:
    """Return the labels of the `name` series whose key in its table is `key`, as
    `cost_samples`, `quantity_samples` and `key_cost_samples` label them."""
    project_id, second, third = key
    if name == DAILY_COST:
        return _series_labels(
            extra, names, project_id, line_item=second, currency=third
        )
    if name == DAILY_COST_QUANTITY:
        return _series_labels(extra, names, project_id, line_item=second, unit=third)
    if name == DAILY_COST_BY_API_KEY:
        return _series_labels(
            extra,
            names,
            project_id,
            api_key_id=second,
            api_key=api_key_label(second, key_names),
            currency=third,
        )
    raise ValueError(f"not a daily metric with keyed series: {name!r}")


def _daily_samples(
    name: str,
    table: Mapping[tuple[str, str, str], Points] | CostColumns,
    labels_of: Callable[[tuple[str, str, str]], Labels],
    start: int | None,
    end: int | None,
    labels_cache: LabelsByNumber | None,
    keys: list[Hashable] | None = None,
) -> Iterator[Sample]:
    """Yield one `name` sample per series of `table` and day, stamped at 00:00 UTC;
    only the days in `[start, end)` (Unix seconds) where given. A series' labels are
    `labels_of(key)`, built once; those of a `Columns` table are kept by the
    series' number in `labels_cache` across calls (8 bytes a series, where a dict
    by key took about 50), valid while the table's index is the same. Where `keys`
    is given (for a keyed `Ledger`), each sample's series goes to it: its number in
    a `Columns` table (for a numbered ledger), else its key."""
    if isinstance(table, Columns):
        cache: LabelsByNumber = [] if labels_cache is None else labels_cache
        for day in table.timestamps():
            if (start is None or start <= day) and (end is None or day < end):
                ts_ms = day * 1000  # one int a day, not one a sample
                for key, number, value in table.numbered_at(day):
                    if number >= len(cache):
                        cache.extend([None] * (len(table) - len(cache)))
                    labels = cache[number]
                    if labels is None:
                        labels = cache[number] = labels_of(key)
                    if keys is not None:
                        keys.append(number)
                    yield Sample(name, labels, value, ts_ms)
        return
    for key, days in table.items():
        labels = None
        for day, value in days.items(start, end):
            if labels is None:
                labels = labels_of(key)
            if keys is not None:
                keys.append(key)
            yield Sample(name, labels, value, day * 1000)


def cost_samples(
    table: AnyTable,
    names: Mapping[str, str | None],
    extra: Labels,
    start: int | None = None,
    end: int | None = None,
    labels_cache: LabelsByNumber | None = None,
    keys: list[Hashable] | None = None,
) -> Iterator[Sample]:
    """Yield one `openai_daily_cost` sample per series and day (`_daily_samples`)."""

    def labels_of(key: CostKey) -> Labels:
        return daily_labels(DAILY_COST, key, names, {}, extra)

    return _daily_samples(DAILY_COST, table, labels_of, start, end, labels_cache, keys)


def quantity_samples(
    quantities: AnyTable,
    names: Mapping[str, str | None],
    extra: Labels,
    start: int | None = None,
    end: int | None = None,
    labels_cache: LabelsByNumber | None = None,
    keys: list[Hashable] | None = None,
) -> Iterator[Sample]:
    """Yield one `openai_daily_cost_quantity` sample per series and day, as
    `cost_samples` does (`unit` is `""` where the API gave none)."""

    def labels_of(key: CostKey) -> Labels:
        return daily_labels(DAILY_COST_QUANTITY, key, names, {}, extra)

    return _daily_samples(
        DAILY_COST_QUANTITY, quantities, labels_of, start, end, labels_cache, keys
    )


def key_cost_samples(
    table: AnyTable,
    names: Mapping[str, str | None],
    key_names: Mapping[str, str],
    extra: Labels,
    start: int | None = None,
    end: int | None = None,
    labels_cache: LabelsByNumber | None = None,
    keys: list[Hashable] | None = None,
) -> Iterator[Sample]:
    """Yield one `openai_daily_cost_by_api_key` sample per project, API key, currency
    and day of `table` (see `add_key_cost_lines`), as `cost_samples` does."""

    def labels_of(key: CostKey) -> Labels:
        return daily_labels(DAILY_COST_BY_API_KEY, key, names, key_names, extra)

    return _daily_samples(
        DAILY_COST_BY_API_KEY, table, labels_of, start, end, labels_cache, keys
    )


def name_usage_keys(table: UsageTable, key_names: Mapping[str, str]) -> UsageTable:
    """Return `table` with an `api_key` label (see `api_key_label`) on every series
    that carries `api_key_id`; other series are kept as they are."""
    out: UsageTable = {}
    for (name, labels), points in table.items():
        key_id = next((v for k, v in labels if k == "api_key_id"), None)
        if key_id is not None:
            pairs = dict(labels)
            pairs["api_key"] = api_key_label(key_id, key_names)
            labels = tuple(sorted(pairs.items()))
        out[(name, labels)] = points  # distinct before, so distinct after
    return out


def today_samples(
    table: AnyTable,
    names: Mapping[str, str | None],
    extra: Labels,
    today: int,
    now_ms: int,
) -> list[Sample]:
    """Return `openai_cost_today` per project and currency, stamped at `now_ms`."""
    parts: dict[tuple[str, str], list[float]] = {}
    values: Iterable[tuple[CostKey, float | None]] = (
        table.at(today)
        if isinstance(table, Columns)
        else ((key, days.get(today)) for key, days in table.items())
    )
    for (project_id, _line_item, currency), value in values:
        if value is not None:
            parts.setdefault((project_id, currency), []).append(value)
    return [
        Sample(
            COST_TODAY,
            _series_labels(extra, names, project_id, currency=currency),
            math.fsum(values),
            now_ms,
        )
        for (project_id, currency), values in parts.items()
    ]


UsageTable = dict[tuple[str, Labels], Points]
"""Usage samples per series (metric name, labels): bucket start (s) to amount."""

UsageColumns = Columns[tuple[str, Labels]]
"""A `UsageTable` packed by bucket (see `Columns`)."""


UsageSeries = tuple[int, ...]
"""A usage line's counters' series numbers in the table's index (`Columns.number`),
in the order of its fields, `NO_SERIES` where no family takes one."""
LineKey = tuple[object, ...]
"""A usage line's endpoint, fields and dimension pairs, in one flat tuple: what gives
its counters' series."""
UsageSeriesCache = dict[LineKey, UsageSeries]
"""Usage lines (`LineKey`) to their counters' series (see `add_usage_lines`): some
240 bytes a line with its dict entry, where a dict of field to number by endpoint
and dimensions took about 380 (a 10,000-project organization's day has 100,000
lines)."""
EMPTY_CACHE: Mapping[LineKey, UsageSeries] = MappingProxyType({})
NO_SERIES = -1
"""The number of a counter no family takes (`Columns.add_numbered` skips it)."""


def add_usage_lines(
    table: UsageColumns,
    lines: Iterable[UsageLine],
    names: Mapping[str, str | None],
    extra: Labels,
    optional_dims: Sequence[str] = (),
    series_cache: UsageSeriesCache | None = None,
    kept: Mapping[LineKey, UsageSeries] = EMPTY_CACHE,
) -> None:
    """Add usage lines to `table` as samples of the usage families.

    Each counter goes to the family `usage_family` names. Lines that land on the same
    series and bucket (images requests of several sizes, web searches of several
    context levels, say) are summed. Labels a family has but the request did not
    group by are `""`. `optional_dims` (`user_id`, `api_key_id`) are added as labels
    when grouping by them is on.

    `series_cache` receives the series numbers of a line's counters in `table`'s
    index, by its endpoint, dimensions and fields, as found in it or in `kept` (an
    earlier cycle's cache, whose entries it takes over) or built: passing the last
    cycle's cache as `kept` builds a series once for as long as `names`, `extra`,
    `optional_dims` and the table's index stay the same (the caller's to drop it
    when any of them changes), and a cache holds only the lines one cycle saw. A
    line whose counters are all known is added by number: its series' labels are
    neither built nor hashed.
    """
    numbers_of = UsageNumbers(
        table,
        names,
        extra,
        optional_dims,
        {} if series_cache is None else series_cache,
        kept,
    )
    numbers_of.add(lines)


class UsageNumbers:
    """The series numbers of a usage line's counters in a table's index (see
    `add_usage_lines`), built where the cache has none."""

    __slots__ = ("_cache", "_extra", "_kept", "_names", "_optional", "_table")

    def __init__(
        self,
        table: UsageColumns,
        names: Mapping[str, str | None],
        extra: Labels,
        optional_dims: Sequence[str],
        cache: UsageSeriesCache,
        kept: Mapping[LineKey, UsageSeries],
    ) -> None:
        self._table, self._names, self._extra = table, names, extra
        self._optional, self._cache, self._kept = optional_dims, cache, kept

    def add(self, lines: Iterable[UsageLine]) -> None:
        """Add `lines` to the table by number (see `add_usage_lines`)."""
        put = self._table.add_numbered
        for line in lines:
            put(self(line), line.start, line.values)

    def __call__(self, line: UsageLine) -> UsageSeries:
        # the fields tuple is shared by the lines of one key order: a line whose
        # dimensions were seen with other fields (a new token type) is a new key,
        # whose counters find the series the others built in the table's index
        line_key = (line.operation, line.fields, *line.dims)
        numbers = self._cache.get(line_key)
        if numbers is None:
            numbers = self._kept.get(line_key)
            if numbers is None:
                numbers = tuple(map(partial(self._number, line), line.fields))
            self._cache[line_key] = numbers
        return numbers

    def _number(self, line: UsageLine, field_name: str) -> int:
        names, extra, optional = self._names, self._extra, self._optional
        found = _usage_series(line, field_name, names, extra, optional)
        return NO_SERIES if found is None else self._table.number(found)


def usage_points(table: UsageColumns, step: int) -> UsageTable:
    """Return the series of `table` that hold values, as `Points` of `step`."""
    out: UsageTable = {}
    for ts in table.timestamps():
        for series, value in table.at(ts):
            points = out.get(series)
            if points is None:
                points = out[series] = Points(step)
            points.add(ts, value)
    return out


def usage_family(operation: str, field_name: str) -> tuple[str, tuple[str, ...]] | None:
    """Return the metric that counter `field_name` of usage endpoint `operation` goes
    to and its labels besides `project_id` and `project`; None if no metric takes it.

    Every `*_tokens` field goes to `openai_usage_tokens` (`type` is the field without
    `_tokens`), `num_requests` (tool calls) to `openai_usage_tool_calls` (`tool` is
    `web_search` or `file_search`), the other counters to their own family.
    """
    if field_name.endswith("_tokens"):
        return USAGE_TOKENS, _TOKEN_LABELS
    if field_name == "num_requests":
        tool_labels = _TOOLS[operation][1] if operation in _TOOLS else ()
        return USAGE_TOOL_CALLS, ("tool", *tool_labels)
    return _USAGE_FAMILIES.get(field_name)


def _usage_series(
    line: UsageLine,
    field_name: str,
    names: Mapping[str, str | None],
    extra: Labels,
    optional_dims: Sequence[str],
) -> tuple[str, Labels] | None:
    """Return the series (metric name, labels) of one counter of `line`, or None."""
    family = usage_family(line.operation, field_name)
    if family is None:
        return None
    name, wanted = family
    dims = dict(line.dims)
    project_id = dims.get("project_id", "")
    pairs = {
        **dict(extra),
        "project_id": project_id,
        "project": project_label(project_id, names),
    }
    for label in wanted:
        if label == "operation":
            pairs[label] = line.operation
        elif label == "type":
            pairs[label] = field_name[: -len("_tokens")]
        elif label == "tool":
            tool = _TOOLS.get(line.operation)
            pairs[label] = tool[0] if tool else line.operation
        else:
            pairs[label] = dims.get(label, "")
    for dim in optional_dims:
        pairs[dim] = dims.get(dim, "")
    return name, _fitted(pairs)


def usage_samples(
    table: UsageTable | UsageColumns,
    start: int | None = None,
    end: int | None = None,
    keys: list[Hashable] | None = None,
) -> Iterator[Sample]:
    """Yield one sample per usage series and bucket, stamped at the bucket's start;
    only the buckets in `[start, end)` (Unix seconds) where given. Each sample's
    number in a `Columns` table goes to `keys` where given (for a numbered
    `Ledger`)."""
    if isinstance(table, Columns):
        for ts in table.timestamps():
            if (start is None or start <= ts) and (end is None or ts < end):
                ts_ms = ts * 1000  # one int a bucket, not one a sample
                if keys is None:
                    for (name, labels), value in table.at(ts):
                        yield Sample(name, labels, value, ts_ms)
                    continue
                for (name, labels), number, value in table.numbered_at(ts):
                    keys.append(number)
                    yield Sample(name, labels, value, ts_ms)
        return
    if keys is not None:
        raise ValueError("series numbers come from a Columns table")
    for (name, labels), points in table.items():
        for bucket, value in points.items(start, end):
            yield Sample(name, labels, value, bucket * 1000)


@dataclass(slots=True)
class SelfStats:
    """Counters and gauges the pusher keeps about itself since start.

    `instance` names this pusher process on every self-monitoring series (the
    `instance` label; empty: no label), so that two pushers never share a counter.
    `on_request`, when set, is called on every counted request: the cycle loop's
    heartbeat, which a long retry must keep fresh.
    """

    version: str
    last_success: dict[str, float] = field(default_factory=dict)
    cycle_duration_s: float | None = None
    cycles: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    api_requests: dict[tuple[str, str], int] = field(default_factory=dict)
    samples_pushed: int = 0
    downward_revisions: int = 0
    unconfirmed: dict[str, int] = field(default_factory=dict)
    """Per data set: values pushed but not yet read back from the store."""
    unconfirmed_age_s: dict[str, float] = field(default_factory=dict)
    """Per data set: seconds since the oldest unconfirmed push (0 when none)."""
    rejected_buckets: dict[str, int] = field(default_factory=dict)
    """Per data set: buckets withheld by the last cycle for a malformed result."""
    instance: str = ""
    on_request: Callable[[], None] | None = field(
        default=None, repr=False, compare=False
    )

    def count_request(self, endpoint: str, code: str) -> None:
        """Count one Admin API request by endpoint and status code (or error kind)."""
        key = (endpoint, code)
        self.api_requests[key] = self.api_requests.get(key, 0) + 1
        if self.on_request is not None:
            self.on_request()


def self_samples(stats: SelfStats, extra: Labels, now_ms: int) -> list[Sample]:
    """Return the self-monitoring samples, all stamped at `now_ms`.

    Each carries `instance` (when `stats.instance` is set) besides the extra labels;
    the cost and usage series never do: they must be the same series whichever
    pusher pushes them, or deduplication cannot merge them.
    """
    own = {INSTANCE_LABEL: stats.instance} if stats.instance else {}

    def sample(name: str, value: float, **labels: str) -> Sample:
        pairs = {**dict(extra), **own, **labels}
        return Sample(name, tuple(sorted(pairs.items())), value, now_ms)

    # copies first: the health listener's threads read while the cycle counts
    out = [
        sample(LAST_SUCCESS, t, dataset=d) for d, t in list(stats.last_success.items())
    ]
    if stats.cycle_duration_s is not None:
        out.append(sample(CYCLE_DURATION, stats.cycle_duration_s))
    out.extend(sample(CYCLES_TOTAL, n, result=r) for r, n in list(stats.cycles.items()))
    out.extend(
        sample(API_REQUESTS, n, endpoint=ep, code=code)
        for (ep, code), n in sorted(stats.api_requests.items())
    )
    out.append(sample(SAMPLES_PUSHED, stats.samples_pushed))
    out.append(sample(DOWNWARD_REVISIONS, stats.downward_revisions))
    out.extend(
        sample(UNCONFIRMED_SAMPLES, n, dataset=d)
        for d, n in list(stats.unconfirmed.items())
    )
    out.extend(
        sample(UNCONFIRMED_AGE, age, dataset=d)
        for d, age in list(stats.unconfirmed_age_s.items())
    )
    out.extend(
        sample(REJECTED_BUCKETS, n, dataset=d)
        for d, n in list(stats.rejected_buckets.items())
    )
    out.append(sample(BUILD_INFO, 1, version=stats.version))
    return out
