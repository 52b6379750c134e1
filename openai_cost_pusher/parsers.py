"""Pure parsers of Admin API answers: decoded JSON values in, typed records out.

Each parser takes one value already decoded from JSON (a page's envelope, one costs or
usage bucket, a project list page) and returns typed records, or raises `BadField` (a
`BadResponse`) naming the JSON path of the first value that does not have the
documented shape and what is wrong with it. Unknown fields are ignored. Pure: no I/O,
no clock, no environment; `openai_api` fetches, streams and paginates.

A bucket's envelope (an object with an integer, aligned `start_time` and a `results`
array) is checked before any of its results. A bad value inside one result of a
well-formed bucket raises `BadResult` instead, which carries the bucket's start and the
path inside the bucket: the client can then withhold that one bucket (a UTC day for
costs) rather than the whole data set. A bad envelope cannot be attributed to a bucket
and stays a `BadField`. A bucket is read by a `BucketReader` (`CostBucket`,
`UsageBucket`), which takes its results batch by batch as they are decoded (a day of a
large organization is never held decoded whole) with the same checks, in the same
order, as for a bucket decoded whole (`parse_cost_bucket`, `parse_usage_bucket`, which
use it).

Strings holding lone surrogates (`"\\ud800"`, valid JSON but not UTF-8) are repaired
with `?`, so that they cannot break the exposition later.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from openai_cost_pusher.errors import BadResponse
from openai_cost_pusher.model import ApiKey, CostLine, Project, UsageLine

DAY = 86_400
MAX_CURSOR_CHARS = 4096
_COSTS_RESULT = "organization.costs.result"

_DECIMAL = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?$")
_EXACT = 1 << 53
"""Integers below this in size are exact as floats (the inline path takes them)."""

T = TypeVar("T")


class BadField(BadResponse):
    """A value of an answer does not have the documented shape.

    `path` names the value (`GET /organization/costs.has_more`), `reason` says what is
    wrong with it; the message is ``path: reason``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class BadResult(BadResponse):
    """A value inside one result of a well-formed bucket is bad: only that bucket is.

    `start` is the bucket's start (Unix seconds), `path` the bad value's path inside
    the bucket (`results[17].amount.value`), `reason` what is wrong with it. The
    message is the bucket's `where`, the path and the reason, as for any bad field.
    """

    def __init__(self, where: str, start: int, path: str, reason: str) -> None:
        super().__init__(f"{where}.{path}: {reason}")
        self.start = start
        self.path = path
        self.reason = reason


