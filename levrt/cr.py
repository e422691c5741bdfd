"""``Cr``: the lazy, validated description of one container run (one Pod), and its ``File`` types.

Why validate here: a ``Cr`` is built on the laptop long before anything reaches the cluster, and a
mistake found at construction points at the line that made it. Every check of SPEC 6 that needs
no cluster happens in ``Cr(...)``, composed of the value checks of ``levrt.checks``; the builder
(``levrt._shapes.build``) can then trust its input. A Cr is named for people at construction
(``origin``, ``levrt.naming``). Constructing a ``Cr`` does nothing else: ``await cr``
(≡ ``await cr.done()``) runs it through the current job (``levrt._job``), ``await cr.start()``
returns the running ``Task``.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Generator, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

from levrt import _job
from levrt._stored import is_sha256
from levrt.checks import (
    check_cache,
    check_capabilities,
    check_cmd,
    check_env,
    check_files,
    check_image,
    check_links,
    check_mapping,
    check_node_selector,
    check_ports,
    check_resources,
    check_retries,
    check_schema,
    check_service_name,
    check_timeout,
    check_tolerations,
    check_warm,
)
from levrt.errors import CrError, FileSpecError, OptionError, PortError, ServiceError
from levrt.naming import run_origin
from levrt.remote import Remote, RemoteCall, as_call

if TYPE_CHECKING:
    from levrt.document import Document
    from levrt.task import Task

__all__ = ["MAX_FILE_BYTES", "Cr", "Digest", "File"]

# Content up to this size becomes one ConfigMap (the apiserver caps an object's data at 1 MiB);
# larger content goes through the store's file storage (levrt._shapes.files).
MAX_FILE_BYTES = 1024 * 1024 - 1024
# The keyword-only run options (what ``Cr.options`` may change).
RUN_OPTIONS = ("timeout", "resources", "capabilities", "node_selector", "tolerations", "retries", "cache", "warm")
# Run options a service may not carry: they belong to the whole Pod (the main Cr's).
POD_OPTIONS = ("timeout", "retries", "node_selector", "tolerations", "cache", "warm")


class Digest(str):
    """The sha256 (64 hex digits) of content in the store's file storage: ``files={"/x": Digest(h)}``.

    Content-addressed (1.x): store the content once with ``levrt put FILE`` or
    ``await levrt.upload(content_or_path)`` (which return its Digest), then any number of tasks
    mount it without sending it again. A Digest the store does not have is a ``FileSpecError``
    at submit, before anything is created.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if not isinstance(value, str):
            raise FileSpecError(f"Digest({value!r}): a Digest is the sha256 hex string of stored content.")
        text = value.strip().lower().removeprefix("sha256:")
        if not is_sha256(text):
            raise FileSpecError(
                f"Digest({value!r}) is not a sha256 hex digest (64 characters 0-9a-f). "
                "Compute it with hashlib.sha256(content).hexdigest()."
            )
        return super().__new__(cls, text)

    def __repr__(self) -> str:
        return f"Digest({str.__repr__(self)})"


File: TypeAlias = bytes | str | pathlib.PurePath | Digest
"""What ``files`` values may be: content (bytes, or str as UTF-8 text), a local file, a Digest.
In ``Cr(files=...)`` a value may also be None: no file at that path (an optional file left out)."""


