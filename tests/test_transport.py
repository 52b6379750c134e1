"""Test the HTTP plumbing: error mapping in `send`, `Retry-After`, the retry policy.

`send` maps every exception `requests` defines to the caller's `unavailable` class,
including the ones retrying cannot cure (`InvalidURL`, `MissingSchema`,
`InvalidSchema`, `InvalidHeader`, `InvalidProxyURL`, `URLRequired`): these come from a
bad URL or header, which settings validation should reject before any call, and mapping
them keeps the failure inside the package's error tree (one line, no traceback, a
bounded retry) instead of letting a library exception escape. Some of the mapped
classes never come out of `Session.request` the way the clients call it (`HTTPError`
only from `raise_for_status`, `JSONDecodeError` only from `.json()`), and are mapped
because `send` catches the whole `requests` tree.

Unit tests use a sealed stub session; a few tests drive a real `Session` against a raw
socket server on 127.0.0.1 to show which exceptions real failures raise.
"""

from __future__ import annotations

import inspect
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import requests.exceptions
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict
from tenacity import Retrying

from openai_cost_pusher import transport
from openai_cost_pusher.errors import (
    AuthRejected,
    BadResponse,
    ConfigError,
    CostPusherError,
    PushRejected,
    PushUnavailable,
    RequestRejected,
    Stopped,
    Transient,
)
from openai_cost_pusher.transport import (
    ERROR_BODY_BYTES,
    MAX_ATTEMPTS,
    USER_AGENT,
    Timeouts,
    display_url,
    iter_body,
    make_session,
    parse_retry_after,
    paused,
    read_body,
    redirect_target,
    retry_policy,
    send,
)
from tests.procs import free_port

SECRET = "sk-admin-SECRET-0123456789"
URL = f"https://api.example.com/v1/organization/costs?start_time=1&key={SECRET}"
SHOWN = "https://api.example.com/v1/organization/costs"
"""`URL` as messages show it: no query, no credentials."""
TIMEOUTS = Timeouts(connect=2.0, read=7.0)
Unavailable = type[Transient] | type[PushUnavailable]


