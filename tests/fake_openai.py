"""Serve a fake OpenAI Admin API from a stdlib HTTP server on 127.0.0.1 for tests.

This module owns the fake: its stored organization (projects, daily costs, usage
records), the shapes it answers with (those of
`tests/data/openai-admin-api.structure.json`), its pagination with small pages and
strict cursors, its injectable faults, and the log of every request it received. It
must not import the package under test or any third-party module, so that it can judge
the client without sharing its bugs.

Behaviour beyond the spec, chosen to catch client bugs early:
- buckets are consecutive windows of `bucket_width` from `start_time` while their start
  is before `end_time` (default: `now()`); empty buckets are served with `results: []`;
- a usage bucket that holds `now()` ends at `now()`, not at its full width, as live
  answers do (costs buckets always span their full width);
- a page holds at most `min(limit, page_size)` buckets; a bucket is never split;
- a cursor is valid only with the same path and the same multiset of decoded query
  pairs (everything but `page`), else 400 with `param: "page"`;
- unknown query parameters, repeated scalar parameters and booleans other than
  `true`/`false` are rejected with 400 naming the parameter;
- array parameters are accepted as `k[]=a&k[]=b`, `k=a&k=b` and `k=a,b`;
- as live answers do, costs results carry `organization_id` (in no spec); on demand
  (`omit_null_optionals`) every other result leaves its null `api_key_id`, `quantity`
  and `quantity_unit` out, and amounts come as decimal strings (`decimal_amounts`:
  `"12.50"`, `"0.1739150000000000000000000000"`); costs grouped by `api_key_id` from
  a day before 2025-12-06 are refused with 400 `invalid_request_error`;
- `GET /organization/projects/{id}/api_keys` lists a project's keys, paged with
  `after` (`api_key_page_size` makes small pages).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import decimal
import hashlib
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, TypeVar, cast, overload
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "USAGE_KINDS",
    "FakeOpenAI",
    "Fault",
    "RecordedRequest",
    "RequestHeaders",
]

_T = TypeVar("_T")
_JSON = dict[str, Any]

DAY: Final = 86_400
_COSTS_GROUP_BY: Final = ("project_id", "line_item", "api_key_id")
_COSTS_LIMIT: Final = (7, 180)  # default, max
KEY_COSTS_FROM: Final = 1_764_979_200
"""2025-12-06 00:00 UTC: costs grouped by `api_key_id` are refused before this day."""
_COST_OPTIONALS: Final = ("api_key_id", "quantity", "quantity_unit")
_API_KEYS_LIMIT: Final = (20, 100)
_PROJECTS_LIMIT: Final = (20, 100)
# bucket_width -> (seconds, default limit, max limit), from the spec's descriptions.
_WIDTHS: Final[Mapping[str, tuple[int, int, int]]] = {
    "1m": (60, 60, 1440),
    "1h": (3600, 24, 168),
    "1d": (DAY, 7, 31),
}
_BUCKET_SCALARS: Final = frozenset(
    {"start_time", "end_time", "bucket_width", "limit", "page"}
)
_STOP_GRACE_SECONDS: Final = 1.0


@dataclass(frozen=True)
class _Kind:
    """Describe one usage endpoint: its result object, dimensions and counters."""

    object: str
    dims: tuple[str, ...]  # also the allowed group_by values
    counters: tuple[str, ...]  # always served, 0 when no record carries them
    filters: Mapping[str, str]  # array query parameter -> dimension it filters
    level: str | None = None  # a counter that is a level, not an amount


_PEOPLE_DIMS: Final = ("project_id", "user_id", "api_key_id", "model")
_PEOPLE_FILTERS: Final[Mapping[str, str]] = {
    "project_ids": "project_id",
    "user_ids": "user_id",
    "api_key_ids": "api_key_id",
    "models": "model",
}


def _people_kind(name: str, *counters: str) -> _Kind:
    """Build the spec of a kind with the project/user/key/model dimensions."""
    return _Kind(
        f"organization.usage.{name}.result", _PEOPLE_DIMS, counters, _PEOPLE_FILTERS
    )


USAGE_KINDS: Final[Mapping[str, _Kind]] = {
    "completions": _Kind(
        "organization.usage.completions.result",
        (*_PEOPLE_DIMS, "batch", "service_tier"),
        ("input_tokens", "output_tokens", "num_model_requests"),
        _PEOPLE_FILTERS,
    ),
    "embeddings": _people_kind("embeddings", "input_tokens", "num_model_requests"),
    "moderations": _people_kind("moderations", "input_tokens", "num_model_requests"),
    "images": _Kind(
        "organization.usage.images.result",
        (*_PEOPLE_DIMS, "size", "source"),
        ("images", "num_model_requests"),
        {**_PEOPLE_FILTERS, "sizes": "size", "sources": "source"},
    ),
    "audio_speeches": _people_kind(
        "audio_speeches", "characters", "num_model_requests"
    ),
    "audio_transcriptions": _people_kind(
        "audio_transcriptions", "seconds", "num_model_requests"
    ),
    "vector_stores": _Kind(
        "organization.usage.vector_stores.result",
        ("project_id",),
        ("usage_bytes",),
        {"project_ids": "project_id"},
        level="usage_bytes",
    ),
    "code_interpreter_sessions": _Kind(
        "organization.usage.code_interpreter_sessions.result",
        ("project_id",),
        ("num_sessions",),
        {"project_ids": "project_id"},
    ),
    "web_search_calls": _Kind(
        "organization.usage.web_searches.result",
        (*_PEOPLE_DIMS, "context_level"),
        ("num_model_requests", "num_requests"),
        {**_PEOPLE_FILTERS, "context_levels": "context_level"},
    ),
    "file_search_calls": _Kind(
        "organization.usage.file_searches.result",
        ("project_id", "user_id", "api_key_id", "vector_store_id"),
        ("num_requests",),
        {
            "project_ids": "project_id",
            "user_ids": "user_id",
            "api_key_ids": "api_key_id",
            "vector_store_ids": "vector_store_id",
        },
    ),
}


class RequestHeaders(dict[str, str]):
    """Hold request headers under lower-case keys and look them up in any case."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        """Store `items`, lower-casing each name (a later duplicate wins)."""
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        """Return the header `key`, whatever its case."""
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        """Tell whether header `key` was sent, whatever its case."""
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    @overload
    def get(self, key: str, default: None = None, /) -> str | None: ...
    @overload
    def get(self, key: str, default: str, /) -> str: ...
    @overload
    def get(self, key: str, default: _T, /) -> str | _T: ...
    def get(self, key: str, default: object = None, /) -> object:
        """Return the header `key`, whatever its case, or `default`."""
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class RecordedRequest:
    """Record one request as received: method, decoded path, decoded query, headers."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]

    def values(self, name: str) -> list[str]:
        """Return the values of array parameter `name`, in any of the three forms."""
        out: list[str] = []
        for key, value in self.query:
            if key in (name, f"{name}[]"):
                out.extend(v for v in value.split(",") if v)
        return out

    def param(self, name: str) -> str | None:
        """Return the last value sent for parameter `name`, or None."""
        found = [v for k, v in self.query if k == name]
        return found[-1] if found else None


