"""The checks of a ``Cr``'s fields: image, schema, cmd, env, files, links, ports, capabilities,
retries and service names, each raising the specific error that names the value.

Why apart from ``Cr``: a check is a rule about one value, the same wherever the value comes from
(``levrt get SCHEMA`` checks a schema as ``Cr(schema=...)`` does); ``Cr`` composes them, and keeps
only what needs the whole Cr (its services).
"""

from __future__ import annotations

import ipaddress
import pathlib
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from levrt.checks.patterns import DNS1123_LABEL, ENV_NAME_RE, HOSTNAME_RE, IMAGE_RE, PLATFORM_IMAGE_RE, SCHEMA_RE
from levrt.errors import CrError, EnvError, FileSpecError, LinkError, OptionError, PortError, SchemaError, ServiceError
from levrt.podenv import RESERVED_PATHS

__all__ = [
    "DEFAULT_WARM_PODS",
    "LINUX_CAPABILITIES",
    "MAX_CMD_BYTES",
    "MAX_ENV_BYTES",
    "MAX_RETRIES",
    "MAX_SCHEMA_LENGTH",
    "MAX_WARM_PODS",
    "RESERVED_CONTAINER_NAMES",
    "RESERVED_PATHS",
    "WARM_REFUSED",
    "FileValue",
    "check_cache",
    "check_capabilities",
    "check_cmd",
    "check_env",
    "check_file_path",
    "check_files",
    "check_image",
    "check_links",
    "check_mapping",
    "check_ports",
    "check_retries",
    "check_schema",
    "check_service_name",
    "check_warm",
]

MAX_CMD_BYTES = 128 * 1024
MAX_ENV_BYTES = 128 * 1024
RESERVED_CONTAINER_NAMES = ("main", "levrt-runtime")
MAX_SCHEMA_LENGTH = 120
# Retries are for infrastructure hiccups; more than a few means something is wrong to look at.
MAX_RETRIES = 10
# The Linux capabilities (capability.h, CAP_CHOWN=0 .. CAP_CHECKPOINT_RESTORE=40), as Kubernetes
# names them in securityContext.capabilities (no CAP_ prefix).
LINUX_CAPABILITIES = frozenset(
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE".split()
)


FileValue: TypeAlias = bytes | str | pathlib.PurePath
"""A checked ``files`` value: content, a local file, or (a str) a ``levrt.Digest``."""


def check_image(image: object) -> str:
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


def check_schema(schema: object) -> str | None:
    if schema is None:
        return None
    if not isinstance(schema, str):
        raise SchemaError(f"schema={schema!r} must be a str like 'talentsec/nmap@1.0', or None.")
    if SCHEMA_RE.match(schema) and len(schema) > MAX_SCHEMA_LENGTH:
        raise SchemaError(f"schema={schema:.40}... is {len(schema)} characters; a schema is at most "
                          f"{MAX_SCHEMA_LENGTH}.")
    if not SCHEMA_RE.match(schema):
        raise SchemaError(
            f"schema={schema!r} is not '<namespace>/<name>@<major>.<minor>' (e.g. 'talentsec/nmap@1.0'; "
            f"letters, digits, '.', '_', '-').{_schema_hint(schema)}"
        )
    return schema


def _schema_hint(schema: str) -> str:
    """`` Did you mean 'x/y@1.0'?`` for a schema a repair makes valid; nothing when none does.

    The repair writes what the author most likely meant: a version written without its ``@``
    (``ux/dns1.0``) or left out, a namespace separated by a space or ``:`` instead of ``/``, or
    left out (``myteam/``), other characters as ``-``. Whatever it makes is checked, so a hint is
    never itself refused."""
    text = schema.strip()
    name, at, version = text.rpartition("@")
    forgot_version = False
    if at:
        number = re.fullmatch(r"\s*[vV]?(\d+)(?:\.(\d+))?(?:\.\d+)*\s*", version)
        version = f"{int(number[1])}.{int(number[2] or 0)}" if number else "1.0"
    else:
        written = re.fullmatch(r"(.*?[A-Za-z0-9])[\s_-]*[vV]?(\d+\.\d+)", text)  # ux/dns1.0, ux/dns-v1.0
        if written:
            name, version = written[1], written[2]
        else:
            name, version, forgot_version = text, "1.0", True
    name = name.strip()
    forgot_namespace = False
    if "/" not in name:
        parts = re.split(r"[\s:\\|]+", name, maxsplit=1)  # 'ux dns', 'ux:dns', 'ux\dns'
        if len(parts) == 2 and all(parts):
            name = f"{parts[0]}/{parts[1]}"
        else:
            name, forgot_namespace = f"myteam/{name}", True
    namespace, _, base = name.partition("/")
    suggestion = f"{_schema_part(namespace)}/{_schema_part(base)}@{version}"
    if suggestion == schema or not SCHEMA_RE.match(suggestion) or len(suggestion) > MAX_SCHEMA_LENGTH:
        return ""
    if forgot_version and suggestion == f"{schema}@1.0":
        return f" Did you forget the version, e.g. {suggestion!r}?"
    if forgot_namespace and suggestion == f"myteam/{schema}":
        return f" Did you forget the namespace, e.g. {suggestion!r}?"
    return f" Did you mean {suggestion!r}?"