class StubSession(requests.Session):
    """Record each `request` call, then raise `error` or return `response`."""

    def __init__(
        self,
        error: BaseException | None = None,
        response: requests.Response | None = None,
    ) -> None:
        super().__init__()
        self.error = error
        self.response = response
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Record the call and play the scripted outcome."""
        assert not args, "send passes everything by keyword"
        self.calls.append((method, url, kwargs))
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        """Refuse to touch the network: the stub is sealed."""
        raise AssertionError("StubSession must not send")


def _response(status: int) -> requests.Response:
    """Return a bare response with `status`."""
    resp = requests.Response()
    resp.status_code = status
    return resp


def _message(name: str) -> str:
    """Return a library-style message that repeats the URL, query and secret."""
    return (
        f"HTTPSConnectionPool(host='api.example.com', port=443): {name} with url: "
        f"/v1/organization/costs?start_time=1&key={SECRET}\n(Caused by {name})"
    )


def _instance(cls: type[Exception]) -> Exception:
    """Build an instance of a `requests` exception whose text leaks the URL."""
    if issubclass(cls, requests.exceptions.JSONDecodeError):
        return cls(_message(cls.__name__), URL, 0)
    return cls(_message(cls.__name__))


# Expected start of the message after `what: ` for each `requests` exception.
_MAPPED: dict[type[Exception], str] = {
    requests.exceptions.RequestException: "request failed (RequestException)",
    requests.exceptions.ConnectionError: f"cannot connect (ConnectionError) to {SHOWN}",
    requests.exceptions.ProxyError: f"cannot connect (ProxyError) to {SHOWN}",
    requests.exceptions.SSLError: (
        f"cannot connect (TLS error: SSLError) to {SHOWN}; check the URL's scheme "
        "(http or https) and port, and the server's certificate"
    ),
    requests.exceptions.ConnectTimeout: f"cannot connect to {SHOWN} within 2s",
    requests.exceptions.ReadTimeout: "no answer within 7s",
    requests.exceptions.Timeout: "no answer within 7s",
    requests.exceptions.ChunkedEncodingError: "request failed (ChunkedEncodingError)",
    requests.exceptions.ContentDecodingError: "request failed (ContentDecodingError)",
    requests.exceptions.TooManyRedirects: "request failed (TooManyRedirects)",
    requests.exceptions.RetryError: "request failed (RetryError)",
    requests.exceptions.UnrewindableBodyError: "request failed (UnrewindableBodyError)",
    requests.exceptions.StreamConsumedError: "request failed (StreamConsumedError)",
    requests.exceptions.InvalidJSONError: "request failed (InvalidJSONError)",
    requests.exceptions.JSONDecodeError: "request failed (JSONDecodeError)",
    requests.exceptions.HTTPError: "request failed (HTTPError)",
    requests.exceptions.InvalidURL: "request failed (InvalidURL)",
    requests.exceptions.InvalidProxyURL: "request failed (InvalidProxyURL)",
    requests.exceptions.MissingSchema: "request failed (MissingSchema)",
    requests.exceptions.InvalidSchema: "request failed (InvalidSchema)",
    requests.exceptions.InvalidHeader: "request failed (InvalidHeader)",
    requests.exceptions.URLRequired: "request failed (URLRequired)",
    # requests re-raises some urllib3 errors unwrapped (see test_raw_urllib3_error).
    urllib3.exceptions.LocationParseError: "request failed (LocationParseError)",
    urllib3.exceptions.HTTPError: "request failed (HTTPError)",
}


def _assert_clean(message: str, what: str) -> None:
    """Check that `message` is one line, names `what`, and leaks no query or secret.

    Connection failures name the URL, as `display_url` shows it: scheme, host, port
    and path only.
    """
    assert message.startswith(f"{what}: ")
    assert "\n" not in message and "\r" not in message
    assert SECRET not in message
    assert "?" not in message and "key=" not in message
    assert "://" not in message.replace(SHOWN, "")


# ------------------------------------------------------------------- error mapping


def test_every_requests_exception_is_in_the_table() -> None:
    """The mapping table lists every exception class that `requests` defines."""
    defined = {
        cls
        for _, cls in inspect.getmembers(requests.exceptions, inspect.isclass)
        if issubclass(cls, requests.exceptions.RequestException)
    }
    assert defined <= set(_MAPPED)


@pytest.mark.parametrize("unavailable", [Transient, PushUnavailable])
@pytest.mark.parametrize(
    ("cls", "expected"), list(_MAPPED.items()), ids=lambda v: getattr(v, "__name__", "")
)
def test_send_maps_exception(
    cls: type[Exception], expected: str, unavailable: Unavailable
) -> None:
    """Each library exception becomes `unavailable` with a clean one-line message."""
    original = _instance(cls)
    session = StubSession(error=original)
    with pytest.raises(unavailable) as info:
        send(
            session,
            "GET",
            URL,
            what="GET /organization/costs",
            timeouts=TIMEOUTS,
            unavailable=unavailable,
            stop=threading.Event(),
        )
    message = str(info.value)
    _assert_clean(message, "GET /organization/costs")
    assert message == f"GET /organization/costs: {expected}"
    assert info.value.__cause__ is original
    assert getattr(info.value, "retry_after", "absent") is None


_REFUSED = (
    f"cannot connect (connection refused) to {SHOWN}; check that the server runs "
    "and the URL's host and port"
)
_UNKNOWN_HOST = (
    f"cannot connect (unknown host: DNS lookup failed) to {SHOWN}; check the host "
    "name in the URL"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Failed to establish a new connection: [Errno 111] Connection refused",
            _REFUSED,
        ),
        ("[Errno -2] Name or service not known", _UNKNOWN_HOST),
        ("[Errno -3] Temporary failure in name resolution", _UNKNOWN_HOST),
        (
            "NameResolutionError(\"Failed to resolve 'api.example.com' ([Errno -5] "
            'No address associated with hostname)")',
            _UNKNOWN_HOST,
        ),
        ("Read timed out.", f"cannot connect (timed out) to {SHOWN}"),
        (
            "('Connection aborted.', ConnectionResetError(104, 'Connection reset by "
            "peer'))",
            f"cannot connect (connection reset) to {SHOWN}",
        ),
        (
            "RemoteDisconnected('Remote end closed connection without response')",
            f"cannot connect (remote end closed connection) to {SHOWN}",
        ),
        (
            "[Errno 113] No route to host",
            f"cannot connect (no route to host) to {SHOWN}",
        ),
    ],
)
def test_send_names_known_reasons(text: str, expected: str) -> None:
    """Refused, unknown host and other known causes get distinct one-line messages."""
    error = requests.exceptions.ConnectionError(f"{_message('MaxRetryError')} {text}")
    with pytest.raises(PushUnavailable) as info:
        send(
            StubSession(error=error),
            "POST",
            URL,
            what="push",
            timeouts=TIMEOUTS,
            unavailable=PushUnavailable,
            stop=threading.Event(),
        )
    assert str(info.value) == f"push: {expected}"
    _assert_clean(str(info.value), "push")


def test_send_names_tls_failures() -> None:
    """A TLS failure says so, with the library's reason, the URL and what to check."""
    error = requests.exceptions.SSLError(
        f"{_message('SSLError')} [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
        "failed: self-signed certificate"
    )
    with pytest.raises(Transient) as info:
        send(
            StubSession(error=error),
            "GET",
            URL,
            what="GET /x",
            timeouts=TIMEOUTS,
            unavailable=Transient,
            stop=threading.Event(),
        )
    assert str(info.value) == (
        f"GET /x: cannot connect (TLS error: certificate verify failed) to {SHOWN}; "
        "check the URL's scheme (http or https) and port, and the server's certificate"
    )


