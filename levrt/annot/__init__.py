"""``levrt.annot``: describe modes, workflows and tool modules for catalogues and ``levrt check``.

Why plain JSON metadata: a tool module declares ``__lev__ = annot.meta([raw, alive, port_os])``
and anything — the CLI, a web catalogue, a test — can read what it exports, with which
parameters and categories, without running it. So everything here ends up as JSON-native data:
a ``Param`` becomes a dict, categories become ``{"Attck": ["TA0043"], ...}``.

- ``Param(name, desc, *, regex=None, holder=None)``: one parameter. ``regex`` is a str or a list
  of str and is stored as a list (a lone str → ``[str]``). ``holder`` is stored as
  ``placeholder`` in one of two normal forms: a **str** (from a str, or from an int written in
  decimal: ``holder=8080`` → ``"8080"``) or a **list of str** (from a list or tuple whose items
  are str or int, each int converted the same way; an empty list means no placeholder). Why not
  always a list: a lone str is what 1.x catalogues and today's metadata show, byte for byte, and
  a list means something else — several example values to choose from — so a catalogue must be
  able to tell them apart. Why ints become str: a placeholder is text shown in an empty form
  field, never a typed default, so consumers handle two shapes, not four. Anything else (bool,
  float, dict, None, a list holding one of those) is a ``MetaError`` naming the value.
- ``ARGV``: the conventional free-form command-line parameter.
- ``meta(exports, *, desc, params, cats, tags, ext)``: with ``exports`` the module metadata dict;
  without, a decorator setting ``func.__lev__``. A lone Param/Category becomes a list; a list of
  categories is grouped by enum class.

What an export list may hold (the levrt 1.x tool-package layout, SPEC 8), and how each shows in
``exports``:

- a sync function → ``{"name", "kind": "mode", "desc", "params", "cats", "tags"}`` (its own
  ``@annot.meta`` data; without it the signature's parameter names);
- an ``async def`` → ``"kind": "workflow"``, except an ``async def`` annotated ``-> Cr`` (or
  ``-> levrt.Cr``), which is an async mode: ``"kind": "mode", "async": true``. Only the return
  annotation can tell the two apart without running the function, so annotate async modes;
- a module (``from . import scan``) → ``{"kind": "module", "name": "lev.ns.tool.scan", "desc",
  "cats", "tags", "exports": [...]}``: the module's own ``__lev__ = annot.meta([...])`` when it
  has one (its desc, cats, tags and exports), else every function *defined in it* that carries
  ``__lev__`` from ``@annot.meta(...)`` (functions it imports belong to their own module), in
  definition order, with the first line of its docstring as desc. A module exported without
  any annotated function is a ``MetaError`` naming it: it would show as an empty tool.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any, TypeVar, overload

from levrt.annot import cats
from levrt.annot.cats import Attck, BlackArch, Category
from levrt.errors import MetaError

__all__ = ["ARGV", "Attck", "BlackArch", "Category", "Param", "cats", "meta"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a mode or workflow, for catalogues and forms."""

    name: str
    desc: str
    regex: tuple[str, ...] | None = None
    placeholder: str | tuple[str, ...] | None = None

    def __init__(
        self,
        name: str,
        desc: str = "",
        *,
        regex: str | Iterable[str] | None = None,
        holder: str | int | Iterable[str | int] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise MetaError(
                f"Param({name!r}): the name is the function parameter's name, a Python identifier."
            )
        if not isinstance(desc, str):
            raise MetaError(f"Param({name!r}, desc={desc!r}): the description is a str.")
        if regex is not None:
            regex = (regex,) if isinstance(regex, str) else tuple(regex)
            if not all(isinstance(r, str) for r in regex):
                raise MetaError(f"Param({name!r}, regex={regex!r}): regex is a str or a list of str.")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "placeholder", _placeholder(name, holder))

    @property
    def holder(self) -> str | tuple[str, ...] | None:
        return self.placeholder

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "desc": self.desc}
        if self.regex is not None:
            out["regex"] = list(self.regex)
        if isinstance(self.placeholder, tuple):
            out["placeholder"] = list(self.placeholder)
        elif self.placeholder is not None:
            out["placeholder"] = self.placeholder
        return out


