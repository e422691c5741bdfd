"""``Cr``: the lazy, validated description of one container run (one Pod), and its ``File`` types.

Why validate here: a ``Cr`` is built on the laptop long before anything reaches the cluster, and a
mistake found at construction points at the line that made it. Every check of SPEC 6 that needs
no cluster happens in ``Cr(...)``; the builder (``levrt.build``) can then trust its input.
Constructing a ``Cr`` does nothing else: ``await cr`` (≡ ``await cr.done()``) runs it through the
current job (``levrt._job``), ``await cr.start()`` returns the running ``Task``.
"""

from __future__ import annotations

import inspect
import ipaddress
import pathlib
import posixpath
import re
import reprlib
import sys
from collections.abc import Generator, Iterable, Mapping
from types import CodeType, FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

from levrt import _job
from levrt.errors import (
    CrError,
    EnvError,
    FileSpecError,
    LinkError,
    OptionError,
    PortError,
    SchemaError,
    ServiceError,
)
from levrt.podenv import RESERVED_PATHS
from levrt.remote import Remote, RemoteCall, as_call
from levrt.settings import check_node_selector, check_resources, check_timeout, check_tolerations

if TYPE_CHECKING:
    from levrt.document import Document
    from levrt.task import Task

__all__ = [
    "LINUX_CAPABILITIES", "MAX_FILE_BYTES", "MAX_NAME_ARGS", "MAX_RETRIES", "RESERVED_PATHS", "Cr", "Digest", "File",
    "call_name",
]

# \Z, not $: $ also matches before a trailing newline, which the apiserver (or the store) would then get.
SCHEMA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*@[0-9]+\.[0-9]+\Z")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
HOSTNAME_RE = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\Z"
)
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*\Z")
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@+]*\Z")
# 1.x: ".user.tool:tag" names an image the platform built, in its registry (Settings.image_registry).
PLATFORM_IMAGE_RE = re.compile(
    r"^\.[a-z0-9]+([._-][a-z0-9]+)*"  # .user.tool
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?\Z"  # :tag, @digest
)

# Content up to this size becomes one ConfigMap (the apiserver caps an object's data at 1 MiB);
# larger content goes through the store's file storage (levrt._shapes.files).
MAX_FILE_BYTES = 1024 * 1024 - 1024
MAX_CMD_BYTES = 128 * 1024
MAX_ENV_BYTES = 128 * 1024
RESERVED_CONTAINER_NAMES = ("main", "levrt-runtime")
# Retries are for infrastructure hiccups; more than a few means something is wrong to look at.
MAX_RETRIES = 10
# Run options a service may not carry: they belong to the whole Pod (the main Cr's).
POD_OPTIONS = ("timeout", "retries", "node_selector", "tolerations")
# The Linux capabilities (capability.h, CAP_CHOWN=0 .. CAP_CHECKPOINT_RESTORE=40), as Kubernetes
# names them in securityContext.capabilities (no CAP_ prefix).
LINUX_CAPABILITIES = frozenset(
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE".split()
)


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
        if not re.fullmatch(r"[0-9a-f]{64}", text):
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
        "capabilities", "cmd", "entry", "env", "files", "host", "image", "links", "node_selector", "origin", "ports",
        "resources", "retries", "schema", "services", "timeout", "tolerations",
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
    ) -> None:
        self.image = _image(image)
        self.schema = _schema(schema)
        if not isinstance(host, bool):
            raise CrError(f"host={host!r} must be True or False (True runs the Pod in the node's network).")
        self.host = host
        self.entry = None if entry is None else as_call(entry)
        self.cmd = _cmd(cmd)
        self.env = _env(env)
        self.files = MappingProxyType(_files(files))
        self.links = MappingProxyType(_links(links))
        self.ports = _ports(ports)
        self.timeout = check_timeout(timeout, what="timeout", error=OptionError)
        checked_resources = check_resources(resources, what="resources", error=OptionError)
        self.resources = None if checked_resources is None else _frozen(checked_resources)
        self.capabilities = _capabilities(capabilities)
        selector = check_node_selector(node_selector, what="node_selector", error=OptionError)
        self.node_selector = None if selector is None else MappingProxyType(selector)
        self.tolerations = tuple(
            _frozen(t) for t in check_tolerations(tolerations, what="tolerations", error=OptionError)
        )
        self.retries = _retries(retries)
        self.services = MappingProxyType(_services(services, main=self))
        self.origin = _origin(sys._getframe(1), self.entry, self.image)

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
        return f"Cr({', '.join(parts)})"