# -- fields ---------------------------------------------------------------------------


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise BadField(f"{where}.{key}", "missing")
    return obj[key]


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadField(where, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadField(where, f"expected an array, got {type(value).__name__}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(where, f"expected an integer, got {value!r:.40}")
    return value


def utf8(text: str) -> str:
    """Return `text` with lone surrogates (valid JSON, not UTF-8) replaced by `?`."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def check_cursor(cursor: str, where: str) -> None:
    """Refuse a cursor that cannot go back into a URL as it came."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadField(where, f"longer than {MAX_CURSOR_CHARS} characters")
    if utf8(cursor) is not cursor:
        raise BadField(where, "not valid UTF-8")


def _opt_str(value: Any, where: str) -> str:
    """Return a nullable string field as a label value: None becomes ``""``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadField(where, f"expected a string or null, got {value!r:.40}")
    return utf8(value)


def parse_amount_value(value: Any, where: str) -> float:
    """Return a cost amount (or quantity) given as a JSON number or as a decimal
    string (`"12.50"`, `"0.1739150000000000000000000000"`: the nearest float)."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond the float range
            number = None
    elif isinstance(value, str) and _DECIMAL.match(value.strip()):
        number = float(value.strip())
    else:
        number = None
    if number is None or not math.isfinite(number):
        raise BadField(
            where, f"expected a number or a decimal string, got {value!r:.40}"
        )
    return number


def _counter(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadField(where, f"expected a number, got {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise BadField(where, "expected a finite number")
    return number


def _shared(cache: dict[Any, Any], value: T) -> T:
    """Return the one stored copy of an equal immutable `value`."""
    return cache.setdefault(value, value)  # type: ignore[no-any-return]


# -- pages and buckets ----------------------------------------------------------------


def parse_page(body: Any, where: str) -> tuple[list[Any], bool, str | None]:
    """Return the buckets, `has_more` and `next_page` of a costs or usage page."""
    page = _object(body, where)
    data = _list(_field(page, "data", where), f"{where}.data")
    has_more = _field(page, "has_more", where)
    if not isinstance(has_more, bool):
        raise BadField(f"{where}.has_more", "expected true or false")
    next_page = page.get("next_page")
    if next_page is not None and not isinstance(next_page, str):
        raise BadField(f"{where}.next_page", "expected a string or null")
    if next_page is not None:
        check_cursor(next_page, f"{where}.next_page")
    if has_more and not next_page:
        raise BadField(f"{where}.next_page", "missing although has_more is true")
    return data, has_more, next_page


_MISSING: Any = object()
_ARRAY: Any = object()
"""The `results` of a bucket reader: given as an array, batch by batch."""


NOT_PARSED = -1
"""The record count of a results batch left unparsed (see `BucketReader`)."""


class BucketReader(ABC, Generic[T]):
    """Build one bucket's records from its parts as they arrive: all or nothing.

    Its keys come with `member` (`results` too when it is not an array), the
    elements of its `results` array in consecutive batches with `results`, or the
    whole decoded bucket with `whole`; then `finish` checks the envelope (an object
    with an integer, aligned `start_time` and a `results` array) before any result,
    as if the bucket had been decoded whole, and returns the start and the records.

    The results are parsed as they come, so that a bucket is never held decoded;
    after the first bad one the others are skipped and the records built so far
    dropped. JSON objects are unordered: results before `start_time` (or a repeated
    `start_time`, of which the last counts) are built with a provisional start and
    restamped once it is known. A repeated `results` starts over.

    A batch that comes with a digest of its bytes (`jsonstream.Items`) is listed
    in `batches`, in order, with how many records it gave, or `NOT_PARSED` where
    `known` holds its digest: then it is not parsed, for a caller that kept what
    the same bytes gave before, and adds that in its place.
    """

    def __init__(self, where: str, step: int, aligned: str) -> None:
        self.where = where
        self._step = step
        self._aligned = aligned
        self._other: Any = _MISSING  # a bucket that is not an object
        self._start: Any = _MISSING
        self._results: Any = _MISSING  # `_ARRAY`, or the value that is not one
        self._stamp = 0  # the start the records were built with
        self._count = 0  # of the results array
        self._lines: list[T] = []
        self._bad: BadField | None = None  # the first bad result
        self.known: Container[bytes] = ()
        self.batches: list[tuple[bytes, int]] = []

    def whole(self, bucket: Any) -> None:
        """Take a bucket decoded whole."""
        if not isinstance(bucket, dict):
            self._other = bucket
            return
        for key, value in bucket.items():
            self.member(key, value)

    def member(self, key: str, value: Any) -> None:
        """Take one key of the bucket and its value."""
        if key == "start_time":
            self._start = value
        elif key == "results":
            if isinstance(value, list):
                self.results(value, True)
            else:
                self._results = value
                self._lines, self._bad = [], None
                self.batches = []

    def results(self, batch: list[Any], first: bool, digest: bytes = b"") -> None:
        """Parse the next results of the bucket's `results` array; `first` starts
        the array (over). `digest`: of the batch's bytes, or `b""`."""
        if first:
            self._results = _ARRAY
            self._lines, self._bad, self._count = [], None, 0
            self.batches = []
            self._stamp = self._start if type(self._start) is int else 0
        if self._bad is None:
            if digest and digest in self.known:
                self.batches.append((digest, NOT_PARSED))
            else:
                before = len(self._lines)
                try:
                    self._add(batch, self._count, self._stamp)
                except BadField as exc:
                    self._lines, self._bad = [], exc
                else:
                    if digest:
                        self.batches.append((digest, len(self._lines) - before))
        self._count += len(batch)

    def finish(self) -> tuple[int, list[T]]:
        """Return the bucket's start and records once all its parts are in.

        Raises `BadField` for a bad envelope, `BadResult` (naming the start) for a
        bad result.
        """
        where = self.where
        if self._other is not _MISSING:
            _object(self._other, where)
        if self._start is _MISSING:
            raise BadField(f"{where}.start_time", "missing")
        start = _int(self._start, f"{where}.start_time")
        if start % self._step:
            raise BadField(f"{where}.start_time", f"{start} is not {self._aligned}")
        if self._results is _MISSING:
            raise BadField(f"{where}.results", "missing")
        if self._results is not _ARRAY:
            _list(self._results, f"{where}.results")
        if self._bad is not None:
            raise BadResult(where, start, self._bad.path, self._bad.reason)
        lines, self._lines = self._lines, []
        if lines and self._stamp != start:
            lines = [self._restamp(line, start) for line in lines]
        return start, lines

    @abstractmethod
    def _add(self, batch: list[Any], offset: int, start: int) -> None:
        """Append the records of `batch`, results number `offset` on, built with
        `start`; raise `BadField` (its path from `results`) for a bad one."""

    @abstractmethod
    def _restamp(self, line: T, start: int) -> T:
        """Return `line` with the bucket's start `start`."""


class CostBucket(BucketReader[CostLine]):
    """Build a costs bucket's lines (see `parse_cost_bucket`)."""

    def __init__(self, where: str, strings: dict[str, str] | None = None) -> None:
        super().__init__(where, DAY, "00:00 UTC")
        self._strings: dict[str, str] = {} if strings is None else strings

    def _add(self, batch: list[Any], offset: int, start: int) -> None:
        shared = self._strings
        intern = shared.setdefault
        new_line = tuple.__new__  # a CostLine without its Python-level __new__
        exact = _EXACT
        day = start
        append = self._lines.append
        for i, item in enumerate(batch):
            # The usual result, checked inline (a bucket can hold 60,000 of them): a
            # float amount, ASCII strings. Anything else takes `_cost_line`, which
            # checks every rule and names what is wrong; both give the same line for
            # what both accept.
            if type(item) is dict and item.get("object") == _COSTS_RESULT:
                amount = item.get("amount")
                if amount is None:
                    continue  # optional in the spec: such a result carries no cost
                if type(amount) is dict:
                    value = amount.get("value")
                    currency = amount.get("currency")
                    project_id = item.get("project_id")
                    line_item = item.get("line_item")
                    quantity = item.get("quantity")
                    unit = item.get("quantity_unit")
                    key_id = item.get("api_key_id")
                    if (
                        type(value) is float
                        and value - value == 0.0  # finite: "1e400" decodes to inf
                        and type(currency) is str
                        and currency
                        and currency.isascii()
                        and (
                            project_id is None
                            or (type(project_id) is str and project_id.isascii())
                        )
                        and (
                            line_item is None
                            or (type(line_item) is str and line_item.isascii())
                        )
                        and (
                            quantity is None
                            or (type(quantity) is float and quantity - quantity == 0.0)
                            or (type(quantity) is int and -exact < quantity < exact)
                        )
                        and (unit is None or (type(unit) is str and unit.isascii()))
                        and (
                            key_id is None or (type(key_id) is str and key_id.isascii())
                        )
                    ):
                        append(
                            new_line(
                                CostLine,
                                (
                                    day,
                                    intern(project_id, project_id)
                                    if project_id
                                    else "",
                                    intern(line_item, line_item) if line_item else "",
                                    intern(currency, currency),
                                    value,
                                    quantity
                                    if quantity is None or type(quantity) is float
                                    else float(quantity),
                                    intern(unit, unit) if unit else "",
                                    intern(key_id, key_id) if key_id else "",
                                ),
                            )
                        )
                        continue
            line = _cost_line(item, day, f"results[{offset + i}]", shared)
            if line is not None:
                append(line)

    def _restamp(self, line: CostLine, start: int) -> CostLine:
        return line._replace(day=start)


def parse_cost_bucket(
    bucket: Any, where: str, strings: dict[str, str] | None = None
) -> tuple[int, list[CostLine]]:
    """Return a costs bucket decoded whole: its day and its lines; results without
    an amount add 0.

    Raises `BadField` for a bad envelope, `BadResult` (naming the day) for a bad
    result. `strings` interns project ids, line items and currencies across buckets:
    a large organization repeats the same few thousand strings hundreds of thousands
    of times. `CostBucket` reads a bucket as it arrives, the same way.
    """
    reader = CostBucket(where, strings)
    reader.whole(bucket)
    return reader.finish()


def _cost_line(item: Any, day: int, at: str, shared: dict[str, str]) -> CostLine | None:
    """Return one costs result as a line, or None when it has no amount."""
    result = _object(item, at)
    kind = result.get("object")
    if kind != _COSTS_RESULT:
        raise BadField(f"{at}.object", f"expected {_COSTS_RESULT}, got {kind!r:.60}")
    amount = result.get("amount")
    if amount is None:
        return None  # optional in the spec: such a result carries no cost
    amount = _object(amount, f"{at}.amount")
    value = parse_amount_value(
        _field(amount, "value", f"{at}.amount"), f"{at}.amount.value"
    )
    currency = _field(amount, "currency", f"{at}.amount")
    if not isinstance(currency, str) or not currency:
        raise BadField(f"{at}.amount.currency", "expected a currency code")
    currency = utf8(currency)
    project_id = _opt_str(result.get("project_id"), f"{at}.project_id")
    line_item = _opt_str(result.get("line_item"), f"{at}.line_item")
    raw_quantity = result.get("quantity")
    quantity = (
        None
        if raw_quantity is None
        else parse_amount_value(raw_quantity, f"{at}.quantity")
    )
    unit = _opt_str(result.get("quantity_unit"), f"{at}.quantity_unit")
    key_id = _opt_str(result.get("api_key_id"), f"{at}.api_key_id")
    return CostLine(
        day=day,
        project_id=shared.setdefault(project_id, project_id),
        line_item=shared.setdefault(line_item, line_item),
        currency=shared.setdefault(currency, currency),
        value=value,
        quantity=quantity,
        quantity_unit=shared.setdefault(unit, unit),
        api_key_id=shared.setdefault(key_id, key_id),
    )


@dataclass(frozen=True, slots=True)
class UsageKind:
    """What one usage endpoint returns and how it may be grouped (the spec)."""

    required: tuple[str, ...]
    dims: tuple[str, ...]
    group_by: tuple[str, ...]
    result: str = ""
    """The results' `object` where it is not `organization.usage.<kind>.result`."""


def usage_result_object(kind: str) -> str:
    """Return the `object` every result of usage endpoint `kind` carries."""
    return USAGE_KINDS[kind].result or f"organization.usage.{kind}.result"


_PEOPLE = ("project_id", "user_id", "api_key_id", "model")
USAGE_KINDS: dict[str, UsageKind] = {
    "completions": UsageKind(
        ("input_tokens", "output_tokens", "num_model_requests"),
        (*_PEOPLE, "batch", "service_tier"),
        ("project_id", "model", "batch"),
    ),
    "embeddings": UsageKind(
        ("input_tokens", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "moderations": UsageKind(
        ("input_tokens", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "images": UsageKind(
        ("images", "num_model_requests"),
        (*_PEOPLE, "size", "source"),
        ("project_id", "model", "size", "source"),
    ),
    "audio_speeches": UsageKind(
        ("characters", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "audio_transcriptions": UsageKind(
        ("seconds", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "vector_stores": UsageKind(("usage_bytes",), ("project_id",), ("project_id",)),
    "code_interpreter_sessions": UsageKind(
        ("num_sessions",), ("project_id",), ("project_id",)
    ),
    "web_search_calls": UsageKind(
        ("num_model_requests", "num_requests"),
        (*_PEOPLE, "context_level"),
        ("project_id", "model", "context_level"),
        "organization.usage.web_searches.result",
    ),
    "file_search_calls": UsageKind(
        ("num_requests",),
        ("project_id", "user_id", "api_key_id", "vector_store_id"),
        ("project_id",),
        "organization.usage.file_searches.result",
    ),
}
"""The ten usage endpoints: required counters, dimensions, default grouping, and the
results' `object` where it does not follow the endpoint's name (the tool calls'
results are `web_searches` and `file_searches`, not `..._calls`)."""

USAGE_COUNTERS = frozenset(
    {
        "num_model_requests",
        "images",
        "characters",
        "seconds",
        "usage_bytes",
        "num_sessions",
        "num_requests",
    }
)
"""Numeric fields other than `*_tokens` that are amounts (or, for bytes, a level)."""


_NUMBERS = frozenset({int, float})
_DIM_TYPES = frozenset({str, bool, type(None)})
"""What a dimension may be as it came for `UsageBucket` to look its texts up: these
types' values equal each other only within a type (`True == 1`, but ints and
floats are not here), so equal tuples of them give equal dimensions."""
_PAIRS_OF = object()
"""Where a usage fetch's shared tuples keep, per endpoint, each dimension's values
as they came (`item.get(dim)`) to their checked pairs, one dict per dimension."""
PAIRS_KEPT = 1 << 18
"""Dimension values (as they came) an endpoint's shared tuples keep, all its
dimensions together: a few per project, model, user and key, where keeping each
combination of them took about 200 bytes a usage line (20 MiB for a day of a
10,000-project organization)."""


def _usage_fields(
    keys: tuple[str, ...], spec: UsageKind, shared: dict[Any, Any]
) -> tuple[str, ...] | None:
    """Return the `fields` of a usage line from a result with these keys in this
    order, as `_usage_line` orders them (the required counters, then any other
    `*_tokens` or counter field in the result's order); None where such a result
    needs `_usage_line` (a required counter missing, a key not valid UTF-8)."""
    if not set(keys).issuperset(spec.required):
        return None
    fields = list(spec.required)
    for name in keys:
        if name in spec.required:
            continue
        if name.endswith("_tokens") or name in USAGE_COUNTERS:
            if utf8(name) is not name:
                return None
            fields.append(name)
    return _shared(shared, tuple(fields))


class UsageBucket(BucketReader[UsageLine]):
    """Build a usage bucket's lines (see `parse_usage_bucket`)."""

    def __init__(
        self, where: str, kind: str, step: int, tuples: dict[Any, Any] | None = None
    ) -> None:
        super().__init__(where, step, "a bucket start")
        self._kind = kind
        self._spec = USAGE_KINDS[kind]
        self._expected = usage_result_object(kind)
        self._tuples: dict[Any, Any] = {} if tuples is None else tuples
        # a result's keys, in order, to its line's fields (`_usage_fields`)
        self._plans: dict[tuple[str, ...], tuple[str, ...] | None] = {}

    def _add(self, batch: list[Any], offset: int, start: int) -> None:
        kind, spec, expected, shared = (
            self._kind,
            self._spec,
            self._expected,
            self._tuples,
        )
        plans = self._plans
        names = spec.dims
        pairs_of: list[dict[Any, tuple[str, str]]] | None = shared.get(
            (_PAIRS_OF, kind)
        )
        if pairs_of is None or sum(map(len, pairs_of)) >= PAIRS_KEPT:
            # bounded: the values of a few cycles at most
            pairs_of = shared[_PAIRS_OF, kind] = [{} for _ in names]
        # None for a value not seen (typed as found: `None not in dims` checks)
        pair_of: Callable[[dict[Any, tuple[str, str]], Any], tuple[str, str]]
        pair_of = dict.get  # type: ignore[assignment]
        append = self._lines.append
        for i, item in enumerate(batch):
            # The usual result, by C calls where it can: its keys (in their order)
            # name its counters once per key order, each of its dimensions (as it
            # came) gives its pair once per value, checked by `_usage_line`.
            # Anything else (a null, a bad type, a new key order) takes
            # `_usage_line`, which checks every rule and names what is wrong; both
            # give the same line for what both accept.
            if type(item) is dict and item.get("object") == expected:
                keys = tuple(item)
                fields = plans.get(keys, _MISSING)
                if fields is _MISSING:
                    fields = plans[keys] = _usage_fields(keys, spec, shared)
                if fields is not None:
                    raw = tuple(map(item.__getitem__, fields))
                    given = tuple(map(item.get, names))
                    if set(map(type, raw)) <= _NUMBERS and (
                        set(map(type, given)) <= _DIM_TYPES
                    ):
                        try:
                            values = tuple(map(float, raw))
                        except OverflowError:  # a JSON integer beyond floats
                            values = (math.inf,)
                        dims = tuple(map(pair_of, pairs_of, given))
                        if None not in dims and math.isfinite(sum(values)):
                            append(UsageLine(start, kind, dims, fields, values))
                            continue
            at = f"results[{offset + i}]"
            line = _usage_line(item, start, at, kind, spec, expected, shared)
            given = tuple(map(item.get, names))
            if set(map(type, given)) <= _DIM_TYPES:
                # each pair a function of its value, type included; kept by a text
                # shared with the other dimensions' (a model's), not the result's
                for known, value, pair in zip(pairs_of, given, line.dims, strict=True):
                    kept = _shared(shared, value) if type(value) is str else value
                    known[kept] = pair
            append(line)

    def _restamp(self, line: UsageLine, start: int) -> UsageLine:
        return line._replace(start=start)


def parse_usage_bucket(
    bucket: Any,
    where: str,
    kind: str,
    step: int,
    tuples: dict[Any, Any] | None = None,
) -> tuple[int, list[UsageLine]]:
    """Return a usage bucket decoded whole: its start and its lines, naming any bad
    field.

    Required counters must be numbers; every other `*_tokens` field becomes a counter
    too (new token types appear without a code change); unknown fields are ignored.
    Raises `BadField` for a bad envelope, `BadResult` (naming the bucket) for a bad
    result. `tuples` shares equal `dims` and `fields` tuples across buckets.
    `UsageBucket` reads a bucket as it arrives, the same way.
    """
    reader = UsageBucket(where, kind, step, tuples)
    reader.whole(bucket)
    return reader.finish()


def _usage_line(
    item: Any,
    start: int,
    at: str,
    kind: str,
    spec: UsageKind,
    expected: str,
    shared: dict[Any, Any],
) -> UsageLine:
    """Return one usage result of endpoint `kind` as a line."""
    result = _object(item, at)
    if result.get("object") != expected:
        raise BadField(
            f"{at}.object", f"expected {expected}, got {result.get('object')!r:.60}"
        )
    fields: list[str] = []
    values: list[float] = []
    for name in spec.required:
        value = result.get(name)
        if value is None:
            raise BadField(f"{at}.{name}", "missing")
        fields.append(name)
        values.append(_counter(value, f"{at}.{name}"))
    for name, value in result.items():
        if name in spec.required or value is None:
            continue
        if name.endswith("_tokens") or name in USAGE_COUNTERS:
            fields.append(utf8(name))
            values.append(_counter(value, f"{at}.{name}"))
    dims = []
    for dim in spec.dims:
        raw = result.get(dim)
        if dim == "batch" and isinstance(raw, bool):
            text = "true" if raw else "false"
        else:
            text = _opt_str(raw, f"{at}.{dim}")
        # one pair for every line that has it (a model's, a project's, an empty
        # dimension's): a large organization keeps its lines' dimensions from cycle
        # to cycle (`dims_of`), five pairs of 56 bytes a line where unshared
        dims.append(_shared(shared, (dim, text)))
    return UsageLine(
        start, kind, tuple(dims), _shared(shared, tuple(fields)), tuple(values)
    )


def _list_page(body: Any, where: str) -> tuple[list[Any], bool]:
    """Return the `data` items of one `list` page and its `has_more`."""
    page = _object(body, where)
    data = _list(_field(page, "data", where), f"{where}.data")
    has_more = _field(page, "has_more", where)
    if not isinstance(has_more, bool):
        raise BadField(f"{where}.has_more", "expected true or false")
    return data, has_more


def parse_projects_page(body: Any, where: str) -> tuple[list[Project], bool]:
    """Return the projects of one list page and `has_more`."""
    data, has_more = _list_page(body, where)
    projects = []
    for i, item in enumerate(data):
        at = f"{where}.data[{i}]"
        obj = _object(item, at)
        project_id = _field(obj, "id", at)
        if not isinstance(project_id, str) or not project_id:
            raise BadField(f"{at}.id", "expected a non-empty string")
        name = obj.get("name")
        if name is not None and not isinstance(name, str):
            raise BadField(f"{at}.name", "expected a string or null")
        archived = obj.get("archived_at") is not None or obj.get("status") == "archived"
        projects.append(
            Project(utf8(project_id), None if name is None else utf8(name), archived)
        )
    return projects, has_more


def parse_api_keys_page(body: Any, where: str) -> tuple[list[ApiKey], bool]:
    """Return the keys of one page of a project's API key list and `has_more`.

    Only `id` and `name` are read (a null or missing name reads as `""`); the key's
    value is never part of the answer (only its `redacted_value`, which is ignored).
    """
    data, has_more = _list_page(body, where)
    keys = []
    for i, item in enumerate(data):
        at = f"{where}.data[{i}]"
        obj = _object(item, at)
        key_id = _field(obj, "id", at)
        if not isinstance(key_id, str) or not key_id:
            raise BadField(f"{at}.id", "expected a non-empty string")
        name = _opt_str(obj.get("name"), f"{at}.name")
        keys.append(ApiKey(utf8(key_id), name))
    return keys, has_more
