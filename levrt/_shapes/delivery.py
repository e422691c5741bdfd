"""How the runtime reaches a task's Pod: mounted from its image, from the node cache, or copied.

Why apart from the Pod builder: a container that runs an entry needs the runtime's Python at
``/levrt``, and how it gets there depends on the cluster, not on the Cr (``Settings.runtime_mode``
and ``runtime_host_path``; ``levrt._core.runtime_mode`` finds out which works). The builder asks
for a ``RuntimeDelivery`` and places what it holds:

- ``runtime_host_path``: a read-only hostPath that the chart's node cache fills once per node;
- ``image`` mode: the runtime image itself as a read-only image volume (Kubernetes 1.35+);
- ``copy`` / ``auto``: an emptyDir that a copier container fills from the runtime image, as the
  postStart hook of the first regular container, or as an init container when the Pod has
  services (native sidecars start before every regular container and may run entries).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from levrt._shapes.names import RUNTIME_COPIER, TERMINATION_POLICY
from levrt.podenv import PYTHON, RUNTIME_MOUNT, RUNTIME_TARGET
from levrt.settings import Settings

__all__ = ["RUNTIME_COPY_COMMAND", "RUNTIME_VOLUME", "RuntimeDelivery", "runtime_delivery",
           "runtime_volume"]

RUNTIME_VOLUME = "levrt-runtime"
# The runtime image's root is the bundle's prefix (bin/, lib/), with /levrt a link to that root: so
# the image mounted as a volume at /levrt is the runtime, and in a container of that image
# /levrt/bin/python3 runs too. The init container copies the prefix, with the image's own
# Python, into the emptyDir mounted at /levrt-target.
BUNDLE_DIRS = ("bin", "lib")
RUNTIME_COPY_COMMAND = [
    PYTHON,
    "-c",
    "import shutil,sys\n"
    "for d in sys.argv[3:]: shutil.copytree(sys.argv[1]+'/'+d, sys.argv[2]+'/'+d, symlinks=True, dirs_exist_ok=True)",
    RUNTIME_MOUNT,
    RUNTIME_TARGET,
    *BUNDLE_DIRS,
]
COPIED_MARKER = ".copied"
"""Written by the postStart copy when it is done: the copier container then exits."""


@dataclasses.dataclass(frozen=True)
class RuntimeDelivery:
    """What a Pod needs so that its containers find the runtime at ``/levrt``."""

    volume: dict[str, Any]
    """The ``levrt-runtime`` volume, mounted read-only at ``/levrt`` by each container with an entry."""
    init_containers: list[dict[str, Any]]
    """The copier as an init container (a Pod with services), placed before the services."""
    containers: list[dict[str, Any]]
    """The copier as the first regular container (postStart copy, a Pod without services)."""


def runtime_delivery(settings: Settings, *, services: bool) -> RuntimeDelivery:
    """How the runtime reaches a Pod with these ``settings``; ``services``: whether it has any."""
    volume = runtime_volume(settings)
    if not _copies_runtime(settings):
        return RuntimeDelivery(volume=volume, init_containers=[], containers=[])
    copier: dict[str, Any] = {
        "name": RUNTIME_COPIER,
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(RUNTIME_COPY_COMMAND),
        "volumeMounts": [{"name": RUNTIME_VOLUME, "mountPath": RUNTIME_TARGET}],
        "terminationMessagePolicy": TERMINATION_POLICY,
    }
    if services:  # services start before regular containers and may need the runtime
        return RuntimeDelivery(volume=volume, init_containers=[copier], containers=[])
    copier.update(_poststart_copier())
    return RuntimeDelivery(volume=volume, init_containers=[], containers=[copier])


def _poststart_copier() -> dict[str, Any]:
    """The copy as the postStart hook of a first regular container, which lives until the hook
    has copied and then exits.

    Why not an init container: the kubelet starts the next container only once an init container's
    exit is seen by its relist (1 s), while it runs a postStart hook to its end and then starts
    the next container at once (bench.roundtrip: "bare + postStart cp" against "bare + init
    copy"). With services (native sidecars, which start before every regular container and may
    run entries) the init container stays.
    """
    copied = f"{RUNTIME_TARGET}/{COPIED_MARKER}"
    script = RUNTIME_COPY_COMMAND[2] + f"\nopen({copied!r}, 'w').close()"
    return {
        "command": [PYTHON, "-c", f"import os,time\nwhile not os.path.exists({copied!r}): time.sleep(0.02)"],
        "lifecycle": {"postStart": {"exec": {"command": [*RUNTIME_COPY_COMMAND[:2], script,
                                                          *RUNTIME_COPY_COMMAND[3:]]}}},
    }


def _copies_runtime(settings: Settings) -> bool:
    """Whether the runtime reaches the Pod through a copier's copy (``copy``, ``auto``)."""
    return not settings.runtime_host_path and settings.runtime_mode != "image"


def runtime_volume(settings: Settings) -> dict[str, Any]:
    """The ``levrt-runtime`` volume: the node cache, the runtime image, or an emptyDir to copy into."""
    if settings.runtime_host_path:
        # Filled once per node by the chart's DaemonSet: no copy, no init container.
        return {"name": RUNTIME_VOLUME, "hostPath": {"path": settings.runtime_host_path, "type": "Directory"}}
    if settings.runtime_mode == "image":
        # The runtime image itself, mounted read-only: no copy, no init container.
        return {"name": RUNTIME_VOLUME,
                "image": {"reference": settings.runtime_image, "pullPolicy": settings.image_pull_policy}}
    return {"name": RUNTIME_VOLUME, "emptyDir": {}}
