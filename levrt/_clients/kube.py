"""The Kubernetes client: plain JSON requests through a small transport seam.

Why raw JSON: levrt builds its objects as plain dicts (``levrt._shapes``) and reads Pods as plain
dicts; turning every watch event into generated model objects costs milliseconds per event for
nothing. Why a seam: the network sits behind ``Transport`` (four methods). ``levrt._clients.http``
is the real one; tests hand ``Kube`` an in-memory fake (``use_transport``), so the watch, submit
and every CLI command run in milliseconds without a server. Error statuses raise the classes of
``levrt._clients.api`` (``except NotFound``).

Every one-shot request (``request``, ``exec``) passes a client-side rate limit first (``Limiter``,
``Limits``): a fan-out of thousands of tasks must not flood a shared apiserver, and cleanup must
keep up with dispatch, so deleting outranks creating. A 429 (and a 503 that says ``Retry-After``)
is retried after the delay the server asked for, a bounded number of times. Streams (watches,
followed logs, interactive exec) are long-lived, one per job or per person, and are not limited.

Nothing here knows about tasks, jobs or documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import enum
import heapq
import itertools
import json
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, TextIO

from levrt._clients import http
from levrt._clients.api import ExecResult, ExecStream, Request, Response, Transport, api_error
from levrt._shapes.names import VERSION_PATH
from levrt.errors import ClusterError, SettingsError

__all__ = ["MIN_MINOR", "Kube", "Limiter", "Limits", "Priority", "ServerVersion", "use_transport"]

log = logging.getLogger("lev")

# Native sidecar containers (restartPolicy: Always on init containers) arrived in 1.29.
MIN_MINOR = 29


_transport_factory: contextvars.ContextVar[Callable[[], Transport] | None] = contextvars.ContextVar(
    "levrt_transport_factory", default=None
)


@contextlib.contextmanager
def use_transport(factory: Callable[[], Transport]) -> Iterator[None]:
    """Within this context ``Kube.connect`` uses ``factory()`` instead of kubeconfig and the network."""
    token = _transport_factory.set(factory)
    try:
        yield
    finally:
        _transport_factory.reset(token)


# -- the client-side rate limit ---------------------------------------------------------------------

DEFAULT_QPS = 50.0
"""Sustained requests per second. client-go's 5 would make a fan-out of 500 tasks (4 requests each)
take 400 s of waiting alone; 50 is what kube-scheduler and kubectl allow themselves, well within
what one apiserver serves (its default max-in-flight is 400 + 200 mutating), and API Priority and
Fairness still sheds load past it with a 429, which is honoured."""
DEFAULT_BURST = 100
"""Requests allowed at once after a quiet spell: 25 tasks submit without waiting at all."""


class Priority(enum.IntEnum):
    """Which waiting request gets the next token: lower first, then first come first served."""

    CLEANUP = 0
    """Deleting what a finished task left: cleanup keeps up with dispatch, nothing piles up."""
    NORMAL = 1
    """Everything else, including the later steps of a submit already under way."""
    NEW_WORK = 2
    """Starting something new (a task's Pod): waits while work already started can proceed."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """The client-side rate limit and the retries of shed requests.

    ``qps <= 0`` turns the limit off (429s are still honoured). ``LEVRT_KUBE_QPS`` and
    ``LEVRT_KUBE_BURST`` set ``qps`` and ``burst`` for every client ``Kube.connect`` opens.
    """

    qps: float = DEFAULT_QPS
    burst: int = DEFAULT_BURST
    retries: int = 8
    """How many times a 429 (or a 503 with ``Retry-After``) is retried before it raises."""
    max_delay: float = 30.0
    """The longest single wait a ``Retry-After`` may impose; longer ones are cut to this."""

    def __post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise SettingsError(f"burst={self.burst!r}; use a whole number >= 1 (LEVRT_KUBE_BURST).")
        if isinstance(self.qps, bool) or not isinstance(self.qps, int | float) or self.qps != self.qps:
            raise SettingsError(f"qps={self.qps!r}; use a number of requests per second, 0 for no limit "
                                "(LEVRT_KUBE_QPS).")
        if self.retries < 0 or self.max_delay < 0:
            raise SettingsError(f"retries={self.retries!r}, max_delay={self.max_delay!r}; use numbers >= 0.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        for var, field, kind in (("LEVRT_KUBE_QPS", "qps", float), ("LEVRT_KUBE_BURST", "burst", int)):
            text = env.get(var, "").strip()
            if text:
                try:
                    kw[field] = kind(text)
                except ValueError:
                    raise SettingsError(
                        f"{var}={text!r} is not a {'number' if kind is float else 'whole number'} "
                        "(requests per second for LEVRT_KUBE_QPS, 0 for no limit; requests for LEVRT_KUBE_BURST)."
                    ) from None
        return cls(**kw)


class Limiter:
    """A token bucket with priorities: ``burst`` tokens, refilled at ``qps`` per second; a request
    takes one. Waiting requests are served by ``Priority`` then in arrival order, so a burst of new
    tasks cannot starve the deletes and the half-done submits queued behind it. ``hold(seconds)``
    stops every request for a while (the server said ``Retry-After``). ``clock`` and ``sleep`` are
    injectable so the timing is tested without waiting."""

    def __init__(
        self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.qps = float(qps)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._held_until = float("-inf")
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self.granted = 0
        """Requests let through so far."""
        self.delayed = 0
        """Of those, how many had to wait."""
        self.waited = 0.0
        """Seconds spent waiting, summed over the requests that waited."""

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    @property
    def waiting(self) -> int:
        return sum(1 for *_, future in self._queue if not future.done())

    def hold(self, seconds: float) -> None:
        """Let no request through for ``seconds`` from now (extends, never shortens, a hold)."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def _take(self) -> float:
        """Take a token if one is free now (0.0), else how long until one may be."""
        now = self._clock()
        if now < self._held_until:
            return self._held_until - now
        if self.unlimited:
            return 0.0
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
        if self._tokens >= 1.0 - 1e-9:  # not a rounding error's worth short of a token
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.qps

    async def acquire(self, priority: int = Priority.NORMAL) -> None:
        """Wait for a token (none when the limit is off and no hold is on)."""
        if not self._queue and self._take() == 0.0:
            self.granted += 1
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._queue, (int(priority), next(self._arrival), future))
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._serve(), name="levrt-kube-limiter")
        began = self._clock()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted as we were cancelled: give it back
                self._tokens = min(float(self.burst), self._tokens + 1.0)
            raise
        self.delayed += 1
        self.waited += self._clock() - began

    async def _serve(self) -> None:
        """Hand out tokens to the queue as they become free; ends when nobody waits."""
        while self._queue:
            if self._queue[0][2].done():  # its request was cancelled
                heapq.heappop(self._queue)
                continue
            delay = self._take()
            if delay == 0.0:
                heapq.heappop(self._queue)[2].set_result(None)
                self.granted += 1
                continue
            await self._sleep(delay)

    def close(self) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        for *_, future in self._queue:
            if not future.done():
                future.set_exception(ClusterError("This Kubernetes connection was closed."))
        self._queue.clear()


