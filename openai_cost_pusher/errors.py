"""The exception tree: one base class, subclassed by what the caller does next.

This module imports nothing from the package, so every layer can raise these without an
import loop. It owns no behaviour beyond carrying a one-line message and, for remote
failures, the server's `Retry-After`.

    CostPusherError            anything this package raises on purpose
    ├── ConfigError            bad settings: one line per problem, exit code 2
    ├── Stopped                a stop was requested; unwind quietly
    ├── ApiError               the OpenAI Admin API failed the call
    │   ├── AuthRejected       401/403: the admin key was rejected (no retry)
    │   ├── RequestRejected    400/404, other 4xx, a redirect (not followed) or a
    │   │                      header HTTP cannot carry: our request is wrong
    │   ├── BadResponse        the answer is not the documented shape, is too
    │   │                      large or too deep, or paginates in a loop (no retry)
    │   └── Transient          429, 5xx, timeout, the call's deadline, connection
    │                          error (retry)
    └── PushError              VictoriaMetrics failed the push
        ├── PushRejected       3xx/4xx: the server refused the body or the
        │                      credentials, or redirected (not followed)
        └── PushUnavailable    5xx, 429, timeout, the call's deadline, connection
                               error (retry)
"""

from __future__ import annotations


class CostPusherError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(CostPusherError):
    """Settings are invalid; `problems` holds one line per bad setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Stopped(CostPusherError):
    """A stop was requested while work was under way."""


class ApiError(CostPusherError):
    """The OpenAI Admin API failed a call."""


class AuthRejected(ApiError):
    """The Admin API rejected the admin key (401 or 403)."""


class RequestRejected(ApiError):
    """The Admin API rejected the request itself (400, 404 or another 4xx)."""


class BadResponse(ApiError):
    """An answer does not have the documented shape; the message names the field."""


class Transient(ApiError):
    """A failure worth retrying: 429, 5xx, a timeout or a connection error."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PushError(CostPusherError):
    """VictoriaMetrics (or vmagent, vmauth) failed a push."""


class PushRejected(PushError):
    """The push target refused the request with a 4xx; retrying will not help."""


class PushUnavailable(PushError):
    """The push target is down, overloaded or unreachable; worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_transient(exc: BaseException) -> bool:
    """Return whether `exc` is a failure that a retry may cure."""
    return isinstance(exc, Transient | PushUnavailable)
