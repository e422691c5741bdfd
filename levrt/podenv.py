"""The Pod ↔ runtime contract: every name and path a levrt Pod and the processes in it agree on.

Why one module: the builders (``levrt._shapes``) write environment variables, mount paths and
commands into Pods, and the processes inside read them back: the task runtime
(``levrt.runtime``), the ``levrt-files`` fetcher (``levrt.runtime.fetch``), and the orchestration
Pod's ``levrt run`` (``Settings.from_env``, ``levrt._core.engine``). Written out on both sides, a
renamed variable would still build and then read nothing. So each name is spelled here once, with
the default the reading side uses when it is unset, and both sides import it. The image builder
(``levrt._build``) puts the runtime where ``RUNTIME_MOUNT`` says. The chart (``charts/levrt``)
sets the ``Settings`` variables in YAML, which cannot import this: keep it in step by hand.

Standard library only, and nothing of levrt: every task container imports it (DESIGN.md, "Import
rule"), so it sits in the lowest layer.
"""

from __future__ import annotations

__all__ = [
    "COLLECTION_ENV",
    "DATABASE_ENV",
    "DEBUG_ENV",
    "DEBUG_SOCKET_ENV",
    "DEBUG_WAIT_ENV",
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "DEFAULT_DEBUG_SOCKET",
    "DEFAULT_DEBUG_WAIT",
    "DEFAULT_STORE_WAIT",
    "DEFAULT_TERMINATION_LOG",
    "DETACHED_ENV",
    "EXIT_TIMED_OUT",
    "FETCH_MODULE",
    "FILES_MOUNT",
    "IMAGE_PULL_POLICY_ENV",
    "IMAGE_REGISTRY_ENV",
    "JOB_ENV",
    "KEEP_ENV",
    "LEASE_SECONDS_ENV",
    "NAMESPACE_ENV",
    "NODE_SELECTOR_ENV",
    "ORCHESTRATOR_SITE",
    "OWNER_ENV",
    "PAYLOAD_ENV",
    "PAYLOAD_MOUNT",
    "POD_NAME_ENV",
    "POD_UID_ENV",
    "PROBE_MOUNT",
    "PYTHON",
    "REPORT_KEY_ENV",
    "REPORT_POD_ENV",
    "RESERVED_PATHS",
    "RESOURCES_ENV",
    "RESUME_ENV",
    "RUNTIME_COMMAND",
    "RUNTIME_HOST_PATH_ENV",
    "RUNTIME_IMAGE_ENV",
    "RUNTIME_MODE_ENV",
    "RUNTIME_MODULE",
    "RUNTIME_MOUNT",
    "RUNTIME_TARGET",
    "SCHEDULE_ENV",
    "SCHEDULE_TIMEOUT_ENV",
    "SERVICE_PAYLOAD_PREFIX",
    "START_TIMEOUT_ENV",
    "STORE_SECRET_ENV",
    "STORE_SECRET_KEY",
    "STORE_URI_ENV",
    "STORE_WAIT_ENV",
    "TASK_ENV",
    "TASK_STORE_SECRET_ENV",
    "TERMINATION_LOG_ENV",
    "TIMEOUT_ENV",
    "TIMEOUT_GRACE",
    "TOLERATIONS_ENV",
    "WARM_COMMAND",
    "WARM_KEY_ENV",
    "WARM_MODULE",
    "WARM_WORKER_ENV",
]

# -- Paths: the runtime bundle and the mounts of a task Pod ---------------------------------------

RUNTIME_MOUNT = "/levrt"
"""Where the runtime bundle, a relocatable CPython prefix, is mounted (and is, in the runtime
image): its ELF interpreter path and rpath are fixed there at build."""
PYTHON = f"{RUNTIME_MOUNT}/bin/python3"
"""The runtime's Python, in every container that mounts the bundle and in the runtime image."""
RUNTIME_MODULE = "levrt.runtime"
RUNTIME_COMMAND = (PYTHON, "-m", RUNTIME_MODULE)
"""The command of a container that runs an entry; its args are the Cr's ``cmd``."""
WARM_MODULE = "levrt.runtime.warm"
WARM_COMMAND = (PYTHON, "-m", WARM_MODULE)
"""The command of a warm Pod's container (``Cr(warm=...)``): it runs the entries addressed to it."""
FETCH_MODULE = "levrt.runtime.fetch"
"""Run by the ``levrt-files`` init container: ``PYTHON -m FETCH_MODULE FILES_MOUNT SHA256...``."""
RUNTIME_TARGET = "/levrt-target"
"""Where the copying init container mounts the emptyDir it copies the bundle into."""
PAYLOAD_MOUNT = "/levrt-payload"
"""Where the payload Secret is mounted: one key per container with an entry."""
SERVICE_PAYLOAD_PREFIX = "svc-"
"""A service's payload key is this prefix and the service's name (the main container's is ``main``)."""
FILES_MOUNT = "/levrt-files"
"""Where the ``levrt-files`` init container writes stored files, one ``<sha256>`` each."""
PROBE_MOUNT = "/levrt-probe"
"""Where the runtime-mode probe Pod mounts the runtime image as a volume."""
ORCHESTRATOR_SITE = "/opt/levrt-orchestrator"
"""The client side's own dependencies in the runtime image, for orchestration Pods; outside
``RUNTIME_MOUNT`` so task Pods never copy them."""
RESERVED_PATHS = (RUNTIME_MOUNT, PAYLOAD_MOUNT, RUNTIME_TARGET)
"""Mount points of levrt itself in a task's containers: a file there would hide the runtime or the payload."""

