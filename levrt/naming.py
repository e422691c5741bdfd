"""What people call a run: a ``Cr``'s ``origin``, found in the call frames that built it.

Why apart from ``Cr``: naming a run reads the caller's frames (the mode that built the Cr and its
arguments as they are now), an idea of its own that ``Cr(...)`` only asks for once, at
construction. ``levrt run`` and ``levrt ps`` show the name; ``call_name`` also names an entry's
call the same way.
"""

from __future__ import annotations

import inspect
import pathlib
import re
import reprlib
from collections.abc import Iterable, Mapping
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from levrt.remote import RemoteCall

__all__ = ["MAX_NAME_ARGS", "call_name", "run_origin"]

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


def run_origin(frame: FrameType | None, entry: RemoteCall[Any] | None, image: str) -> str:
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