@pytest.mark.parametrize("error", [ValueError("bug"), TypeError("bug"), KeyError("k")])
def test_send_lets_bugs_through(error: Exception) -> None:
    """Exceptions outside the HTTP libraries are bugs and are not mapped."""
    with pytest.raises(type(error)):
        send(
            StubSession(error=error),
            "GET",
            URL,
            what="x",
            timeouts=TIMEOUTS,
            unavailable=Transient,
            stop=threading.Event(),
        )


def test_send_passes_timeout_and_arguments() -> None:
    """`send` passes the `(connect, read)` timeout, streams, refuses redirects, and
    forwards the rest."""
    resp = _response(204)
    session = StubSession(response=resp)
    got = send(
        session,
        "POST",
        "http://h/p",
        what="x",
        timeouts=TIMEOUTS,
        unavailable=PushUnavailable,
        stop=threading.Event(),
        data=b"body",
        headers={"A": "b"},
    )
    assert got is resp
    assert session.calls == [
        (
            "POST",
            "http://h/p",
            {
                "timeout": (2.0, 7.0),
                "stream": True,
                "allow_redirects": False,
                "data": b"body",
                "headers": {"A": "b"},
            },
        )
    ]


@pytest.mark.parametrize("unavailable", [Transient, PushUnavailable])
def test_send_refuses_when_stopped(unavailable: Unavailable) -> None:
    """With the stop Event set, `send` raises Stopped and sends nothing."""
    stop = threading.Event()
    stop.set()
    session = StubSession(response=_response(200))
    with pytest.raises(Stopped, match=r"^GET /x: stop requested$"):
        send(
            session,
            "GET",
            URL,
            what="GET /x",
            timeouts=TIMEOUTS,
            unavailable=unavailable,
            stop=stop,
        )
    assert session.calls == []


# ------------------------------------------------- real failures, real exceptions