# -- where a Cr was made: its name for people ---------------------------------------------------

MAX_NAME_ARGS = 60
"""Characters of arguments a task's name shows before it is cut (``...``)."""
MAX_ORIGIN_FRAMES = 4
"""Frames looked through for the mode that built a Cr (private helpers between it and ``Cr(...)``)."""
# A value shown bare (no quotes) reads as one argument: no spaces, commas or brackets in it.
_BARE = re.compile(r"^[\w.:/@%+=-]+\Z")
_GENERATED = ("<lambda>", "<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>")
_WORKFLOW_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr (a list of 60 000 ports costs what 4 of them do), sized for a table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxset, self.maxdict = 2, 4, 4, 3, 3
        self.maxstring, self.maxlong, self.maxother = 24, 24, 24


_short = _ShortRepr()


def _value(value: object) -> str:
    if isinstance(value, str) and _BARE.match(value) and len(value) <= 40:
        return value
    return _short.repr(value)


def call_name(where: str, args: Iterable[object] = (), kwargs: Mapping[str, object] | None = None) -> str:
    """``where(arg, ..., key=value)``, each value short, the whole argument list cut at ``MAX_NAME_ARGS``
    characters on an argument's boundary where it can be."""
    parts = [_value(a) for a in args] + [f"{k}={_value(v)}" for k, v in (kwargs or {}).items()]
    text = ""
    for index, part in enumerate(parts):
        joined = part if not index else f"{text}, {part}"
        last = index == len(parts) - 1
        # Room for ", ..." is kept unless this part ends the list.
        if len(joined) > MAX_NAME_ARGS or (not last and len(joined) > MAX_NAME_ARGS - len(", ...")):
            text = text + ", ..." if text else part[: MAX_NAME_ARGS - 3] + "..."
            break
        text = joined
    return f"{where}({text})"


def _origin(frame: FrameType | None, entry: RemoteCall[Any] | None, image: str) -> str:
    """The name of the run built in ``frame``: the mode (a plain, public function, found through
    private helpers) with its arguments as they are now; a Cr built right in a workflow (an ``async
    def``) or at module level has no mode, and is named by its entry's call, else by its image."""
    try:
        for _ in range(MAX_ORIGIN_FRAMES):
            if frame is None:
                break
            code = frame.f_code
            if code.co_flags & _WORKFLOW_FLAGS or code.co_name == "<module>":
                break
            module = str(frame.f_globals.get("__name__", "?"))
            private = code.co_name.startswith("_") or code.co_name in _GENERATED
            if not private and not module.startswith("levrt."):
                return _mode_name(frame, code, module)
            frame = frame.f_back
    finally:
        del frame  # a frame kept alive would keep every local of the caller's stack alive
    if entry is not None:
        func = entry.func
        filename = getattr(getattr(func, "__code__", None), "co_filename", "<?>")
        module = _short_module(str(getattr(func, "__module__", None) or "?"), filename)
        return call_name(f"{module}.{getattr(func, '__qualname__', '?')}", entry.args, entry.kwargs)
    return image


def _short_module(module: str, filename: str) -> str:
    """The file's name where there is one: a script runs as ``__main__``, and ``levrt run FILE``
    imports a file outside any package under a made-up module name; a package's ``__init__`` (or
    code without a file) goes by the module's last name."""
    stem = pathlib.PurePath(filename).stem
    return stem if stem != "__init__" and not filename.startswith("<") else module.rpartition(".")[2]


def _mode_name(frame: FrameType, code: CodeType, module: str) -> str:
    """``module.function(args)``: the arguments the function has now, those left at their default
    left out (the function's defaults are found when it is the module's attribute of that name)."""
    where = f"{_short_module(module, code.co_filename)}.{code.co_qualname}"
    values = frame.f_locals
    positional = code.co_varnames[: code.co_argcount]
    keyword = code.co_varnames[code.co_argcount: code.co_argcount + code.co_kwonlyargcount]
    extra = code.co_argcount + code.co_kwonlyargcount
    star = code.co_varnames[extra] if code.co_flags & inspect.CO_VARARGS else None
    if star is not None:
        extra += 1
    double = code.co_varnames[extra] if code.co_flags & inspect.CO_VARKEYWORDS else None
    defaults = _defaults(frame, code)
    args: list[object] = []
    kwargs: dict[str, object] = {}
    named = False  # once a positional argument is left out, the ones after it need their names
    for name in positional:
        if name not in values:
            continue
        if name in defaults and _same(values[name], defaults[name]):
            named = True
            continue
        if named:
            kwargs[name] = values[name]
        else:
            args.append(values[name])
    if star is not None and star in values:
        args.extend(values[star] if not named else ())
    for name in keyword:
        if name in values and not (name in defaults and _same(values[name], defaults[name])):
            kwargs[name] = values[name]
    if double is not None and isinstance(values.get(double), Mapping):
        kwargs.update(values[double])
    return call_name(where, args, kwargs)


