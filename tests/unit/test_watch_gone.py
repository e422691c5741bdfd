"""PodWatch re-lists after ``410 Gone`` and loses nothing that happened meanwhile.

Why a stand-in server here: a real apiserver answers 410 only once its watch cache and etcd
have moved past the watch's resourceVersion (minutes of churn), which a young test cluster
never reaches. This local HTTP server speaks just the list/watch protocol the watch uses;
the reconnect-without-410 path is tested against the real apiserver in tests/e2e/test_watch.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from levrt._clients.kube import Kube
from levrt._clients.watch import PodWatch
from levrt._shapes.podstatus import finished

POD = {
    "metadata": {"name": "lev-j1-t0", "resourceVersion": "20"},
    "status": {"phase": "Succeeded",
               "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0}}}]},
}


async def test_watch_relists_after_410_gone(tmp_path: Path) -> None:
    calls: list[str] = []
    lists = 0
    stop = asyncio.Event()

    async def pods(request: web.Request) -> web.StreamResponse:
        nonlocal lists
        if request.query.get("watch") not in ("true", "True", "1"):
            lists += 1
            calls.append(f"list#{lists}")
            # The first list is empty; by the second one the Pod has run to completion.
            items = [] if lists == 1 else [POD]
            return web.json_response({"kind": "PodList", "metadata": {"resourceVersion": str(10 * lists)},
                                      "items": items})
        calls.append(f"watch@{request.query.get('resourceVersion')}")
        resp = web.StreamResponse()
        await resp.prepare(request)
        if request.query.get("resourceVersion") == "10":
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                "message": "too old resource version: 10 (15)"}}
            await resp.write(json.dumps(gone).encode() + b"\n")
            return resp
        await stop.wait()  # a quiet, healthy watch, until the test ends
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/levrt/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters: [{{name: t, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: t, user: {token: x}}]\n"
        "contexts: [{name: t, context: {cluster: t, user: t}}]\n"
    )
    kube = await Kube.connect(kubeconfig=str(kubeconfig))
    watch = PodWatch(kube, namespace="levrt", selector="app.kubernetes.io/managed-by=levrt")
    try:
        await watch.start()
        pod: Any = await watch.wait("lev-j1-t0", finished, timeout=10)
        assert pod["status"]["phase"] == "Succeeded"
        assert watch.relists == 2
        for _ in range(50):  # and it watches again, from the re-listed resourceVersion
            if len(calls) >= 4:
                break
            await asyncio.sleep(0.1)
        assert calls[:4] == ["list#1", "watch@10", "list#2", "watch@20"]
    finally:
        stop.set()
        await watch.close()
        await kube.close()
        await runner.cleanup()