@dataclass(frozen=True)
class Fault:
    """Describe one injected failure, consumed by one matching request.

    A status outside 2xx is answered with an `ErrorResponse` (or `body`, if set). A 2xx
    status with `body` serves those raw bytes; a 2xx status without `body` serves the
    normal answer, after `hang_seconds` (a slow but successful response).
    """

    status: int = 500
    retry_after: int | None = None
    hang_seconds: float = 0.0
    body: bytes | None = None
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        """Reject values no HTTP server could serve."""
        if not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be 100..599, got {self.status}")
        if self.hang_seconds < 0 or not math.isfinite(self.hang_seconds):
            raise ValueError(f"Fault.hang_seconds must be >= 0: {self.hang_seconds}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"Fault.retry_after must be >= 0, got {self.retry_after}")

    @classmethod
    def rate_limited(cls, retry_after: int | None = 1) -> Fault:
        """Answer 429 with `Retry-After: retry_after` (no header when None)."""
        return cls(status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """Answer a 5xx error such as 500, 502 or 503."""
        return cls(status=status)

    @classmethod
    def unauthorized(cls) -> Fault:
        """Answer 401 as for a rejected admin key."""
        return cls(status=401)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Wait `seconds` before answering 500, so that a client read timeout fires."""
        return cls(status=500, hang_seconds=seconds)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait `seconds`, then serve the normal answer."""
        return cls(status=200, hang_seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a body that is not JSON."""
        return cls(status=200, body=b'{"object": "page", "data": [{not json')

    @classmethod
    def wrong_shape(cls, document: object = None) -> Fault:
        """Answer 200 with JSON of the wrong shape (default: `data` is a string)."""
        doc = {"object": "page", "data": "oops"} if document is None else document
        return cls(status=200, body=json.dumps(doc).encode())


@dataclass(frozen=True)
class _Answer:
    """Hold one HTTP answer before it is written."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


@dataclass
class _Project:
    """Hold one stored project."""

    id: str
    name: str | None
    created_at: int
    archived_at: int | None


@dataclass(frozen=True)
class _Record:
    """Hold one stored usage record: its minute, dimensions and counters."""

    start_time: int
    dims: Mapping[str, object]
    counters: Mapping[str, int]


@dataclass(frozen=True)
class _SpendLimit:
    """Hold one stored spend limit (amount in cents)."""

    threshold_cents: int
    currency: str
    interval: str
    enforcement: str


@dataclass(frozen=True)
class _SpendAlert:
    """Hold one stored spend alert (amount in cents)."""

    id: str
    threshold_cents: int
    currency: str
    recipients: tuple[str, ...]


@dataclass
class _PendingFault:
    """Hold one queued fault and the path prefix it applies to."""

    fault: Fault
    path_prefix: str = ""


class _ApiError(Exception):
    """Carry an error answer up to the dispatcher."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        """Build the error for `status` with an ErrorResponse body."""
        super().__init__(message)
        self.status = status
        self.body = _error_body(message, type_=type_, param=param, code=code)


def _error_body(
    message: str, *, type_: str, param: str | None = None, code: str | None = None
) -> _JSON:
    """Return an `ErrorResponse` document."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _status_error(status: int) -> _JSON:
    """Return the ErrorResponse the real API gives for a bare `status`."""
    if status == 429:
        return _error_body(
            "Rate limit reached for requests. Please try again later.",
            type_="requests",
            code="rate_limit_exceeded",
        )
    if status == 401:
        return _error_body(
            _INCORRECT_KEY, type_="invalid_request_error", code="invalid_api_key"
        )
    if status == 403:
        return _error_body(
            "You have insufficient permissions for this operation.",
            type_="invalid_request_error",
            code="insufficient_permissions",
        )
    if status >= 500:
        return _error_body(
            "The server had an error while processing your request. Sorry about that!",
            type_="server_error",
        )
    return _error_body(f"Injected fault: HTTP {status}.", type_="invalid_request_error")


_INCORRECT_KEY: Final = (
    "Incorrect API key provided. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)
_MISSING_KEY: Final = (
    "You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _json_answer(
    status: int,
    doc: object,
    headers: tuple[tuple[str, str], ...] = (),
) -> _Answer:
    """Encode `doc` as a JSON answer."""
    return _Answer(status, json.dumps(doc).encode(), headers)


class _Params:
    """Validate and read one request's query parameters."""

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        scalars: Iterable[str],
        arrays: Iterable[str],
    ) -> None:
        """Reject unknown and repeated scalar parameters at once."""
        self._pairs = pairs
        self._scalars = frozenset(scalars)
        self._arrays = frozenset(arrays)
        seen: set[str] = set()
        for key, _ in pairs:
            base = key[:-2] if key.endswith("[]") else key
            if key in self._scalars:
                if key in seen:
                    raise _ApiError(
                        400, f"Parameter '{key}' was given more than once.", param=key
                    )
                seen.add(key)
            elif base not in self._arrays:
                raise _ApiError(400, f"Unknown parameter: '{key}'.", param=key)

    def scalar(self, name: str) -> str | None:
        """Return the value of scalar `name`, or None when absent."""
        for key, value in self._pairs:
            if key == name:
                return value
        return None

    def array(self, name: str) -> list[str]:
        """Return the values of array `name` from all three accepted forms."""
        out: list[str] = []
        for key, value in self._pairs:
            if key in (name, f"{name}[]"):
                out.extend(v.strip() for v in value.split(",") if v.strip())
        return out

    def integer(self, name: str, *, required: bool = False) -> int | None:
        """Return scalar `name` as a non-negative integer."""
        raw = self.scalar(name)
        if raw is None:
            if required:
                raise _ApiError(
                    400, f"Missing required parameter: '{name}'.", param=name
                )
            return None
        if not raw.isascii() or not raw.isdigit():
            raise _ApiError(
                400, f"Invalid '{name}': expected an integer, got {raw!r}.", param=name
            )
        return int(raw)

    def limit(self, default: int, maximum: int) -> int:
        """Return `limit`, between 1 and `maximum`, or `default`."""
        value = self.integer("limit")
        if value is None:
            return default
        if not 1 <= value <= maximum:
            raise _ApiError(
                400,
                f"Invalid 'limit': must be between 1 and {maximum}, got {value}.",
                param="limit",
            )
        return value

    def boolean(self, name: str) -> bool | None:
        """Return scalar `name` as a boolean sent as `true` or `false`."""
        raw = self.scalar(name)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise _ApiError(
                400,
                f"Invalid '{name}': expected 'true' or 'false', got {raw!r}.",
                param=name,
            )
        return raw == "true"

    def choices(self, name: str, allowed: Iterable[str]) -> tuple[str, ...]:
        """Return array `name`, every value one of `allowed`, duplicates dropped."""
        allowed = tuple(allowed)
        out: list[str] = []
        for value in self.array(name):
            if value not in allowed:
                raise _ApiError(
                    400,
                    f"Invalid value for '{name}': {value!r}; expected "
                    f"one of {', '.join(allowed)}.",
                    param=name,
                )
            if value not in out:
                out.append(value)
        return tuple(out)


def _query_hash(path: str, pairs: list[tuple[str, str]]) -> str:
    """Hash the query a cursor belongs to: path plus the sorted pairs except `page`."""
    kept = sorted((k, v) for k, v in pairs if k != "page")
    return hashlib.sha256(json.dumps([path, kept]).encode()).hexdigest()[:16]


def _encode_cursor(offset: int, query_hash: str) -> str:
    """Return an opaque cursor for the bucket at `offset` of the hashed query."""
    raw = json.dumps({"o": offset, "q": query_hash}, separators=(",", ":"))
    return "page_" + base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str, query_hash: str) -> int:
    """Return the bucket offset in `cursor`, or 400 if it is not for this query."""
    bad = _ApiError(
        400,
        "Invalid 'page': not a cursor returned by this endpoint.",
        param="page",
        code="invalid_cursor",
    )
    if not cursor.startswith("page_"):
        raise bad
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor[5:].encode()))
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("o"), int)
        or doc["o"] < 0
        or not isinstance(doc.get("q"), str)
    ):
        raise bad
    if doc["q"] != query_hash:
        raise _ApiError(
            400,
            "Invalid 'page': the cursor was issued for a different "
            "query; send the same parameters as the first request.",
            param="page",
            code="invalid_cursor",
        )
    return cast(int, doc["o"])


