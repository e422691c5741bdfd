"""Reading a Pod: has it started, has it ended, how, and why it will never start.

Why one reader: the engine waits on these answers, in-cluster runs wait on the same ones, and
the CLI prints them; three readers of ``containerStatuses`` would disagree on the edge cases
(a Pod deleted before it started, an image that can never be pulled). Pure: Pods are plain dicts
as the API returns them, plus the key ``"levrt/deleted"`` that the watch adds to a tombstone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from levrt.podenv import EXIT_TIMED_OUT, RUNTIME_COMMAND, TIMEOUT_ENV

__all__ = [
    "DELETED",
    "FATAL_WAITING",
    "IMAGE_PULL_REASONS",
    "INFRASTRUCTURE_REASONS",
    "Failure",
    "StartFailure",
    "condition",
    "container_status",
    "failure",
    "finished",
    "holds_room",
    "infrastructure_failure",
    "main_state",
    "on_node",
    "parse_timestamp",
    "pull_may_recover",
    "runs_runtime",
    "start_state",
    "succeeded",
    "summary",
    "terminated",
    "timed_out",
    "unschedulable_since",
    "waits_for_room",
]

Pod = Mapping[str, Any]

# Set by the watch on the last known state of a Pod that disappeared.
DELETED = "levrt/deleted"

# Waiting reasons after which a container will not start without a change by the user.
FATAL_WAITING = {
    "ErrImagePull": "the image could not be pulled",
    "ImagePullBackOff": "the image could not be pulled",
    "InvalidImageName": "the image name is invalid",
    "ErrImageNeverPull": "the image is not on the node and imagePullPolicy is Never",
    "CreateContainerConfigError": "the container configuration is invalid",
    "CreateContainerError": "the container could not be created",
    "RunContainerError": "the container could not be started",
}
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


@dataclasses.dataclass(frozen=True)
class StartFailure:
    """Why a Pod will never start (truthy, like a started Pod: waiting on it is over)."""

    reason: str
    detail: str


def parse_timestamp(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as the API writes it (``2026-01-02T03:04:05Z``)."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def container_status(pod: Pod, name: str = "main") -> Mapping[str, Any]:
    """The status of container ``name`` (a regular or an init container), or ``{}``."""
    status = pod.get("status", {})
    for key in ("containerStatuses", "initContainerStatuses"):
        statuses: list[Mapping[str, Any]] = status.get(key) or []
        for cs in statuses:
            if cs.get("name") == name:
                return cs
    return {}


def main_state(pod: Pod) -> Mapping[str, Any]:
    """The ``state`` of the main container (``{"running": ...}``, ``{"terminated": ...}`` ...)."""
    return container_status(pod).get("state") or {}


def terminated(pod: Pod) -> Mapping[str, Any]:
    """The main container's ``terminated`` state (exit code, reason, message), or ``{}``. When the
    main container never ran because an init container failed (``levrt-files`` could not fetch a
    stored file), that one's, its message naming it."""
    ended: Mapping[str, Any] = main_state(pod).get("terminated") or {}
    if ended:
        return ended
    for cs in pod.get("status", {}).get("initContainerStatuses") or []:
        init: Mapping[str, Any] = (cs.get("state") or {}).get("terminated") or {}
        if init.get("exitCode"):
            return {**init, "message": f"init container {cs.get('name')}: {init.get('message') or 'failed'}"}
    return {}


@dataclasses.dataclass(frozen=True)
class Failure:
    """How a run ended, as the cluster tells it (read whatever the exit code: see ``succeeded``)."""

    exit_code: int | None
    """The main container's (or the failed init container's) exit code; None when it never ended."""
    reason: str
    """The container's termination reason (``Error``, ``OOMKilled``), else the Pod's (``Evicted``),
    else ``PodDeleted`` (a tombstone) or ``Failed``."""
    message: str
    """The container's termination message (its last lines of output), else the Pod's; ``""`` if none."""
    headline: str
    """The shortest account: the container's message, else its reason, else the Pod's reason; ``""`` if none."""