@pytest.fixture(name="raw_server")
def _raw_server() -> Iterator[Callable[[bytes | None], str]]:
    """Serve one scripted raw answer per connection on 127.0.0.1; None never answers."""
    sockets: list[socket.socket] = []
    done = threading.Event()

    def start(answer: bytes | None) -> str:
        srv = socket.create_server(("127.0.0.1", 0))
        srv.settimeout(0.05)
        sockets.append(srv)

        def run() -> None:
            conns: list[socket.socket] = []
            while not done.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                conns.append(conn)
                conn.recv(65536)
                if answer is not None:
                    conn.sendall(answer)
                    conn.close()
            for conn in conns:
                conn.close()

        threading.Thread(target=run, daemon=True).start()
        port = srv.getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/organization/costs?key={SECRET}"

    yield start
    done.set()
    time.sleep(0.1)
    for srv in sockets:
        srv.close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, "no answer within 0.3s"),
        (b"", "cannot connect (remote end closed connection) to {url}"),
        (b"NOT HTTP\r\n\r\n", "cannot connect (ConnectionError) to {url}"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
            "the answer broke off (ChunkedEncodingError)",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
            "the answer broke off (ChunkedEncodingError)",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: 5\r\n\r\nabcde",
            "the answer broke off (ContentDecodingError)",
        ),
    ],
    ids=["hang", "closed", "garbage", "truncated", "bad-chunk", "bad-gzip"],
)
def test_send_maps_real_failures(
    raw_server: Callable[[bytes | None], str], answer: bytes | None, expected: str
) -> None:
    """Real broken answers from a socket server are mapped to `unavailable`."""
    url = raw_server(answer)
    shown = url.split("?")[0]
    with requests.Session() as session, pytest.raises(Transient) as info:
        send(
            session,
            "GET",
            url,
            what="GET /organization/costs",
            timeouts=Timeouts(connect=1.0, read=0.3),
            unavailable=Transient,
            stop=threading.Event(),
        )
    message = str(info.value)
    assert message == f"GET /organization/costs: {expected.format(url=shown)}"
    assert SECRET not in message and "?" not in message and "\n" not in message


def test_send_maps_connection_refused() -> None:
    """A port nobody listens on gives `cannot connect (connection refused)`."""
    url = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus?x={SECRET}"
    with requests.Session() as session, pytest.raises(PushUnavailable) as info:
        send(
            session,
            "POST",
            url,
            what="push to VictoriaMetrics",
            timeouts=Timeouts(1.0, 1.0),
            unavailable=PushUnavailable,
            stop=threading.Event(),
            data=b"x 1\n",
        )
    shown = url.split("?")[0]
    assert str(info.value) == (
        f"push to VictoriaMetrics: cannot connect (connection refused) to {shown}; "
        "check that the server runs and the URL's host and port"
    )


def test_raw_urllib3_error() -> None:
    """A host with an empty label escapes requests as urllib3's error and is mapped."""
    with requests.Session() as session, pytest.raises(Transient) as info:
        send(
            session,
            "GET",
            f"http://api..example.com/v1?key={SECRET}",
            what="GET /x",
            timeouts=Timeouts(1.0, 1.0),
            unavailable=Transient,
            stop=threading.Event(),
        )
    assert str(info.value) == "GET /x: request failed (LocationParseError)"
    assert isinstance(info.value.__cause__, urllib3.exceptions.LocationParseError)


# --------------------------------------------------------------- session, timeouts


def test_make_session_has_no_hidden_retries() -> None:
    """The session sends our User-Agent and mounts no urllib3 retry layer."""
    with make_session() as session:
        assert session.headers["User-Agent"] == USER_AGENT
        for prefix in ("http://", "https://"):
            adapter = session.get_adapter(prefix + "example.com")
            assert isinstance(adapter, requests.adapters.HTTPAdapter)
            assert adapter.max_retries.total == 0


@pytest.mark.parametrize(
    ("read", "pair"), [(30.0, (5.0, 30.0)), (5.0, (5.0, 5.0)), (0.5, (0.5, 0.5))]
)
def test_timeouts_from_read(read: float, pair: tuple[float, float]) -> None:
    """The connect timeout is the read timeout, capped at 5 s."""
    assert Timeouts.from_read(read).pair() == pair