def _schema_part(text: str) -> str:
    """A namespace or name made of the characters a schema allows: others as ``-``, starting with a
    letter or digit."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip("_.-")


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


def check_cmd(cmd: object) -> tuple[str, ...]:
    items = _str_list(cmd, what="cmd", error=CrError, example="'--option', '-f'")
    if sum(len(i.encode()) for i in items) > MAX_CMD_BYTES:
        raise CrError(
            f"cmd is {sum(len(i) for i in items)} characters, over {MAX_CMD_BYTES}. Pass bulk input as files."
        )
    return items


def check_env(env: object) -> tuple[str, ...]:
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


def check_mapping(value: object, *, what: str, error: type[CrError], shape: str) -> Mapping[Any, Any]:
    """``value`` as a mapping (None: empty), or ``error`` saying which ``shape`` is expected."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} must be a dict {shape}.")
    return value


def check_files(files: object) -> dict[str, FileValue]:
    checked: dict[str, FileValue] = {}
    for path, value in check_mapping(
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


def _file_value(path: str, value: object) -> FileValue:
    # A levrt.Digest is a str of hex digits: it passes as text, unchanged.
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


def check_links(links: object) -> dict[str, str]:
    checked: dict[str, str] = {}
    shape = "{alias: ip}, e.g. links={'proxy': task.host}"
    for alias, host in check_mapping(links, what="links", error=LinkError, shape=shape).items():
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


def check_ports(ports: object) -> tuple[int, ...]:
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


def check_retries(retries: object) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise OptionError(
            f"retries={retries!r}; use a whole number 0..{MAX_RETRIES} (how many times a task is submitted "
            "again after an infrastructure failure such as an evicted or deleted Pod)."
        )
    return retries


CACHE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_CACHE_DAYS = 366


def check_cache(cache: object) -> float | None:
    """``cache=``: the age in seconds of the newest identical success a run may take instead of
    running: a number of seconds, or a text such as ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``."""
    if cache is None:
        return None
    hint = ("use the age of a result it may reuse: seconds, or a text such as '30m', '24h' or '7d' "
            "(None: always run)")
    if isinstance(cache, bool):
        raise OptionError(f"cache={cache!r}; {hint}.")
    if isinstance(cache, int | float):
        seconds = float(cache)
    elif isinstance(cache, str) and (found := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", cache)):
        seconds = float(found.group(1)) * CACHE_UNITS[found.group(2)]
    else:
        raise OptionError(f"cache={cache!r}; {hint}.")
    if not 0 < seconds <= MAX_CACHE_DAYS * 86400:
        raise OptionError(f"cache={cache!r} is out of range; {hint}, at most {MAX_CACHE_DAYS}d.")
    return seconds


DEFAULT_WARM_PODS = 4
MAX_WARM_PODS = 32
_NETWORK = "is a Pod's network: its ports, links and host network are the Pod's"
WARM_REFUSED = {"services": "runs beside each task in its own Pod",
                "files": "is mounted at fixed paths in each task's own Pod",
                "ports": _NETWORK, "links": _NETWORK, "host": _NETWORK}
"""What a warm entry may not have, and why: each belongs to one task's own Pod."""


def check_warm(warm: object, run: Any) -> int | None:
    """``warm=``: True (``DEFAULT_WARM_PODS`` Pods) or how many warm Pods at most; None/False: a Pod
    of its own. ``run`` is the Cr being made: what cannot hold in a Pod its entries share is refused."""
    if warm is None or warm is False:
        return None
    if warm is True:
        pods = DEFAULT_WARM_PODS
    elif isinstance(warm, int) and 1 <= warm <= MAX_WARM_PODS:
        pods = warm
    else:
        raise OptionError(f"warm={warm!r}: True, or the most warm Pods its entries may use "
                          f"(1 to {MAX_WARM_PODS}); None or False for a Pod of its own.")
    why = "entries in a warm Pod share its filesystem, network and processes, one after another"
    if run.entry is None:
        raise OptionError(f"warm={warm!r} needs an entry: a warm Pod runs Python entries ({why}); "
                          "a Cr that runs its image's command gets a Pod of its own.")
    for name, reason in WARM_REFUSED.items():
        if getattr(run, name):
            raise OptionError(f"warm={warm!r} with {name}=: {name} {reason}, which a shared Pod cannot give each "
                              f"entry ({why}). Drop warm= or {name}=.")
    return pods


def check_capabilities(capabilities: object) -> tuple[str, ...]:
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


def check_service_name(name: object) -> str:
    """A service's name: a DNS-1123 label (its container's name and its host alias), not levrt's own."""
    if not isinstance(name, str) or len(name) > 63 or not DNS1123_LABEL.match(name):
        raise ServiceError(
            f"service name {name!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63). Try "
            f"{_suggest_label(name)!r}."
        )
    if name in RESERVED_CONTAINER_NAMES:
        raise ServiceError(f"service name {name!r} is reserved by levrt. Choose another name.")
    return name


def _suggest_label(name: object) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")[:63].strip("-")
    return text or "svc"