class Cr:
    """One container run: image, optional remote entry, files, services, ports, links.

    Lazy: nothing happens until ``await cr`` / ``await cr.done()`` (→ ``Document``) or
    ``await cr.start()`` (→ ``Task``). Each start is a new run.
    """

    __slots__ = (
        "cache", "capabilities", "cmd", "entry", "env", "files", "host", "image", "links", "node_selector", "origin",
        "ports", "resources", "retries", "schema", "services", "timeout", "tolerations", "warm",
    )

    image: str
    schema: str | None
    host: bool
    entry: RemoteCall[Any] | None
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    files: Mapping[str, File]
    links: Mapping[str, str]
    ports: tuple[int, ...]
    services: Mapping[str, Cr]
    # Run options (keyword-only; None/empty: the Settings default applies).
    timeout: int | None
    """Seconds the run may take: then SIGINT to the entry, a hard end 10 s later (runtime)."""
    resources: Mapping[str, Mapping[str, str]] | None
    """The container's Kubernetes ``resources`` (``{"limits": {"cpu": "1"}}``); replaces Settings'."""
    capabilities: tuple[str, ...]
    """Linux capabilities added to the container, normalised (``("NET_RAW",)``)."""
    node_selector: Mapping[str, str] | None
    """Node labels the Pod must run on; merged over Settings', these keys winning."""
    tolerations: tuple[Mapping[str, Any], ...]
    """Taints the Pod tolerates, after Settings' ones."""
    retries: int
    """How many times an infrastructure failure (Pod deleted or evicted, node lost, image pull
    hiccup) submits the task again; never for the entry's own error or a timeout."""
    cache: float | None
    """Seconds: the newest identical run (same content key, ``levrt._shapes.cachekey``) that
    succeeded in any job within that age is taken instead of running (``cache="24h"``); None: it runs."""
    warm: int | None
    """At most this many warm Pods run this Cr's entries, one after another in each, with the other
    warm Crs of the same Pod shape (``levrt._shapes.warm``); None: the run gets a Pod of its own."""
    origin: str
    """What people call this run: the mode that built it and its arguments (``tcpscan.scan(10.0.0.5,
    1-1024)``), else its entry's call, else its image. Shown by ``levrt run`` and ``levrt ps``."""

    def __init__(
        self,
        image: str,
        schema: str | None = None,
        *,
        host: bool = False,
        entry: RemoteCall[Any] | Remote[[], Any] | None = None,
        cmd: Iterable[str] = (),
        env: Iterable[str] = (),
        files: Mapping[str, File | None] | None = None,
        links: Mapping[str, str] | None = None,
        ports: Iterable[int] = (),
        services: Mapping[str, Cr] | None = None,
        timeout: int | None = None,
        resources: Mapping[str, Mapping[str, str | int | float]] | None = None,
        capabilities: Iterable[str] = (),
        node_selector: Mapping[str, str] | None = None,
        tolerations: Iterable[Mapping[str, Any]] | None = None,
        retries: int = 0,
        cache: float | str | None = None,
        warm: bool | int | None = None,
    ) -> None:
        self.image = check_image(image)
        self.schema = check_schema(schema)
        if not isinstance(host, bool):
            raise CrError(f"host={host!r} must be True or False (True runs the Pod in the node's network).")
        self.host = host
        self.entry = None if entry is None else as_call(entry)
        self.cmd = check_cmd(cmd)
        self.env = check_env(env)
        self.files = MappingProxyType(check_files(files))
        self.links = MappingProxyType(check_links(links))
        self.ports = check_ports(ports)
        self.timeout = check_timeout(timeout, what="timeout", error=OptionError)
        checked_resources = check_resources(resources, what="resources", error=OptionError)
        self.resources = None if checked_resources is None else _frozen(checked_resources)
        self.capabilities = check_capabilities(capabilities)
        selector = check_node_selector(node_selector, what="node_selector", error=OptionError)
        self.node_selector = None if selector is None else MappingProxyType(selector)
        self.tolerations = tuple(
            _frozen(t) for t in check_tolerations(tolerations, what="tolerations", error=OptionError)
        )
        self.retries = check_retries(retries)
        self.cache = check_cache(cache)
        self.services = MappingProxyType(_services(services, main=self))
        self.warm = check_warm(warm, self)
        self.origin = run_origin(sys._getframe(1), self.entry, self.image)

    # -- running (through the current job's engine) ---------------------------------------------

    async def start(self) -> Task:
        """Submit this run and return its ``Task`` once the main container runs (and is Ready)."""
        return await _job.current().start(self)

    async def done(self) -> Document:
        """Run to the end and return the ``Document`` of the results (``await cr`` does this)."""
        task = await self.start()
        return await task.done()

    def __await__(self) -> Generator[Any, None, Document]:
        return self.done().__await__()

    def options(self, **changes: Any) -> Cr:
        """This run with other run options (``timeout``, ``resources``, ``capabilities``,
        ``node_selector``, ``tolerations``, ``retries``, ``cache``, ``warm``), checked as ``Cr(...)``
        checks them: ``scan.tcp(ip).options(warm=True)`` runs a mode's Cr in warm Pods."""
        unknown = sorted(set(changes) - set(RUN_OPTIONS))
        if unknown:
            raise OptionError(f"Cr.options({', '.join(unknown)}=...): the run options are {', '.join(RUN_OPTIONS)}.")
        given: dict[str, Any] = {
            "image": self.image, "schema": self.schema, "host": self.host, "entry": self.entry, "cmd": self.cmd,
            "env": self.env, "files": dict(self.files), "links": dict(self.links), "ports": self.ports,
            "services": dict(self.services),
            **{name: getattr(self, name) for name in RUN_OPTIONS},
        }
        for name in ("resources", "node_selector"):
            if given[name] is not None:
                given[name] = _thawed(given[name])
        given["tolerations"] = [_thawed(t) for t in self.tolerations]
        changed = Cr(**{**given, **changes})
        changed.origin = self.origin
        return changed

    # -- description --------------------------------------------------------------------------------

    def __repr__(self) -> str:
        parts = [repr(self.image)]
        if self.schema:
            parts.append(repr(self.schema))
        if self.host:
            parts.append("host=True")
        if self.entry is not None:
            parts.append(f"entry={self.entry.name}")
        for name in ("cmd", "env", "ports"):
            if getattr(self, name):
                parts.append(f"{name}={list(getattr(self, name))!r}")
        for name in ("files", "links", "services"):
            if getattr(self, name):
                parts.append(f"{name}={sorted(getattr(self, name))!r}")
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout}")
        if self.resources is not None:
            parts.append(f"resources={_thawed(self.resources)!r}")
        if self.capabilities:
            parts.append(f"capabilities={list(self.capabilities)!r}")
        if self.node_selector is not None:
            parts.append(f"node_selector={dict(self.node_selector)!r}")
        if self.tolerations:
            parts.append(f"tolerations={[dict(t) for t in self.tolerations]!r}")
        if self.retries:
            parts.append(f"retries={self.retries}")
        if self.cache is not None:
            parts.append(f"cache={self.cache:g}")
        if self.warm is not None:
            parts.append(f"warm={self.warm}")
        return f"Cr({', '.join(parts)})"


