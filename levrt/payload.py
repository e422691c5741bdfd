"""The payload: a captured entry call as bytes, written on the client, read in the container.

Why a format of its own and not a bare pickle: the container runs levrt's injected Python, and
unpickling what another Python minor or cloudpickle version wrote fails in obscure ways (or,
worse, silently misbehaves). A small readable header lets the runtime refuse a mismatch *before*
unpickling anything, with a message naming both sides::

    b"LEVRT-PAYLOAD 1\\n" + json_header + b"\\n" + cloudpickle.dumps((func, args, kwargs))

Header: ``{"python": "3.11", "cloudpickle": "3.1.1", "levrt": "2.0.0a1", "entry": "mod.fn"}``, and
``"sources": {path: text}`` when the call carries code pickled by value.

Functions defined in modules the container cannot import (the user's tool modules, test
modules, ``__main__``) are pickled by value: every top-level module except the standard library,
levrt, cloudpickle and pymongo is registered with ``cloudpickle.register_pickle_by_value`` for the
duration of one dump. The runtime imports this module: standard library and cloudpickle only.

The user's file names and lines survive the trip, whatever cloudpickle does with them (3.1.3 writes
``<dynamic-code>`` as every pickled function's file): code objects travel whole through ``marshal``
(same Python minor on both sides, checked by the header), file name included, and the source of
those files rides in the header, bounded, so that the runtime can hand it to ``linecache``:
tracebacks, breakpoint messages and pdb's ``list`` under ``levrt attach`` show the author's path
and lines in a container that has neither.
"""

from __future__ import annotations

import io
import json
import linecache
import marshal
import pickle
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import cloudpickle

from levrt._version import __version__
from levrt.errors import PayloadError, VersionMismatch

__all__ = [
    "FORMAT",
    "MAGIC",
    "MAX_PAYLOAD_BYTES",
    "dumps",
    "dumps_call",
    "header",
    "loads_call",
    "read_header",
]

MAGIC = b"LEVRT-PAYLOAD"
FORMAT = 1
_PREFIX = MAGIC + b" %d\n" % FORMAT

# One payload goes into the task's Secret next to its services' payloads; a Secret holds at most
# 1 MiB, so one call gets half of it. Large data belongs in `files` or the store, not in arguments.
MAX_PAYLOAD_BYTES = 512 * 1024

# The source sent with a payload, at most: enough for a tool's modules, small beside the call's share
# of the Secret. A file that does not fit is left out (its tracebacks keep file names and line
# numbers, without the text); the payload itself never grows past its limit for it.
MAX_SOURCE_BYTES = 128 * 1024

# Importable inside the container: the runtime bundle ships these (and the standard library).
_SHIPPED = frozenset({"levrt", "cloudpickle", "pymongo", "bson", "gridfs", "__main__", "builtins"})

_register_lock = threading.Lock()


class _Call(Protocol):
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def python_version() -> str:
    """``"3.11"``: the minor version a payload must be read with."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def header(*, entry: str = "") -> dict[str, str]:
    """The header this process writes."""
    head = {"python": python_version(), "cloudpickle": cloudpickle.__version__, "levrt": __version__}
    if entry:
        head["entry"] = entry
    return head


def _by_value_modules() -> list[str]:
    """Top-level modules loaded here that the container cannot import by name."""
    stdlib = sys.stdlib_module_names
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    return sorted(n for n in tops if n not in stdlib and n not in _SHIPPED and n in sys.modules)


@contextmanager
def _pickle_by_value() -> Iterator[None]:
    """Register user modules for pickling by value; unregister what we registered afterwards."""
    with _register_lock:
        added = []
        registered = cloudpickle.list_registry_pickle_by_value()
        for name in _by_value_modules():
            module = sys.modules.get(name)
            if module is None or not hasattr(module, "__name__"):
                continue
            if name in registered:
                continue  # the user registered it: leave it alone
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:
                continue
            added.append(module)
        try:
            yield
        finally:
            for module in added:
                try:
                    cloudpickle.unregister_pickle_by_value(module)
                except ValueError:
                    pass


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no type hints
    """cloudpickle's pickler, except that code objects keep their file name, and it notes which files."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.DEFAULT_PROTOCOL)
        self.filenames: dict[str, None] = {}  # in the order met: the entry's own file first

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.CodeType):
            try:
                whole = marshal.dumps(obj)
            except ValueError:  # a hand-made code object holding what marshal cannot write
                return super().reducer_override(obj)
            self._note_files(obj)
            return marshal.loads, (whole,)
        return super().reducer_override(obj)

    def _note_files(self, code: types.CodeType) -> None:
        self.filenames.setdefault(code.co_filename)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self._note_files(const)


