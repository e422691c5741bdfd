"""The real transport's interactive exec, against a websocket server on this machine.

Why: the fake apiserver stands in for the transport in every other ``levrt attach`` test; this one
checks the bytes ``HttpTransport.exec_stream`` puts on the wire, as the apiserver reads them: the
subprotocol offered (v5 first), stdin on channel 0, EOF as the v5 close message ``255 0``, output
on channels 1 and 2, the exit code from the status on channel 3, and v4 without EOF.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from levrt._clients.api import Forbidden, Request
from levrt._clients.http import HttpTransport
from tests.helpers import Config

Handler = Callable[[web.WebSocketResponse], Awaitable[None]]


@pytest.fixture
async def server() -> AsyncIterator[dict[str, Any]]:
    """An apiserver's exec endpoint: ``state["handler"]`` plays the command, ``state["seen"]`` the request."""
    state: dict[str, Any] = {}

    async def exec_endpoint(request: web.Request) -> web.StreamResponse:
        state["seen"] = request
        if "refuse" in state:
            return web.json_response({"kind": "Status", "message": "forbidden"}, status=403)
        ws = web.WebSocketResponse(protocols=state.get("protocols", ("v5.channel.k8s.io", "v4.channel.k8s.io")))
        await ws.prepare(request)
        await state["handler"](ws)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/levrt/pods/p/exec", exec_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession()
    state["transport"] = HttpTransport(Config(f"http://127.0.0.1:{port}"), session, aiohttp)
    try:
        yield state
    finally:
        await session.close()
        await runner.cleanup()


REQUEST = Request("GET", "/api/v1/namespaces/levrt/pods/p/exec",
                  (("container", "main"), ("stdin", "true"), ("command", "cat")))


async def frames(ws: web.WebSocketResponse) -> AsyncIterator[bytes]:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            yield msg.data


async def test_v5_stdin_eof_output_and_exit_code(server: dict[str, Any]) -> None:
    received: list[bytes] = []

    async def cat_then_exit_3(ws: web.WebSocketResponse) -> None:
        for channel in (1, 2, 3):
            await ws.send_bytes(bytes([channel]))  # the empty message that opens each channel
        async for data in frames(ws):
            received.append(data)
            if data == b"\xff\x00":  # EOF on stdin
                break
            await ws.send_bytes(b"\x01" + data[1:].upper())
        await ws.send_bytes(b"\x02bye\n")
        status = {"status": "Failure", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())

    server["handler"] = cat_then_exit_3
    async with server["transport"].exec_stream(REQUEST, timeout=5) as stream:
        assert stream.can_close_stdin
        await stream.send(b"p x\n")
        assert await stream.receive() == (1, b"P X\n")
        await stream.close_stdin()
        assert await stream.receive() == (2, b"bye\n")
        assert await stream.receive() is None
        assert stream.exit_code == 3
    assert received == [b"\x00p x\n", b"\xff\x00"]
    seen = server["seen"]
    offered = [p.strip() for p in seen.headers["Sec-WebSocket-Protocol"].split(",")]
    assert offered == ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    assert seen.query.getall("command") == ["cat"] and seen.query["stdin"] == "true"


async def test_v4_cannot_close_stdin_and_success_is_exit_0(server: dict[str, Any]) -> None:
    received: list[bytes] = []

    async def answer_once(ws: web.WebSocketResponse) -> None:
        async for data in frames(ws):
            received.append(data)
            await ws.send_bytes(b"\x01ok\n")
            await ws.send_bytes(b'\x03{"status": "Success"}')
            return

    server["protocols"] = ("v4.channel.k8s.io",)
    server["handler"] = answer_once
    async with server["transport"].exec_stream(REQUEST, timeout=5) as stream:
        assert not stream.can_close_stdin
        await stream.close_stdin()  # nothing to send with v4
        await stream.send(b"c\n")
        assert await stream.receive() == (1, b"ok\n")
        assert await stream.receive() is None
        assert stream.exit_code == 0
    assert received == [b"\x00c\n"]


async def test_a_connection_that_ends_without_status_has_no_exit_code(server: dict[str, Any]) -> None:
    async def vanish(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x01(Pdb) ")

    server["handler"] = vanish
    async with server["transport"].exec_stream(REQUEST, timeout=5) as stream:
        assert await stream.receive() == (1, b"(Pdb) ")
        assert await stream.receive() is None
        assert stream.exit_code is None
        await stream.send(b"too late\n")  # dropped, not raised


async def test_a_refused_upgrade_raises_its_status(server: dict[str, Any]) -> None:
    server["refuse"] = True
    with pytest.raises(Forbidden, match="HTTP 403"):
        async with server["transport"].exec_stream(REQUEST, timeout=5):
            pass
