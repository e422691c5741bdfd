"""The Kubernetes client: plain JSON requests through a small transport seam.

Why raw JSON: levrt builds its objects as plain dicts (``levrt._shapes``) and reads Pods as plain
dicts; turning every watch event into generated model objects costs milliseconds per event for
nothing. Why a seam: the network sits behind ``Transport`` (four methods). ``levrt._clients.http``
is the real one; tests hand ``Kube`` an in-memory fake (``use_transport``), so the watch, submit
and every CLI command run in milliseconds without a server. Error statuses raise the classes of
``levrt._clients.api`` (``except NotFound``).

Nothing here knows about tasks, jobs or documents.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TextIO

from levrt._clients import http
from levrt._clients.api import ExecResult, ExecStream, Request, Transport, api_error
from levrt._shapes.names import VERSION_PATH
from levrt.errors import ClusterError

__all__ = ["MIN_MINOR", "Kube", "ServerVersion", "use_transport"]

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

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._closed = False

    @classmethod
    async def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """Credentials from ``kubeconfig`` (or $KUBECONFIG, ~/.kube/config) or in-cluster."""
        factory = _transport_factory.get()
        if factory is not None:
            return cls(factory())
        return cls(await http.HttpTransport.connect(kubeconfig=kubeconfig, context=context))

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
    ) -> Any:
        """Send one request and return the decoded body; an error status raises its ``ApiError``."""
        response = await self._transport.send(self._request(method, path, query, body, content_type), timeout=timeout)
        if response.status >= 400:
            raise api_error(response.status, response.body, method=method, path=path)
        return response.body

    async def lines(
        self, path: str, *, query: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The lines of a streaming GET (watch, log follow). Close it with ``contextlib.aclosing``."""
        async with self._transport.stream(self._request("GET", path, query), timeout=timeout) as stream:
            if stream.status >= 400:
                raise api_error(stream.status, await stream.read(), method="GET", path=path)
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