_CostGroup = tuple[str | None, str | None, str | None, str]
"""A costs result's group: project id, line item, API key id (None where not grouped
by it), currency."""
_CostPart = tuple[float, tuple[float, str | None] | None]
"""One share of a group's cost, with the (quantity, unit) it brings, if any."""


def live_cost_result(k: int, value: Any = None) -> dict[str, Any]:
    """Return costs result number `k` in the form live answers take (with quantity
    and `organization_id`, about 290 characters): `0.173915... + k` unless `value`
    is given."""
    return {
        "object": "organization.costs.result",
        "amount": {
            "value": 0.17391500000000001 + k if value is None else value,
            "currency": "usd",
        },
        "line_item": f"model-{k % 20}, input",
        "project_id": f"proj_{k // 20:05d}",
        "organization_id": "org-0123456789abcdefghijklm",
        "api_key_id": None,
        "quantity": 12345678.0,
        "quantity_unit": "tokens",
    }


def _decimal_text(value: float) -> str:
    """Return `value` as the live API writes amounts: `"12.50"` where two decimal
    places hold it exactly, else 28 places (`"0.1739150000000000000000000000"`)."""
    exact = decimal.Decimal(repr(value))
    if exact == exact.quantize(decimal.Decimal("0.01")):
        return f"{exact:.2f}"
    return f"{exact:.28f}"


def _sort_key(key: tuple[object, ...]) -> tuple[tuple[bool, str], ...]:
    """Order group keys deterministically with None first."""
    return tuple((v is not None, str(v)) for v in key)


