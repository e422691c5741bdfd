"""Store faults on the test cluster, with figures: records lost when the store is down while a task
writes, and when the store's Pod is deleted after a job (issue 12, "the store keeps what it got").

Why a module of its own: ``tests/faults/test_store.py`` runs a short outage within the CI budget,
and ``python3 -m bench.store_faults outage --seconds 120`` the full two minutes; both measure the
same way. Both disrupt the store for everyone on the cluster: run them under the exclusive
cluster lock (``flock -x /tmp/levrt-cluster.lock ...``). Every function leaves the store running
and ready when it returns or raises.

    eval "$(python3 -m tests.cluster env)"
    flock -x /tmp/levrt-cluster.lock python3 -m bench.store_faults outage --seconds 120
    flock -x /tmp/levrt-cluster.lock python3 -m bench.store_faults restart
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import levrt
from levrt import Cr, lev

STORE = "statefulset/levrt-store"


@levrt.remote
def count_every_second(seconds: int) -> None:
    """One field per second and a running counter: every value must be in the record at the end."""
    import time as _time

    for i in range(seconds):
        lev.set(count=i, **{f"v{i}": i})
        _time.sleep(1)
    lev.set(done=True)


@levrt.remote
def write_a_record(task: int) -> None:
    lev.set(task=task, ports=[22, 80, 443], banner=f"task {task}")


def kubectl(kubeconfig: str, namespace: str, *args: str) -> str:
    from tests.cluster.node import kubectl as run

    return run("-n", namespace, *args, kubeconfig=kubeconfig)


def store_down(kubeconfig: str, namespace: str) -> None:
    kubectl(kubeconfig, namespace, "scale", STORE, "--replicas=0")
    kubectl(kubeconfig, namespace, "wait", "--for=delete", "pod/levrt-store-0", "--timeout=120s")


def store_up(kubeconfig: str, namespace: str) -> None:
    """Scale the store back to one Pod and wait until it answers (also after a failure)."""
    kubectl(kubeconfig, namespace, "scale", STORE, "--replicas=1")
    kubectl(kubeconfig, namespace, "rollout", "status", STORE, "--timeout=180s")
    kubectl(kubeconfig, namespace, "wait", "--for=condition=Ready", "pod/levrt-store-0", "--timeout=180s")


async def record_of(settings: Any, collection: str, job: int, task: int) -> dict[str, Any] | None:
    """The task's record, read with a fresh client (waits for the store to answer, bounded)."""
    from levrt._clients.store import Store

    store = Store.connect(settings.store_uri, database=settings.database)
    try:
        for _ in range(60):
            try:
                found: dict[str, Any] | None = await store.collection(collection).find_one(
                    {"_id": {"job": job, "task": task}})
                return found
            except Exception:  # the store's Pod is still starting: ask again
                await asyncio.sleep(1)
        raise RuntimeError("the store did not answer within 60 s")
    finally:
        await store.close()


async def store_outage(settings: Any, kubeconfig: str, *, outage: float) -> dict[str, Any]:
    """A task writes a counter every second; the store is scaled to 0 for ``outage`` seconds
    meanwhile. Figures: values written, values found, lost (target 0), final state right."""
    from levrt.run import session

    before, after = 8, 15  # seconds of writing with the store up, around the outage
    seconds = int(before + outage + after)
    collection = f"faults/store-outage-{uuid.uuid4().hex[:8]}@1.0"
    try:
        async with session(settings=settings, kubeconfig=kubeconfig) as engine:
            task = await Cr(settings_image(), collection, entry=count_every_second(seconds)).start()
            deadline = time.monotonic() + 180
            while ((await record_of(settings, collection, engine.job_id, task.task_id)) or {}).get("count", -1) < 3:
                if time.monotonic() > deadline:
                    raise RuntimeError("the task wrote nothing within 180 s")
                await asyncio.sleep(1)
            began = time.monotonic()
            await asyncio.to_thread(store_down, kubeconfig, settings.namespace)
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - began)))
            await asyncio.to_thread(store_up, kubeconfig, settings.namespace)
            down_for = time.monotonic() - began
            await asyncio.wait_for(task.done(), timeout=seconds + 400)
            record = await record_of(settings, collection, engine.job_id, task.task_id) or {}
    finally:
        await asyncio.to_thread(store_up, kubeconfig, settings.namespace)
    present = [i for i in range(seconds) if record.get(f"v{i}") == i]
    return {"fault": "store down during writes", "outage_s": round(down_for, 1), "written": seconds,
            "present": len(present), "lost": seconds - len(present),
            "final_state_right": record.get("count") == seconds - 1 and record.get("done") is True}


async def store_restart(settings: Any, kubeconfig: str, *, tasks: int = 5) -> dict[str, Any]:
    """A job of ``tasks`` tasks ends; the store's Pod is deleted and comes back. Figures: records
    before and after, lost (target 0)."""
    from levrt.run import session

    collection = f"faults/store-restart-{uuid.uuid4().hex[:8]}@1.0"
    try:
        async with session(settings=settings, kubeconfig=kubeconfig) as engine:
            started = [await Cr(settings_image(), collection, entry=write_a_record(i)).start() for i in range(tasks)]
            await asyncio.gather(*(t.done() for t in started))
            job = engine.job_id
            ids = [t.task_id for t in started]
        before = [await record_of(settings, collection, job, i) for i in ids]
        await asyncio.to_thread(kubectl, kubeconfig, settings.namespace, "delete", "pod", "levrt-store-0",
                                "--wait=true")
        await asyncio.to_thread(store_up, kubeconfig, settings.namespace)
        after = [await record_of(settings, collection, job, i) for i in ids]
    finally:
        await asyncio.to_thread(store_up, kubeconfig, settings.namespace)
    kept = [a for a, b in zip(after, before, strict=True) if b is not None and a == b]
    return {"fault": "store Pod restarted after a job", "records_before": sum(b is not None for b in before),
            "records_after": sum(a is not None for a in after), "lost": tasks - len(kept)}


def settings_image() -> str:
    from tests.cluster.images import busybox_ref

    return busybox_ref()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m bench.store_faults", description=__doc__.split("\n")[0])
    parser.add_argument("fault", choices=("outage", "restart"))
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the outage (outage only)")
    args = parser.parse_args(argv)
    from bench.common import cluster_env
    from levrt.settings import Settings

    cluster_env()
    settings, kubeconfig = Settings.from_env(), os.environ["KUBECONFIG"]
    if args.fault == "outage":
        figures = asyncio.run(store_outage(settings, kubeconfig, outage=args.seconds))
    else:
        figures = asyncio.run(store_restart(settings, kubeconfig))
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