def _pickle(value: Any) -> tuple[bytes, list[str]]:
    """``value`` pickled, and the files its code objects come from."""
    buffer = io.BytesIO()
    pickler = _Pickler(buffer)
    pickler.dump(value)
    return buffer.getvalue(), list(pickler.filenames)


def _sources(filenames: list[str], budget: int) -> dict[str, str]:
    """The text of each file (as ``linecache`` has it here), in order, while the total fits ``budget``."""
    sources: dict[str, str] = {}
    for filename in filenames:
        text = "".join(linecache.getlines(filename))
        size = len(text.encode())
        if text and size <= budget:
            sources[filename] = text
            budget -= size
    return sources


def _remember_sources(sources: object) -> None:
    """Give the sources a payload carries to ``linecache``, as if their files were here."""
    if not isinstance(sources, dict):
        return
    for filename, text in sources.items():
        if isinstance(filename, str) and isinstance(text, str):
            # No modification time: linecache.checkcache keeps such entries (it cannot stat them).
            linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)


def dumps(
    func: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    limit: int = MAX_PAYLOAD_BYTES,
) -> bytes:
    """Serialise one call ``func(*args, **kwargs)`` as a payload; ``PayloadError`` if it cannot."""
    kwargs = dict(kwargs or {})
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    with _pickle_by_value():
        try:
            body, filenames = _pickle((func, tuple(args), kwargs))
        except Exception as exc:
            culprit = _find_culprit(func, args, kwargs)
            raise PayloadError(
                f"The entry call {name} cannot be sent to the container: {culprit} could not be "
                f"pickled ({type(exc).__name__}: {exc}). Pass plain data (str, int, lists, dicts, "
                "bytes) and create clients, files, sockets or locks inside the entry instead."
            ) from exc
    head = json.dumps(header(entry=name), sort_keys=True).encode()
    blob: bytes = _PREFIX + head + b"\n" + body
    if len(blob) > limit:
        raise PayloadError(
            f"The entry call {name} pickles to {len(blob)} bytes, over the payload limit of {limit} "
            "bytes. Pass large data as `files` (or keep it in the store) instead of as arguments or "
            "captured variables."
        )
    # Sources only where they fit: the header is measured as written (JSON escapes grow a text).
    sources = _sources(filenames, min(MAX_SOURCE_BYTES, limit - len(blob)))
    while sources:
        head = json.dumps({**header(entry=name), "sources": sources}, sort_keys=True, ensure_ascii=False).encode()
        if len(_PREFIX) + len(head) + 1 + len(body) <= limit:
            return _PREFIX + head + b"\n" + body
        sources.popitem()  # the file met last is the furthest from the entry
    return blob