def _defaults(frame: FrameType, code: CodeType) -> dict[str, object]:
    func = frame.f_globals.get(code.co_name)
    for _ in range(4):  # through decorators that keep __wrapped__
        if func is None or getattr(func, "__code__", None) is code:
            break
        func = getattr(func, "__wrapped__", None) or getattr(func, "func", None)
    if func is None or getattr(func, "__code__", None) is not code:
        return {}
    positional = code.co_varnames[: code.co_argcount]
    given = tuple(getattr(func, "__defaults__", None) or ())
    found: dict[str, object] = dict(zip(positional[len(positional) - len(given):], given, strict=True))
    found.update(getattr(func, "__kwdefaults__", None) or {})
    return found


def _same(value: object, default: object) -> bool:
    try:
        return value is default or bool(type(value) is type(default) and value == default)
    except Exception:  # a value whose == raises is simply shown
        return False


# -- validation helpers (each raises the specific error, naming the value) ---------------------------


def _image(image: object) -> str:
    if not isinstance(image, str) or not image.strip():
        raise CrError(
            f"image={image!r} must be an image reference such as 'alpine:3.20' or 'levkit/nmap:v1.0'."
        )
    if image.startswith("."):
        if len(image) > 256 or not PLATFORM_IMAGE_RE.match(image):
            raise CrError(
                f"image={image!r} is not a platform image name. Write '.user.tool:tag' (lowercase letters, "
                "digits and '.', '_', '-' between them, then an optional tag); levrt runs it from the "
                "registry in LEVRT_IMAGE_REGISTRY."
            )
        return image
    if len(image) > 512 or not IMAGE_RE.match(image):
        raise CrError(
            f"image={image!r} is not a valid image reference (letters, digits and ._-/:@ only, no "
            "spaces). Write it like 'registry.example/ns/name:tag'."
        )
    return image


def _schema(schema: object) -> str | None:
    if schema is None:
        return None
    if not isinstance(schema, str):
        raise SchemaError(f"schema={schema!r} must be a str like 'talentsec/nmap@1.0', or None.")
    if not SCHEMA_RE.match(schema) or len(schema) > 120:
        hint = ""
        if "@" not in schema:
            hint = f" Did you forget the version, e.g. '{schema}@1.0'?"
        elif "/" not in schema:
            hint = " Did you forget the namespace, e.g. 'myteam/" + schema + "'?"
        raise SchemaError(
            f"schema={schema!r} is not '<namespace>/<name>@<major>.<minor>' (e.g. 'talentsec/nmap@1.0'; "
            f"letters, digits, '.', '_', '-').{hint}"
        )
    return schema


def _str_list(value: object, *, what: str, error: type[CrError], example: str) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise error(
            f"{what}={value!r} must be a list of str, not a single string. Did you mean {what}=[{example}]?"
        )
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise error(f"{what}={value!r} must be a list of str, e.g. {what}=[{example}].")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise error(
                f"{what} item {item!r} is a {type(item).__name__}; {what} takes str only (use str({item!r}))."
            )
        if "\0" in item:
            raise error(f"{what} item {item!r} contains a NUL character, which a process cannot receive.")
        if not _utf8(item):
            raise error(f"{what} item {item!r} is not valid UTF-8 text (a lone surrogate); pass UTF-8 text.")
    return items


def _utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: lone surrogates (from a bad decode) do not, and the
    apiserver's JSON would silently turn them into U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cmd(cmd: object) -> tuple[str, ...]:
    items = _str_list(cmd, what="cmd", error=CrError, example="'--option', '-f'")
    if sum(len(i.encode()) for i in items) > MAX_CMD_BYTES:
        raise CrError(
            f"cmd is {sum(len(i) for i in items)} characters, over {MAX_CMD_BYTES}. Pass bulk input as files."
        )
    return items


