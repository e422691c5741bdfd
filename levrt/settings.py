"""``Settings``: where and how tasks run — namespace, runtime image, store, timeouts, scheduling.

Why a frozen value passed around instead of globals: the pure builder must give the same objects
for the same inputs, tests build with many settings side by side, and an orchestration running
in-cluster and one on a laptop differ only in their settings. ``Settings.from_env()`` reads the
``LEVRT_*`` environment once, at the edge; everything inside takes a ``Settings`` argument.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from levrt import podenv
from levrt._version import __version__
from levrt.checks import check_node_selector, check_resources, check_timeout, check_tolerations
from levrt.checks.patterns import DNS1123_LABEL, DNS1123_SUBDOMAIN, REGISTRY_RE
from levrt.errors import SettingsError

__all__ = ["DEFAULT_RUNTIME_IMAGE", "PULL_POLICIES", "RUNTIME_MODES", "Settings"]

DEFAULT_RUNTIME_IMAGE = f"levrt.local/runtime:{__version__}"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RUNTIME_MODES = ("auto", "image", "copy")
STORE_SECRET = "levrt-store"
"""The chart's Secret (key ``uri``) of the application user's store URI."""
TASK_STORE_SECRET = "levrt-store-task"
"""The chart's Secret (key ``uri``) of the task user's store URI: levrt's journal is not theirs to write."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """How tasks are run. Build with ``Settings(...)``, ``Settings.from_env()`` or ``.replace()``."""

    namespace: str = "levrt"
    """Kubernetes namespace of every object (``LEVRT_NAMESPACE``)."""
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    """Image holding the injected Python runtime at ``/levrt`` (``LEVRT_RUNTIME_IMAGE``)."""
    runtime_mode: str = "auto"
    """How task Pods get the runtime: ``image`` mounts the runtime image as a volume (Kubernetes
    1.35+), ``copy`` copies it with an init container, ``auto`` lets the first job on a cluster find
    out which works (``LEVRT_RUNTIME_MODE``; see ``levrt._core.runtime_mode``)."""
    runtime_host_path: str | None = None
    """A node directory holding the bundle (the chart's ``runtime.nodeCache`` DaemonSet fills it);
    when set, tasks mount it at ``/levrt`` instead of copying it with an init container, which saves
    the kubelet's init-container round (``LEVRT_RUNTIME_HOST_PATH``)."""
    store_uri: str | None = None
    """Store URI for *this* process; None → read Secret ``store_secret`` (``LEVRT_STORE_URI``)."""
    store_secret: str = STORE_SECRET
    """Secret with key ``uri`` that orchestration Pods (and clients without ``store_uri``) read the
    store URI from (``LEVRT_STORE_SECRET``)."""
    task_store_secret: str | None = None
    """Secret with key ``uri`` that task Pods read the store URI from (``LEVRT_TASK_STORE_SECRET``);
    None: ``store_secret``, except that a job on the chart's store gives its tasks the chart's task
    user (``TASK_STORE_SECRET``, who may not write levrt's journal: job records and their owners)
    when that Secret exists (``levrt._clients.store.task_credentials``)."""
    database: str = podenv.DEFAULT_DATABASE
    """MongoDB database (``LEVRT_DB``)."""
    keep: bool = False
    """Keep Pods after their results are read, for debugging (``LEVRT_KEEP=1``)."""
    image_registry: str | None = None
    """Where the platform's own images live: ``Cr(".alice.nmap:7.9")`` runs
    ``<image_registry>/alice.nmap:7.9`` (``LEVRT_IMAGE_REGISTRY``, e.g. ``registry.example:5000/tools``)."""
    image_pull_policy: str = "IfNotPresent"
    """imagePullPolicy of every container (``LEVRT_IMAGE_PULL_POLICY``)."""
    timeout: int | None = None
    """Default of ``Cr(timeout=...)``: seconds before a run is interrupted (then ended), with the
    Pod's ``activeDeadlineSeconds`` as the backstop (``LEVRT_TIMEOUT``; DESIGN.md "Run options")."""
    start_timeout: float = 300.0
    """Seconds a task may take to start once it has a node (pull, create, probes) before it fails
    (``LEVRT_START_TIMEOUT``); time queued for a node does not count."""
    schedule_timeout: float = 120.0
    """Seconds a Pod may stay unschedulable before it fails (``LEVRT_SCHEDULE_TIMEOUT``), unless it
    only waits for room that Pods of the same job will free."""
    debug_wait: float | None = None
    """Seconds a ``breakpoint()`` in an entry waits for ``levrt attach`` (0: breakpoints are
    skipped; None: the runtime's default, 300) (``LEVRT_DEBUG_WAIT``)."""
    resources: Mapping[str, Any] | None = None
    """Main container ``resources``, e.g. ``{"limits": {"memory": "1Gi"}}`` (``LEVRT_RESOURCES``, JSON);
    a ``Cr(resources=...)`` replaces them."""
    node_selector: Mapping[str, str] | None = None
    """Pod ``nodeSelector`` (``LEVRT_NODE_SELECTOR``, JSON object); a Cr's keys are merged over it."""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    """Pod ``tolerations`` (``LEVRT_TOLERATIONS``, JSON list); a Cr's are appended."""
    lease_seconds: float = 30.0
    """How long a job's Lease stays valid without renewal (``LEVRT_LEASE_SECONDS``); the client renews
    it every third of that, and the chart's reaper ends a job whose Lease was not renewed for twice
    that (``levrt._clients.lease``)."""

    def __post_init__(self) -> None:
        if not DNS1123_LABEL.match(self.namespace) or len(self.namespace) > 63:
            raise SettingsError(
                f"namespace={self.namespace!r} is not a Kubernetes namespace name (lowercase letters, "
                "digits and '-', at most 63). Set LEVRT_NAMESPACE to e.g. 'levrt'."
            )
        if not self.runtime_image or any(c.isspace() for c in self.runtime_image):
            raise SettingsError(f"runtime_image={self.runtime_image!r} is not an image reference.")
        if self.runtime_mode not in RUNTIME_MODES:
            raise SettingsError(f"runtime_mode={self.runtime_mode!r}; use one of {', '.join(RUNTIME_MODES)}.")
        if self.runtime_host_path is not None and (
            not self.runtime_host_path.startswith("/") or any(c.isspace() for c in self.runtime_host_path)
        ):
            raise SettingsError(
                f"runtime_host_path={self.runtime_host_path!r} must be an absolute path on the nodes, "
                "e.g. /var/lib/levrt/runtime/2.0.0 (the chart's runtime.nodeCache sets it)."
            )
        for name in ("store_secret", "task_store_secret"):
            secret = getattr(self, name)
            if secret is not None and (not DNS1123_SUBDOMAIN.match(secret) or len(secret) > 253):
                raise SettingsError(f"{name}={secret!r} is not a valid Secret name.")
        if not self.database or any(c in self.database for c in '/\\. "$\0'):
            raise SettingsError(f"database={self.database!r} is not a valid MongoDB database name.")
        if self.image_registry is not None and not REGISTRY_RE.match(self.image_registry):
            raise SettingsError(
                f"image_registry={self.image_registry!r} is not a registry: write a host, an optional port "
                "and an optional path, without scheme or tag, e.g. LEVRT_IMAGE_REGISTRY=registry.example:5000/tools."
            )
        if self.image_pull_policy not in PULL_POLICIES:
            raise SettingsError(
                f"image_pull_policy={self.image_pull_policy!r}; use one of {', '.join(PULL_POLICIES)}."
            )
        check_timeout(self.timeout, what="timeout", error=SettingsError)
        for name in ("start_timeout", "schedule_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SettingsError(f"{name}={value!r}; use a number of seconds > 0.")
        if self.debug_wait is not None and (
            isinstance(self.debug_wait, bool) or not isinstance(self.debug_wait, int | float) or self.debug_wait < 0
        ):
            raise SettingsError(f"debug_wait={self.debug_wait!r}; use a number of seconds >= 0 (0 skips breakpoints).")
        if isinstance(self.lease_seconds, bool) or not isinstance(self.lease_seconds, int | float) or not (
            3 <= self.lease_seconds <= 3600
        ):
            raise SettingsError(f"lease_seconds={self.lease_seconds!r}; use a number of seconds from 3 to 3600 "
                                "(LEVRT_LEASE_SECONDS).")
        # Normalised in place (the dataclass is frozen): the builder then copies them as they are.
        object.__setattr__(self, "resources", check_resources(self.resources, what="resources", error=SettingsError))
        selector = check_node_selector(self.node_selector, what="node_selector", error=SettingsError)
        object.__setattr__(self, "node_selector", selector)
        object.__setattr__(
            self, "tolerations", tuple(check_tolerations(self.tolerations, what="tolerations", error=SettingsError))
        )

    @property
    def tasks_secret(self) -> str:
        """The Secret task Pods read the store URI from: ``task_store_secret``, else ``store_secret``."""
        return self.task_store_secret or self.store_secret

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``LEVRT_*`` variables of ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        plain = {
            podenv.NAMESPACE_ENV: "namespace",
            podenv.RUNTIME_IMAGE_ENV: "runtime_image",
            podenv.RUNTIME_HOST_PATH_ENV: "runtime_host_path",
            podenv.RUNTIME_MODE_ENV: "runtime_mode",
            podenv.STORE_URI_ENV: "store_uri",
            podenv.STORE_SECRET_ENV: "store_secret",
            podenv.TASK_STORE_SECRET_ENV: "task_store_secret",
            podenv.DATABASE_ENV: "database",
            podenv.IMAGE_PULL_POLICY_ENV: "image_pull_policy",
            podenv.IMAGE_REGISTRY_ENV: "image_registry",
        }
        for var, field in plain.items():
            if env.get(var):
                kw[field] = env[var]
        if env.get(podenv.KEEP_ENV):
            kw["keep"] = env[podenv.KEEP_ENV].strip().lower() in ("1", "true", "yes", "on")
        if env.get(podenv.TIMEOUT_ENV):
            kw["timeout"] = _number(env, podenv.TIMEOUT_ENV, int)
        for var, field in (
            (podenv.START_TIMEOUT_ENV, "start_timeout"),
            (podenv.SCHEDULE_TIMEOUT_ENV, "schedule_timeout"),
            (podenv.DEBUG_WAIT_ENV, "debug_wait"),
            (podenv.LEASE_SECONDS_ENV, "lease_seconds"),
        ):
            if env.get(var):
                kw[field] = _number(env, var, float)
        for var, field, kind in (
            (podenv.RESOURCES_ENV, "resources", dict),
            (podenv.NODE_SELECTOR_ENV, "node_selector", dict),
            (podenv.TOLERATIONS_ENV, "tolerations", list),
        ):
            if env.get(var):
                value = _json(env, var, kind)
                kw[field] = tuple(value) if kind is list else value
        return cls(**kw)


def _number(env: Mapping[str, str], var: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(env[var])
    except ValueError:
        raise SettingsError(f"{var}={env[var]!r} is not a number of seconds.") from None


def _json(env: Mapping[str, str], var: str, kind: type) -> Any:
    try:
        value = json.loads(env[var])
    except ValueError as exc:
        raise SettingsError(f"{var}={env[var]!r} is not valid JSON ({exc}).") from None
    if not isinstance(value, kind):
        raise SettingsError(f"{var}={env[var]!r} must be a JSON {'object' if kind is dict else 'list'}.")
    return value
