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
import random
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
    lev.set(ok=1, entry_at=process_age())


def process_age() -> float:
    """Seconds since this process started (the kernel's start time of /proc/self, in clock ticks)."""
    with open("/proc/self/stat") as fh:
        started_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return uptime - started_ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


COPY_SHAPES = ("init-copy", "poststart-copy")
"""Pods that copy the runtime into an emptyDir before the main container runs ``python3 -c pass``
from it: by an init container (levrt's fallback) or by a first regular container's postStart hook
(the kubelet starts the next container only when that hook returned, without waiting for a relist)."""


def bare_body(name: str, job: int, shape: str, runtime_image: str) -> dict[str, Any]:
    """A bare Pod of one shape: ``bare`` (``echo ok``), ``init`` (plus an init container running
    ``true``), or one of ``COPY_SHAPES``."""
    main: dict[str, Any] = {"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", "echo ok"]}
    spec: dict[str, Any] = {"restartPolicy": "Never", "enableServiceLinks": False,
                            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
                            "containers": [main]}
    if shape == "init":
        spec["initContainers"] = [{"name": "init", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                   "command": ["true"]}]
    elif shape in COPY_SHAPES:
        from levrt._shapes.delivery import RUNTIME_COPY_COMMAND
        from levrt.podenv import RUNTIME_TARGET

        target = {"name": "rt", "mountPath": RUNTIME_TARGET}
        main["command"] = ["/levrt/bin/python3", "-c", "pass"]
        main["volumeMounts"] = [{"name": "rt", "mountPath": "/levrt", "readOnly": True}]
        spec["volumes"] = [{"name": "rt", "emptyDir": {}}]
        copier: dict[str, Any] = {"name": "copy", "image": runtime_image, "imagePullPolicy": "IfNotPresent",
                                  "volumeMounts": [target]}
        if shape == "init-copy":
            spec["initContainers"] = [{**copier, "command": list(RUNTIME_COPY_COMMAND)}]
        else:  # the copier lives until its hook has copied, then exits so the Pod can end
            done = f"{RUNTIME_TARGET}/.copied"
            copier["command"] = ["/levrt/bin/python3", "-c",
                                 f"import os,time\nwhile not os.path.exists({done!r}): time.sleep(0.05)"]
            copier["lifecycle"] = {"postStart": {"exec": {"command": [
                *RUNTIME_COPY_COMMAND[:2], RUNTIME_COPY_COMMAND[2] + f"\nopen({done!r}, 'w').close()",
                *RUNTIME_COPY_COMMAND[3:]]}}}
            spec["containers"] = [copier, main]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "levrt", "levrt.io/job": str(job)}},
            "spec": spec}


async def bare_pod(engine: Any, index: int, *, shape: str = "bare") -> float:
    """Create a bare Pod of ``shape`` (see ``bare_body``); wait for its end through the same watch;
    delete. ``init`` isolates what one init container costs on this kubelet."""
    ns = engine.settings.namespace
    name = f"lev-bench-{shape}-{engine.job_id}-{index}"
    body = bare_body(name, engine.job_id, shape, engine.settings.runtime_image)
    began = time.perf_counter()
    await engine.kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)
    pod = await engine.watch.wait(name, finished, timeout=120)
    took = time.perf_counter() - began
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 0, pod["status"]
    await engine.delete_pod(name)
    engine.watch.forget(name)
    return took


async def levrt_task(engine: Any) -> dict[str, float]:
    began = time.perf_counter()
    task = await engine.start(Cr(BUSYBOX, entry=trivial()))
    started = time.perf_counter()
    doc = await task.done()
    ended = time.perf_counter()
    record = await doc.get() or {}
    assert record.get("ok") == 1, record
    return {"start": started - began, "total": ended - began, "entry_at": float(record["entry_at"])}


async def node_cache_path(engine: Any) -> str | None:
    """The chart's runtime node cache directory, if the platform has it enabled."""
    from levrt._clients.api import ApiError

    try:
        ns = engine.settings.namespace
        cm = await engine.kube.request("GET", f"/api/v1/namespaces/{ns}/configmaps/levrt-settings")
    except ApiError:
        return None
    return cm.get("data", {}).get("LEVRT_RUNTIME_HOST_PATH") or None


SIDES = {
    "levrt": "levrt (default)",
    "copy": "levrt, copy",
    "node": "levrt, node cache",
}