@pytest.mark.parametrize(
    ("timeouts", "deadline"),
    [
        (Timeouts.from_read(30.0), 120.0),
        (Timeouts.from_read(0.5), 2.0),
        (Timeouts(connect=1.0, read=0.25), 1.25),
    ],
)
def test_the_deadline_is_four_reads(timeouts: Timeouts, deadline: float) -> None:
    """A whole call may take 4 x HTTP_TIMEOUT (and never less than connect + read)."""
    assert timeouts.deadline == deadline


def test_make_session_mounts_the_watched_adapter() -> None:
    """Sessions from make_session open connections the deadline watchdog can cut."""
    with make_session() as session:
        for prefix in ("http://", "https://"):
            adapter = session.get_adapter(prefix + "example.com")
            assert isinstance(adapter, transport._WatchedAdapter)
            pools = adapter.poolmanager.pool_classes_by_scheme
            assert pools == transport._WATCHED_POOLS


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (URL, SHOWN),
        (
            "http://user:pw@vm:8428/api/v1/import/prometheus",
            "http://vm:8428/api/v1/import/prometheus",
        ),
        ("https://[::1]:8443/x?token=t#frag", "https://[::1]:8443/x"),
        ("http://host:99999/x", "the configured URL"),
    ],
)
def test_display_url_drops_credentials_and_query(url: str, shown: str) -> None:
    """Messages show scheme, host, port and path; never user info or a query."""
    assert display_url(url) == shown


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("https://evil.example/steal?key=x", "evil.example"),
        ("http://other:8080/v1", "other:8080"),
        ("/v2/organization/costs", "api.example.com"),
        ("", "no location given"),
        ("http://[::1/x", "an unreadable location"),
    ],
)
def test_redirect_target_names_the_host(location: str, target: str) -> None:
    """The target host of a redirect, relative ones resolved against the request."""
    resp = _response(302)
    resp.url = "https://api.example.com/v1/organization/costs"
    if location:
        resp.headers["Location"] = location
    assert redirect_target(resp) == target


def _body_server(status: int, size: int) -> tuple[str, socket.socket]:
    """Serve one answer of `size` bytes on 127.0.0.1; return its URL and socket."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(5)

    def run() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {size}\r\n\r\n"
            try:
                conn.sendall(head.encode())
                for _ in range(size // 65536):
                    conn.sendall(b"y" * 65536)
            except OSError:
                pass  # the client closed early: expected

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}/x", srv


def _streamed(
    session: requests.Session, url: str, timeouts: Timeouts
) -> requests.Response:
    """GET `url` through `send`, streamed, as the Admin API's pages are read."""
    return send(
        session,
        "GET",
        url,
        what="GET /x",
        timeouts=timeouts,
        unavailable=Transient,
        stop=threading.Event(),
        stream=True,
    )


def test_an_error_body_is_read_up_to_its_cap() -> None:
    """A 4 MiB error body is read to 64 KiB and the connection closed, not drained."""
    url, srv = _body_server(400, 4 << 20)
    with srv, make_session() as session:
        resp = _streamed(session, url, Timeouts(1.0, 1.0))
        assert resp.status_code == 400
        assert resp.content == b"y" * ERROR_BODY_BYTES
        assert len(resp.text) == ERROR_BODY_BYTES


