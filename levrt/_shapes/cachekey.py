"""A Cr's content key: what decides what a run does, hashed the same in any process on any machine.

Why: ``--resume JOB`` does not run again a task whose identical run succeeded in JOB (issue 25,
item 1). Identical means: the image, the entry's code and its arguments, the command, the
environment, the sha256 of every file, the schema, and the run options that change what it does
(host network, capabilities, ports, links, services, each keyed the same way); not where or how
long it runs (timeout, retries, resources, node placement). The entry's code is its compiled
bytecode, constants and names, recursively, never its module's or file's name or its line
numbers, so moving a function changes nothing and changing one of its lines does. A value that cannot be keyed the same
everywhere (an arbitrary object) gives no key: such a run is never taken from a cache.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import types
from collections.abc import Mapping
from typing import Any

from levrt.cr import Cr
from levrt.remote import RemoteCall

__all__ = ["KEY_VERSION", "Unkeyable", "content_key"]

KEY_VERSION = 1
"""Part of every key: a change to what keys hold makes old keys miss instead of match wrongly."""


class Unkeyable(ValueError):
    """A value whose meaning cannot be written the same in every process."""


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):  # a Digest is its text
        return value if type(value) in (bool, int, str, type(None)) else _plain(value)
    if value is Ellipsis:
        return {"$ellipsis": True}
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, bytes | bytearray):
        return {"$bytes": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, pathlib.PurePath):
        return {"$path": str(value)}
    if isinstance(value, list | tuple):
        return {"$" + type(value).__name__: [_canonical(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {"$set": sorted((_canonical(v) for v in value), key=json.dumps)}
    if isinstance(value, Mapping):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return {"$map": sorted(items, key=lambda kv: json.dumps(kv[0], sort_keys=True))}
    if isinstance(value, types.CodeType):
        return _code(value)
    raise Unkeyable(f"a {type(value).__name__} cannot be keyed")


def _plain(value: Any) -> Any:
    """A subclass of a plain type (a Digest, an IntEnum) as its plain value."""
    for plain in (bool, int, str):
        if isinstance(value, plain):
            return plain(value)
    return value


def _code(code: types.CodeType) -> dict[str, Any]:
    return {"code": hashlib.sha256(code.co_code).hexdigest(), "consts": [_canonical(c) for c in code.co_consts],
            "names": list(code.co_names), "vars": list(code.co_varnames), "free": list(code.co_freevars)}


def _function(func: Any) -> dict[str, Any]:
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise Unkeyable(f"{func!r} has no code to key")
    cells = [cell.cell_contents for cell in getattr(func, "__closure__", None) or ()]
    # Its qualified name, not its module's: a lone file is imported under a name made unique per run,
    # and the same code under another module's name does the same thing.
    return {"name": str(getattr(func, "__qualname__", "?")), **_code(code),
            "defaults": _canonical(list(func.__defaults__ or ())),
            "kwdefaults": _canonical(dict(func.__kwdefaults__ or {})),
            "closure": [_function(c) if isinstance(c, types.FunctionType) else _canonical(c) for c in cells]}


def _entry(call: RemoteCall[Any] | None) -> Any:
    if call is None:
        return None
    return {"func": _function(call.func), "args": _canonical(list(call.args)), "kwargs": _canonical(call.kwargs)}


def _run(cr: Cr, files: Mapping[str, str]) -> dict[str, Any]:
    return {"image": cr.image, "schema": cr.schema, "host": cr.host, "entry": _entry(cr.entry), "cmd": list(cr.cmd),
            "env": list(cr.env), "files": dict(sorted(files.items())), "links": dict(sorted(cr.links.items())),
            "ports": list(cr.ports), "capabilities": sorted(cr.capabilities)}


def content_key(cr: Cr, files: Mapping[str, Mapping[str, str]], *, collection: str) -> str | None:
    """The key of ``cr`` writing to ``collection`` (its schema in the namespace it runs in), given the
    sha256 of each file of each container (``files["main"]``, ``files[service]``: target → sha256);
    None when some value of it cannot be keyed."""
    try:
        doc = {"v": KEY_VERSION, "collection": collection, **_run(cr, files.get("main", {})),
               "services": {name: _run(svc, files.get(name, {})) for name, svc in sorted(cr.services.items())}}
    except Exception:  # Unkeyable, a recursion too deep, anything odd: the task simply runs (never a failure)
        return None
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
