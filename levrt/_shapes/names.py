"""Every name levrt gives to things in the cluster, written once: labels, selectors, object
names, and the API path of every object it touches (the paths and variables a Pod shares with
the runtime inside it are ``levrt.podenv``'s).

Why one module: the builder writes these names, the engine and the CLI look objects up by them,
and the chart and tests read them too. A label spelled twice drifts; here it cannot.
Pure: no I/O, standard library only.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = [
    "ATTEMPT_LABEL",
    "COLLECTION_ANNOTATION",
    "ENTRY_ANNOTATION",
    "FILE_LABEL",
    "GATE",
    "JOB_LABEL",
    "KEPT_ANNOTATION",
    "LEASE_GROUP",
    "MANAGED_BY",
    "MANAGED_SELECTOR",
    "PAYLOAD_ROLE",
    "ROLE_LABEL",
    "RUNTIME_COPIER",
    "RUN_LABEL",
    "SHA256_ANNOTATION",
    "TASK_LABEL",
    "TERMINATION_POLICY",
    "VERSION_PATH",
    "api_path",
    "file_object_name",
    "image_reference",
    "job_selector",
    "lease_name",
    "orchestrator_name",
    "payload_secret_name",
    "pod_name",
    "task_labels",
    "task_of_pod",
]

MANAGED_BY = {"app.kubernetes.io/managed-by": "levrt"}
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=levrt"
JOB_LABEL = "levrt.io/job"
TASK_LABEL = "levrt.io/task"
FILE_LABEL = "levrt.io/file"
ROLE_LABEL = "levrt.io/role"
ATTEMPT_LABEL = "levrt.io/attempt"
"""On the Pod of a retried task (``Cr(retries=...)``): 1 for the first retry, absent on the first Pod."""
RUNTIME_COPIER = "levrt-runtime"
"""The container that copies the runtime into a Pod (copy mode): levrt's, not the task's."""
PAYLOAD_ROLE = "payload"
"""The role label of a task's payload Secret, which the client deletes itself (levrt._clients.sweep)."""
RUN_LABEL = "levrt.io/run"
COLLECTION_ANNOTATION = "levrt.io/collection"
ENTRY_ANNOTATION = "levrt.io/entry"
SHA256_ANNOTATION = "levrt.io/sha256"
LEASE_GROUP = "coordination.k8s.io"
"""The API group of a job's Lease (``levrt._clients.lease``): everything of the job hangs off it."""
KEPT_ANNOTATION = "levrt.io/kept"
"""On the Lease of a job that ended with ``keep``: the reaper leaves it, ``levrt gc`` removes it."""
# A Pod behind this scheduling gate cannot start until the objects it owns exist.
GATE = "levrt.io/objects"

# The last lines of a container's output become its termination message when it wrote none.
TERMINATION_POLICY = "FallbackToLogsOnError"

VERSION_PATH = "/version"


def image_reference(image: str, registry: str | None) -> str | None:
    """The reference a container pulls: ``image`` itself, or for a platform image ``.user.tool:tag``
    (1.x) ``<registry>/user.tool:tag``. None when a platform image has no registry to come from."""
    if not image.startswith("."):
        return image
    if registry is None:
        return None
    return f"{registry}/{image[1:]}"


def pod_name(job: int, task: int, attempt: int = 0) -> str:
    """``lev-j{job}-t{task}``: the Pod of one task; ``lev-j{job}-t{task}-r{attempt}`` for a retry."""
    return f"lev-j{job}-t{task}" if not attempt else f"lev-j{job}-t{task}-r{attempt}"


def task_of_pod(name: str) -> tuple[int, int] | None:
    """The (job, task) of a task Pod's name (any attempt), or None for another name: ``pod_name``'s inverse."""
    match = re.fullmatch(r"lev-j(\d+)-t(\d+)(?:-r\d+)?", name)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def payload_secret_name(pod: str) -> str:
    """The Secret carrying the pickled calls of a Pod's containers."""
    return f"{pod}-payload"


def orchestrator_name(run_id: str) -> str:
    """The Pod of one in-cluster orchestration run."""
    return f"lev-orch-{run_id}"


def lease_name(job: int) -> str:
    """``levrt-job-{job}``: the Lease that owns every object of one job."""
    return f"levrt-job-{job}"


def file_object_name(sha256_hex: str) -> str:
    """``levrt-f-<first 40 hex digits>``: the content-addressed object of one file."""
    return f"levrt-f-{sha256_hex[:40]}"


def task_labels(job: int, task: int) -> dict[str, str]:
    return {**MANAGED_BY, JOB_LABEL: str(job), TASK_LABEL: str(task)}


def job_selector(job: int | None = None) -> str:
    """The label selector of every levrt object, or of one job's."""
    return MANAGED_SELECTOR if job is None else f"{MANAGED_SELECTOR},{JOB_LABEL}={job}"


def api_path(
    resource: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    sub: str | None = None,
    group: str = "",
    version: str = "v1",
) -> str:
    """The path of a resource: a collection, one object, or one of its subresources.

    ``api_path("pods", namespace="levrt", name="lev-j1-t0", sub="log")`` →
    ``/api/v1/namespaces/levrt/pods/lev-j1-t0/log``; ``group`` selects a named API group
    (``/apis/<group>/<version>/...``) instead of the core one.
    """
    parts = [f"/apis/{group}/{version}" if group else f"/api/{version}"]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(resource)
    if name is not None:
        parts.append(quote(name, safe=""))
    elif sub is not None:
        raise ValueError("api_path: a subresource needs an object name")
    if sub is not None:
        parts.append(sub)
    return "/".join(parts)