def failure(pod: Pod) -> Failure:
    """The exit code, reason and message of a run that ended (``terminated``, then the Pod's status)."""
    ended = terminated(pod)
    status = pod.get("status", {})
    reason = ended.get("reason") or status.get("reason") or ("PodDeleted" if pod.get(DELETED) else "Failed")
    return Failure(
        exit_code=ended.get("exitCode"), reason=reason, message=ended.get("message") or status.get("message") or "",
        headline=ended.get("message") or ended.get("reason") or status.get("reason") or "",
    )


def succeeded(pod: Pod) -> bool:
    """Whether the run succeeded: the main container exited 0, or the Pod says so without an exit code."""
    exit_code = terminated(pod).get("exitCode")
    return exit_code == 0 or (pod.get("status", {}).get("phase") == "Succeeded" and exit_code is None)


def condition(pod: Pod, kind: str) -> Mapping[str, Any]:
    """The Pod condition of type ``kind`` (``Ready``, ``PodScheduled``), or ``{}``."""
    conditions: list[Mapping[str, Any]] = pod.get("status", {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == kind:
            return cond
    return {}


def start_state(pod: Pod, *, need_ready: bool) -> StartFailure | bool:
    """True once the main container runs (and is Ready when ``need_ready``) or already ended;
    a ``StartFailure`` when it never will; False while it is still starting."""
    if pod.get(DELETED):
        return StartFailure("PodDeleted", "the Pod was deleted before it started")
    status = pod.get("status", {})
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_WAITING:
                detail = waiting.get("message") or FATAL_WAITING[waiting["reason"]]
                return StartFailure(waiting["reason"], f"container {cs.get('name')}: {detail}")
    state = main_state(pod)
    if "terminated" in state:
        return True
    if "running" in state and status.get("podIP"):
        return not need_ready or condition(pod, "Ready").get("status") == "True"
    return False


def finished(pod: Pod) -> bool:
    """Whether the run is over: the main container ended, the Pod failed, or it is gone."""
    if pod.get(DELETED):
        return True
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return True
    return "terminated" in main_state(pod)


def unschedulable_since(pod: Pod) -> float | None:
    """When the scheduler said the Pod fits no node (epoch seconds), or None."""
    cond = condition(pod, "PodScheduled")
    if cond.get("reason") != "Unschedulable":
        return None
    stamp = cond.get("lastTransitionTime")
    return parse_timestamp(stamp) if stamp else time.time()


def on_node(pod: Pod) -> bool:
    """Whether the scheduler has bound the Pod to a node."""
    return bool(pod.get("spec", {}).get("nodeName")) or condition(pod, "PodScheduled").get("status") == "True"


CAPACITY_MESSAGES = ("Too many pods", "Insufficient ")
"""What the scheduler says when nodes fit the Pod but are full for now (its predicates'
messages), as against never fitting (selectors, taints, affinity)."""


def waits_for_room(pod: Pod) -> bool:
    """Whether the Pod is unschedulable only because the nodes that fit it are full."""
    message = str(condition(pod, "PodScheduled").get("message", ""))
    return unschedulable_since(pod) is not None and any(text in message for text in CAPACITY_MESSAGES)


def holds_room(pod: Pod) -> bool:
    """Whether the Pod is on a node and not yet ended: room that will free up."""
    return on_node(pod) and not finished(pod)


def runs_runtime(pod: Pod) -> bool:
    """Whether the main container runs levrt's bundled Python (the Cr has an entry)."""
    for container in pod.get("spec", {}).get("containers") or []:
        if container.get("name") == "main":
            return tuple(container.get("command") or ())[:1] == RUNTIME_COMMAND[:1]
    return False


def summary(pod: Pod) -> str:
    """One word for people: ``running``, ``done``, ``timed-out``, ``failed(<reason>)``, ``pending(<reason>)``."""
    if timed_out(pod):
        return "timed-out"
    state = main_state(pod)
    if "terminated" in state:
        code = state["terminated"].get("exitCode")
        return "done" if code == 0 else f"failed({state['terminated'].get('reason', code)})"
    if "running" in state:
        return "running"
    waiting = (state.get("waiting") or {}).get("reason")
    return f"pending({waiting})" if waiting else "pending"


# -- the end of a run: timed out, or ended by the cluster rather than by the task -------------------

INFRASTRUCTURE_REASONS = {
    "Evicted": "the kubelet evicted it (node pressure)",
    "Preempting": "the scheduler preempted it for a Pod of higher priority",
    "NodeLost": "its node stopped answering",
    "Shutdown": "its node shut down",
    "Terminated": "its node shut down",
    "UnexpectedAdmissionError": "its node could not admit it",
    "OutOfcpu": "its node had no cpu left when it was admitted",
    "OutOfmemory": "its node had no memory left when it was admitted",
    "OutOfpods": "its node had no Pod slot left when it was admitted",
}
"""Pod ``status.reason`` values that say the cluster ended the Pod, not the task (retried)."""
# What an image pull failure says when the image is not there or not ours to pull: a new Pod
# would fail the same way, so these are not retried.
_PULL_FOR_GOOD = ("not found", "manifest unknown", "unauthorized", "denied", "invalid reference", "no such host")


def timed_out(pod: Pod) -> bool:
    """Whether the run ended at its timeout: the kubelet's deadline (``DeadlineExceeded``), or the
    runtime's timer (exit ``EXIT_TIMED_OUT`` of a main container running the runtime with a
    ``LEVRT_TIMEOUT``; an image's own program may exit 124 for its own reasons)."""
    if pod.get("status", {}).get("reason") == "DeadlineExceeded":
        return True
    if terminated(pod).get("exitCode") != EXIT_TIMED_OUT or not runs_runtime(pod):
        return False
    for container in pod.get("spec", {}).get("containers") or []:
        if container.get("name") == "main":
            return any(e.get("name") == TIMEOUT_ENV for e in container.get("env") or [])
    return False


def infrastructure_failure(pod: Pod, *, deleted_by_us: bool = False) -> str | None:
    """Why the cluster, not the task, ended this Pod (a new Pod may well succeed), or None.

    Deleted by someone else (a tombstone or a ``deletionTimestamp`` that ``deleted_by_us`` does
    not explain), evicted, preempted, its node lost or shut down. A main container that exited 0
    succeeded whatever happened to the Pod afterwards; a timeout is never such a failure.
    """
    if terminated(pod).get("exitCode") == 0 or timed_out(pod):
        return None
    status = pod.get("status", {})
    reason = status.get("reason")
    if reason in INFRASTRUCTURE_REASONS:
        return f"{reason}: {INFRASTRUCTURE_REASONS[reason]}"
    disruption = condition(pod, "DisruptionTarget")
    if disruption.get("status") == "True":
        why = disruption.get("message") or "the cluster ended it"
        return f"{disruption.get('reason') or 'DisruptionTarget'}: {why}"
    if (pod.get(DELETED) or pod.get("metadata", {}).get("deletionTimestamp")) and not deleted_by_us:
        return "PodDeleted: the Pod was deleted by someone else"
    return None


def pull_may_recover(failure: StartFailure) -> bool:
    """Whether an image pull failure may be a hiccup (a registry timeout, a reset connection) that
    a new Pod gets past: ``ErrImagePull``/``ImagePullBackOff`` unless the message says the image does
    not exist or may not be pulled; never ``InvalidImageName`` or ``ErrImageNeverPull``."""
    if failure.reason not in ("ErrImagePull", "ImagePullBackOff"):
        return False
    return not any(text in failure.detail.lower() for text in _PULL_FOR_GOOD)
