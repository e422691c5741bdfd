"""The command line of one function: ``levrt run FILE:FUNC [ARG...] [NAME=VALUE...]`` turned into
a Python call, checked before anything is created.

Why a module of its own, without I/O: a wrong call must be refused before a job opens (no Lease,
no Pod), with a usage line built from the function itself, and the same rules must hold on the
laptop and in the orchestration Pod (which gets the raw strings and reads them again here). So
this module only inspects a function, its annotations and its ``annot.Param``s (``__lev__``).

The rules:

- ``NAME=VALUE`` whose NAME is a Python identifier is a keyword argument, and NAME must be a
  parameter (or the function takes ``**kwargs``); anything else is a positional ARG, in order. To
  pass a text that looks like ``name=value`` itself, name its parameter: ``argv=name=value``.
- Values are converted by the parameter's annotation: ``str`` (and no annotation) as given,
  ``int``, ``float``, ``bool`` (true/false, yes/no, on/off, 1/0), ``Path``, a ``Literal`` or an
  ``Enum`` (one of its values), ``list[X]``/``tuple[X, ...]``/``set[X]`` as comma-separated X
  (empty: an empty list), ``dict`` as JSON. ``X | None``: an empty value is None. A union holding
  ``str`` takes the text; other unions try their members in order.
- A parameter's ``annot.Param(regex=...)`` is checked on the text given (any of its patterns,
  ``re.search``: the pattern's anchors decide).
- What a function is: an ``async def`` is a workflow, or an async mode when annotated ``-> Cr``;
  a plain function is a mode when annotated ``-> Cr`` or declared with ``@annot.meta`` (one
  without either may still be run: it is a mode if it returns a ``Cr``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import inspect
import json
import pathlib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

__all__ = ["Call", "CallError", "bind", "describe", "json_tokens", "kind_of", "runnables", "suggest", "usage"]

Kind = Literal["workflow", "mode"]
TRUE, FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


class CallError(ValueError):
    """What is wrong with a call, in one line naming the value; the caller adds the usage line.
    ``field``: the parameter it is about, when it is about one (the API answers 422 naming it)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Call:
    """The converted arguments: ``func(*call.args, **call.kwargs)``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


# -- what a function is ------------------------------------------------------------------------------


def _names_cr(annotation: Any) -> bool:
    if isinstance(annotation, str):  # `from __future__ import annotations`: not evaluated
        return annotation.replace(" ", "").rpartition(".")[2] == "Cr"
    return getattr(annotation, "__name__", None) == "Cr" and str(getattr(annotation, "__module__", "")).startswith(
        "levrt")


def _return_annotation(func: Callable[..., Any]) -> Any:
    try:
        return inspect.signature(func).return_annotation
    except (TypeError, ValueError):
        return inspect.Signature.empty


def kind_of(func: object) -> Kind | None:
    """``"workflow"``, ``"mode"``, or None: a function that says neither (it may still return a Cr)."""
    if not inspect.isfunction(func):
        return None
    returns_cr = _names_cr(_return_annotation(func))
    if inspect.iscoroutinefunction(func):
        return "mode" if returns_cr else "workflow"
    own = getattr(func, "__lev__", None)
    return "mode" if returns_cr or (isinstance(own, Mapping) and "exports" not in own) else None


def runnables(module: ModuleType) -> dict[str, Kind]:
    """The workflows and modes a module offers, by name, in definition order: its public functions
    defined there, and those its ``__lev__`` exports (a package's ``from .flows import sweep``)."""
    exported = {e.get("name") for e in _exports(module)}
    found: dict[str, Kind] = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if obj.__module__ != module.__name__ and name not in exported:
            continue
        kind = kind_of(obj)
        if kind is not None:
            found[name] = kind
    return found


def _exports(module: ModuleType) -> list[Mapping[str, Any]]:
    own = getattr(module, "__lev__", None)
    exports = own.get("exports") if isinstance(own, Mapping) else None
    return [e for e in exports if isinstance(e, Mapping)] if isinstance(exports, list) else []


def suggest(name: str, offered: Mapping[str, Kind]) -> str | None:
    """The offered function to name in a hint: the closest to ``name``, else a workflow, else any."""
    close = difflib.get_close_matches(name, list(offered), n=1)
    if close:
        return close[0]
    return next((n for n, kind in offered.items() if kind == "workflow"), next(iter(offered), None))


# -- values ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Converter:
    """How one annotation reads a command-line text: its name in the usage line and its conversion
    (None: a command line cannot give this type)."""

    shown: str
    convert: Callable[[str], Any] | None
    optional: bool = False


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CallError("is not a whole number (e.g. 10)") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CallError("is not a number (e.g. 0.5)") from None


def _bool(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise CallError("is not true or false (also yes/no, on/off, 1/0)")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CallError('is not a JSON object (e.g. {"key": "value"})')
    return value


def _choice(choices: Sequence[Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        for choice in choices:
            names = (str(choice.value), choice.name) if isinstance(choice, enum.Enum) else (str(choice),)
            if text in names:
                return choice
        raise CallError(f"is not one of {', '.join(_choice_text(c) for c in choices)}")
    return convert


def _choice_text(choice: Any) -> str:
    return str(choice.value) if isinstance(choice, enum.Enum) else str(choice)


def _items(item: _Converter, build: Callable[[Iterable[Any]], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        assert item.convert is not None
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        out = []
        for part in parts:
            try:
                out.append(item.convert(part))
            except CallError as exc:
                raise CallError(f"has the item {part!r} that {exc}") from None
        return build(out)
    return convert


def _union(members: Sequence[_Converter]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        for member in members:
            assert member.convert is not None
            try:
                return member.convert(text)
            except CallError:
                continue
        raise CallError(f"is not any of {' or '.join(m.shown for m in members)}")
    return convert


SCALARS: dict[Any, _Converter] = {
    str: _Converter("STR", str),
    int: _Converter("INT", _int),
    float: _Converter("FLOAT", _float),
    bool: _Converter("BOOL", _bool),
    dict: _Converter("JSON", _json_object),
}
SEQUENCES: dict[Any, Callable[[Iterable[Any]], Any]] = {list: list, tuple: tuple, set: set, frozenset: frozenset}


def converter(annotation: Any) -> _Converter:
    """How a parameter annotated ``annotation`` is read from the command line."""
    if annotation in (inspect.Parameter.empty, Any, object, str):
        return SCALARS[str]
    if annotation in SCALARS:
        return SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = list(annotation)
        return _Converter("|".join(_choice_text(m) for m in members), _choice(members))
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return _Converter("PATH", annotation)
    if annotation in SEQUENCES:
        return _Converter("STR,...", _items(SCALARS[str], SEQUENCES[annotation]))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return _Converter("|".join(str(a) for a in args), _choice(args))
    if origin in (typing.Union, types.UnionType):
        return _union_converter(args)
    if origin in SEQUENCES or origin in (Sequence, Iterable):
        item_type = args[0] if args and (len(args) == 1 or args[1:] == (Ellipsis,)) else None
        item = converter(item_type) if item_type is not None else None
        if item is None or item.convert is None or item.shown.endswith(",..."):
            return _unreadable(annotation)
        build = SEQUENCES.get(origin, list)
        return _Converter(f"{item.shown},...", _items(item, build))
    if origin is dict:
        return SCALARS[dict]
    return _unreadable(annotation)


def _union_converter(args: Sequence[Any]) -> _Converter:
    members = [a for a in args if a is not type(None)]
    optional = len(members) < len(args)
    if str in members:
        return _Converter("STR", str, optional)
    convs = [converter(m) for m in members]
    if any(c.convert is None for c in convs):
        return _Converter(" | ".join(c.shown for c in convs), None, optional)
    if len(convs) == 1:
        return dataclasses.replace(convs[0], optional=optional)
    return _Converter("|".join(c.shown for c in convs), _union(convs), optional)


def _unreadable(annotation: Any) -> _Converter:
    name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    return _Converter(name, None)


# -- the call ----------------------------------------------------------------------------------------


def _annotations(func: Callable[..., Any], parameters: Iterable[inspect.Parameter]) -> dict[str, Any]:
    """The parameters' annotations, evaluated (``from __future__ import annotations`` leaves them
    as strings); one that cannot be evaluated is read as text."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # a name only imported under TYPE_CHECKING, a typo: each one on its own below
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(func, "__globals__", {})
    for param in parameters:
        annotation = param.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # the function's own annotation, in its own module
            except Exception:
                annotation = inspect.Parameter.empty
        hints[param.name] = annotation
    return hints


def _declared(func: Callable[..., Any]) -> dict[str, Mapping[str, Any]]:
    """The ``annot.Param``s of ``func`` (``@annot.meta(params=...)``), by name."""
    own = getattr(func, "__lev__", None)
    params = own.get("params") if isinstance(own, Mapping) else None
    if not isinstance(params, list):
        return {}
    return {p["name"]: p for p in params if isinstance(p, Mapping) and isinstance(p.get("name"), str)}


def _about(declared: Mapping[str, Any] | None) -> str:
    """`` (its description, e.g. its placeholder)`` from an ``annot.Param``, or nothing."""
    if not declared:
        return ""
    holder = declared.get("placeholder")
    example = holder[0] if isinstance(holder, list) and holder else holder
    parts = [str(declared.get("desc") or "")] + ([f"e.g. {example}"] if example else [])
    text = ", ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def _check_patterns(name: str, text: str, declared: Mapping[str, Any] | None) -> None:
    patterns = declared.get("regex") if declared else None
    if not isinstance(patterns, list) or not patterns:
        return
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except (re.error, TypeError):
            continue  # the author's pattern is broken: `levrt check` is where that shows
    if compiled and not any(p.search(text) for p in compiled):
        raise CallError(f"{name}={text!r} does not match {' or '.join(p.pattern for p in compiled)}"
                        f"{_about(declared)}")


def _convert(name: str, text: str, annotation: Any, declared: Mapping[str, Any] | None) -> Any:
    conv = converter(annotation)
    if conv.convert is None:
        raise CallError(f"{name} takes a {conv.shown}, which a command line cannot give "
                        "(str, int, float, bool, Path, Literal, Enum, lists of them, dict as JSON)")
    _check_patterns(name, text, declared)
    if conv.optional and text == "":
        return None
    try:
        return conv.convert(text)
    except CallError as exc:
        raise CallError(f"{name}={text!r} {exc}{_about(declared)}") from None


def bind(func: Callable[..., Any], raw: Sequence[str]) -> Call:
    """``raw`` (the strings after FILE:FUNC) as a call of ``func``, converted and checked; a
    ``CallError`` says what is wrong."""
    signature = inspect.signature(func)
    params = signature.parameters
    by_name = {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    name = getattr(func, "__name__", "the function")
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for token in raw:
        key, sep, value = token.partition("=")
        if not (sep and key.isidentifier()):
            positional.append(token)
            continue
        param = by_name.get(key)
        if param is not None and param.kind is param.POSITIONAL_ONLY:
            raise CallError(f"{key} of {name} is given by position only: write its value without {key}=")
        if param is None and not takes_kwargs:
            known = ", ".join(by_name) or "none"
            escape = next((n for n, p in by_name.items() if p.kind is not p.KEYWORD_ONLY), None)
            hint = f"; to pass the text {token!r} itself, write {escape}={token}" if escape else ""
            raise CallError(f"{name} has no parameter {key!r} (its parameters: {known}){hint}")
        if key in keywords:
            raise CallError(f"{key}= is given twice")
        keywords[key] = value

    declared = _declared(func)
    hints = _annotations(func, params.values())
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    slots = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    rest = next((p for p in params.values() if p.kind is p.VAR_POSITIONAL), None)
    if len(positional) > len(slots) and rest is None:
        extra = positional[len(slots)]
        raise CallError(f"{name} takes {_count(len(slots), 'argument')} in order, got {len(positional)}: "
                        f"{extra!r} is one too many")
    for index, text in enumerate(positional):
        param = slots[index] if index < len(slots) else rest
        assert param is not None
        if param.name in keywords:
            raise CallError(f"{param.name} is given twice: as argument {index + 1} ({text!r}) and as "
                            f"{param.name}={keywords[param.name]!r}")
        args.append(_convert(param.name, text, hints.get(param.name, param.annotation), declared.get(param.name)))
    kw_param = next((p for p in params.values() if p.kind is p.VAR_KEYWORD), None)
    for key, text in keywords.items():
        param = by_name.get(key) or kw_param
        assert param is not None
        kwargs[key] = _convert(key, text, hints.get(param.name, param.annotation), declared.get(key))
    for index, param in enumerate(slots[len(positional):], start=len(positional)):
        if param.default is param.empty and param.name not in keywords:
            raise CallError(f"missing {param.name}{_about(declared.get(param.name))}: give it as argument "
                            f"{index + 1} or as {param.name}=...")
    for param in params.values():
        if param.kind is param.KEYWORD_ONLY and param.default is param.empty and param.name not in keywords:
            raise CallError(f"missing {param.name}{_about(declared.get(param.name))}: give it as {param.name}=...")
    # Positional-or-keyword parameters given by name after a gap stay keywords: Python binds them.
    return Call(tuple(args), kwargs)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{'no' if n == 0 else n} {word}s"


def usage(func: Callable[..., Any], target: str) -> str:
    """``levrt run TARGET ip=STR [ports=STR] [ARG...] [NAME=VALUE...]`` from ``func``'s signature:
    required parameters bare, optional ones in brackets, each with the type it is read as."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return f"levrt run {target} [ARG...] [NAME=VALUE...]"
    hints = _annotations(func, params.values())
    words = [f"levrt run {target}"]
    for param in params.values():
        if param.kind is param.VAR_POSITIONAL:
            words.append("[ARG...]")
            continue
        if param.kind is param.VAR_KEYWORD:
            words.append("[NAME=VALUE...]")
            continue
        shown = converter(hints.get(param.name, param.annotation)).shown
        word = param.name.upper() if param.kind is param.POSITIONAL_ONLY else f"{param.name}={shown}"
        words.append(word if param.default is param.empty else f"[{word}]")
    return " ".join(words)


# -- a call described, and a call given as JSON (the platform's API) ---------------------------------

GIVEN_AS = {
    inspect.Parameter.POSITIONAL_ONLY: "position", inspect.Parameter.POSITIONAL_OR_KEYWORD: "name",
    inspect.Parameter.KEYWORD_ONLY: "name", inspect.Parameter.VAR_POSITIONAL: "rest",
    inspect.Parameter.VAR_KEYWORD: "names",
}
"""How a parameter is given on a command line: by position only, by name (or position), the rest of
the positional values (``*args``), or any other name (``**kwargs``)."""


def describe(func: Callable[..., Any]) -> list[dict[str, Any]]:
    """Each parameter of ``func`` as the registry keeps it, so a call given as JSON is checked (and a
    form is built) without importing the tool: its name, how it is given (``GIVEN_AS``), its type as
    the usage line shows it (``INT``, ``STR,...``, ``tcp|udp``; ``readable`` False when a command line
    cannot give it), required or its default (``repr``), whether empty means None, and its
    ``annot.Param`` (desc, placeholder, regex)."""
    params = inspect.signature(func).parameters
    hints = _annotations(func, params.values())
    declared = _declared(func)
    described = []
    for param in params.values():
        conv = converter(hints.get(param.name, param.annotation))
        variadic = param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        entry: dict[str, Any] = {
            "name": param.name, "given": GIVEN_AS[param.kind], "type": conv.shown,
            "readable": conv.convert is not None, "optional": conv.optional,
            "required": param.default is param.empty and not variadic,
        }
        if param.default is not param.empty:
            entry["default"] = repr(param.default)
        for key in ("desc", "placeholder", "regex"):
            value = (declared.get(param.name) or {}).get(key)
            if value:
                entry[key] = value
        described.append(entry)
    return described


def _json_text(name: str, value: Any) -> str:
    """A JSON value as the text a command line would give for it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, list):
        items = [_json_text(name, item) for item in value]
        if any("," in item or isinstance(v, list | dict) for item, v in zip(items, value, strict=True)):
            raise CallError(f"{name}: a list's items are single values without commas", field=name)
        return ",".join(items)
    if isinstance(value, dict):
        return json.dumps(value)
    raise CallError(f"{name}: {type(value).__name__} is not a JSON value", field=name)


SHOWN_SCALARS = {c.shown: c for c in (*SCALARS.values(), _Converter("PATH", str))}


def _reader(shown: str) -> Callable[[str], Any]:
    """How a value of the described type ``shown`` is read (the converters above, by their names)."""
    if shown in SHOWN_SCALARS:
        convert = SHOWN_SCALARS[shown].convert
        assert convert is not None
        return convert
    if shown.endswith(",..."):
        return _items(_Converter(shown[:-4], _reader(shown[:-4])), list)
    parts = shown.split("|")
    if len(parts) > 1 and all(p in SHOWN_SCALARS for p in parts):
        return _union([_Converter(p, _reader(p)) for p in parts])
    if len(parts) > 1:
        return _choice(parts)
    return str  # a type named by the author's annotation and readable: its own constructor decides


def json_tokens(described: Sequence[Mapping[str, Any]], values: Mapping[str, Any], *, target: str) -> list[str]:
    """The command-line words (``name=text``, and positional texts for position-only parameters and
    ``*args``) of a call given as a JSON object, checked against ``describe``'s description as
    ``bind`` checks words: unknown or missing parameters, values of the wrong type, an
    ``annot.Param`` pattern not matched. A ``CallError`` names the field; the Pod that runs the call
    binds the words again with the function itself."""
    by_name = {p["name"]: p for p in described if p["given"] not in ("rest", "names")}
    rest = next((p for p in described if p["given"] == "rest"), None)
    extra = next((p for p in described if p["given"] == "names"), None)
    for name in values:
        if name not in by_name and extra is None and not (rest is not None and name == rest["name"]):
            known = ", ".join(by_name) or "none"
            raise CallError(f"{target} has no parameter {name!r} (its parameters: {known})", field=name)
    positional: list[str] = []
    keywords: list[str] = []
    for param in described:
        name = param["name"]
        if param["given"] == "names":
            continue
        if name not in values:
            if param["required"]:
                raise CallError(f"missing {name}{_about(param)}", field=name)
            continue
        if not param["readable"]:
            raise CallError(f"{name} takes a {param['type']}, which the API cannot give (str, int, float, bool, "
                            "Path, Literal, Enum, lists of them, dict)", field=name)
        given = values[name]
        if param["given"] == "rest":
            items = given if isinstance(given, list) else [given]
            positional += [_checked(name, _json_text(name, item), param) for item in items]
        elif param["given"] == "position":
            positional.append(_checked(name, _json_text(name, given), param))
        else:
            keywords.append(f"{name}={_checked(name, _json_text(name, given), param)}")
    for name, given in values.items():
        if name not in by_name and not (rest is not None and name == rest["name"]) and extra is not None:
            if not name.isidentifier():
                raise CallError(f"{name!r} is not a parameter name", field=name)
            keywords.append(f"{name}={_checked(name, _json_text(name, given), extra)}")
    for text in positional:
        key, sep, _ = text.partition("=")
        if sep and key.isidentifier():
            raise CallError(f"{text!r} would be read as {key}=...: a value given by position cannot look so",
                            field=key)
    return positional + keywords


def _checked(name: str, text: str, param: Mapping[str, Any]) -> str:
    """``text`` if the parameter reads it, else the ``CallError`` ``bind`` would raise, naming it."""
    try:
        _check_patterns(name, text, param)
        if not (param.get("optional") and text == ""):
            _reader(str(param["type"]))(text)
    except CallError as exc:
        message = str(exc) if str(exc).startswith(name) else f"{name}={text!r} {exc}{_about(param)}"
        raise CallError(message, field=name) from None
    return text