async def main(runs: int, warmup: int) -> dict[str, Any]:
    settings = Settings.from_env().replace(runtime_host_path=None)
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(session(settings=settings))
        jobs = {"levrt": engine}
        if engine.runtime.mode != "copy":  # the fallback, measured beside the default for comparison
            jobs["copy"] = await stack.enter_async_context(session(settings=settings.replace(runtime_mode="copy")))
        host_path = await node_cache_path(engine)
        if host_path:  # tasks that mount the chart's node cache instead
            jobs["node"] = await stack.enter_async_context(
                session(settings=settings.replace(runtime_host_path=host_path)))
        for i in range(warmup):
            for shape in ("bare", *COPY_SHAPES):
                await bare_pod(engine, 10_000 + i, shape=shape)
            for job in jobs.values():
                await levrt_task(job)
        bare: list[float] = []
        with_init: list[float] = []
        copies: dict[str, list[float]] = {shape: [] for shape in COPY_SHAPES}
        ours: dict[str, list[dict[str, float]]] = {side: [] for side in jobs}
        for i in range(runs):  # interleaved so drift in the node affects all alike
            # A random pause before each Pod: the kubelet notices container ends on a 1 s relist,
            # and back-to-back runs would lock onto that tick at a phase that favours some sides.
            await asyncio.sleep(random.random())
            bare.append(await bare_pod(engine, i))
            await asyncio.sleep(random.random())
            with_init.append(await bare_pod(engine, i, shape="init"))
            for shape in COPY_SHAPES:
                await asyncio.sleep(random.random())
                copies[shape].append(await bare_pod(engine, i, shape=shape))
            for side, job in jobs.items():
                await asyncio.sleep(random.random())
                ours[side].append(await levrt_task(job))
            print(f"run {i + 1:>3}/{runs}: bare {bare[-1]:.3f}s  bare+init {with_init[-1]:.3f}s  "
                  + "".join(f"{shape} {copies[shape][-1]:.3f}s  " for shape in COPY_SHAPES)
                  + "  ".join(f"{side} {ours[side][-1]['total']:.3f}s" for side in jobs), flush=True)
    result: dict[str, Any] = {
        "runs": runs, "mode": engine.runtime.mode, "mode_reason": engine.runtime.reason,
        "bare_p50": statistics.median(bare), "bare_p95": percentile(bare, 0.95),
        "init_p50": statistics.median(with_init), "init_p95": percentile(with_init, 0.95),
    }
    for shape, timings in copies.items():
        key = shape.replace("-", "_")
        result[f"{key}_p50"], result[f"{key}_p95"] = statistics.median(timings), percentile(timings, 0.95)
    for side, samples in ours.items():
        totals = [o["total"] for o in samples]
        result[f"{side}_p50"], result[f"{side}_p95"] = statistics.median(totals), percentile(totals, 0.95)
        result[f"{side}_start_p50"] = statistics.median(o["start"] for o in samples)
        result[f"{side}_entry_at_p50"] = statistics.median(o["entry_at"] for o in samples)
        result[f"{side}_ratio_p50"] = result[f"{side}_p50"] / result["bare_p50"]
        result[f"{side}_ratio_p95"] = result[f"{side}_p95"] / result["bare_p95"]
    result["ratio_p50"], result["ratio_p95"] = result["levrt_ratio_p50"], result["levrt_ratio_p95"]
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    result = asyncio.run(main(args.runs, args.warmup))
    print()
    print(f"default runtime mode: {result['mode']} ({result['mode_reason']})")
    print(f"{'':20}{'p50':>9}{'p95':>9}{'ratio p50':>11}{'ratio p95':>11}{'entry at':>10}")
    for label, key in (("bare Pod", "bare"), ("bare Pod + init", "init"), ("bare + init copy", "init_copy"),
                       ("bare + postStart cp", "poststart_copy")):
        print(f"{label:20}{result[key + '_p50']:>8.3f}s{result[key + '_p95']:>8.3f}s"
              f"{result[key + '_p50'] / result['bare_p50']:>10.2f}x{result[key + '_p95'] / result['bare_p95']:>10.2f}x")
    for side, label in SIDES.items():
        if f"{side}_p50" in result:
            print(f"{label:20}{result[side + '_p50']:>8.3f}s{result[side + '_p95']:>8.3f}s"
                  f"{result[side + '_ratio_p50']:>10.2f}x{result[side + '_ratio_p95']:>10.2f}x"
                  f"{result[side + '_entry_at_p50']:>9.2f}s")
    print("ratio = levrt / bare Pod (targets: <= 1.15x p50, <= 1.30x p95); entry at = seconds from the")
    print("runtime process's start to the entry's first line, read in the Pod (10 ms resolution)")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    cli()
