"""Run an orchestration itself inside the cluster: ``levrt run FILE --in-cluster``.

Why: long scans should not depend on a laptop staying awake. The orchestration file is shipped
in a ConfigMap to a Pod that runs under the chart's ``levrt-orchestrator`` ServiceAccount,
with the levrt runtime image; inside, the SDK finds in-cluster credentials and the store
Service by itself. The CLI follows the Pod's logs and exits with its exit code.

The objects are built by ``levrt._shapes.orchestrator`` (pure); this module does the I/O.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from levrt._clients import pods, resources, submit
from levrt._clients.kube import Kube
from levrt._clients.watch import PodWatch
from levrt._core.sources import orchestration_sources
from levrt._shapes import podstatus
from levrt._shapes.build import TaskObjects
from levrt._shapes.names import RUN_LABEL
from levrt._shapes.orchestrator import new_run_id, orchestrator_objects
from levrt._shapes.schedules import schedule_objects
from levrt.errors import OrchestrationError
from levrt.settings import Settings

__all__ = ["orchestration_file", "orchestration_objects", "run_in_cluster", "schedule_in_cluster", "start_detached"]


def orchestration_file(target: str) -> Path:
    """The file ``target`` names; only a file can be shipped to the orchestration Pod."""
    path = Path(target)
    if not path.is_file():
        raise OrchestrationError(
            f"--in-cluster needs an orchestration file, and {target!r} is not one. "
            "Pass the path of a .py file, e.g. levrt run examples/workflow.py --in-cluster."
        )
    return path


def orchestration_objects(target: str, func: str | None, args: Sequence[str], *, settings: Settings,
                          env: Mapping[str, str] | None = None, detach: bool = False,
                          published: str | None = None) -> TaskObjects:
    """The orchestration Pod (and its ConfigMap) of ``target``: a file shipped with the modules beside
    it, or a published tool whose archive has the sha256 ``published``."""
    if published is not None:  # a published tool: the Pod takes it from the registry, nothing is shipped
        return orchestrator_objects(sources={}, entry=target, func=func, args=args, settings=settings,
                                    run_id=new_run_id(published.encode()), env=env, detach=detach, published=published)
    sources, entry = orchestration_sources(orchestration_file(target))
    return orchestrator_objects(sources=sources, entry=entry, func=func, args=args, settings=settings,
                                run_id=new_run_id(sources[entry]), env=env, detach=detach)


def schedule_in_cluster(target: str, func: str | None, args: Sequence[str], *, name: str, cron: str,
                        time_zone: str | None, what: str, settings: Settings, kubeconfig: str | None = None,
                        env: Mapping[str, str] | None = None, published: str | None = None) -> dict[str, Any]:
    """Create the CronJob that runs ``target`` on ``cron`` (``levrt._shapes.schedules``), and the
    ConfigMap of its files owned by it; the CronJob as created. A ConfigMap that cannot be made takes
    the CronJob with it (nothing half-created)."""
    objects = schedule_objects(name, orchestration_objects(target, func, args, settings=settings, env=env,
                                                           published=published),
                               cron=cron, time_zone=time_zone, what=what)

    async def create() -> dict[str, Any]:
        async with await Kube.connect(kubeconfig=kubeconfig) as kube:
            made: dict[str, Any] = await resources.create(kube, "CronJob", objects.pod, namespace=settings.namespace)
            try:
                for owned in objects.owned:
                    owned["metadata"]["ownerReferences"] = [{
                        "apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": made["metadata"]["uid"],
                        "blockOwnerDeletion": True}]
                    await resources.create(kube, "ConfigMap", owned, namespace=settings.namespace)
            except BaseException:
                await asyncio.shield(resources.delete(kube, "CronJob", name, namespace=settings.namespace,
                                                      query={"propagationPolicy": "Background"}))
                raise
            return made

    return asyncio.run(create())


def run_in_cluster(
    target: str, func: str | None, args: Sequence[str], *, settings: Settings, kubeconfig: str | None = None,
    env: Mapping[str, str] | None = None, detach: bool = False, published: str | None = None,
) -> int:
    """Submit the orchestration Pod, stream its output here, and return its exit code; with
    ``detach``, return once its job has opened (printing the job id) and leave it running.

    ``func`` (None: the file's ``main``, or the job its import runs) and ``args`` travel as the
    strings given here: the Pod's ``levrt run`` reads them as this one did, after this one checked
    them. ``published``: ``target`` is a published tool (``demo/portscan@1.0``) whose archive has
    this sha256."""
    objects = orchestration_objects(target, func, args, settings=settings, env=env, detach=detach, published=published)
    return asyncio.run(_run(objects, settings=settings, kubeconfig=kubeconfig, detach=detach))


async def _run(objects: TaskObjects, *, settings: Settings, kubeconfig: str | None, detach: bool = False) -> int:
    kube = await Kube.connect(kubeconfig=kubeconfig)
    ns = settings.namespace
    watch = _watch(kube, objects, settings)
    try:
        await watch.start()
        if detach:
            job = await start_detached(kube, objects, settings=settings, watch=watch, submitted=lambda: print(
                f"progress: orchestration Job {ns}/{objects.name} submitted", file=sys.stderr, flush=True))
            print(f"job {job}: running detached (Kubernetes Job {ns}/{objects.name}, which replaces its Pod if it "
                  f"is deleted or evicted); follow it with `levrt ps --job {job}`, its records with "
                  f"`levrt get SCHEMA --job {job}`, end it with `levrt gc --job {job}`.", flush=True)
            return 0
        name = objects.name
        try:
            await _submitted_and_started(kube, watch, objects, settings, submitted=lambda: print(
                f"progress: orchestration Pod {ns}/{name} submitted", file=sys.stderr, flush=True))
            # Following the log of a container that already ended returns all of it, then ends.
            await pods.follow_logs(kube, ns, name, out=sys.stdout)
            pod = await watch.wait(name, podstatus.finished)
            status = podstatus.terminated(pod)
            code = int(status.get("exitCode", 1))
            if code:
                print(f"levrt: the orchestration Pod {name} exited with code {code} "
                      f"({status.get('reason', 'Error')}); its output is above.", file=sys.stderr)
            return code
        finally:
            if not settings.keep:
                # Graceful: if we were interrupted, the orchestration gets SIGTERM and deletes the
                # Pods of its job before it exits (levrt run maps SIGTERM to cancellation).
                await asyncio.shield(submit.delete_pod(kube, ns, name, graceful=True))
    finally:
        await watch.close()
        await kube.close()


async def start_detached(kube: Kube, objects: TaskObjects, *, settings: Settings, watch: PodWatch | None = None,
                         submitted: Callable[[], None] | None = None) -> int:
    """Submit a detached orchestration (``orchestrator_objects(detach=True)``: a Job) and return the id
    of the job its Pod opened; on any failure the Job is deleted again, its Pod with it (nothing is
    left half-started)."""
    own_watch = watch is None
    watch = watch or _watch(kube, objects, settings)
    try:
        if own_watch:
            await watch.start()
        try:
            pod = await _submitted_and_started(kube, watch, objects, settings, submitted=submitted)
            return await _job_opened(kube, watch, settings.namespace, pod, timeout=settings.start_timeout)
        except BaseException:
            await asyncio.shield(submit.delete_job(kube, settings.namespace, objects.name))
            raise
    finally:
        if own_watch:
            await watch.close()


def _watch(kube: Kube, objects: TaskObjects, settings: Settings) -> PodWatch:
    """The same watch-and-predicate machinery as task Pods, on the orchestration's Pod(s)."""
    labels = objects.pod["metadata"]["labels"]
    return PodWatch(kube, namespace=settings.namespace, selector=f"{RUN_LABEL}={labels[RUN_LABEL]}")


async def _submitted_and_started(kube: Kube, watch: PodWatch, objects: TaskObjects, settings: Settings, *,
                                 submitted: Callable[[], None] | None = None) -> str:
    """Submit the orchestration (a Pod, or a Job making one), call ``submitted``, wait until the
    Pod's container started and return the Pod's name; ``OrchestrationError`` saying why when it does not."""
    ns = settings.namespace
    if objects.pod["kind"] == "Job":
        await submit.submit_job(kube, ns, objects)
    else:
        await submit.submit(kube, ns, objects)
    if submitted is not None:
        submitted()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.start_timeout
    name = objects.name if objects.pod["kind"] == "Pod" else await _first_pod(watch, objects.name, deadline=deadline)
    try:
        pod = await watch.wait(name, lambda p: podstatus.start_state(p, need_ready=False),
                               timeout=max(deadline - loop.time(), 0.1))
    except TimeoutError:
        raise OrchestrationError(
            f"The orchestration Pod {name} did not start within {settings.start_timeout:.0f}s; "
            f"see kubectl -n {ns} describe pod {name}."
        ) from None
    state = podstatus.start_state(pod, need_ready=False)
    if isinstance(state, podstatus.StartFailure):
        raise OrchestrationError(
            f"The orchestration Pod {name} cannot start: {state.reason} ({state.detail}). "
            f"Check that the runtime image {settings.runtime_image} is on the nodes."
        )
    return name


async def _first_pod(watch: PodWatch, job: str, *, deadline: float) -> str:
    """The name of the Pod the orchestration Job ``job`` made (the watch selects by its run label)."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        made = sorted(str(pod["metadata"]["name"]) for pod in watch.pods())
        if made:
            return made[0]
        await asyncio.sleep(0.2)
    raise OrchestrationError(f"The orchestration Job {job} made no Pod within the start timeout; "
                             f"see kubectl describe job {job}.")


JOB_LINE = re.compile(r"^job: (\d+)$", re.MULTILINE)
"""The line the engine logs once the job is open (its Lease made and this Pod adopted)."""


async def _job_opened(kube: Kube, watch: PodWatch, ns: str, name: str, *, timeout: float) -> int:
    """The id of the job the orchestration Pod opened, read from its log (polled: the line comes
    within seconds of the start, and a follow would not give up on a Pod that never prints it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        text = await pods.logs(kube, ns, name)
        found = JOB_LINE.search(text)
        if found:
            return int(found.group(1))
        pod = watch.get(name) or {}
        if podstatus.finished(pod) or loop.time() > deadline:
            raise OrchestrationError(
                f"The orchestration Pod {name} "
                + ("ended" if podstatus.finished(pod) else f"did not open its job within {timeout:.0f}s")
                + " before its job was open; its output:\n" + str(text).strip()[-2000:]
            )
        await asyncio.sleep(0.5)