def test_a_large_success_body_not_streamed_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A success the caller reads whole may be 16 MiB at most (lowered here)."""
    monkeypatch.setattr(transport, "MAX_BODY_BYTES", 1 << 20)
    url, srv = _body_server(200, 2 << 20)
    with srv, make_session() as session, pytest.raises(PushUnavailable) as info:
        send(
            session,
            "GET",
            url,
            what="dedup check",
            timeouts=Timeouts(1.0, 1.0),
            unavailable=PushUnavailable,
            stop=threading.Event(),
        )
    assert str(info.value) == (
        "dedup check: the answer is larger than 1 MiB, more than any answer this "
        "client asks for; check the URL"
    )


def test_read_body_tells_whole_from_cut() -> None:
    """read_body returns at most `limit` bytes and whether the body ended there."""
    for limit, whole in ((1 << 20, True), (1000, False)):
        url, srv = _body_server(200, 65536 * 4)
        with srv, make_session() as session:
            resp = _streamed(session, url, Timeouts(1.0, 1.0))
            body, complete = read_body(
                resp, limit=limit, what="GET /x", unavailable=Transient
            )
            assert complete is whole
            assert body == b"y" * min(limit, 65536 * 4)


def test_iter_body_of_a_hand_made_response_has_no_deadline() -> None:
    """iter_body works on responses `send` did not make (no guard): plain chunks."""
    url, srv = _body_server(200, 65536)
    with srv, requests.Session() as session:
        resp = session.get(url, stream=True, timeout=(1.0, 1.0))
        chunks = list(iter_body(resp, what="GET /x", unavailable=Transient))
    assert b"".join(chunks) == b"y" * 65536


# ------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "5"}, 5.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": " 7 "}, 7.0),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "1e999"}, None),
        ({}, None),
        ({"Content-Type": "application/json"}, None),
        (CaseInsensitiveDict({"retry-after": "4"}), 4.0),
        (CaseInsensitiveDict({"RETRY-AFTER": "12"}), 12.0),
    ],
)
def test_parse_retry_after(headers: Any, expected: float | None) -> None:
    """Delay-seconds are read (negatives clamp to 0); dates and junk give None."""
    assert parse_retry_after(headers) == expected


# ------------------------------------------------------------------- retry policy


class Script:
    """Raise the scripted errors one per call, then return `done`."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _policy(
    sleeps: list[float],
    *,
    budget: float = 1000.0,
    stop: threading.Event | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Retrying:
    """Return the policy with recorded (not real) sleeps."""
    return retry_policy(
        budget,
        stop or threading.Event(),
        sleep=sleeps.append,
        max_attempts=max_attempts,
    )