def dumps_call(call: _Call, *, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """Serialise a ``RemoteCall`` (anything with ``func``, ``args``, ``kwargs``)."""
    return dumps(call.func, call.args, call.kwargs, limit=limit)


def _find_culprit(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """Name the first part of a call that does not pickle, for the error message."""
    candidates: list[tuple[str, Any]] = [(f"argument {i} ({a!r:.60})", a) for i, a in enumerate(args)]
    candidates += [(f"keyword argument {k}={v!r:.60}", v) for k, v in kwargs.items()]
    for label, value in candidates:
        try:
            cloudpickle.dumps(value)
        except Exception:
            return label
    closure = getattr(func, "__closure__", None) or ()
    names = getattr(getattr(func, "__code__", None), "co_freevars", ())
    for var, cell in zip(names, closure, strict=False):
        try:
            cloudpickle.dumps(cell.cell_contents)
        except ValueError:  # empty cell
            continue
        except Exception:
            return f"the captured variable {var!r} ({cell.cell_contents!r:.60})"
    code = getattr(func, "__code__", None)
    for var in getattr(code, "co_names", ()):
        glob = getattr(func, "__globals__", {})
        if var in glob:
            try:
                cloudpickle.dumps(glob[var])
            except Exception:
                return f"the global {var!r} ({glob[var]!r:.60}) used by the function"
    return "the function itself"


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    if not blob.startswith(MAGIC + b" "):
        raise PayloadError(
            f"Not a levrt payload (starts with {bytes(blob[:20])!r}); expected {_PREFIX!r}. "
            "The payload Secret was not written by levrt.payload.dumps."
        )
    first, _, rest = blob.partition(b"\n")
    version = first[len(MAGIC) + 1 :].decode(errors="replace")
    if version != str(FORMAT):
        raise VersionMismatch(
            f"Payload format {version} was written by another levrt; this runtime reads format {FORMAT}. "
            "Use the same levrt version on the client and in the runtime image."
        )
    head, sep, body = rest.partition(b"\n")
    if not sep:
        raise PayloadError("Truncated levrt payload: no header line. Resubmit the task.")
    try:
        parsed = json.loads(head)
    except ValueError as exc:
        raise PayloadError(f"Corrupt levrt payload header {head[:80]!r}: {exc}.") from None
    if not isinstance(parsed, dict):
        raise PayloadError(f"Corrupt levrt payload header {head[:80]!r}: not an object.")
    return parsed, body


def read_header(blob: bytes) -> dict[str, Any]:
    """The JSON header of a payload, without unpickling anything."""
    return _split(blob)[0]


def loads_call(
    blob: bytes, *, python: str | None = None, cloudpickle_version: str | None = None
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """Check the header against this side's versions, then unpickle ``(func, args, kwargs)``.

    ``python`` (``"3.11"``) and ``cloudpickle_version`` default to this interpreter's; a mismatch
    raises ``VersionMismatch`` naming both sides before the body is touched.
    """
    head, body = _split(blob)
    ours_py = python or python_version()
    ours_cp = cloudpickle_version or cloudpickle.__version__
    theirs_py, theirs_cp = head.get("python"), head.get("cloudpickle")
    if theirs_py != ours_py:
        raise VersionMismatch(
            f"The entry was pickled by Python {theirs_py} on the client but the runtime is Python "
            f"{ours_py}. Run the client with Python {ours_py}, or use a levrt runtime image built "
            f"for Python {theirs_py}."
        )
    if theirs_cp != ours_cp:
        raise VersionMismatch(
            f"The entry was pickled with cloudpickle {theirs_cp} on the client but the runtime has "
            f"cloudpickle {ours_cp}. Install cloudpickle=={ours_cp} on the client, or use a runtime "
            "image built with the client's version."
        )
    _remember_sources(head.get("sources"))
    try:
        loaded = pickle.loads(body)
    except Exception as exc:
        raise PayloadError(
            f"The entry {head.get('entry', '?')} could not be unpickled in the container: "
            f"{type(exc).__name__}: {exc}. A module it uses may not exist in the container; import "
            "third-party modules inside the entry and make sure the image provides them."
        ) from exc
    if not (isinstance(loaded, tuple) and len(loaded) == 3 and callable(loaded[0])):
        raise PayloadError(f"The payload of {head.get('entry', '?')} is not a (func, args, kwargs) call.")
    func, args, kwargs = loaded
    return func, tuple(args), dict(kwargs)
