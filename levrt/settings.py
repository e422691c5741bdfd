"""``Settings``: where and how tasks run — namespace, runtime image, store, timeouts, scheduling.

Why a frozen value passed around instead of globals: the pure builder must give the same objects
for the same inputs, tests build with many settings side by side, and an orchestration running
in-cluster and one on a laptop differ only in their settings. ``Settings.from_env()`` reads the
``LEVRT_*`` environment once, at the edge; everything inside takes a ``Settings`` argument.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from levrt import podenv
from levrt._version import __version__
from levrt.errors import LevrtError, SettingsError

__all__ = [
    "DEFAULT_RUNTIME_IMAGE",
    "PULL_POLICIES",
    "RUNTIME_MODES",
    "Settings",
    "check_node_selector",
    "check_resources",
    "check_timeout",
    "check_tolerations",
]

DEFAULT_RUNTIME_IMAGE = f"levrt.local/runtime:{__version__}"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RUNTIME_MODES = ("auto", "image", "copy")
# \Z, not $: $ also matches before a trailing newline, which the apiserver then refuses.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# A registry host (with an optional port) and an optional path: no scheme, no tag.
_REGISTRY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*\Z")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


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
    store_secret: str = "levrt-store"
    """Secret with key ``uri`` that Pods read the store URI from (``LEVRT_STORE_SECRET``)."""
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
        if not _DNS1123_LABEL.match(self.namespace) or len(self.namespace) > 63:
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
        if not _DNS1123_SUBDOMAIN.match(self.store_secret) or len(self.store_secret) > 253:
            raise SettingsError(f"store_secret={self.store_secret!r} is not a valid Secret name.")
        if not self.database or any(c in self.database for c in '/\\. "$\0'):
            raise SettingsError(f"database={self.database!r} is not a valid MongoDB database name.")
        if self.image_registry is not None and not _REGISTRY.match(self.image_registry):
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


# -- run options shared by Settings (the defaults) and Cr (per task) ---------------------------------
# One check per option, parameterised by the error to raise and the name the user wrote, so a
# value is judged the same way whether it comes from LEVRT_RESOURCES or Cr(resources=...).

RESOURCE_SECTIONS = ("limits", "requests")
# Beyond this a timeout is no limit, and activeDeadlineSeconds (timeout + margins) could overflow
# the apiserver's int64.
MAX_TIMEOUT = 365 * 24 * 3600
_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
# A Kubernetes quantity: a decimal number and a suffix (binary SI, decimal SI or an exponent).
_QUANTITY = re.compile(
    r"^(?P<num>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?\Z"
)
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")},
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def check_timeout(value: object, *, what: str, error: type[LevrtError]) -> int | None:
    """A whole number of seconds 1..``MAX_TIMEOUT``, or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        hint = f" (e.g. {what}={max(1, math.ceil(value))})" if isinstance(value, float) and value > 0 else ""
        raise error(f"{what}={value!r}; use a whole number of seconds >= 1{hint}, or None.")
    if isinstance(value, int) and value > MAX_TIMEOUT:
        raise error(f"{what}={value!r} is over {MAX_TIMEOUT} seconds (a year); use None for no time limit.")
    return value


def quantity(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity string ('500m' → 0.5, '1Gi' → 1073741824), or None."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    suffix = match["suffix"] or ""
    number = Decimal(match["num"])
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIX[suffix]


def check_resources(value: object, *, what: str, error: type[LevrtError]) -> dict[str, dict[str, str]] | None:
    """Kubernetes' ``{"requests": {...}, "limits": {...}}`` with names and quantities checked;
    numbers become quantity strings. None stays None."""
    if value is None:
        return None
    example = "{'limits': {'cpu': '1', 'memory': '512Mi'}}"
    if not isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} must be a dict like {example}.")
    checked: dict[str, dict[str, str]] = {}
    for section, amounts in value.items():
        if section not in RESOURCE_SECTIONS:
            if isinstance(section, str) and (_resource_name_ok(section) or section.lower() in _RESOURCE_NAMES):
                raise error(
                    f"{what} has {section!r} at the top level; amounts go under 'limits' or 'requests': "
                    f"use {{'limits': {{{section!r}: {amounts!r}}}}}."
                )
            raise error(f"{what} key {section!r} is not 'limits' or 'requests' (e.g. {example}).")
        if not isinstance(amounts, Mapping):
            raise error(f"{what}[{section!r}]={amounts!r:.60} must be a dict of amounts, e.g. {{'cpu': '1'}}.")
        checked[section] = {}
        for name, amount in amounts.items():
            where = f"{what}[{section!r}][{name!r}]"
            if not isinstance(name, str) or not _resource_name_ok(name):
                hint = ""
                if isinstance(name, str):
                    close = [n for n in _RESOURCE_NAMES if n.startswith(name.lower()[:3])]
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                raise error(
                    f"{what}[{section!r}] names {name!r}, which is not a resource: use 'cpu', 'memory', "
                    f"'ephemeral-storage', 'hugepages-<size>' or an extended resource 'domain/name'.{hint}"
                )
            if isinstance(amount, bool) or not isinstance(amount, int | float | str):
                raise error(f"{where}={amount!r} must be a quantity such as '500m', '2' or '1Gi'.")
            text = amount if isinstance(amount, str) else format(Decimal(str(amount)), "f")
            if quantity(text) is None:
                hint = " Memory is written '512Mi' or '1Gi' (no 'B')." if text[-1:] in "bB" else ""
                raise error(
                    f"{where}={amount!r} is not a Kubernetes quantity (e.g. '500m' or '2' for cpu, '512Mi' "
                    f"or '1Gi' for memory).{hint}"
                )
            checked[section][name] = text
    requests, limits = checked.get("requests", {}), checked.get("limits", {})
    for name, asked in requests.items():
        if name in limits and (quantity(asked) or 0) > (quantity(limits[name]) or 0):
            raise error(
                f"{what} requests {name}={asked!r}, more than its limit {limits[name]!r}. A request must not "
                "exceed the limit: raise the limit or lower the request."
            )
    return checked


