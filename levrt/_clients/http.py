"""The real transport: HTTPS and websockets to the apiserver, with kubeconfig or in-cluster credentials.

Why its own module: it is the one place that imports kubernetes_asyncio (to read kubeconfig or the
service account: certificates, tokens, exec plugins) and aiohttp (the connection pool, the exec
websocket). Both are imported inside the functions that use them: ``import levrt`` must work in
task containers, which ship neither.

The exec websocket is written by hand because neither library's client does what levrt needs:
the v5/v4 channel subprotocols, stdout and stderr kept apart, and the command's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from levrt._clients.api import (
    CLOSE,
    STATUS,
    STDERR,
    STDIN,
    STDOUT,
    V5_PROTOCOL,
    ExecResult,
    Request,
    Response,
    api_error,
    retry_after_seconds,
)
from levrt.errors import ClusterError

__all__ = ["HttpTransport"]

# Connections kept open to the apiserver: a fan-out of many tasks submits and execs in parallel.
POOL_SIZE = 100


class HttpTransport:
    """Requests to one apiserver over one aiohttp session. Create with ``await connect(...)``."""

    def __init__(self, configuration: Any, session: Any, aiohttp: Any) -> None:
        self._config = configuration
        self._session = session
        self._aiohttp = aiohttp  # the module, loaded once by connect()

    @classmethod
    async def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> HttpTransport:
        # Heavy and absent from task containers: loaded only when a client connects.
        import aiohttp
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG")
        in_cluster = bool(
            not path
            and os.environ.get("KUBERNETES_SERVICE_HOST")
            and not os.path.exists(os.path.expanduser("~/.kube/config"))
        )
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        except Exception as exc:
            where = "the in-cluster service account" if in_cluster else (path or "~/.kube/config")
            raise ClusterError(
                f"Could not load Kubernetes credentials from {where}: {exc}. "
                "Set KUBECONFIG to a kubeconfig file of the cluster levrt should use."
            ) from exc
        connector = aiohttp.TCPConnector(ssl=_ssl_context(configuration), limit=POOL_SIZE)
        return cls(configuration, aiohttp.ClientSession(connector=connector), aiohttp)

    @property
    def host(self) -> str:
        return str(self._config.host)

    async def close(self) -> None:
        await self._session.close()

    async def _headers(self, request: Request, *, accept_json: bool = True) -> dict[str, str]:
        headers = {"Accept": "application/json"} if accept_json else {}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        auth = await self._config.auth_settings()  # refreshes expiring tokens (exec plugins)
        for setting in auth.values():
            if setting["in"] == "header" and setting["value"]:
                headers[setting["key"]] = setting["value"]
        return headers

    def _url(self, request: Request, *, scheme_map: tuple[str, str] | None = None) -> str:
        url = self.host.rstrip("/") + request.path
        if scheme_map is not None:
            url = url.replace(*scheme_map, 1)
        return url + ("?" + urlencode(request.query) if request.query else "")

    async def send(self, request: Request, *, timeout: float) -> Response:
        aiohttp = self._aiohttp
        try:
            async with self._session.request(
                request.method, self._url(request), data=request.body, headers=await self._headers(request),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                body = _decode(await resp.read(), resp.content_type)
                if resp.status in (429, 503):  # the server may ask to be left alone for a while
                    return Response(resp.status, body, retry_after_seconds(resp.headers.get("Retry-After"), body))
                return Response(resp.status, body)
        except aiohttp.ClientError as exc:
            raise unreachable(self.host, exc) from exc

    @contextlib.asynccontextmanager
    async def stream(self, request: Request, *, timeout: float | None) -> AsyncIterator[_HttpStream]:
        aiohttp = self._aiohttp
        try:
            resp = await self._session.get(
                self._url(request), headers=await self._headers(request),
                timeout=aiohttp.ClientTimeout(total=timeout, sock_read=timeout),
            )
        except aiohttp.ClientError as exc:
            raise unreachable(self.host, exc) from exc
        try:
            yield _HttpStream(resp)
        finally:
            resp.release()

    async def exec(self, request: Request, *, timeout: float) -> ExecResult:
        aiohttp = self._aiohttp
        url = self._url(request, scheme_map=("http", "ws"))  # https → wss, http → ws
        # The apiserver answers 406 to a v4 upgrade that also asks for JSON: negotiate the
        # subprotocol only (v5 first, as kubectl does; v4 for apiservers before 1.30).
        headers = await self._headers(request, accept_json=False)
        stdout, stderr, status = bytearray(), bytearray(), b""
        try:
            async with self._session.ws_connect(
                url, headers=headers, protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"),
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
            ) as ws:
                async with asyncio.timeout(timeout):
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                            continue
                        channel, payload = msg.data[0], msg.data[1:]
                        if channel == 1:
                            stdout += payload
                        elif channel == 2:
                            stderr += payload
                        elif channel == 3:
                            status += payload
        except aiohttp.WSServerHandshakeError as exc:
            raise api_error(exc.status, exc.message, method="EXEC", path=request.path) from exc
        except aiohttp.ClientError as exc:
            raise unreachable(self.host, exc) from exc
        return ExecResult(exec_exit_code(status), bytes(stdout), bytes(stderr))

    @contextlib.asynccontextmanager
    async def exec_stream(self, request: Request, *, timeout: float) -> AsyncIterator[_HttpExecStream]:
        """The exec websocket kept open both ways (``levrt attach``): no total timeout, since a
        debugger session lasts as long as the person at it; ``timeout`` bounds the upgrade."""
        aiohttp = self._aiohttp
        url = self._url(request, scheme_map=("http", "ws"))
        headers = await self._headers(request, accept_json=False)
        try:
            async with asyncio.timeout(timeout):
                ws = await self._session.ws_connect(
                    url, headers=headers, protocols=(V5_PROTOCOL, "v4.channel.k8s.io"),
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise api_error(exc.status, exc.message, method="EXEC", path=request.path) from exc
        except aiohttp.ClientError as exc:
            raise unreachable(self.host, exc) from exc
        try:
            yield _HttpExecStream(ws, aiohttp)
        finally:
            await ws.close()


class _HttpStream:
    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self.status: int = resp.status

    async def read(self) -> Any:
        return _decode(await self._resp.read(), self._resp.content_type)

    async def lines(self) -> AsyncIterator[bytes]:
        async for line in self._resp.content:
            yield line


class _HttpExecStream:
    """One open exec websocket: channel 0 in; channels 1 and 2 out; channel 3 the final status."""

    def __init__(self, ws: Any, aiohttp: Any) -> None:
        self._ws = ws
        self._aiohttp = aiohttp
        self._status: bytearray | None = None
        self._ended = False

    @property
    def can_close_stdin(self) -> bool:
        return bool(self._ws.protocol == V5_PROTOCOL)

    async def send(self, data: bytes) -> None:
        if data and not self._ended:
            await self._send(bytes([STDIN]) + data)

    async def close_stdin(self) -> None:
        if self.can_close_stdin and not self._ended:
            await self._send(bytes([CLOSE, STDIN]))

    async def _send(self, message: bytes) -> None:
        try:
            await self._ws.send_bytes(message)
        except (self._aiohttp.ClientError, ConnectionError):
            pass  # the command ended or the connection broke: receive() reports how

    async def receive(self) -> tuple[int, bytes] | None:
        while not self._ended:
            try:
                msg = await self._ws.receive()
            except (self._aiohttp.ClientError, ConnectionError):
                msg = None
            if msg is None or msg.type in (self._aiohttp.WSMsgType.CLOSE, self._aiohttp.WSMsgType.CLOSING,
                                           self._aiohttp.WSMsgType.CLOSED, self._aiohttp.WSMsgType.ERROR):
                self._ended = True
                break
            if msg.type != self._aiohttp.WSMsgType.BINARY or len(msg.data) < 2:
                continue  # text frames are not part of the protocol; empty ones open each channel
            channel, payload = msg.data[0], bytes(msg.data[1:])
            if channel == STATUS:
                self._status = (self._status or bytearray()) + payload
            elif channel in (STDOUT, STDERR):
                return channel, payload
        return None

    @property
    def exit_code(self) -> int | None:
        return None if self._status is None else exec_exit_code(bytes(self._status))


def unreachable(host: str, exc: Exception) -> ClusterError:
    return ClusterError(
        f"Could not reach the Kubernetes API at {host} ({exc}). Is the cluster running and KUBECONFIG pointing at it?"
    )


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    """TLS as the kubeconfig (or the service account) describes it."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type == "application/json":
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            pass
    return raw.decode(errors="replace")


def exec_exit_code(status: bytes) -> int:
    """The exit code in the exec API's status channel (empty: the command succeeded)."""
    if not status:
        return 0
    try:
        decoded = json.loads(status)
    except ValueError:
        return -1
    if decoded.get("status") == "Success":
        return 0
    for cause in decoded.get("details", {}).get("causes", []):
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message", -1))
    return -1