@pytest.mark.parametrize(
    "error", [Transient("GET /x: HTTP 500"), PushUnavailable("push: HTTP 503")]
)
def test_retries_transient(error: Exception) -> None:
    """Transient and PushUnavailable failures are retried until a call succeeds."""
    sleeps: list[float] = []
    script = Script(error, error)
    assert _policy(sleeps)(script) == "done"
    assert script.calls == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "error",
    [
        AuthRejected("GET /x: admin key rejected (HTTP 401)"),
        RequestRejected("GET /x: HTTP 400"),
        BadResponse("GET /x.data: missing"),
        PushRejected("push: HTTP 400"),
        Stopped("stop requested"),
        ConfigError(["X: bad"]),
        CostPusherError("other"),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_never_retries_permanent(error: Exception) -> None:
    """Rejections, bad answers, stops and bugs are raised at once, without a wait."""
    sleeps: list[float] = []
    script = Script(error)
    with pytest.raises(type(error)) as info:
        _policy(sleeps)(script)
    assert info.value is error
    assert script.calls == 1
    assert sleeps == []


@pytest.mark.parametrize("retry_after", [0.0, 2.0, 7.5, 29.0, 45.0])
@pytest.mark.parametrize("cls", [Transient, PushUnavailable])
def test_waits_at_least_retry_after(retry_after: float, cls: Unavailable) -> None:
    """The wait is never shorter than the server's Retry-After."""
    sleeps: list[float] = []
    script = Script(cls("HTTP 429", retry_after=retry_after))
    assert _policy(sleeps)(script) == "done"
    assert len(sleeps) == 1
    assert sleeps[0] >= retry_after
    assert sleeps[0] <= max(retry_after, 1.0)  # the first backoff is 0.5 s + jitter


def test_backoff_is_exponential_and_capped() -> None:
    """Without Retry-After the waits double from 0.5 s, capped at 30 s, plus 0-0.5 s."""
    sleeps: list[float] = []
    script = Script(*[Transient("HTTP 500")] * 9)
    assert _policy(sleeps, max_attempts=10)(script) == "done"
    assert len(sleeps) == 9
    for n, wait in enumerate(sleeps):
        low = min(0.5 * 2**n, 30.0)
        assert low <= wait <= low + 0.5, (n, wait)


@pytest.mark.parametrize("max_attempts", [1, 3, MAX_ATTEMPTS])
def test_stops_after_max_attempts(max_attempts: int) -> None:
    """After `max_attempts` failures the last error is re-raised."""
    sleeps: list[float] = []
    errors = [Transient(f"HTTP 500 #{i}") for i in range(max_attempts + 2)]
    script = Script(*errors)
    with pytest.raises(Transient) as info:
        _policy(sleeps, max_attempts=max_attempts)(script)
    assert info.value is errors[max_attempts - 1]
    assert script.calls == max_attempts
    assert len(sleeps) == max_attempts - 1


def test_default_max_attempts() -> None:
    """The default policy makes MAX_ATTEMPTS (8) calls at most."""
    sleeps: list[float] = []
    script = Script(*[PushUnavailable("HTTP 503")] * 20)
    with pytest.raises(PushUnavailable):
        retry_policy(1e6, threading.Event(), sleep=sleeps.append)(script)
    assert script.calls == MAX_ATTEMPTS == 8


@pytest.mark.parametrize("cls", [Transient, PushUnavailable])
@pytest.mark.parametrize("retry_after", [10.5, 60.0, 3600.0])
def test_stops_before_a_wait_past_the_budget(
    retry_after: float, cls: Unavailable
) -> None:
    """A Retry-After past the budget ends the call at once, naming RETRY_BUDGET."""
    sleeps: list[float] = []
    error = cls("GET /x: HTTP 429", retry_after=retry_after)
    script = Script(error)
    with pytest.raises(cls) as info:
        _policy(sleeps, budget=10.0)(script)
    assert str(info.value) == (
        f"GET /x: HTTP 429; the server asks to retry after {retry_after:g}s "
        "(Retry-After), more than the 10s left of RETRY_BUDGET (10s): gave up; "
        f"raise RETRY_BUDGET above {retry_after:g}s to wait it out"
    )
    assert getattr(info.value, "retry_after", None) == retry_after
    assert info.value.__cause__ is error
    assert script.calls == 1
    assert sleeps == []


def test_a_backoff_past_the_budget_keeps_the_error() -> None:
    """Without Retry-After, running out of budget re-raises the last error as is."""
    sleeps: list[float] = []
    error = Transient("GET /x: HTTP 500")
    script = Script(error, error)
    with pytest.raises(Transient) as info:
        _policy(sleeps, budget=0.4)(script)
    assert info.value is error
    assert sleeps == []


def test_budget_bounds_real_time() -> None:
    """With a real clock, retries give up before the budget of 1.5 s is spent.

    Waits are 0.5-1.0 s then 1.0-1.5 s, so the first wait always fits the budget and
    the second never does: exactly two calls, one real wait.
    """
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    script = Script(*[Transient("HTTP 500")] * 10)
    started = time.monotonic()
    with pytest.raises(Transient):
        retry_policy(1.5, threading.Event(), sleep=sleep)(script)
    elapsed = time.monotonic() - started
    assert script.calls == 2
    assert len(sleeps) == 1
    assert elapsed < 1.5


def test_stop_during_backoff_prevents_the_next_request() -> None:
    """A stop set during a wait makes the next attempt raise Stopped without sending."""
    stop = threading.Event()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        stop.set()

    session = StubSession(error=requests.exceptions.ConnectionError("refused"))

    def call() -> requests.Response:
        return send(
            session,
            "GET",
            URL,
            what="GET /x",
            timeouts=TIMEOUTS,
            unavailable=Transient,
            stop=stop,
        )

    with pytest.raises(Stopped):
        retry_policy(1000.0, stop, sleep=sleep)(call)
    assert len(session.calls) == 1
    assert len(sleeps) == 1


def test_stop_ends_retries_of_a_failing_call() -> None:
    """Once the stop is set, a failing call is not retried again."""
    stop = threading.Event()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        stop.set()

    error = Transient("HTTP 500")
    script = Script(*[error] * 5)
    with pytest.raises(Transient):
        retry_policy(1000.0, stop, sleep=sleep)(script)
    assert script.calls == 2
    assert len(sleeps) == 1


def test_stop_set_before_start_sends_nothing() -> None:
    """With the stop already set, the policy around `send` raises Stopped at once."""
    stop = threading.Event()
    stop.set()
    sleeps: list[float] = []
    session = StubSession(response=_response(200))
    with pytest.raises(Stopped):
        retry_policy(1000.0, stop, sleep=sleeps.append)(
            lambda: send(
                session,
                "GET",
                URL,
                what="GET /x",
                timeouts=TIMEOUTS,
                unavailable=Transient,
                stop=stop,
            )
        )
    assert session.calls == []
    assert sleeps == []


def test_default_sleep_wakes_on_stop() -> None:
    """The default sleep is cut short by the stop Event: a 50 s wait ends in < 2 s."""
    stop = threading.Event()
    session = StubSession(response=_response(200))
    calls: list[int] = []

    def call() -> requests.Response:
        calls.append(1)
        if len(calls) == 1:
            raise Transient("GET /x: HTTP 429", retry_after=50.0)
        return send(
            session,
            "GET",
            URL,
            what="GET /x",
            timeouts=TIMEOUTS,
            unavailable=Transient,
            stop=stop,
        )

    timer = threading.Timer(0.1, stop.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Stopped):
            retry_policy(1000.0, stop)(call)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2.0
    assert len(calls) == 2
    assert session.calls == []


def test_logs_one_warning_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry logs one WARNING naming the error, never the URL."""
    sleeps: list[float] = []
    session = StubSession(error=requests.exceptions.ConnectionError(_message("x")))

    def call() -> requests.Response:
        return send(
            session,
            "GET",
            URL,
            what="GET /x",
            timeouts=TIMEOUTS,
            unavailable=Transient,
            stop=threading.Event(),
        )

    with (
        caplog.at_level(logging.WARNING, logger="openai_cost_pusher.transport"),
        pytest.raises(Transient),
    ):
        _policy(sleeps, max_attempts=3)(call)
    warnings = [r for r in caplog.records if r.name == "openai_cost_pusher.transport"]
    assert len(warnings) == 2
    assert all(r.levelno == logging.WARNING for r in warnings)
    for record in warnings:
        text = record.getMessage()
        assert "GET /x: cannot connect" in text
        assert SECRET not in text


@pytest.mark.parametrize("paused_reader", [True, False])
def test_a_reader_paused_between_chunks_is_not_the_servers_time(
    paused_reader: bool,
) -> None:
    """The time a streamed answer waits while its reader works in `paused` (a day
    landing between two buckets) is left out of the deadline; the same wait outside
    it counts, and the next read ends the call."""
    url, srv = _body_server(200, 65536 * 4)
    timeouts = Timeouts(1.0, 0.1)  # a deadline of 1.1 s
    with srv, make_session() as session:
        resp = _streamed(session, url, timeouts)
        chunks = iter_body(
            resp, what="GET /x", unavailable=Transient, chunk_bytes=65536
        )
        assert next(chunks) == b"y" * 65536
        if paused_reader:
            with paused(resp):
                time.sleep(timeouts.deadline + 0.4)
            assert b"".join(chunks) == b"y" * 65536 * 3
        else:
            time.sleep(timeouts.deadline + 0.4)
            with pytest.raises(Transient, match=r"no complete answer within 1\.1s"):
                next(chunks)