def _resource_name_ok(name: str) -> bool:
    if name in _RESOURCE_NAMES or (name.startswith("hugepages-") and quantity(name[10:]) is not None):
        return True
    prefix, slash, rest = name.partition("/")
    return bool(slash) and _label_key_ok(name) and "." in prefix and bool(rest)


def _label_key_ok(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not _DNS1123_SUBDOMAIN.match(prefix) or len(prefix) > 253):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.match(name))


def check_node_selector(value: object, *, what: str, error: type[LevrtError]) -> dict[str, str] | None:
    """A dict of label key to label value (both as Kubernetes accepts them), or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} must be a dict of node label to value, e.g. {{'disktype': 'ssd'}}.")
    checked: dict[str, str] = {}
    for key, label in value.items():
        if not isinstance(key, str) or not _label_key_ok(key):
            raise error(
                f"{what} key {key!r} is not a label key ('[prefix/]name': name up to 63 letters, digits, "
                "'-', '_', '.'; e.g. 'kubernetes.io/hostname')."
            )
        if not isinstance(label, str):
            raise error(f"{what}[{key!r}]={label!r} must be a str (label values are strings: {str(label)!r}).")
        if label and (len(label) > 63 or not _LABEL_NAME.match(label)):
            raise error(
                f"{what}[{key!r}]={label!r} is not a label value (up to 63 letters, digits, '-', '_', '.', "
                "starting and ending with a letter or digit)."
            )
        checked[key] = label
    return checked


def check_tolerations(value: object, *, what: str, error: type[LevrtError]) -> list[dict[str, Any]]:
    """A list of Kubernetes tolerations (fields, operator and effect checked); None → []."""
    if value is None:
        return []
    example = "[{'key': 'dedicated', 'operator': 'Equal', 'value': 'scan', 'effect': 'NoSchedule'}]"
    if isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} is one toleration; pass a list of them: {what}=[{value!r:.60}].")
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise error(f"{what}={value!r:.80} must be a list of toleration dicts, e.g. {example}.")
    checked: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise error(f"{what} item {item!r:.60} must be a dict, e.g. {example}.")
        unknown = [k for k in item if k not in _TOLERATION_FIELDS]
        if unknown:
            raise error(
                f"{what} item {dict(item)!r:.80} has {unknown[0]!r}, not a toleration field (fields: "
                f"{', '.join(_TOLERATION_FIELDS)})."
            )
        for field in ("key", "operator", "value", "effect"):
            if not isinstance(item.get(field, ""), str):
                raise error(f"{what} item {dict(item)!r:.80}: {field} must be a str.")
        key, operator = item.get("key", ""), item.get("operator", "Equal")
        if key and not _label_key_ok(key):
            raise error(f"{what} item {dict(item)!r:.80}: key {key!r} is not a label key.")
        if operator not in ("Equal", "Exists"):
            raise error(f"{what} item {dict(item)!r:.80}: operator {operator!r}; use 'Equal' or 'Exists'.")
        if operator == "Exists" and item.get("value"):
            raise error(f"{what} item {dict(item)!r:.80}: operator 'Exists' takes no value; drop the value.")
        if not key and operator != "Exists":
            raise error(
                f"{what} item {dict(item)!r:.80}: without a key the operator must be 'Exists' (tolerate every taint)."
            )
        effect = item.get("effect", "")
        if effect and effect not in _TAINT_EFFECTS:
            raise error(f"{what} item {dict(item)!r:.80}: effect {effect!r}; use one of {', '.join(_TAINT_EFFECTS)}.")
        seconds = item.get("tolerationSeconds")
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int):
                raise error(f"{what} item {dict(item)!r:.80}: tolerationSeconds must be a whole number of seconds.")
            if effect != "NoExecute":
                raise error(f"{what} item {dict(item)!r:.80}: tolerationSeconds applies to effect 'NoExecute' only.")
        checked.append(copy.deepcopy(dict(item)))
    return checked