def _holder_item(value: object) -> str | None:
    """A str as is, an int (not a bool) in decimal; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _placeholder(name: str, holder: object) -> str | tuple[str, ...] | None:
    """The normal form of ``holder``: a str, a tuple of str (a list in JSON), or None."""
    if holder is None:
        return None
    single = _holder_item(holder)
    if single is not None:
        return single
    if isinstance(holder, list | tuple):
        items = []
        for item in holder:
            text = _holder_item(item)
            if text is None:
                raise MetaError(
                    f"Param({name!r}, holder={holder!r:.80}): the item {item!r:.40} ({type(item).__name__}) "
                    "is not a str or an int; a placeholder list holds example values such as ['22', '80-90']."
                )
            items.append(text)
        return tuple(items) or None
    raise MetaError(
        f"Param({name!r}, holder={holder!r:.60}): a placeholder is a str, an int or a list of str, "
        f"not {type(holder).__name__}; e.g. holder='10.0.0.1', holder=8080 or holder=['22', '80']."
    )


ARGV = Param("argv", "Command line arguments")


def _params(params: Param | Iterable[Param] | None) -> list[dict[str, Any]]:
    if params is None:
        return []
    items = [params] if isinstance(params, Param) else list(params)
    out = []
    for p in items:
        if not isinstance(p, Param):
            raise MetaError(
                f"meta(params=...): {p!r:.60} is not an annot.Param; write annot.Param('name', 'desc')."
            )
        out.append(p.to_dict())
    return out


def _cats(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    grouped: dict[str, list[str]] = {}
    if isinstance(value, Mapping):
        pairs: list[tuple[Any, Any]] = []
        for key, members in value.items():
            items = [members] if isinstance(members, Category) else list(members)
            pairs += [(key, m) for m in items]
    else:
        items = [value] if isinstance(value, Category) else list(value)
        pairs = [(type(m) if isinstance(m, Category) else None, m) for m in items]
    for key, member in pairs:
        if not isinstance(member, Category):
            raise MetaError(
                f"meta(cats=...): {member!r:.60} is not a category; use members such as "
                "Attck.Reconnaissance or BlackArch.Scanner."
            )
        if key is not type(member) and key != type(member).__name__:
            raise MetaError(
                f"meta(cats=...): {member} is listed under {key!r}; list it under {type(member).__name__}."
            )
        values = grouped.setdefault(type(member).__name__, [])
        if member.value not in values:
            values.append(member.value)
    return grouped


def _tags(tags: str | Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    items = [tags] if isinstance(tags, str) else list(tags)
    if not all(isinstance(t, str) for t in items):
        raise MetaError(f"meta(tags={tags!r}): tags are a list of str.")
    return items


def _info(desc: str | None, params: Any, cats_: Any, tags: Any, ext: Any) -> dict[str, Any]:
    if desc is not None and not isinstance(desc, str):
        raise MetaError(f"meta(desc={desc!r:.60}): the description is a str.")
    info: dict[str, Any] = {
        "desc": desc or "",
        "params": _params(params),
        "cats": _cats(cats_),
        "tags": _tags(tags),
    }
    if ext is not None:
        try:
            json.dumps(ext)
        except (TypeError, ValueError) as exc:
            raise MetaError(
                f"meta(ext={ext!r:.60}) is not JSON-serialisable ({exc}); use dicts, lists, str, numbers."
            ) from None
        info["ext"] = ext
    return info


def _returns_cr(func: Callable[..., Any]) -> bool:
    """Whether ``func``'s return annotation names levrt's ``Cr`` (a class, or the string of one)."""
    try:
        annotation = inspect.signature(func).return_annotation
    except (TypeError, ValueError):
        return False
    if isinstance(annotation, str):  # `from __future__ import annotations`: not evaluated
        return annotation.replace(" ", "").rpartition(".")[2] == "Cr"
    return getattr(annotation, "__name__", None) == "Cr" and str(
        getattr(annotation, "__module__", "")
    ).startswith("levrt")


def _annotated(obj: object) -> bool:
    """A function carrying a mode's or workflow's ``__lev__`` (from ``@annot.meta(...)``)."""
    own = getattr(obj, "__lev__", None) if inspect.isfunction(obj) else None
    return isinstance(own, Mapping) and "exports" not in own


def _doc_line(module: ModuleType) -> str:
    doc = inspect.getdoc(module) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def _module_export(module: ModuleType) -> dict[str, Any]:
    name = module.__name__
    own = getattr(module, "__lev__", None)
    entry: dict[str, Any] = {"kind": "module", "name": name}
    if isinstance(own, Mapping) and isinstance(own.get("exports"), list):
        exports = list(own["exports"])
        entry.update(desc=own.get("desc", ""), cats=own.get("cats", {}), tags=own.get("tags", []))
        if "ext" in own:
            entry["ext"] = own["ext"]
    else:
        funcs = [obj for obj in vars(module).values() if _annotated(obj) and obj.__module__ == name]
        exports = [_export(f) for f in funcs]
        entry.update(desc=_doc_line(module), cats={}, tags=[])
    if not exports:
        raise MetaError(
            f"meta(exports=...): the module {name!r} has no annotated modes or workflows. Decorate them "
            "with @annot.meta(desc=...), give the module its own __lev__ = annot.meta([...]), or leave "
            "it out of the export list."
        )
    entry["exports"] = exports
    return entry


def _export(func: Any) -> dict[str, Any]:
    if isinstance(func, ModuleType):
        return _module_export(func)
    if not callable(func) or not hasattr(func, "__name__"):
        raise MetaError(
            f"meta(exports=...): {func!r:.60} is not a function or a module; export modes, workflows "
            "and modules by name, e.g. meta([scan, sweep])."
        )
    own = getattr(func, "__lev__", None)
    entry: dict[str, Any] = {"name": func.__name__}
    if not inspect.iscoroutinefunction(func):
        entry["kind"] = "mode"
    elif _returns_cr(func):
        entry.update(kind="mode", **{"async": True})
    else:
        entry["kind"] = "workflow"
    entry.update(_info(None, None, None, None, None))
    if isinstance(own, Mapping) and "exports" not in own:
        entry.update(own)
    if not entry["params"]:
        try:
            names = [p for p in inspect.signature(func).parameters]
        except (TypeError, ValueError):
            names = []
        entry["params"] = [{"name": n, "desc": ""} for n in names]
    return entry


@overload
def meta(
    exports: Iterable[Callable[..., Any] | ModuleType],
    *,
    desc: str | None = None,
    params: Any = None,
    cats: Any = None,
    tags: Any = None,
    ext: Any = None,
) -> dict[str, Any]: ...


@overload
def meta(
    exports: None = None,
    *,
    desc: str | None = None,
    params: Any = None,
    cats: Any = None,
    tags: Any = None,
    ext: Any = None,
) -> Callable[[F], F]: ...


def meta(
    exports: Iterable[Callable[..., Any] | ModuleType] | None = None,
    *,
    desc: str | None = None,
    params: Any = None,
    cats: Any = None,
    tags: Any = None,
    ext: Any = None,
) -> Any:
    """Module metadata (with ``exports``) or a decorator setting ``func.__lev__`` (without)."""
    info = _info(desc, params, cats, tags, ext)
    if exports is None:

        def decorate(func: F) -> F:
            if not callable(func):
                raise MetaError(f"@annot.meta(...) decorates functions, got {func!r:.60}.")
            func.__lev__ = dict(info)  # type: ignore[attr-defined]
            return func

        return decorate
    if callable(exports) and not isinstance(exports, list | tuple):
        raise MetaError(
            f"annot.meta was applied to {getattr(exports, '__name__', exports)!r} directly. Did you forget "
            "parentheses? Write @annot.meta(desc=...) above the function, or __lev__ = annot.meta([f, g]) "
            "for a module."
        )
    if isinstance(exports, str | bytes | ModuleType) or not isinstance(exports, Iterable):
        raise MetaError(
            f"meta(exports={exports!r:.60}): exports are a list of modes, workflows and modules, "
            "e.g. meta([raw, alive]) or meta([scan, sweep])."
        )
    data = {**info, "exports": [_export(f) for f in exports]}
    try:
        # A fresh copy (module entries reuse their modules' own metadata), and proof it is JSON.
        copied: dict[str, Any] = json.loads(json.dumps(data))
    except (TypeError, ValueError) as exc:
        raise MetaError(
            f"meta(exports=...): the metadata gathered from the exports is not JSON-serialisable ({exc}); "
            "build every __lev__ with annot.meta."
        ) from None
    return copied