class _Server(ThreadingHTTPServer):
    """Serve with daemon threads and remember open connections for a quick stop."""

    daemon_threads = True
    block_on_close = False  # stop() joins handler threads itself, with a deadline

    def __init__(self, fake: FakeOpenAI) -> None:
        """Bind 127.0.0.1 on a free port for `fake`."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.conn_lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Thread] = {}

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report real bugs."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Hand every request to the fake that owns the server."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    timeout = 30  # an idle keep-alive connection is closed after this many seconds

    def _server(self) -> _Server:
        """Return the server, typed."""
        return cast(_Server, self.server)

    def setup(self) -> None:
        """Register the connection so that stop() can close it."""
        super().setup()
        srv = self._server()
        with srv.conn_lock:
            srv.connections[self.connection] = threading.current_thread()

    def finish(self) -> None:
        """Unregister the connection."""
        srv = self._server()
        with srv.conn_lock:
            srv.connections.pop(self.connection, None)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        """Serve a GET."""
        self._server().fake._serve(self)

    def do_POST(self) -> None:
        """Refuse a POST (the fake is read-only), after recording it."""
        self.close_connection = True  # the body is not read
        self._server().fake._serve(self)

    do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


class FakeOpenAI:
    """Serve a stored organization as the OpenAI Admin API on 127.0.0.1.

    Use as a context manager, or call `start()` and `stop()`. Data and faults may be
    changed while it runs; every method is thread-safe.
    """

    def __init__(
        self,
        admin_key: str = "sk-admin-FAKE-key-0123456789",
        *,
        page_size: int = 3,
        now: Callable[[], float] | None = None,
    ) -> None:
        """Prepare an empty organization; `now` gives the default `end_time`."""
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.admin_key = admin_key
        self.page_size = page_size
        self.project_page_size: int | None = None
        self.amount_as_string = False
        # live forms: amounts as decimal strings ("12.50" where two places are exact,
        # else 28 places), and the optional keys left out, not null, on every other
        # result (`api_key_id`, `quantity`, `quantity_unit`)
        self.decimal_amounts = False
        self.omit_null_optionals = False
        self.api_key_page_size: int | None = None
        self.organization_id = "org-fake0000000000000000000"
        # (day, project, line item, currency) -> the raw `amount.value` to serve
        # instead of the stored cost: a malformed result, on purpose
        self.poisoned: dict[tuple[int, str | None, str | None, str], object] = {}
        self.requests: list[RecordedRequest] = []
        self._now: Callable[[], float] = now if now is not None else time.time
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._projects: dict[str, _Project] = {}
        self._costs: dict[tuple[int, str | None, str | None, str], float] = {}
        # the same keys -> the cost split by API key (None: no key), when set so
        self._cost_keys: dict[
            tuple[int, str | None, str | None, str], dict[str | None, float]
        ] = {}
        # the same keys -> (quantity, quantity_unit), when set
        self._quantities: dict[
            tuple[int, str | None, str | None, str], tuple[float, str | None]
        ] = {}
        self._api_keys: dict[str, dict[str, tuple[str, int]]] = {}
        self._usage: dict[str, list[_Record]] = {kind: [] for kind in USAGE_KINDS}
        self._faults: list[_PendingFault] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._request_ids = 0
        # spend limits and alerts by project id ("" = the organization); a read of
        # an unset limit is answered 404; `spend_refused` answers every spend read
        # 403, as for an admin key without the scope
        self.spend_refused = False
        self.spend_alert_page_size: int | None = None
        self._spend_limits: dict[str, _SpendLimit] = {}
        self._spend_alerts: dict[str, dict[str, _SpendAlert]] = {}

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeOpenAI:
        """Start serving in a background thread and return self."""
        if self._server is not None:
            raise RuntimeError("FakeOpenAI is already started")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving within about a second, even while requests hang."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes hanging handlers, which drop their connection
        server.shutdown()
        with server.conn_lock:
            open_conns = dict(server.connections)
        for conn in open_conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # ends idle keep-alive reads at once
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for handler_thread in open_conns.values():
            handler_thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        thread.join(max(0.0, deadline - time.monotonic()))
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def base_url(self) -> str:
        """Return the API root, like `https://api.openai.com/v1`."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # ---------------------------------------------------------------------- data

    def add_project(
        self,
        project_id: str,
        name: str | None,
        *,
        archived: bool = False,
        created_at: int = 1_700_000_000,
        archived_at: int | None = None,
    ) -> None:
        """Add or replace a project (a replaced project keeps its list position)."""
        if archived and archived_at is None:
            archived_at = created_at + DAY
        with self._lock:
            self._projects[project_id] = _Project(
                project_id, name, created_at, archived_at if archived else None
            )

    def remove_project(self, project_id: str) -> None:
        """Delete a project so that it no longer appears anywhere."""
        with self._lock:
            del self._projects[project_id]

    def set_cost(
        self,
        day_start: int,
        project_id: str | None,
        line_item: str | None,
        value: float,
        currency: str = "usd",
        *,
        quantity: float | None = None,
        quantity_unit: str | None = None,
        api_keys: Mapping[str | None, float] | None = None,
    ) -> None:
        """Store (replacing) the cost of one line item of one project on one day.

        `quantity` and `quantity_unit` are served with the line item (grouped by
        `line_item`). `api_keys` splits `value` by API key id (None: usage without a
        project key); the shares must sum to `value` exactly. Without it the whole
        cost has no key.
        """
        if not math.isfinite(value):
            raise ValueError(f"cost value must be finite, got {value!r}")
        if api_keys is not None and math.fsum(api_keys.values()) != value:
            raise ValueError(f"api_keys shares must sum to {value!r}")
        if quantity is not None and not math.isfinite(quantity):
            raise ValueError(f"quantity must be finite, got {quantity!r}")
        key = (day_start, project_id, line_item, currency)
        with self._lock:
            self._costs[key] = float(value)
            self._cost_keys.pop(key, None)
            self._quantities.pop(key, None)
            if api_keys is not None:
                self._cost_keys[key] = {k: float(v) for k, v in api_keys.items()}
            if quantity is not None:
                self._quantities[key] = (float(quantity), quantity_unit)

    def add_api_key(
        self,
        project_id: str,
        key_id: str,
        name: str,
        *,
        created_at: int = 1_700_000_000,
    ) -> None:
        """Add or rename (keeping its place) an API key of a project."""
        with self._lock:
            self._api_keys.setdefault(project_id, {})[key_id] = (name, created_at)

    def remove_api_key(self, project_id: str, key_id: str) -> None:
        """Delete an API key from its project's list (its costs stay)."""
        with self._lock:
            del self._api_keys[project_id][key_id]

    def costs(self) -> dict[tuple[int, str | None, str | None, str], float]:
        """Return a copy of the stored costs keyed by (day, project, item, currency)."""
        with self._lock:
            return dict(self._costs)

    def quantities(
        self,
    ) -> dict[tuple[int, str | None, str | None, str], tuple[float, str | None]]:
        """Return a copy of the stored quantities and units, keyed as `costs`."""
        with self._lock:
            return dict(self._quantities)

    def add_usage(self, kind: str, start_time: int, **fields: object) -> None:
        """Store one usage record of `kind` in the minute starting at `start_time`.

        `fields` holds dimensions (strings; `batch` a bool) and integer counters: the
        kind's own counters and any `*_tokens` field, all of which are served.
        """
        spec = USAGE_KINDS.get(kind)
        if spec is None:
            raise ValueError(
                f"unknown usage kind {kind!r}; use one of {', '.join(USAGE_KINDS)}"
            )
        if start_time % 60:
            raise ValueError(f"start_time must be minute-aligned, got {start_time}")
        dims: dict[str, object] = {}
        counters: dict[str, int] = {}
        for name, value in fields.items():
            if name in spec.dims:
                expected: type = bool if name == "batch" else str
                if value is not None and not isinstance(value, expected):
                    raise TypeError(
                        f"{kind}.{name} must be {expected.__name__} or "
                        f"None, got {value!r}"
                    )
                dims[name] = value
            elif name in spec.counters or name.endswith("_tokens"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TypeError(f"{kind}.{name} must be an int >= 0, got {value!r}")
                counters[name] = value
            else:
                raise ValueError(f"{kind} has no field {name!r}")
        with self._lock:
            self._usage[kind].append(_Record(start_time, dims, counters))

    def clear_usage(self) -> None:
        """Forget every usage record."""
        with self._lock:
            for records in self._usage.values():
                records.clear()

    def set_spend_limit(
        self,
        project_id: str | None,
        threshold_cents: int | None,
        *,
        currency: str = "USD",
        enforcement: str = "enforcing",
        interval: str = "month",
    ) -> None:
        """Set (None: remove) the hard monthly limit of a project or, with
        `project_id` None, of the organization."""
        with self._lock:
            key = project_id or ""
            if threshold_cents is None:
                self._spend_limits.pop(key, None)
            else:
                self._spend_limits[key] = _SpendLimit(
                    threshold_cents, currency, interval, enforcement
                )

    def add_spend_alert(
        self,
        project_id: str | None,
        alert_id: str,
        threshold_cents: int,
        *,
        currency: str = "USD",
        recipients: tuple[str, ...] = ("finance@example.com",),
    ) -> None:
        """Add or replace a spend alert of a project or, with `project_id` None,
        of the organization; alerts are listed in the order they were added."""
        alert = _SpendAlert(alert_id, threshold_cents, currency, recipients)
        with self._lock:
            self._spend_alerts.setdefault(project_id or "", {})[alert_id] = alert

    def remove_spend_alert(self, project_id: str | None, alert_id: str) -> None:
        """Delete a spend alert."""
        with self._lock:
            del self._spend_alerts[project_id or ""][alert_id]

    # -------------------------------------------------------------------- faults

    def inject(self, fault: Fault, *, path_prefix: str = "", times: int = 1) -> None:
        """Queue `fault` for the next `times` requests whose path starts with prefix.

        The prefix may be given with or without `/v1` (`/organization/costs`).
        """
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        with self._lock:
            self._faults.extend(_PendingFault(fault, path_prefix) for _ in range(times))

    def pending_faults(self) -> int:
        """Return how many injected faults are still queued."""
        with self._lock:
            return len(self._faults)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ requests

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        """Return the recorded requests whose path ends with `path_suffix`."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------- serving

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Record, apply a queued fault if any, answer."""
        split = urlsplit(handler.path)
        path = unquote(split.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        headers = RequestHeaders(handler.headers.items())
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, path, query, headers))
            fault = self._take_fault(path)
            self._request_ids += 1
            request_id = f"req_fake{self._request_ids:06d}"
        answer: _Answer | None = None
        if fault is not None:
            if fault.hang_seconds and self._stopping.wait(fault.hang_seconds):
                handler.close_connection = True  # stopping: drop without an answer
                return
            answer = self._fault_answer(fault)
        if answer is None:
            answer = self._answer(handler.command, path, query, headers)
            if fault is not None and fault.retry_after is not None:
                answer = _Answer(
                    answer.status,
                    answer.body,
                    (*answer.headers, ("Retry-After", str(fault.retry_after))),
                )
        self._write(handler, answer, request_id)

    def _take_fault(self, path: str) -> Fault | None:
        """Pop the first queued fault whose prefix matches `path` (lock held)."""
        short = path[3:] if path.startswith("/v1/") else path
        for i, pending in enumerate(self._faults):
            prefix = pending.path_prefix
            if path.startswith(prefix) or short.startswith(prefix):
                del self._faults[i]
                return pending.fault
        return None

    @staticmethod
    def _fault_answer(fault: Fault) -> _Answer | None:
        """Return the answer a fault forces, or None to serve the normal answer."""
        headers: tuple[tuple[str, str], ...] = ()
        if fault.retry_after is not None:
            headers = (("Retry-After", str(fault.retry_after)),)
        if fault.body is not None:
            return _Answer(fault.status, fault.body, headers, fault.content_type)
        if 200 <= fault.status < 300:
            return None
        return _json_answer(fault.status, _status_error(fault.status), headers)

    def _write(
        self, handler: BaseHTTPRequestHandler, answer: _Answer, request_id: str
    ) -> None:
        """Send `answer`; a client that went away is not an error."""
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", answer.content_type)
            handler.send_header("Content-Length", str(len(answer.body)))
            handler.send_header("x-request-id", request_id)
            for name, value in answer.headers:
                handler.send_header(name, value)
            if handler.close_connection:
                handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(answer.body)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _answer(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: Mapping[str, str],
    ) -> _Answer:
        """Route one request and return its answer."""
        try:
            self._check_auth(headers)
            if method != "GET":
                raise _ApiError(
                    405,
                    f"Invalid method for URL ({method} {path}).",
                    code="method_not_allowed",
                )
            return _json_answer(200, self._route(path, query))
        except _ApiError as err:
            return _json_answer(err.status, err.body)

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        """Require `Authorization: Bearer <admin key>`; never echo what was sent."""
        sent = headers.get("authorization")
        if sent is None or not sent.strip():
            raise _ApiError(401, _MISSING_KEY)
        if sent != f"Bearer {self.admin_key}":
            raise _ApiError(401, _INCORRECT_KEY, code="invalid_api_key")

    def _route(self, path: str, query: list[tuple[str, str]]) -> _JSON:
        """Dispatch on the path and return the JSON document."""
        parts = path.split("/")
        if parts[:3] == ["", "v1", "organization"]:
            rest = parts[3:]
            if rest == ["costs"]:
                return self._costs_page(path, query)
            if rest == ["projects"]:
                return self._project_list(query)
            if rest in (["spend_limit"], ["spend_alerts"]):
                return self._spend(None, rest[0], query)
            if (
                len(rest) == 3
                and rest[0] == "projects"
                and rest[2] in ("spend_limit", "spend_alerts")
            ):
                return self._spend(rest[1], rest[2], query)
            if len(rest) == 3 and rest[0] == "projects" and rest[2] == "api_keys":
                return self._api_key_list(rest[1], query)
            if len(rest) == 2 and rest[0] == "projects" and rest[1]:
                _Params(query, (), ())
                return self._project(rest[1])
            if len(rest) == 2 and rest[0] == "usage" and rest[1] in USAGE_KINDS:
                return self._usage_page(rest[1], path, query)
        raise _ApiError(404, f"Invalid URL (GET {path})")

    # ---------------------------------------------------------------- spend limits

    def _spend(
        self, project_id: str | None, what: str, query: list[tuple[str, str]]
    ) -> _JSON:
        """Return a spend limit or one spend alert list page, or an error."""
        scope = "project" if project_id is not None else "organization"
        if what == "spend_limit":
            _Params(query, (), ())  # takes no parameters
        with self._lock:
            known = project_id is None or project_id in self._projects
            limit = self._spend_limits.get(project_id or "")
            alerts = list(self._spend_alerts.get(project_id or "", {}).values())
        if not known:
            raise _ApiError(
                404,
                f"No such project: '{project_id}'.",
                param="project_id",
                code="not_found",
            )
        if self.spend_refused:
            raise _ApiError(403, _status_error(403)["error"]["message"])
        if what == "spend_alerts":
            return self._spend_alert_page(scope, alerts, query)
        if limit is None:
            raise _ApiError(
                404, f"No spend limit is configured for this {scope}.", code="not_found"
            )
        return {
            "object": f"{scope}.spend_limit",
            "threshold_amount": limit.threshold_cents,
            "currency": limit.currency,
            "interval": limit.interval,
            "enforcement": {"status": limit.enforcement},
        }

    def _spend_alert_page(
        self, scope: str, alerts: list[_SpendAlert], query: list[tuple[str, str]]
    ) -> _JSON:
        """Return one `*SpendAlertListResource` page (`after`/`before` are ids)."""
        params = _Params(query, ("limit", "order", "after", "before"), ())
        limit = params.integer("limit")
        if limit is not None and limit > 100:
            raise _ApiError(
                400,
                f"Invalid 'limit': must be between 0 and 100, got {limit}.",
                param="limit",
            )
        order = params.scalar("order") or "asc"
        if order not in ("asc", "desc"):
            raise _ApiError(400, f"Invalid 'order': {order!r}.", param="order")
        if order == "desc":
            alerts = alerts[::-1]
        ids = [a.id for a in alerts]
        for name in ("after", "before"):
            cursor = params.scalar(name)
            if cursor is None:
                continue
            if cursor not in ids:
                raise _ApiError(
                    400, f"Invalid '{name}': no spend alert {cursor!r}.", param=name
                )
            at = ids.index(cursor)
            alerts = alerts[at + 1 :] if name == "after" else alerts[:at]
            ids = [a.id for a in alerts]
        size = limit or 20
        if self.spend_alert_page_size is not None:
            size = min(size, self.spend_alert_page_size)
        page = alerts[:size]
        return {
            "object": "list",
            "data": [
                {
                    "id": a.id,
                    "object": f"{scope}.spend_alert",
                    "threshold_amount": a.threshold_cents,
                    "currency": a.currency,
                    "interval": "month",
                    "notification_channel": {
                        "type": "email",
                        "recipients": list(a.recipients),
                        "subject_prefix": None,
                    },
                }
                for a in page
            ],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(alerts) > size,
        }

    # -------------------------------------------------------------------- projects

    def _project_doc(self, project: _Project) -> _JSON:
        """Return the `Project` document for `project`."""
        return {
            "id": project.id,
            "object": "organization.project",
            "name": project.name,
            "created_at": project.created_at,
            "archived_at": project.archived_at,
            "status": "active" if project.archived_at is None else "archived",
            "external_key_id": None,
            "residency": "GLOBAL",
        }

    def _project(self, project_id: str) -> _JSON:
        """Return one project or 404."""
        with self._lock:
            project = self._projects.get(project_id)
        if project is None:
            raise _ApiError(
                404,
                f"No such project: '{project_id}'.",
                param="project_id",
                code="not_found",
            )
        return self._project_doc(project)

    def _project_list(self, query: list[tuple[str, str]]) -> _JSON:
        """Return one `ProjectListResponse` page."""
        params = _Params(query, ("limit", "after", "include_archived"), ())
        limit = params.limit(*_PROJECTS_LIMIT)
        include_archived = bool(params.boolean("include_archived"))
        after = params.scalar("after")
        with self._lock:
            ordered = list(self._projects.values())
        if after is not None:
            ids = [p.id for p in ordered]
            if after not in ids:
                raise _ApiError(
                    400,
                    f"Invalid 'after': no project with id {after!r}.",
                    param="after",
                )
            ordered = ordered[ids.index(after) + 1 :]
        visible = [p for p in ordered if include_archived or p.archived_at is None]
        size = (
            limit
            if self.project_page_size is None
            else min(limit, self.project_page_size)
        )
        page = visible[:size]
        return {
            "object": "list",
            "data": [self._project_doc(p) for p in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(visible) > size,
        }

    def _api_key_list(self, project_id: str, query: list[tuple[str, str]]) -> _JSON:
        """Return one `ProjectApiKeyListResponse` page of a project's API keys."""
        params = _Params(query, ("limit", "after", "owner_project_access"), ())
        limit = params.limit(*_API_KEYS_LIMIT)
        access = params.scalar("owner_project_access")
        if access is not None and access not in ("active", "inactive", "any"):
            raise _ApiError(
                400,
                f"Invalid 'owner_project_access': {access!r}.",
                param="owner_project_access",
            )
        after = params.scalar("after")
        with self._lock:
            known = project_id in self._projects
            keys = list(self._api_keys.get(project_id, {}).items())
        if not known:
            raise _ApiError(
                404,
                f"No such project: '{project_id}'.",
                param="project_id",
                code="not_found",
            )
        if after is not None:
            ids = [k for k, _ in keys]
            if after not in ids:
                raise _ApiError(
                    400,
                    f"Invalid 'after': no API key with id {after!r}.",
                    param="after",
                )
            keys = keys[ids.index(after) + 1 :]
        size = (
            limit
            if self.api_key_page_size is None
            else min(limit, self.api_key_page_size)
        )
        page = keys[:size]
        return {
            "object": "list",
            "data": [
                {
                    "object": "organization.project.api_key",
                    "redacted_value": f"sk-proj-****{key_id[-4:]}",
                    "name": name,
                    "created_at": created_at,
                    "last_used_at": None,
                    "id": key_id,
                    "owner_project_access": "active",
                    "owner": {
                        "type": "service_account",
                        "service_account": {
                            "id": f"svc_acct_{key_id}",
                            "name": name,
                            "created_at": created_at,
                            "role": "member",
                        },
                    },
                }
                for key_id, (name, created_at) in page
            ],
            "first_id": page[0][0] if page else None,
            "last_id": page[-1][0] if page else None,
            "has_more": len(keys) > size,
        }

    # -------------------------------------------------------------------- buckets

    def _window(
        self,
        params: _Params,
        path: str,
        query: list[tuple[str, str]],
        width: int,
        limit: int,
    ) -> tuple[list[int], str | None]:
        """Return this page's bucket starts and the next cursor (None if last)."""
        start = params.integer("start_time", required=True)
        assert start is not None
        end = params.integer("end_time")
        if end is None:
            end = int(self._now())
        total = max(0, -(-(end - start) // width))
        query_hash = _query_hash(path, query)
        page = params.scalar("page")
        offset = 0 if page is None else _decode_cursor(page, query_hash)
        count = max(0, min(limit, self.page_size, total - offset))
        starts = [start + (offset + i) * width for i in range(count)]
        more = offset + count < total
        return starts, _encode_cursor(offset + count, query_hash) if more else None

    @staticmethod
    def _page(
        starts: list[int],
        width: int,
        results: Mapping[int, list[_JSON]],
        next_page: str | None,
    ) -> _JSON:
        """Return a `UsageResponse` page."""
        return {
            "object": "page",
            "data": [
                {
                    "object": "bucket",
                    "start_time": s,
                    "end_time": s + width,
                    "results": results.get(s, []),
                }
                for s in starts
            ],
            "has_more": next_page is not None,
            "next_page": next_page,
        }

    # ---------------------------------------------------------------------- costs

    def _costs_page(self, path: str, query: list[tuple[str, str]]) -> _JSON:
        """Return one page of daily costs."""
        params = _Params(
            query, _BUCKET_SCALARS, ("project_ids", "api_key_ids", "group_by")
        )
        width_name = params.scalar("bucket_width") or "1d"
        if width_name != "1d":
            raise _ApiError(
                400,
                f"Invalid 'bucket_width': {width_name!r}; only '1d' is supported.",
                param="bucket_width",
            )
        limit = params.limit(*_COSTS_LIMIT)
        group_by = params.choices("group_by", _COSTS_GROUP_BY)
        project_ids = set(params.array("project_ids"))
        api_key_ids = set(params.array("api_key_ids"))
        by_key = "api_key_id" in group_by
        first_day = params.integer("start_time", required=True)
        if by_key and first_day is not None and first_day < KEY_COSTS_FROM:
            # what the live API answers, as a peer reading it reports
            raise _ApiError(
                400,
                "Grouping costs by 'api_key_id' is not supported for dates before "
                "2025-12-06.",
                param="group_by",
            )
        starts, next_page = self._window(params, path, query, DAY, limit)
        with self._lock:
            stored = [
                (k, v, self._cost_keys.get(k), self._quantities.get(k))
                for k, v in self._costs.items()
            ]
        groups: dict[int, dict[_CostGroup, list[_CostPart]]] = {}
        first = starts[0] if starts else 0
        for (day, project_id, line_item, currency), value, split, held in stored:
            if project_ids and project_id not in project_ids:
                continue
            index = (day - first) // DAY
            if not starts or not 0 <= index < len(starts):
                continue
            parts: dict[str | None, float] = {None: value} if split is None else split
            if api_key_ids:
                parts = {k: v for k, v in parts.items() if k in api_key_ids}
                if not parts:
                    continue
            if not by_key and not api_key_ids:
                parts = {None: value}  # the stored total, not a sum of its shares
            for key_id, part in parts.items():
                key = (
                    project_id if "project_id" in group_by else None,
                    line_item if "line_item" in group_by else None,
                    key_id if by_key else None,
                    currency,
                )
                quantity = None if by_key or "line_item" not in group_by else held
                groups.setdefault(starts[index], {}).setdefault(key, []).append(
                    (part, quantity)
                )
        results = {
            s: [
                self._cost_result(key, members, s, i)
                for i, (key, members) in enumerate(
                    sorted(in_day.items(), key=lambda kv: _sort_key(kv[0]))
                )
            ]
            for s, in_day in groups.items()
        }
        return self._page(starts, DAY, results, next_page)

    def _cost_result(
        self, key: _CostGroup, members: list[_CostPart], start: int, index: int
    ) -> _JSON:
        """Return one `CostsResult`, the `index`-th of the bucket starting at `start`.

        Like live answers (and beyond the spec) it carries `organization_id`; with
        `omit_null_optionals`, every other result leaves out its null optional keys.
        """
        project_id, line_item, key_id, currency = key
        total = math.fsum(part for part, _ in members)
        value: object = total
        if self.decimal_amounts:
            value = _decimal_text(total)
        elif self.amount_as_string:
            value = repr(total)
        value = self.poisoned.get((start, project_id, line_item, currency), value)
        held = [q for _, q in members if q is not None]
        units = {unit for _, unit in held}
        quantity = None
        unit = None
        if held and len(units) == 1:
            quantity = math.fsum(q for q, _ in held)
            unit = units.pop()
        result: _JSON = {
            "object": "organization.costs.result",
            "amount": {
                "value": value,
                "currency": currency,
            },
            "line_item": line_item,
            "project_id": project_id,
            "organization_id": self.organization_id,
            "api_key_id": key_id,
            "quantity": quantity,
            "quantity_unit": unit,
        }
        if self.omit_null_optionals and index % 2:
            for name in _COST_OPTIONALS:
                if result[name] is None:
                    del result[name]
        return result

    # ---------------------------------------------------------------------- usage

    def _usage_page(self, kind: str, path: str, query: list[tuple[str, str]]) -> _JSON:
        """Return one page of usage buckets of `kind`."""
        spec = USAGE_KINDS[kind]
        bools = ("batch",) if kind == "completions" else ()
        params = _Params(
            query, _BUCKET_SCALARS | set(bools), ("group_by", *spec.filters)
        )
        width_name = params.scalar("bucket_width") or "1d"
        if width_name not in _WIDTHS:
            raise _ApiError(
                400,
                f"Invalid 'bucket_width': {width_name!r}; expected 1m, 1h or 1d.",
                param="bucket_width",
            )
        width, default_limit, max_limit = _WIDTHS[width_name]
        limit = params.limit(default_limit, max_limit)
        group_by = params.choices("group_by", spec.dims)
        filters = {dim: set(params.array(name)) for name, dim in spec.filters.items()}
        batch = params.boolean("batch") if bools else None
        starts, next_page = self._window(params, path, query, width, limit)
        with self._lock:
            records = list(self._usage[kind])
        by_bucket: dict[int, list[_Record]] = {}
        first = starts[0] if starts else 0
        for record in records:
            index = (record.start_time - first) // width
            if not starts or not 0 <= index < len(starts):
                continue
            if any(
                wanted and record.dims.get(dim) not in wanted
                for dim, wanted in filters.items()
            ):
                continue
            if batch is not None and record.dims.get("batch") is not batch:
                continue
            by_bucket.setdefault(starts[index], []).append(record)
        results = {
            s: _usage_results(spec, recs, group_by) for s, recs in by_bucket.items()
        }
        page = self._page(starts, width, results, next_page)
        # As the live API does: the bucket that holds "now" ends at "now", not at its
        # full width (its start, and what it holds, stay those of the whole bucket).
        now = int(self._now())
        for bucket in page["data"]:
            if bucket["start_time"] < now < bucket["end_time"]:
                bucket["end_time"] = now
        return page


def _usage_results(
    spec: _Kind, records: list[_Record], group_by: tuple[str, ...]
) -> list[_JSON]:
    """Aggregate one bucket's records into results grouped by `group_by`."""
    groups: dict[tuple[object, ...], list[_Record]] = {}
    for record in records:
        key = tuple(record.dims.get(d) if d in group_by else None for d in spec.dims)
        groups.setdefault(key, []).append(record)
    out: list[_JSON] = []
    for key, recs in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        result: _JSON = {"object": spec.object}
        extra = sorted({n for r in recs for n in r.counters} - set(spec.counters))
        for name in (*spec.counters, *extra):
            if name == spec.level:
                # A level: the largest reading per project within the bucket, summed
                # over the projects the group holds.
                levels: dict[object, int] = {}
                for r in recs:
                    if name in r.counters:
                        pid = r.dims.get("project_id")
                        levels[pid] = max(levels.get(pid, 0), r.counters[name])
                result[name] = sum(levels.values())
            else:
                result[name] = sum(r.counters.get(name, 0) for r in recs)
        for dim, value in zip(spec.dims, key, strict=True):
            result[dim] = value
        out.append(result)
    return out
