"""The wire contract between levrt and a cluster: requests, answers, the transport seam, and the
exception class of every error status.

Why a module of its own: the real transport (``levrt._clients.http``), the client on top of it
(``levrt._clients.kube``) and the in-memory fake of the tests all speak these types, and the
mapping of statuses to exceptions is written here once (callers write ``except NotFound``).
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from levrt.errors import ClusterError

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "ExecResult",
    "ExecStream",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "Request",
    "Response",
    "ServiceUnavailable",
    "Stream",
    "TooManyRequests",
    "Transport",
    "Unauthorized",
    "api_error",
    "retry_after_seconds",
]


class ApiError(ClusterError):
    """A Kubernetes API call answered with an error status; subclasses name the usual ones."""

    def __init__(self, status: int, body: Mapping[str, Any] | str, *, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message", "") if isinstance(body, Mapping) else str(body)[:500]
        self.reason: str = body.get("reason", "") if isinstance(body, Mapping) else ""
        super().__init__(f"{method} {path} failed with HTTP {status}: {message}")


class BadRequest(ApiError):
    """400: the request is malformed."""


class Unauthorized(ApiError):
    """401: the credentials were not accepted."""


class Forbidden(ApiError):
    """403: RBAC (or an admission policy) refused the operation."""


class NotFound(ApiError):
    """404: no such object (or namespace)."""


class Conflict(ApiError):
    """409: the object exists already, or was changed by someone else."""


class Gone(ApiError):
    """410: a watch's resourceVersion is too old; list again."""


class Invalid(ApiError):
    """422: the object failed validation."""


class TooManyRequests(ApiError):
    """429: the apiserver shed the request (API Priority and Fairness, max-in-flight); the client
    retried it as long as it was allowed to (``levrt._clients.kube.Limits``) and gave up."""


class ServiceUnavailable(ApiError):
    """503: the apiserver (or an aggregated API behind it) cannot serve now."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid,
    429: TooManyRequests, 503: ServiceUnavailable,
}


def api_error(status: int, body: Mapping[str, Any] | str, *, method: str, path: str) -> ApiError:
    """The exception for an error answer: the class of its status, or ``ApiError``."""
    return _BY_STATUS.get(status, ApiError)(status, body, method=method, path=path)


@dataclasses.dataclass(frozen=True)
class Request:
    """One API call as the transport sends it."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str | None = None


@dataclasses.dataclass(frozen=True)
class Response:
    """What came back: the status and the body (decoded JSON, or text)."""

    status: int
    body: Any
    retry_after: float | None = None
    """Seconds the server asked the client to wait before trying again (the ``Retry-After`` header
    of a 429 or 503, read with ``retry_after_seconds``); None when it did not say."""


def retry_after_seconds(header: str | None, body: Any = None) -> float | None:
    """The delay a ``Retry-After`` header asks for: delta-seconds (what the apiserver sends) or an
    HTTP date; else the ``details.retryAfterSeconds`` of a ``Status`` body; else None."""
    if header:
        text = header.strip()
        try:
            return max(0.0, float(text))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
            return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
    if isinstance(body, Mapping):
        details = body.get("details")
        seconds = details.get("retryAfterSeconds") if isinstance(details, Mapping) else None
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            return float(seconds)
    return None


class Stream(Protocol):
    """An open streaming answer (a watch, a followed log)."""

    status: int

    async def read(self) -> Any:
        """The whole body, decoded (for error answers)."""
        ...

    def lines(self) -> AsyncIterator[bytes]: ...


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """What a command run with the exec API printed and how it ended."""

    exit_code: int
    stdout: bytes
    stderr: bytes


# Channels of the exec websocket (v4/v5.channel.k8s.io): the first byte of every binary message.
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
CLOSE = 255  # v5 only: b"\xff" + channel closes that channel (EOF on the command's stdin)
V5_PROTOCOL = "v5.channel.k8s.io"


class ExecStream(Protocol):
    """An interactive exec: bytes to the command's stdin, its output as it comes, then its exit code."""

    @property
    def can_close_stdin(self) -> bool:
        """Whether EOF can be sent to the command's stdin (the v5 subprotocol; v4 cannot)."""
        ...

    async def send(self, data: bytes) -> None:
        """Write ``data`` to the command's stdin (dropped once the command ended)."""
        ...

    async def close_stdin(self) -> None:
        """EOF on the command's stdin, when ``can_close_stdin``; otherwise nothing."""
        ...

    async def receive(self) -> tuple[int, bytes] | None:
        """The next ``(STDOUT or STDERR, bytes)`` the command wrote; ``None`` once it ended."""
        ...

    @property
    def exit_code(self) -> int | None:
        """After ``receive`` returned ``None``: the command's exit code, or ``None`` if the
        connection ended without one (the container stopped, the network broke)."""
        ...


class Transport(Protocol):
    """How requests reach a cluster. ``levrt._clients.http.HttpTransport`` is the real one."""

    @property
    def host(self) -> str: ...

    async def send(self, request: Request, *, timeout: float) -> Response: ...

    def stream(self, request: Request, *, timeout: float | None) -> AbstractAsyncContextManager[Stream]: ...

    async def exec(self, request: Request, *, timeout: float) -> ExecResult:
        """Run the exec ``request`` (a websocket); an error answer to the upgrade raises ``api_error``."""
        ...

    def exec_stream(self, request: Request, *, timeout: float) -> AbstractAsyncContextManager[ExecStream]:
        """Open the exec ``request`` with stdin kept open (``levrt attach``); ``timeout`` bounds the
        upgrade only. An error answer to the upgrade raises ``api_error``."""
        ...

    async def close(self) -> None: ...