# -- what needs the whole Cr: its frozen options, its services ---------------------------------------


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view, nested dicts included: a Cr does not change after validation."""
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in value.items()})


def _thawed(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _thawed(v) if isinstance(v, Mapping) else v for k, v in value.items()}


def _services(services: object, *, main: Cr) -> dict[str, Cr]:
    shape = "{name: Cr}, e.g. {'redis': Cr('redis:7')}"
    given = check_mapping(services, what="services", error=ServiceError, shape=shape)
    checked: dict[str, Cr] = {}
    owner: dict[int, str] = {p: "the main container" for p in main.ports}
    for name, svc in given.items():
        check_service_name(name)
        if name in main.links:
            raise ServiceError(f"service {name!r} has the same name as a link alias. Rename one of them.")
        if not isinstance(svc, Cr):
            raise ServiceError(
                f"services[{name!r}] is a {type(svc).__name__} ({svc!r:.60}); a service is a Cr, e.g. "
                "Cr('redis:7', cmd=['--port', '9001'], ports=[9001])."
            )
        if svc.services:
            raise ServiceError(
                f"services[{name!r}] has services of its own ({', '.join(svc.services)}). Services do not "
                "nest: declare all of them on the main Cr."
            )
        if svc.host and not main.host:
            raise ServiceError(
                f"services[{name!r}] has host=True but the main Cr does not. A Pod has one network: set "
                "host=True on the main Cr (services follow it)."
            )
        for option in POD_OPTIONS:
            if getattr(svc, option):
                raise ServiceError(
                    f"services[{name!r}] has {option}={getattr(svc, option)!r}. {option} applies to the whole "
                    "Pod: set it on the main Cr."
                )
        if svc.schema is not None:
            raise ServiceError(
                f"services[{name!r}] has schema={svc.schema!r}. A service writes into its task's record; "
                "set the schema on the main Cr."
            )
        for port in svc.ports:
            if port in owner:
                raise PortError(
                    f"port {port} is used by both {owner[port]} and service {name!r}. They share one network "
                    "namespace (127.0.0.1), so each port can be used once: change one of them."
                )
            owner[port] = f"service {name!r}"
        checked[name] = svc
    return checked
