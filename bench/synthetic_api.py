"""A synthetic organization served as the OpenAI Admin API, generated as it streams.

`tests/fake_openai.FakeOpenAI` stores every cost and usage record and builds each page
as one JSON document: right for tests, but a 10,000 x 20 organization is 6.2 million
cost results over 31 days, a page of about 1.3 GB. This server holds no records:
each value is a function of (project, line item or model, bucket), pages are written
as they are generated, with chunked transfer encoding, and a whole organization costs
a few MB of memory. It answers only what the pusher asks (the project list, daily
costs grouped by project and line item, every usage endpoint grouped as the
pusher groups them) in the fake's shapes, key order and pagination (`page_size`
buckets per page, cursors bound to their query); `check_against_fake` proves that on
a small organization before every benchmark run.

The organization: `projects` projects `proj_00000`..., each with `items` line items
(`model-<i>, input`, with its quantity in tokens) of cost on each of the 31 days of a
backfill (30 complete days and today), and `keys` API keys (`key_<p>_<k>`, named
`Key <k>`): line item `i` is spent with key `i % keys`, so that costs grouped by
project and API key are sums of line items, as the live API gives them; with usage,
5 models each on completions and embeddings in every bucket of the usage backfill
(`1d`: 31 days, `1h`: 169 hours). Values never change, so a steady cycle finds
nothing to revise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from bench.plan import API_PAGE_BUCKETS, BACKFILL_DAYS, BACKFILL_HOURS, DAY, HOUR
from openai_cost_pusher.openai_api import KEY_COSTS_FROM
from tests.fake_openai import USAGE_KINDS, FakeOpenAI

MODELS = 5
"""Models per project on each of completions and embeddings."""
KEYS = 5
"""API keys per project."""
ORGANIZATION_ID = "org-fake0000000000000000000"
"""The `organization_id` every costs result carries (as the fake's)."""
USAGE_KIND_KEYS = {"completions": 1, "embeddings": 2}
USAGE_STEPS = {"1d": DAY, "1h": HOUR}
USAGE_BACKFILL = {"1d": BACKFILL_DAYS + 1, "1h": BACKFILL_HOURS + 1}
"""Width to the buckets of usage data: the backfill's complete ones and the current."""
_WIDTH_LIMITS = {"1m": (60, 60, 1440), "1h": (HOUR, 24, 168), "1d": (DAY, 7, 31)}
_COSTS_LIMIT = (7, 180)
_PROJECTS_LIMIT = (20, 100)
_API_KEYS_LIMIT = (20, 100)
_CHUNK = 256 * 1024
_TABLE = 4099  # values are drawn from tables of this (prime) size

_rng = random.Random(1)
_COST_VALUES = [repr(_rng.uniform(0.01, 100)) for _ in range(_TABLE)]
_INPUT = [str(_rng.randrange(10**7)) for _ in range(_TABLE)]
_QUANTITIES = [repr(float(_rng.randrange(10**8))) for _ in range(_TABLE)]
_OUTPUT = [str(_rng.randrange(10**6)) for _ in range(_TABLE)]
_CACHED = [str(_rng.randrange(10**5)) for _ in range(_TABLE)]
_REQUESTS = [str(_rng.randrange(1, 10**4)) for _ in range(_TABLE)]


def _index(a: int, b: int, c: int, d: int = 0) -> int:
    """Return a fixed pseudo-random index into a value table for `(a, b, c, d)`."""
    return (a * 7_919 + b * 104_729 + c * 1_299_709 + d * 15_485_863) % _TABLE


@dataclass(frozen=True)
class Org:
    """A synthetic organization as of `now` (Unix seconds)."""

    projects: int
    items: int
    usage: str = "off"
    now: float = 0.0
    keys: int = KEYS

    @property
    def today(self) -> int:
        return int(self.now) // DAY * DAY

    def project_id(self, p: int) -> str:
        return f"proj_{p:05d}"

    def cost_day(self, start: int) -> int | None:
        """Return the index (0 = oldest) of the cost day in the bucket at `start`."""
        day = -(-start // DAY) * DAY
        index = (day - (self.today - BACKFILL_DAYS * DAY)) // DAY
        if day < start + DAY and 0 <= index <= BACKFILL_DAYS:
            return index
        return None

    def cost_value(self, p: int, i: int, day: int) -> str:
        return _COST_VALUES[_index(p, i, day)]

    def quantity(self, p: int, i: int, day: int) -> str:
        return _QUANTITIES[_index(p, i, day)]

    def key_id(self, p: int, k: int) -> str:
        return f"key_{p:05d}_{k}"

    def key_cost(self, p: int, k: int, day: int) -> float:
        """Return the day's cost of project `p` with key `k`: its line items'."""
        return math.fsum(
            float(self.cost_value(p, i, day)) for i in range(k, self.items, self.keys)
        )

    def usage_bucket(self, start: int, step: int) -> int | None:
        """Return the index of the usage bucket within the bucket at `start`."""
        if self.usage == "off" or USAGE_STEPS[self.usage] != step:
            return None
        last = int(self.now) // step * step
        first = last - (USAGE_BACKFILL[self.usage] - 1) * step
        at = -(-start // step) * step
        if at < start + step and first <= at <= last:
            return (at - first) // step
        return None

    def usage_fields(self, kind: str, p: int, m: int, b: int) -> dict[str, str]:
        """Return the counters (as JSON text) of one project's model `m` in usage
        bucket `b`, in the order the fake serves them."""
        n = _index(p, m, b, USAGE_KIND_KEYS[kind])
        if kind == "completions":
            return {
                "input_tokens": _INPUT[n],
                "output_tokens": _OUTPUT[n],
                "num_model_requests": _REQUESTS[n],
                "input_cached_tokens": _CACHED[n],
            }
        return {"input_tokens": _INPUT[n], "num_model_requests": _REQUESTS[n]}

    def model(self, kind: str, m: int) -> str:
        return f"model-{m}" if kind == "completions" else f"embed-{m}"


class _Refused(Exception):
    """A 4xx answer with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": None,
            }
        }


class _Out:
    """Write a body with chunked transfer encoding, in pieces of about 256 KiB."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.wfile = handler.wfile
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = "".join(self.parts).encode()
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
            self.parts, self.size = [], 0

    def close(self) -> None:
        self.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _query_hash(path: str, pairs: list[tuple[str, str]]) -> str:
    kept = sorted((k, v) for k, v in pairs if k != "page")
    return hashlib.sha256(json.dumps([path, kept]).encode()).hexdigest()[:16]


def _cursor(offset: int, query_hash: str) -> str:
    raw = json.dumps({"o": offset, "q": query_hash}, separators=(",", ":"))
    return "page_" + base64.urlsafe_b64encode(raw.encode()).decode()


def _offset(cursor: str, query_hash: str) -> int:
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor.removeprefix("page_")))
        if cursor.startswith("page_") and doc["q"] == query_hash:
            return int(doc["o"])
    except (ValueError, KeyError, TypeError):
        pass
    raise _Refused(400, "Invalid 'page': not a cursor of this query.", "page")


class _Query:
    """One request's query parameters."""

    def __init__(self, path: str, pairs: list[tuple[str, str]]) -> None:
        self.path = path
        self.pairs = pairs

    def one(self, name: str) -> str | None:
        found = [v for k, v in self.pairs if k == name]
        if len(found) > 1:
            raise _Refused(400, f"Parameter '{name}' was given more than once.", name)
        return found[0] if found else None

    def many(self, name: str) -> list[str]:
        return [
            part
            for k, v in self.pairs
            if k in (name, f"{name}[]")
            for part in v.split(",")
            if part
        ]

    def integer(self, name: str, default: int | None = None) -> int:
        raw = self.one(name)
        if raw is None:
            if default is None:
                raise _Refused(400, f"Missing required parameter: '{name}'.", name)
            return default
        if not raw.isdigit():
            raise _Refused(400, f"Invalid '{name}': expected an integer.", name)
        return int(raw)

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", default)
        if not 1 <= value <= maximum:
            raise _Refused(400, f"Invalid 'limit': 1..{maximum}, got {value}.", "limit")
        return value


class SyntheticApi:
    """Serve `org` on 127.0.0.1 with `page_size` buckets per page; count requests."""

    def __init__(
        self,
        org: Org,
        *,
        page_size: int = API_PAGE_BUCKETS,
        admin_key: str = "sk-admin-BENCH-key-0123456789",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.org = org
        self.page_size = page_size
        self.admin_key = admin_key
        self.clock = clock
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> SyntheticApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                api._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], OSError):  # a client went away
                    super().handle_error(request, client_address)

        server = Server(("127.0.0.1", 0), Handler)
        self._server = server
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="synthetic-api",
            daemon=True,
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # ---------------------------------------------------------------- serving

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        path = unquote(split.path)
        query = _Query(path, parse_qsl(split.query, keep_blank_values=True))
        with self._lock:
            self.requests[path] += 1
        try:
            if handler.headers.get("Authorization") != f"Bearer {self.admin_key}":
                raise _Refused(401, "Incorrect API key provided.")
            parts = path.split("/")
            if parts[:3] != ["", "v1", "organization"]:
                raise _Refused(404, f"Invalid URL (GET {path})")
            rest = parts[3:]
            if rest == ["projects"]:
                self._send(handler, 200, self._projects(query))
            elif len(rest) == 3 and rest[0] == "projects" and rest[2] == "api_keys":
                self._send(handler, 200, self._api_keys(rest[1], query))
            elif rest == ["costs"]:
                self._stream(handler, self._costs(query))
            elif len(rest) == 2 and rest[0] == "usage" and rest[1] in USAGE_KINDS:
                self._stream(handler, self._usage(rest[1], query))
            else:
                raise _Refused(404, f"Invalid URL (GET {path})")
        except _Refused as refused:
            self._send(handler, refused.status, refused.body)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    @staticmethod
    def _stream(handler: BaseHTTPRequestHandler, pieces: Iterator[str]) -> None:
        first = next(pieces)  # parameters are checked before anything is sent
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        out = _Out(handler)
        out.write(first)
        for piece in pieces:
            out.write(piece)
        out.close()

    # --------------------------------------------------------------- projects

    def _projects(self, query: _Query) -> dict[str, object]:
        for name, _ in query.pairs:
            if name not in ("limit", "after", "include_archived"):
                raise _Refused(400, f"Unknown parameter: '{name}'.", name)
        limit = query.limit(*_PROJECTS_LIMIT)
        after = query.one("after")
        start = 0
        if after is not None:
            if not after.startswith("proj_") or not after[5:].isdigit():
                raise _Refused(400, f"Invalid 'after': {after!r}.", "after")
            start = int(after[5:]) + 1
        ids = range(start, min(self.org.projects, start + limit))
        data = [
            {
                "id": self.org.project_id(p),
                "object": "organization.project",
                "name": f"Project {p}",
                "created_at": 1_700_000_000,
                "archived_at": None,
                "status": "active",
                "external_key_id": None,
                "residency": "GLOBAL",
            }
            for p in ids
        ]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + limit < self.org.projects,
        }

    def _api_keys(self, project_id: str, query: _Query) -> dict[str, object]:
        for name, _ in query.pairs:
            if name not in ("limit", "after", "owner_project_access"):
                raise _Refused(400, f"Unknown parameter: '{name}'.", name)
        limit = query.limit(*_API_KEYS_LIMIT)
        org = self.org
        if not project_id.startswith("proj_") or not project_id[5:].isdigit():
            raise _Refused(404, f"No such project: '{project_id}'.", "project_id")
        p = int(project_id[5:])
        if p >= org.projects:
            raise _Refused(404, f"No such project: '{project_id}'.", "project_id")
        ids = [org.key_id(p, k) for k in range(org.keys)]
        after = query.one("after")
        start = 0 if after is None else ids.index(after) + 1
        page = list(range(start, min(org.keys, start + limit)))
        data = [
            {
                "object": "organization.project.api_key",
                "redacted_value": f"sk-proj-****{ids[k][-4:]}",
                "name": f"Key {k}",
                "created_at": 1_700_000_000,
                "last_used_at": None,
                "id": ids[k],
                "owner_project_access": "active",
                "owner": {
                    "type": "service_account",
                    "service_account": {
                        "id": f"svc_acct_{ids[k]}",
                        "name": f"Key {k}",
                        "created_at": 1_700_000_000,
                        "role": "member",
                    },
                },
            }
            for k in page
        ]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + limit < org.keys,
        }

    # ----------------------------------------------------------------- pages

    def _window(self, query: _Query, width: int, limit: int) -> tuple[list[int], str]:
        """Return the page's bucket starts and the JSON of its `next_page`."""
        start = query.integer("start_time")
        end = query.integer("end_time", int(self.clock()))
        total = max(0, -(-(end - start) // width))
        qhash = _query_hash(query.path, query.pairs)
        page = query.one("page")
        offset = 0 if page is None else _offset(page, qhash)
        count = max(0, min(limit, self.page_size, total - offset))
        more = offset + count < total
        starts = [start + (offset + i) * width for i in range(count)]
        return starts, json.dumps(_cursor(offset + count, qhash) if more else None)

    @staticmethod
    def _page(
        starts: list[int],
        width: int,
        next_page: str,
        results: Callable[[int], Iterator[str]],
        now: int | None = None,
    ) -> Iterator[str]:
        """Yield a `UsageResponse` page in pieces (one block of results each); with
        `now`, the bucket that holds it ends at it, as live usage answers do."""
        yield '{"object": "page", "data": ['
        for n, s in enumerate(starts):
            head = '{"object": "bucket", '
            end = now if now is not None and s < now < s + width else s + width
            yield f'{", " if n else ""}{head}"start_time": {s}, "end_time": {end}'
            yield ', "results": ['
            for k, block in enumerate(results(s)):
                yield f", {block}" if k else block
            yield "]}"
        more = "false" if next_page == "null" else "true"
        yield f'], "has_more": {more}, "next_page": {next_page}}}'

    def _costs(self, query: _Query) -> Iterator[str]:
        for name, _ in query.pairs:
            known = ("start_time", "end_time", "bucket_width", "limit", "page")
            if name not in known and name.removesuffix("[]") != "group_by":
                raise _Refused(400, f"Unknown parameter: '{name}'.", name)
        if query.one("bucket_width") not in (None, "1d"):
            raise _Refused(400, "Invalid 'bucket_width'.", "bucket_width")
        group_by = sorted(query.many("group_by"))
        if group_by == ["api_key_id", "project_id"]:
            return self._key_costs(query)
        if group_by != ["line_item", "project_id"]:
            raise _Refused(400, "only group_by project_id and line_item", "group_by")
        starts, next_page = self._window(query, DAY, query.limit(*_COSTS_LIMIT))
        org = self.org
        mids = [
            f', "currency": "usd"}}, "line_item": "model-{i}, input", "project_id": "'
            for i in range(org.items)
        ]
        head = '{"object": "organization.costs.result", "amount": {"value": '
        org_id = f'", "organization_id": "{ORGANIZATION_ID}", "api_key_id": null'
        unit = ', "quantity_unit": "tokens"}'

        offsets = [_index(0, i, 0) for i in range(org.items)]
        values, quantities = _COST_VALUES, _QUANTITIES

        def results(start: int) -> Iterator[str]:
            day = org.cost_day(start)
            if day is None:
                return
            for p in range(org.projects):
                pid = org.project_id(p)
                base = _index(p, 0, day)
                yield ", ".join(
                    f"{head}{values[(base + o) % _TABLE]}{mid}{pid}{org_id}"
                    f', "quantity": {quantities[(base + o) % _TABLE]}{unit}'
                    for o, mid in zip(offsets, mids, strict=True)
                )

        return self._page(starts, DAY, next_page, results)

    def _key_costs(self, query: _Query) -> Iterator[str]:
        """Costs grouped by project and API key: one result per project and key."""
        if query.integer("start_time") < KEY_COSTS_FROM:
            raise _Refused(
                400,
                "Grouping costs by 'api_key_id' is not supported for dates before "
                "2025-12-06.",
                "group_by",
            )
        starts, next_page = self._window(query, DAY, query.limit(*_COSTS_LIMIT))
        org = self.org
        head = '{"object": "organization.costs.result", "amount": {"value": '
        mid = ', "currency": "usd"}, "line_item": null, "project_id": "'
        org_id = f'", "organization_id": "{ORGANIZATION_ID}", "api_key_id": "'
        end = '", "quantity": null, "quantity_unit": null}'
        keys = range(min(org.keys, org.items))

        def results(start: int) -> Iterator[str]:
            day = org.cost_day(start)
            if day is None:
                return
            for p in range(org.projects):
                pid = org.project_id(p)
                yield ", ".join(
                    f"{head}{org.key_cost(p, k, day)!r}{mid}{pid}{org_id}"
                    f"{org.key_id(p, k)}{end}"
                    for k in keys
                )

        return self._page(starts, DAY, next_page, results)

    def _usage(self, kind: str, query: _Query) -> Iterator[str]:
        spec = USAGE_KINDS[kind]
        width_name = query.one("bucket_width") or "1d"
        if width_name not in _WIDTH_LIMITS:
            raise _Refused(400, "Invalid 'bucket_width'.", "bucket_width")
        width, default, maximum = _WIDTH_LIMITS[width_name]
        group_by = set(query.many("group_by"))
        if not group_by <= set(spec.dims):
            raise _Refused(400, "Invalid value for 'group_by'.", "group_by")
        has_data = kind in ("completions", "embeddings")
        if has_data and not {"project_id", "model"} <= group_by:
            raise _Refused(400, "the benchmark groups by project and model", "group_by")
        starts, next_page = self._window(query, width, query.limit(default, maximum))
        org = self.org
        head = f'{{"object": "{spec.object}", '
        batch = ', "batch": false' if "batch" in group_by else ', "batch": null'
        tail = batch + ', "service_tier": null}' if kind == "completions" else "}"

        def results(start: int) -> Iterator[str]:
            b = org.usage_bucket(start, width)
            if b is None or not has_data:
                return
            models = [org.model(kind, m) for m in range(MODELS)]
            for p in range(org.projects):
                pid = f'"project_id": "{org.project_id(p)}", "user_id": null'
                yield ", ".join(
                    head
                    + ", ".join(
                        f'"{k}": {v}'
                        for k, v in org.usage_fields(kind, p, m, b).items()
                    )
                    + f', {pid}, "api_key_id": null, "model": "{models[m]}"{tail}'
                    for m in range(MODELS)
                )

        return self._page(starts, width, next_page, results, int(self.clock()))


def _get(base_url: str, key: str, path: str, params: list[tuple[str, str]]) -> Any:
    import requests

    url = f"{base_url}{path}?{urlencode(params)}"
    resp = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    resp.raise_for_status()
    return resp.json()


def _normalized(doc: Any) -> Any:
    """Drop cursors (opaque) and sort results (their order is not part of the API)."""
    if isinstance(doc, dict):
        return {
            k: sorted(map(json.dumps, v)) if k == "results" else _normalized(v)
            for k, v in doc.items()
            if k != "next_page"
        }
    if isinstance(doc, list):
        return [_normalized(v) for v in doc]
    return doc


def seed_fake(fake: FakeOpenAI, org: Org) -> None:
    """Store `org` in a `FakeOpenAI`, record by record (small organizations only)."""
    for p in range(org.projects):
        fake.add_project(org.project_id(p), f"Project {p}")
        for k in range(org.keys):
            fake.add_api_key(org.project_id(p), org.key_id(p, k), f"Key {k}")
        for day in range(BACKFILL_DAYS + 1):
            start = org.today - (BACKFILL_DAYS - day) * DAY
            for i in range(org.items):
                value = float(org.cost_value(p, i, day))
                fake.set_cost(
                    start,
                    org.project_id(p),
                    f"model-{i}, input",
                    value,
                    quantity=float(org.quantity(p, i, day)),
                    quantity_unit="tokens",
                    api_keys={org.key_id(p, i % org.keys): value},
                )
    if org.usage == "off":
        return
    step = USAGE_STEPS[org.usage]
    first = int(org.now) // step * step - (USAGE_BACKFILL[org.usage] - 1) * step
    for b in range(USAGE_BACKFILL[org.usage]):
        for p in range(org.projects):
            for m in range(MODELS):
                for kind in ("completions", "embeddings"):
                    extra = {"batch": False} if kind == "completions" else {}
                    fake.add_usage(
                        kind,
                        first + b * step,
                        project_id=org.project_id(p),
                        model=org.model(kind, m),
                        **extra,
                        **{
                            k: int(v)
                            for k, v in org.usage_fields(kind, p, m, b).items()
                        },
                    )


def check_against_fake() -> None:
    """Raise unless a small organization reads the same here as from `FakeOpenAI`.

    Every page of the queries the pusher makes (projects, costs, the usage endpoints
    at `1d` and `1h`) is compared, cursors aside, following each query's pages.
    """
    now = float(int(time.time()) // HOUR * HOUR + 1234)
    for width in ("1d", "1h"):
        org = Org(projects=3, items=2, usage=width, now=now)
        step = USAGE_STEPS[width]
        with (
            SyntheticApi(org, page_size=10, clock=lambda: now) as ours,
            FakeOpenAI(page_size=10, now=lambda: now) as fake,
        ):
            seed_fake(fake, org)
            fake.project_page_size = 2
            days = [
                ("start_time", str(org.today - BACKFILL_DAYS * DAY)),
                ("bucket_width", "1d"),
                ("group_by[]", "project_id"),
                ("group_by[]", "line_item"),
                ("limit", "180"),
            ]
            projects = [("limit", "2"), ("include_archived", "true")]
            by_key = [
                *days[:2],
                ("group_by[]", "project_id"),
                ("group_by[]", "api_key_id"),
                ("limit", "180"),
            ]
            queries: list[tuple[str, list[tuple[str, str]]]] = [
                ("/organization/projects", projects),
                ("/organization/costs", days),
                ("/organization/costs", by_key),
                ("/organization/projects/proj_00001/api_keys", [("limit", "2")]),
            ]
            first = int(now) // step * step - (USAGE_BACKFILL[width] - 1) * step
            for kind in USAGE_KINDS:
                dims = ("project_id", "model", "batch")
                group = [("group_by[]", d) for d in dims if d in USAGE_KINDS[kind].dims]
                params = [("start_time", str(first)), ("bucket_width", width), *group]
                params.append(("limit", "31" if width == "1d" else "168"))
                queries.append((f"/organization/usage/{kind}", params))
            for path, params in queries:
                _compare_pages(ours, fake, path, params)


def _compare_pages(
    ours: SyntheticApi, fake: FakeOpenAI, path: str, params: list[tuple[str, str]]
) -> None:
    """Follow a query's pages on both servers; raise at the first difference."""
    more: dict[str, list[tuple[str, str]]] = {"ours": [], "fake": []}
    for page in range(100):
        docs = {
            name: _get(server.base_url, server.admin_key, path, [*params, *more[name]])
            for name, server in (("ours", ours), ("fake", fake))
        }
        if _normalized(docs["ours"]) != _normalized(docs["fake"]):
            raise AssertionError(
                f"the synthetic API differs from FakeOpenAI on {path} page {page}:\n"
                f"{json.dumps(docs['ours'])[:600]}\n{json.dumps(docs['fake'])[:600]}"
            )
        if not docs["fake"]["has_more"]:
            return
        for name, doc in docs.items():
            cursor = doc.get("next_page")
            more[name] = [("page", cursor)] if cursor else [("after", doc["last_id"])]
    raise AssertionError(f"{path}: more than 100 pages")