def _env(env: object) -> tuple[str, ...]:
    items = _str_list(env, what="env", error=EnvError, example="'KEY=VALUE'")
    seen: dict[str, str] = {}
    for item in items:
        key, eq, _ = item.partition("=")
        if not eq:
            raise EnvError(f"env entry {item!r} has no '='. Write it as 'KEY=VALUE', e.g. '{item}=1'.")
        if not ENV_NAME_RE.match(key):
            raise EnvError(
                f"env entry {item!r}: {key!r} is not a valid variable name (letters, digits, '_', '-', '.'; "
                "not starting with a digit)."
            )
        if key.startswith("LEVRT_"):
            raise EnvError(
                f"env entry {item!r}: names starting with LEVRT_ are set by levrt itself. Rename {key!r}."
            )
        if key in seen:
            raise EnvError(f"env sets {key!r} twice ({seen[key]!r} and {item!r}). Keep one.")
        seen[key] = item
    if sum(len(i.encode()) for i in items) > MAX_ENV_BYTES:
        raise EnvError(f"env is over {MAX_ENV_BYTES} bytes. Pass bulk input as files.")
    return items


def check_file_path(path: object) -> str:
    """A valid mount path (absolute, normalised, not reserved) or ``FileSpecError``."""
    if not isinstance(path, str):
        raise FileSpecError(f"files key {path!r} must be a str: the absolute path inside the container.")
    if not path.startswith("/"):
        raise FileSpecError(
            f"files key {path!r} is relative. Use the absolute path inside the container, e.g. '/{path}'."
        )
    if "\0" in path:
        raise FileSpecError(f"files key {path!r} contains a NUL character.")
    if not _utf8(path):
        raise FileSpecError(f"files key {path!r} is not valid UTF-8 text (a lone surrogate).")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm != path or path.endswith("/"):
        raise FileSpecError(f"files key {path!r} is not a normalised file path. Write {norm!r}.")
    if path == "/":
        raise FileSpecError("files key '/' is the root directory; name a file such as '/etc/app.conf'.")
    for reserved in RESERVED_PATHS:
        if path == reserved or path.startswith(reserved + "/"):
            raise FileSpecError(
                f"files key {path!r} is under {reserved}, which levrt uses itself. Choose another path."
            )
    return path


def _mapping(value: object, *, what: str, error: type[CrError], shape: str) -> Mapping[Any, Any]:
    """``value`` as a mapping (None: empty), or ``error`` saying which ``shape`` is expected."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} must be a dict {shape}.")
    return value


def _files(files: object) -> dict[str, File]:
    checked: dict[str, File] = {}
    for path, value in _mapping(
        files, what="files", error=FileSpecError, shape="{'/absolute/path': content}, e.g. {'/etc/x': b'...'}"
    ).items():
        check_file_path(path)
        if value is None:
            continue  # an optional file left out (1.x: a mode's file parameter defaults to None)
        checked[path] = _file_value(path, value)
    paths = sorted(checked)
    for a in paths:
        for b in paths:
            if b.startswith(a + "/"):
                raise FileSpecError(
                    f"files has both {a!r} and {b!r}: {a!r} cannot be a file and a directory. Move one."
                )
    return checked


def _file_value(path: str, value: object) -> File:
    if isinstance(value, Digest):
        return value
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        pass  # any size: content over MAX_FILE_BYTES goes through the store's file storage
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FileSpecError(
                f"files[{path!r}] is a str that is not valid UTF-8 text; pass bytes instead."
            ) from None
    elif isinstance(value, pathlib.PurePath):
        local = pathlib.Path(value)
        if not local.exists():
            raise FileSpecError(
                f"files[{path!r}] = Path({str(value)!r}) does not exist (relative to {pathlib.Path.cwd()}). "
                "Check the path, or pass the content as bytes."
            )
        if not local.is_file():
            raise FileSpecError(
                f"files[{path!r}] = Path({str(value)!r}) is not a regular file; mount files one by one."
            )
    else:
        raise FileSpecError(
            f"files[{path!r}] is a {type(value).__name__} ({value!r:.60}); a File is bytes (content), str "
            "(UTF-8 text), pathlib.Path (a local file) or levrt.Digest (stored content); None leaves the "
            "file out."
        )
    return value


def _links(links: object) -> dict[str, str]:
    checked: dict[str, str] = {}
    shape = "{alias: ip}, e.g. links={'proxy': task.host}"
    for alias, host in _mapping(links, what="links", error=LinkError, shape=shape).items():
        if not isinstance(alias, str) or not HOSTNAME_RE.match(alias) or len(alias) > 253:
            raise LinkError(
                f"links alias {alias!r} is not a valid host name (letters, digits, '-' and '.'). "
                "Use a name such as 'proxy'."
            )
        if alias != alias.lower():
            # The apiserver takes only lowercase host aliases (RFC 1123); names resolve regardless of case.
            raise LinkError(f"links alias {alias!r} has upper-case letters; Kubernetes takes host aliases in "
                            f"lower case: write {alias.lower()!r}.")
        if host is None:
            raise LinkError(
                f"links[{alias!r}] is None: the linked task has no IP yet. Start it first — "
                "task = await cr.start() — and link to task.host."
            )
        if not isinstance(host, str):
            raise LinkError(f"links[{alias!r}] = {host!r} must be an IP address str such as task.host.")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise LinkError(
                f"links[{alias!r}] = {host!r} is not an IP address. Links map an alias to the IP of "
                "another task (task.host); for a DNS name, use the name directly instead of a link."
            ) from None
        if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip.scope_id):
            # The apiserver refuses both in hostAliases; the plain IPv4 / unscoped form means the same host.
            plain = str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip).partition("%")[0]
            raise LinkError(f"links[{alias!r}] = {host!r}: Kubernetes takes no IPv4-mapped or scoped IPv6 "
                            f"address in a host alias; write {plain!r}.")
        checked[alias] = str(ip)
    return checked


def _ports(ports: object) -> tuple[int, ...]:
    if isinstance(ports, int | str) or isinstance(ports, Mapping) or not isinstance(ports, Iterable):
        raise PortError(
            f"ports={ports!r} must be a list of ints, e.g. [{ports if isinstance(ports, int) else 8000}]."
        )
    checked: list[int] = []
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int):
            raise PortError(
                f"port {port!r} is a {type(port).__name__}; ports are ints 1..65535 (e.g. {port!r} → 8000)."
            )
        if not 1 <= port <= 65535:
            raise PortError(f"port {port!r} is out of range; TCP ports are 1..65535.")
        if port in checked:
            raise PortError(f"port {port} is listed twice in ports. List each port once.")
        checked.append(port)
    return tuple(checked)


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view, nested dicts included: a Cr does not change after validation."""
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in value.items()})


