"""Run an orchestration itself inside the cluster: ``levrt run FILE --in-cluster``.

Why: long scans should not depend on a laptop staying awake. The orchestration file is shipped
in a ConfigMap to a Pod that runs under the chart's ``levrt-orchestrator`` ServiceAccount,
with the levrt runtime image; inside, the SDK finds in-cluster credentials and the store
Service by itself. The CLI follows the Pod's logs and exits with its exit code.

The objects are built by ``levrt._shapes.orchestrator`` (pure); this module does the I/O.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from levrt._clients import submit
from levrt._clients.kube import Kube
from levrt._clients.watch import PodWatch
from levrt._core.sources import orchestration_sources
from levrt._shapes import podstatus
from levrt._shapes.build import TaskObjects
from levrt._shapes.names import RUN_LABEL, api_path
from levrt._shapes.orchestrator import new_run_id, orchestrator_objects
from levrt.errors import OrchestrationError
from levrt.settings import Settings

__all__ = ["run_in_cluster"]


def run_in_cluster(
    target: str, func: str, args: Sequence[str], *, settings: Settings, kubeconfig: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Submit the orchestration Pod, stream its output here, and return its exit code."""
    path = Path(target)
    if not path.is_file():
        raise OrchestrationError(
            f"--in-cluster needs an orchestration file, and {target!r} is not one. "
            "Pass the path of a .py file, e.g. levrt run examples/workflow.py --in-cluster."
        )
    sources, entry = orchestration_sources(path)
    objects = orchestrator_objects(
        sources=sources, entry=entry, func=func, args=args, settings=settings,
        run_id=new_run_id(sources[entry]), env=env,
    )
    return asyncio.run(_run(objects, settings=settings, kubeconfig=kubeconfig))


async def _run(objects: TaskObjects, *, settings: Settings, kubeconfig: str | None) -> int:
    kube = await Kube.connect(kubeconfig=kubeconfig)
    ns = settings.namespace
    name = objects.name
    # The same watch-and-predicate machinery as task Pods, on this one Pod.
    watch = PodWatch(kube, namespace=ns, selector=f"{RUN_LABEL}={objects.pod['metadata']['labels'][RUN_LABEL]}")
    try:
        await watch.start()
        await submit.submit(kube, ns, objects)
        print(f"progress: orchestration Pod {ns}/{name} submitted", file=sys.stderr, flush=True)
        try:
            try:
                pod = await watch.wait(name, lambda p: podstatus.start_state(p, need_ready=False),
                                       timeout=settings.start_timeout)
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
            # Following the log of a container that already ended returns all of it, then ends.
            await kube.follow(api_path("pods", namespace=ns, name=name, sub="log"), out=sys.stdout)
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