# -- A task container's environment: written by levrt._shapes.build, read by levrt.runtime --------

PAYLOAD_ENV = "LEVRT_PAYLOAD"
"""Path of the pickled call, ``PAYLOAD_MOUNT/<key>``."""
REPORT_KEY_ENV = "LEVRT_REPORT_KEY"
"""Path of the task's reporting key, ``PAYLOAD_MOUNT/<endreports.KEY_FILE>``; set on ``main`` only:
its runtime reports the task's end through the store (``levrt.endreports``)."""
REPORT_POD_ENV = "LEVRT_REPORT_POD"
"""The task Pod's own name (downward API): the report's id, one per attempt."""
STORE_URI_ENV = "LEVRT_STORE_URI"
"""The store's address: in Pods from the Secret ``Settings.store_secret``, key ``STORE_SECRET_KEY``;
on a laptop set by hand (``Settings.store_uri``)."""
STORE_SECRET_KEY = "uri"
DATABASE_ENV = "LEVRT_DB"
DEFAULT_DATABASE = "levrt"
COLLECTION_ENV = "LEVRT_COLLECTION"
"""The full name of the task's record collection (namespace prefix included)."""
DEFAULT_COLLECTION = "default"
JOB_ENV = "LEVRT_JOB"
TASK_ENV = "LEVRT_TASK"
TIMEOUT_ENV = "LEVRT_TIMEOUT"
"""Seconds from the entry's start to its interrupt (``Cr(timeout=...)``); also ``Settings.timeout``."""
WARM_KEY_ENV = "LEVRT_WARM_KEY"
"""In a warm Pod: its pool's key, under which the job signs each entry (``levrt.warmqueue.entry_mac``)."""
WARM_WORKER_ENV = "LEVRT_WARM_WORKER"
"""In a warm Pod: its own name, which the entries addressed to it carry (``levrt.warmqueue``)."""
DEBUG_WAIT_ENV = "LEVRT_DEBUG_WAIT"
"""Seconds a breakpoint waits for ``levrt attach``; also ``Settings.debug_wait``."""
DEFAULT_DEBUG_WAIT = 300.0

# Read by the runtime, never written by the builder: for tests and runs by hand.
STORE_WAIT_ENV = "LEVRT_STORE_WAIT"
"""Seconds the runtime waits after the entry for writes buffered during a store outage."""
DEFAULT_STORE_WAIT = 300.0
TERMINATION_LOG_ENV = "LEVRT_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
"""Where Kubernetes reads a container's termination message (the reason the client shows)."""
DEBUG_SOCKET_ENV = "LEVRT_DEBUG_SOCKET"
DEFAULT_DEBUG_SOCKET = "/tmp/levrt-debug.sock"
"""The Unix socket a waiting breakpoint listens on, and ``levrt attach``'s bridge connects to."""

# -- The deadline, counted alike by the runtime's timer and the Pod's backstop ---------------------

TIMEOUT_GRACE = 10
"""Seconds between the interrupt at the deadline and the hard end of an entry still running."""
EXIT_TIMED_OUT = 124
"""The runtime's exit code after the deadline (the code coreutils' ``timeout`` uses)."""

# -- Settings (levrt.settings): set by the chart's ConfigMap and the orchestration Pod, or by hand --

NAMESPACE_ENV = "LEVRT_NAMESPACE"
RUNTIME_IMAGE_ENV = "LEVRT_RUNTIME_IMAGE"
RUNTIME_HOST_PATH_ENV = "LEVRT_RUNTIME_HOST_PATH"
RUNTIME_MODE_ENV = "LEVRT_RUNTIME_MODE"
STORE_SECRET_ENV = "LEVRT_STORE_SECRET"
TASK_STORE_SECRET_ENV = "LEVRT_TASK_STORE_SECRET"
IMAGE_PULL_POLICY_ENV = "LEVRT_IMAGE_PULL_POLICY"
IMAGE_REGISTRY_ENV = "LEVRT_IMAGE_REGISTRY"
KEEP_ENV = "LEVRT_KEEP"
START_TIMEOUT_ENV = "LEVRT_START_TIMEOUT"
SCHEDULE_TIMEOUT_ENV = "LEVRT_SCHEDULE_TIMEOUT"
LEASE_SECONDS_ENV = "LEVRT_LEASE_SECONDS"
RESOURCES_ENV = "LEVRT_RESOURCES"
NODE_SELECTOR_ENV = "LEVRT_NODE_SELECTOR"
TOLERATIONS_ENV = "LEVRT_TOLERATIONS"

# -- An orchestration Pod's own environment (levrt._shapes.orchestrator → levrt._core.engine) ------

POD_NAME_ENV = "LEVRT_POD_NAME"
POD_UID_ENV = "LEVRT_POD_UID"
"""The Pod's own name and uid (downward API): the job it runs adopts it, owned by the job's Lease."""
DETACHED_ENV = "LEVRT_DETACHED"
"""Set when its client left it to run on (``levrt run --detach``)."""
OWNER_ENV = "LEVRT_OWNER"
RESUME_ENV = "LEVRT_RESUME"
"""In an orchestration Pod: the job ``levrt run --resume JOB`` resumes."""
SCHEDULE_ENV = "LEVRT_SCHEDULE"
"""In a scheduled run's orchestration Pod: the schedule's name (the job record keeps it, ``what.schedule``)."""
"""The Kubernetes identity of the client that submitted it: its job's owner (not the Pod's account)."""
DEBUG_ENV = "LEVRT_DEBUG"
"""``1``: the ``levrt`` command shows the traceback of an unexpected error (in a Pod or not)."""