def _thawed(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _thawed(v) if isinstance(v, Mapping) else v for k, v in value.items()}


def _retries(retries: object) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise OptionError(
            f"retries={retries!r}; use a whole number 0..{MAX_RETRIES} (how many times a task is submitted "
            "again after an infrastructure failure such as an evicted or deleted Pod)."
        )
    return retries


def _capabilities(capabilities: object) -> tuple[str, ...]:
    """Names as Kubernetes wants them: upper case, no ``CAP_`` prefix, each a Linux capability."""
    items = _str_list(capabilities, what="capabilities", error=OptionError, example="'NET_RAW'")
    checked: list[str] = []
    for item in items:
        name = item.strip().upper().removeprefix("CAP_")
        if name not in LINUX_CAPABILITIES:
            close = [c for c in sorted(LINUX_CAPABILITIES) if name and (name in c or c in name)]
            hint = f" Did you mean {close[0]!r}?" if close else ""
            if name == "ALL":
                hint = " Name the capabilities the task needs instead, e.g. ['NET_RAW', 'NET_ADMIN']."
            raise OptionError(
                f"capabilities item {item!r} is not a Linux capability (e.g. 'NET_RAW', 'NET_ADMIN', "
                f"'SYS_PTRACE'; see capabilities(7)).{hint}"
            )
        if name in checked:
            raise OptionError(f"capabilities lists {name!r} twice. List each capability once.")
        checked.append(name)
    return tuple(checked)


def _services(services: object, *, main: Cr) -> dict[str, Cr]:
    shape = "{name: Cr}, e.g. {'redis': Cr('redis:7')}"
    given = _mapping(services, what="services", error=ServiceError, shape=shape)
    checked: dict[str, Cr] = {}
    owner: dict[int, str] = {p: "the main container" for p in main.ports}
    for name, svc in given.items():
        if not isinstance(name, str) or len(name) > 63 or not DNS1123_LABEL.match(name):
            raise ServiceError(
                f"service name {name!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63). Try "
                f"{_suggest_label(name)!r}."
            )
        if name in RESERVED_CONTAINER_NAMES:
            raise ServiceError(f"service name {name!r} is reserved by levrt. Choose another name.")
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


def _suggest_label(name: object) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")[:63].strip("-")
    return text or "svc"