def _retry_delay(response: Response, attempt: int) -> float | None:
    """How long to wait before sending again, or None: do not retry this answer. A 429 means the
    server shed the request unprocessed (APF, max-in-flight), so retrying even a POST is safe; a
    503 only when the server said ``Retry-After`` (shutting down, not ready yet)."""
    if response.status == 429:
        return response.retry_after if response.retry_after is not None else min(0.5 * 2 ** attempt, 8.0)
    if response.status == 503 and response.retry_after is not None:
        return response.retry_after
    return None


@dataclasses.dataclass(frozen=True)
class ServerVersion:
    major: int
    minor: int
    git_version: str

    @property
    def supported(self) -> bool:
        return (self.major, self.minor) >= (1, MIN_MINOR)

    def require_supported(self) -> None:
        if not self.supported:
            raise ClusterError(
                f"The cluster runs Kubernetes {self.git_version}; levrt needs 1.{MIN_MINOR} or newer "
                "(native sidecar containers). Upgrade the cluster, or use kind with a recent node image."
            )


class Kube:
    """An open connection to one cluster: ``async with await Kube.connect(...) as kube``."""

    def __init__(self, transport: Transport, *, limits: Limits | None = None) -> None:
        self._transport = transport
        self._closed = False
        self.limits = Limits.from_env() if limits is None else limits
        """The rate limit and retries of this client (default: ``Limits.from_env()``)."""
        self.limiter = Limiter(self.limits.qps, self.limits.burst)
        self.retried = 0
        """Requests sent again after a 429 or 503 asked the client to wait."""

    @classmethod
    async def connect(
        cls, *, kubeconfig: str | None = None, context: str | None = None, limits: Limits | None = None
    ) -> Kube:
        """Credentials from ``kubeconfig`` (or $KUBECONFIG, ~/.kube/config) or in-cluster; the rate
        limit from ``limits`` or ``LEVRT_KUBE_QPS``/``LEVRT_KUBE_BURST`` (``Limits.from_env()``)."""
        limits = Limits.from_env() if limits is None else limits  # a bad value fails before connecting
        factory = _transport_factory.get()
        if factory is not None:
            return cls(factory(), limits=limits)
        return cls(await http.HttpTransport.connect(kubeconfig=kubeconfig, context=context), limits=limits)

    @property
    def host(self) -> str:
        return self._transport.host

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.limiter.close()
            await self._transport.close()

    def _request(
        self, method: str, path: str, query: Mapping[str, Any] | None, body: Any = None,
        content_type: str | None = None,
    ) -> Request:
        if self._closed:
            raise ClusterError(f"{method} {path}: this Kubernetes connection was closed.")
        pairs = tuple((k, _query_value(v)) for k, v in (query or {}).items() if v is not None)
        data = None if body is None else json.dumps(body).encode()
        return Request(method, path, pairs, data, content_type if data is not None else None)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        priority: int = Priority.NORMAL,
    ) -> Any:
        """Send one request and return the decoded body; an error status raises its ``ApiError``.

        The request waits for the rate limit first (``priority`` orders the waiters); a 429, or a
        503 with ``Retry-After``, is sent again after the delay asked for (all requests of this
        client pause meanwhile), at most ``limits.retries`` times."""
        request = self._request(method, path, query, body, content_type)
        waited = 0.0
        for attempt in itertools.count():
            await self.limiter.acquire(priority)
            if self._closed:
                raise ClusterError(f"{method} {path}: this Kubernetes connection was closed.")
            response = await self._transport.send(request, timeout=timeout)
            if response.status < 400:
                return response.body
            delay = _retry_delay(response, attempt) if attempt < self.limits.retries else None
            if delay is None:
                error = api_error(response.status, response.body, method=method, path=path)
                if attempt:
                    error.add_note(f"levrt sent it {attempt + 1} times, waiting {waited:.1f}s in all as the "
                                   "apiserver asked (Retry-After); LEVRT_KUBE_QPS lowers the request rate.")
                raise error
            delay = min(delay, self.limits.max_delay)
            log.debug("%s %s: HTTP %d, retrying in %.2fs", method, path, response.status, delay)
            self.retried += 1
            waited += delay
            self.limiter.hold(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def lines(
        self, path: str, *, query: Mapping[str, Any] | None = None, timeout: float | None = None,
        opened: Callable[[], None] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The lines of a streaming GET (watch, log follow). Close it with ``contextlib.aclosing``.

        ``opened`` is called once the server accepted the stream: a quiet watch sends no line for
        minutes, and its reader must still know that the apiserver answered."""
        async with self._transport.stream(self._request("GET", path, query), timeout=timeout) as stream:
            if stream.status >= 400:
                raise api_error(stream.status, await stream.read(), method="GET", path=path)
            if opened is not None:
                opened()
            async for line in stream.lines():
                yield line

    async def follow(self, path: str, *, query: Mapping[str, Any] | None = None, out: TextIO) -> None:
        """Copy a streaming GET (a Pod's ``log?follow=true``) to the text stream ``out`` until it ends."""
        async with contextlib.aclosing(self.lines(path, query={**(query or {}), "follow": True})) as lines:
            async for line in lines:
                out.write(line.decode(errors="replace"))
                out.flush()

    async def exec(
        self, path: str, *, container: str, command: list[str], timeout: float = 30.0
    ) -> ExecResult:
        """Run ``command`` in a running container of the Pod whose exec path is ``path``."""
        query = [("container", container), ("stdout", "true"), ("stderr", "true")]
        query += [("command", part) for part in command]
        if self._closed:
            raise ClusterError(f"exec {path}: this Kubernetes connection was closed.")
        await self.limiter.acquire()
        return await self._transport.exec(Request("GET", path, tuple(query)), timeout=timeout)

    @contextlib.asynccontextmanager
    async def exec_stream(
        self, path: str, *, container: str, command: list[str], timeout: float = 30.0
    ) -> AsyncIterator[ExecStream]:
        """Run ``command`` in a running container with its stdin, stdout and stderr connected
        (no tty), for as long as it runs; ``timeout`` bounds only the connection's opening."""
        query = [("container", container), ("stdin", "true"), ("stdout", "true"), ("stderr", "true")]
        query += [("command", part) for part in command]
        if self._closed:
            raise ClusterError(f"exec {path}: this Kubernetes connection was closed.")
        async with self._transport.exec_stream(Request("GET", path, tuple(query)), timeout=timeout) as stream:
            yield stream

    async def server_version(self) -> ServerVersion:
        found = await self.request("GET", VERSION_PATH)
        minor = int("".join(ch for ch in str(found.get("minor", "0")) if ch.isdigit()) or 0)
        major = int("".join(ch for ch in str(found.get("major", "0")) if ch.isdigit()) or 0)
        return ServerVersion(major, minor, str(found.get("gitVersion", f"v{major}.{minor}")))


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
