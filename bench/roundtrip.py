"""Round trip of a trivial levrt task against a bare Pod running the same trivial command.

Why: levrt's promise is that a Cr costs little more than the Pod it becomes (target: within
1.3x of a bare Pod). Both are measured in the same run, on the same cluster, through the same
watch, so the ratio is fair. levrt's time is split into phases (submit = objects created,
start = main container running, end = Document returned) to show where the time goes.

Run (test cluster up, see tests/cluster/README.md):  python -m bench.roundtrip --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from typing import Any

import levrt
from levrt import Cr, lev
from levrt._shapes.podstatus import container_status, finished
from levrt.run import session
from levrt.settings import Settings

BUSYBOX = os.environ.get("LEVRT_TEST_BUSYBOX") or os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")


@levrt.remote
def trivial() -> None:
    lev.set(ok=1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def bare_pod(engine: Any, index: int, *, init: bool = False) -> float:
    """Create a bare Pod running ``echo ok``; wait for its end through the same watch; delete.

    With ``init`` the Pod first runs one trivial init container, as a levrt task does (the
    runtime copy): it isolates what an init container costs on this kubelet.
    """
    ns = engine.settings.namespace
    name = f"lev-bench-{'init' if init else 'bare'}-{engine.job_id}-{index}"
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "levrt", "levrt.io/job": str(engine.job_id)}},
        "spec": {
            "restartPolicy": "Never", "enableServiceLinks": False, "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", "echo ok"]}],
        },
    }
    if init:
        body["spec"]["initContainers"] = [{"name": "init", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                           "command": ["true"]}]
    began = time.perf_counter()
    await engine.kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)
    pod = await engine.watch.wait(name, finished, timeout=120)
    took = time.perf_counter() - began
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 0
    await engine.delete_pod(name)
    engine.watch.forget(name)
    return took


async def levrt_task(engine: Any) -> dict[str, float]:
    began = time.perf_counter()
    task = await engine.start(Cr(BUSYBOX, entry=trivial()))
    started = time.perf_counter()
    doc = await task.done()
    ended = time.perf_counter()
    assert (await doc.get()) == {"ok": 1}
    return {"start": started - began, "total": ended - began}


async def node_cache_path(engine: Any) -> str | None:
    """The chart's runtime node cache directory, if the platform has it enabled."""
    from levrt._clients.api import ApiError

    try:
        ns = engine.settings.namespace
        cm = await engine.kube.request("GET", f"/api/v1/namespaces/{ns}/configmaps/levrt-settings")
    except ApiError:
        return None
    return cm.get("data", {}).get("LEVRT_RUNTIME_HOST_PATH") or None


async def main(runs: int, warmup: int) -> dict[str, Any]:
    settings = Settings.from_env().replace(runtime_host_path=None)
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(session(settings=settings))
        host_path = await node_cache_path(engine)
        cached = None
        if host_path:  # a second job whose tasks mount the node cache instead of copying
            cached = await stack.enter_async_context(session(settings=settings.replace(runtime_host_path=host_path)))
        for i in range(warmup):
            await bare_pod(engine, 10_000 + i)
            await levrt_task(engine)
        bare: list[float] = []
        with_init: list[float] = []
        ours: list[dict[str, float]] = []
        node: list[float] = []
        for i in range(runs):  # interleaved so drift in the node affects all alike
            bare.append(await bare_pod(engine, i))
            with_init.append(await bare_pod(engine, i, init=True))
            ours.append(await levrt_task(engine))
            if cached is not None:
                node.append((await levrt_task(cached))["total"])
            print(f"run {i + 1:>3}/{runs}: bare {bare[-1]:.3f}s  bare+init {with_init[-1]:.3f}s  "
                  f"levrt {ours[-1]['total']:.3f}s (running after {ours[-1]['start']:.3f}s)"
                  + (f"  levrt node-cache {node[-1]:.3f}s" if node else ""), flush=True)
    totals = [o["total"] for o in ours]
    starts = [o["start"] for o in ours]
    result = {
        "runs": runs,
        "bare_p50": statistics.median(bare), "bare_p95": percentile(bare, 0.95),
        "init_p50": statistics.median(with_init), "init_p95": percentile(with_init, 0.95),
        "levrt_p50": statistics.median(totals), "levrt_p95": percentile(totals, 0.95),
        "levrt_start_p50": statistics.median(starts),
    }
    if node:
        result["node_p50"], result["node_p95"] = statistics.median(node), percentile(node, 0.95)
    result["ratio_p50"] = result["levrt_p50"] / result["bare_p50"]
    result["ratio_p95"] = result["levrt_p95"] / result["bare_p95"]
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    result = asyncio.run(main(args.runs, args.warmup))
    print()
    print(f"{'':18}{'p50':>10}{'p95':>10}")
    print(f"{'bare Pod':18}{result['bare_p50']:>9.3f}s{result['bare_p95']:>9.3f}s")
    print(f"{'bare Pod + init':18}{result['init_p50']:>9.3f}s{result['init_p95']:>9.3f}s")
    print(f"{'levrt task':18}{result['levrt_p50']:>9.3f}s{result['levrt_p95']:>9.3f}s")
    if "node_p50" in result:
        print(f"{'levrt, node cache':18}{result['node_p50']:>9.3f}s{result['node_p95']:>9.3f}s")
    print(f"{'ratio':18}{result['ratio_p50']:>9.2f}x{result['ratio_p95']:>9.2f}x   (levrt / bare Pod; target <= 1.30x)")
    if "node_p50" in result:
        print(f"{'ratio, node cache':18}{result['node_p50'] / result['bare_p50']:>9.2f}x"
              f"{result['node_p95'] / result['bare_p95']:>9.2f}x")
    print(f"{'levrt / bare+init':18}{result['levrt_p50'] / result['init_p50']:>9.2f}x"
          f"{result['levrt_p95'] / result['init_p95']:>9.2f}x   (levrt's own cost beyond its init container)")
    print(f"levrt: main container running after {result['levrt_start_p50']:.3f}s (p50)")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    cli()
