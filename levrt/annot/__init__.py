"""``levrt.annot``: describe modes, workflows and tool modules for catalogues and ``levrt check``.

Why plain JSON metadata: a tool module declares ``__lev__ = annot.meta([raw, alive, port_os])``
and anything — the CLI, a web catalogue, a test — can read what it exports, with which
parameters and categories, without running it. So everything here ends up as JSON-native data:
a ``Param`` becomes a dict, categories become ``{"Attck": ["TA0043"], ...}``.

- ``Param(name, desc, *, regex=None, holder=None)``: one parameter. ``regex`` is a str or a list
  of str and is stored as a list (a lone str → ``[str]``); ``holder`` is kept as ``placeholder``.
- ``ARGV``: the conventional free-form command-line parameter.
- ``meta(exports, *, desc, params, cats, tags, ext)``: with ``exports`` the module metadata dict;
  without, a decorator setting ``func.__lev__``. A lone Param/Category becomes a list; a list of
  categories is grouped by enum class.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
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
    placeholder: str | None = None

    def __init__(
        self,
        name: str,
        desc: str = "",
        *,
        regex: str | Iterable[str] | None = None,
        holder: str | None = None,
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
        if holder is not None and not isinstance(holder, str):
            raise MetaError(f"Param({name!r}, holder={holder!r}): the placeholder is a str.")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "placeholder", holder)

    @property
    def holder(self) -> str | None:
        return self.placeholder

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "desc": self.desc}
        if self.regex is not None:
            out["regex"] = list(self.regex)
        if self.placeholder is not None:
            out["placeholder"] = self.placeholder
        return out


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


def _export(func: Any) -> dict[str, Any]:
    if not callable(func) or not hasattr(func, "__name__"):
        raise MetaError(
            f"meta(exports=...): {func!r:.60} is not a function; export modes and workflows by name."
        )
    own = getattr(func, "__lev__", None)
    entry: dict[str, Any] = {
        "name": func.__name__,
        "kind": "workflow" if inspect.iscoroutinefunction(func) else "mode",
    }
    if isinstance(own, Mapping) and "exports" not in own:
        entry.update(own)
    else:
        entry.update(_info(None, None, None, None, None))
    if not entry["params"]:
        try:
            names = [p for p in inspect.signature(func).parameters]
        except (TypeError, ValueError):
            names = []
        entry["params"] = [{"name": n, "desc": ""} for n in names]
    return entry


@overload
def meta(
    exports: Iterable[Callable[..., Any]],
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
    exports: Iterable[Callable[..., Any]] | None = None,
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
    if isinstance(exports, str | bytes) or not isinstance(exports, Iterable):
        raise MetaError(
            f"meta(exports={exports!r:.60}): exports are a list of functions, e.g. meta([raw, alive])."
        )
    return {**info, "exports": [_export(f) for f in exports]}
