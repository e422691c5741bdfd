"""Run an orchestration itself inside the cluster: ``levrt run FILE --in-cluster``.

Why: long scans should not depend on a laptop staying awake. The orchestration file is shipped
in a ConfigMap to a Pod that runs under the chart's ``levrt-orchestrator`` ServiceAccount,
with the levrt runtime image; inside, the SDK finds in-cluster credentials and the store
Service by itself. The CLI follows the Pod's logs and exits with its exit code.

``orchestrator_objects`` is pure (it builds the objects); ``run_in_cluster`` does the I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from levrt.build import GATE, TaskObjects
from levrt.errors import OrchestrationError
from levrt.settings import Settings

__all__ = ["ORCHESTRATOR_SITE", "SERVICE_ACCOUNT", "SETTINGS_CONFIGMAP", "orchestrator_objects", "run_in_cluster"]

SERVICE_ACCOUNT = "levrt-orchestrator"
SETTINGS_CONFIGMAP = "levrt-settings"
# Where the runtime image keeps the SDK's client-side dependencies (kubernetes_asyncio, aiohttp,
# pyyaml, rich). They sit outside /levrt so task Pods never copy them.
ORCHESTRATOR_SITE = "/opt/levrt-orchestrator"
SOURCE_MOUNT = "/orchestration"
MAX_SOURCE = 512 * 1024


def orchestrator_objects(
    *, sources: Mapping[str, bytes], entry: str, func: str, args: Sequence[str], settings: Settings, run_id: str,
    env: Mapping[str, str] | None = None,
) -> TaskObjects:
    """The Pod that runs ``entry:func`` and the ConfigMap carrying ``sources`` (file name → bytes).

    ``sources`` holds the orchestration file and the modules beside it (the tools it imports).
    """
    if entry not in sources:
        raise OrchestrationError(f"{entry!r} is not among the shipped files {sorted(sources)}.")
    size = sum(len(v) for v in sources.values())
    if size > MAX_SOURCE:
        raise OrchestrationError(
            f"The orchestration and the modules beside it ({', '.join(sorted(sources))}) are {size} bytes; "
            f"in-cluster runs ship at most {MAX_SOURCE // 1024} KiB. Move the file into a directory of its own "
            "with only the tool modules it imports, or move data into files=... of your Crs."
        )
    name = f"lev-orch-{run_id}"
    labels = {"app.kubernetes.io/managed-by": "levrt", "levrt.io/role": "orchestrator", "levrt.io/run": run_id}
    key = entry
    configmap: dict[str, Any] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{name}-source", "namespace": settings.namespace, "labels": labels},
        "binaryData": {k: _b64(v) for k, v in sorted(sources.items())},
        "immutable": True,
    }
    env_list: list[dict[str, Any]] = [
        {"name": "PYTHONPATH", "value": ORCHESTRATOR_SITE},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "LEVRT_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "LEVRT_RUNTIME_IMAGE", "value": settings.runtime_image},
        {"name": "LEVRT_STORE_URI", "valueFrom": {"secretKeyRef": {"name": settings.store_secret, "key": "uri"}}},
    ]
    if settings.keep:
        env_list.append({"name": "LEVRT_KEEP", "value": "1"})
    # The user's variables come last so they can override the settings (LEVRT_TIMEOUT=...).
    env_list += [{"name": k, "value": v} for k, v in sorted((env or {}).items())]
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            "schedulingGates": [{"name": GATE}],
            "restartPolicy": "Never",
            "serviceAccountName": SERVICE_ACCOUNT,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "main",
                "image": settings.runtime_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["/levrt/bin/python3", "-m", "levrt", "run", f"{SOURCE_MOUNT}/{key}:{func}",
                            "--no-progress", *args],
                "env": env_list,
                # Settings the platform team set in the chart (timeouts, resources...) apply too.
                "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIGMAP, "optional": True}}],
                "volumeMounts": [{"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True}],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
            "volumes": [{"name": "source", "configMap": {"name": configmap["metadata"]["name"]}}],
            **({"nodeSelector": dict(settings.node_selector)} if settings.node_selector else {}),
        },
    }
    return TaskObjects(pod=pod, owned=[configmap])


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def new_run_id(source: bytes) -> str:
    """Short, unique, and recognisable per file: 6 hex of the content, 4 random."""
    return hashlib.sha256(source).hexdigest()[:6] + secrets.token_hex(2)


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
    # The file and the modules beside it: tool modules it imports must exist in the Pod too.
    sources = {p.name: p.read_bytes() for p in sorted(path.parent.glob("*.py"))}
    sources[path.name] = path.read_bytes()
    objects = orchestrator_objects(
        sources=sources, entry=path.name, func=func, args=args, settings=settings,
        run_id=new_run_id(sources[path.name]), env=env,
    )
    return asyncio.run(_run(objects, settings=settings, kubeconfig=kubeconfig))


async def _run(objects: TaskObjects, *, settings: Settings, kubeconfig: str | None) -> int:
    from levrt import submit
    from levrt.engine import container_status, finished, start_state
    from levrt.kube import Kube, PodWatch

    kube = await Kube.connect(kubeconfig=kubeconfig)
    ns = settings.namespace
    name = objects.name
    # The same watch-and-predicate machinery as task Pods, on this one Pod.
    watch = PodWatch(kube, namespace=ns, selector=f"levrt.io/run={objects.pod['metadata']['labels']['levrt.io/run']}")
    try:
        await watch.start()
        await submit.submit(kube, ns, objects)
        print(f"progress: orchestration Pod {ns}/{name} submitted", file=sys.stderr, flush=True)
        try:
            try:
                pod = await watch.wait(name, lambda p: start_state(p, need_ready=False) is not None,
                                       timeout=settings.start_timeout)
            except TimeoutError:
                raise OrchestrationError(
                    f"The orchestration Pod {name} did not start within {settings.start_timeout:.0f}s; "
                    f"see kubectl -n {ns} describe pod {name}."
                ) from None
            state = start_state(pod, need_ready=False) or ""
            if state.startswith("failed:"):
                reason, _, detail = state[len("failed:"):].partition(":")
                raise OrchestrationError(
                    f"The orchestration Pod {name} cannot start: {reason} ({detail}). "
                    f"Check that the runtime image {settings.runtime_image} is on the nodes."
                )
            # Following the log of a container that already ended returns all of it, then ends.
            await kube.follow(f"/api/v1/namespaces/{ns}/pods/{name}/log", out=sys.stdout)
            pod = await watch.wait(name, finished)
            status = (container_status(pod).get("state") or {}).get("terminated") or {}
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
