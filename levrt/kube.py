"""The Kubernetes client layer: raw JSON over one shared connection, one Pod watch per namespace.

Why raw JSON: levrt builds its objects as plain dicts (``levrt.build``) and reads Pods as plain
dicts; turning every watch event into generated model objects costs milliseconds per event
for nothing. kubernetes_asyncio is still used for what it does well: reading kubeconfig or the
in-cluster service account (certificates, tokens, exec plugins) and holding the aiohttp session.

Why one watch: a job may run hundreds of tasks; one watch per namespace, shared by every task,
keeps the apiserver load flat. The watch resumes after disconnects from the last
resourceVersion and re-lists on ``410 Gone`` so no change is lost.

Nothing here knows about tasks or documents; ``levrt.engine`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from levrt.errors import ClusterError

__all__ = ["ApiError", "ExecResult", "Kube", "PodWatch"]

log = logging.getLogger("lev")

Pod = dict[str, Any]


class ApiError(ClusterError):
    """A Kubernetes API call answered with an error status."""

    def __init__(self, status: int, body: Mapping[str, Any] | str, *, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message", "") if isinstance(body, Mapping) else str(body)[:500]
        self.reason = body.get("reason", "") if isinstance(body, Mapping) else ""
        super().__init__(f"{method} {path} failed with HTTP {status}: {message}")


class ExecResult:
    """What a command run with the exec API printed and how it ended."""

    def __init__(self, exit_code: int, stdout: bytes, stderr: bytes) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"ExecResult(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


class Kube:
    """An open connection to one cluster. Use ``async with await Kube.connect(...)``."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self._config = api_client.configuration
        self._closed = False

    @classmethod
    async def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """Load credentials from ``kubeconfig`` (or $KUBECONFIG, ~/.kube/config) or in-cluster."""
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG")
        in_cluster = not path and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.path.exists(
            os.path.expanduser("~/.kube/config")
        )
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)
            else:
                await config.load_kube_config(
                    config_file=path, context=context, client_configuration=configuration
                )
        except Exception as exc:
            where = "the in-cluster service account" if in_cluster else (path or "~/.kube/config")
            raise ClusterError(
                f"Could not load Kubernetes credentials from {where}: {exc}. "
                "Set KUBECONFIG to a kubeconfig file of the cluster levrt should use."
            ) from exc
        return cls(client.ApiClient(configuration))

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._api_client.close()

    @property
    def _session(self) -> Any:
        return self._api_client.rest_client.pool_manager

    async def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        auth = await self._config.auth_settings()
        for setting in auth.values():
            if setting["in"] == "header" and setting["value"]:
                headers[setting["key"]] = setting["value"]
        return headers

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        url = self._config.host.rstrip("/") + path
        if query:
            url += "?" + urlencode({k: _query_value(v) for k, v in query.items() if v is not None})
        return url

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
        """Send one request and return the decoded JSON body; raise ``ApiError`` on failure."""
        import aiohttp

        data = None if body is None else json.dumps(body).encode()
        headers = await self._headers(content_type if data is not None else None)
        try:
            async with self._session.request(
                method, self._url(path, query), data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                if resp.content_type == "application/json":
                    decoded: Any = json.loads(raw) if raw else {}
                else:
                    decoded = raw.decode(errors="replace")
                if resp.status >= 400:
                    raise ApiError(resp.status, decoded, method=method, path=path)
                return decoded
        except aiohttp.ClientError as exc:
            raise ClusterError(
                f"Could not reach the Kubernetes API at {self._config.host} ({exc}). "
                "Is the cluster running and KUBECONFIG pointing at it?"
            ) from exc

    async def stream_lines(
        self, path: str, *, query: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Open a streaming GET (watch, log follow); the caller iterates ``resp.content``."""
        import aiohttp

        resp = await self._session.get(
            self._url(path, query), headers=await self._headers(),
            timeout=aiohttp.ClientTimeout(total=timeout, sock_read=timeout),
        )
        if resp.status >= 400:
            raw = await resp.read()
            resp.release()
            try:
                decoded: Any = json.loads(raw)
            except ValueError:
                decoded = raw.decode(errors="replace")
            raise ApiError(resp.status, decoded, method="GET", path=path)
        return resp

    async def follow(self, path: str, *, query: Mapping[str, Any] | None = None, out: Any) -> None:
        """Copy a streaming GET (a Pod's ``log?follow=true``) to the text stream ``out`` until it ends."""
        resp = await self.stream_lines(path, query={**(query or {}), "follow": True})
        try:
            async for line in resp.content:
                out.write(line.decode(errors="replace"))
                out.flush()
        finally:
            resp.release()

    async def exec(
        self, namespace: str, pod: str, *, container: str, command: list[str], timeout: float = 30.0
    ) -> ExecResult:
        """Run ``command`` in a running container through the exec API (websocket, v4 channels)."""
        import aiohttp

        query = [("container", container), ("stdout", "true"), ("stderr", "true")]
        query += [("command", part) for part in command]
        url = self._config.host.rstrip("/") + f"/api/v1/namespaces/{namespace}/pods/{pod}/exec?"
        url = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + urlencode(query)
        headers = await self._headers()
        # The apiserver answers 406 to a v4 upgrade that also asks for JSON: negotiate the
        # subprotocol only (v5 first, as kubectl does; v4 for apiservers before 1.30).
        headers.pop("Accept", None)
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
            raise ApiError(exc.status, exc.message, method="EXEC", path=f"{pod}/{container}") from exc
        return ExecResult(_exec_exit_code(status), bytes(stdout), bytes(stderr))


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _exec_exit_code(status: bytes) -> int:
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


class PodWatch:
    """The latest state of every levrt Pod in one namespace, kept current by one watch.

    ``wait(name, predicate)`` returns the first observed Pod for which ``predicate`` holds.
    A Pod that disappears is reported once with ``metadata.deletionTimestamp`` and the key
    ``"levrt/deleted": True`` so waiters can stop.
    """

    def __init__(self, kube: Kube, *, namespace: str, selector: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self.selector = selector
        self._pods: dict[str, Pod] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._resource_version = ""
        self._runner: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self.relists = 0
        """How many times the watch re-listed (after 410 Gone); for diagnostics and tests."""

    async def start(self) -> None:
        await self._relist()
        await self.start_resumed()

    async def start_resumed(self) -> None:
        """Watch again from the last resourceVersion seen (after ``close``), without re-listing."""
        self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"levrt-watch-{self.namespace}")

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    def get(self, name: str) -> Pod | None:
        return self._pods.get(name)

    def pods(self) -> list[Pod]:
        return list(self._pods.values())

    async def wait(self, name: str, predicate: Callable[[Pod], bool], *, timeout: float | None = None) -> Pod:
        """Wait until the Pod ``name`` satisfies ``predicate``; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                if self._failure is not None:
                    raise ClusterError(f"The Pod watch on namespace {self.namespace} stopped: {self._failure}")
                event = self._changed.setdefault(name, asyncio.Event())
                pod = self._pods.get(name)
                if pod is not None and predicate(pod):
                    return pod
                await event.wait()

    def forget(self, name: str) -> None:
        """Drop what is known of a Pod once nobody will ask about it again."""
        self._pods.pop(name, None)
        self._changed.pop(name, None)

    def _update(self, pod: Pod) -> None:
        name = pod["metadata"]["name"]
        self._pods[name] = pod
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    def _mark_deleted(self, pod: Pod) -> None:
        pod = dict(pod)
        pod["levrt/deleted"] = True
        self._update(pod)

    async def _relist(self) -> None:
        listing = await self._kube.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/pods", query={"labelSelector": self.selector}
        )
        seen = set()
        for pod in listing.get("items", []):
            seen.add(pod["metadata"]["name"])
            self._update(pod)
        for name, pod in list(self._pods.items()):
            if name not in seen and not pod.get("levrt/deleted"):
                self._mark_deleted(pod)
        self._resource_version = listing["metadata"]["resourceVersion"]
        self.relists += 1

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._watch_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status == 410:
                    log.debug("pod watch: resourceVersion expired, re-listing")
                    await self._relist_quietly()
                    continue
                log.warning("pod watch on %s failed (%s); retrying", self.namespace, exc)
            except Exception as exc:
                log.debug("pod watch on %s disconnected (%r); resuming", self.namespace, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _relist_quietly(self) -> None:
        try:
            await self._relist()
        except Exception as exc:
            log.warning("pod watch on %s could not re-list (%s); retrying", self.namespace, exc)
            await asyncio.sleep(1.0)

    async def _watch_once(self) -> None:
        resp = await self._kube.stream_lines(
            f"/api/v1/namespaces/{self.namespace}/pods",
            query={
                "labelSelector": self.selector,
                "watch": True,
                "resourceVersion": self._resource_version,
                "allowWatchBookmarks": True,
                "timeoutSeconds": 300,
            },
            timeout=330,
        )
        try:
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object", {})
                if kind == "ERROR":
                    code = obj.get("code", 500)
                    raise ApiError(code, obj, method="WATCH", path=f"pods in {self.namespace}")
                rv = obj.get("metadata", {}).get("resourceVersion")
                if rv:
                    self._resource_version = rv
                if kind in ("ADDED", "MODIFIED"):
                    self._update(obj)
                elif kind == "DELETED":
                    self._mark_deleted(obj)
        finally:
            resp.release()

