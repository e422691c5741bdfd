"""``levrt check TARGET``: print a tool's ``__lev__`` metadata, as JSON (default) or as a tree.

TARGET is a tool package folder (``examples/lev/demo/portscan``), a ``.py`` file (inside a
package with relative imports, or on its own), or a dotted module name importable from the
current directory or ``sys.path`` (``lev.demo.portscan``); see ``load_module``.

JSON (``--format json``): the ``__lev__`` dict exactly as ``annot.meta`` built it, preceded by
the dotted name of what was loaded: ``"package": "lev.demo.portscan"`` for a package,
``"module": "lev.demo.portscan.flows"`` for a module imported by name; a lone file gets nothing
added (its metadata exactly, as before packages were understood)::

    {"package": "lev.demo.portscan", "desc": ..., "params": [], "cats": {...}, "tags": [...],
     "exports": [{"kind": "module", "name": "lev.demo.portscan.scan", "desc", "cats", "tags",
                  "exports": [{"name": "tcp", "kind": "mode", "desc", "params": [...], "cats", "tags"}]},
                 {"name": "sweep", "kind": "workflow", ...}]}

Table (``--format table``), for people: one line per package, module, mode and workflow, the
name indented by depth, then the kind (``async mode`` for an ``async def`` returning a Cr), the
parameter names, the categories (``Attck:TA0007,TA0043 BlackArch:scanner``) and the first line
of the description.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from levrt._cli.base import EXIT_OK, LONE_FILE_PREFIX, CliError, Command, load_module, print_table

__all__ = ["CHECK", "tree_rows"]

DESC_WIDTH = 60


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "module", metavar="TARGET",
        help="tool package folder (lev/demo/portscan), .py file (tools/nmap.py) or dotted module name "
             "(lev.demo.portscan)",
    )
    parser.add_argument(
        "-o", "--format", "--output", dest="format", choices=("json", "table"), default="json",
        help="json (default): the metadata as JSON; table: one line per module, mode and workflow",
    )


def _identity(module: ModuleType) -> tuple[str, str] | None:
    """``("package" | "module", dotted name)`` of what was loaded; None for a lone file."""
    name = module.__name__
    if name.startswith(LONE_FILE_PREFIX):
        return None
    return ("package" if hasattr(module, "__path__") else "module"), name


def _missing(target: str, module: ModuleType) -> str:
    message = (
        f"Module {target!r} has no __lev__ metadata. Export its modes with "
        "`__lev__ = levrt.annot.meta([mode1, mode2], desc=...)`."
    )
    parent = None if hasattr(module, "__path__") else module.__package__
    if parent and getattr(sys.modules.get(parent), "__lev__", None) is not None:
        message += f" Its package {parent} has one: check the package (its folder, or `levrt check {parent}`)."
    return message


def check(args: argparse.Namespace) -> int:
    module = load_module(args.module)
    lev_meta = getattr(module, "__lev__", None)
    if lev_meta is None:
        raise CliError(_missing(args.module, module))
    identity = _identity(module)
    if identity is not None and isinstance(lev_meta, Mapping):
        lev_meta = {identity[0]: identity[1], **lev_meta}
    if args.format == "table":
        if not isinstance(lev_meta, Mapping):
            raise CliError(
                f"The __lev__ of {args.module!r} is not a dict ({type(lev_meta).__name__}); "
                "it has no tree to show. Build it with annot.meta, or use --format json."
            )
        kind, name = identity if identity is not None else ("module", args.module)
        print_table(tree_rows(lev_meta, kind=kind, name=name), ["NAME", "KIND", "PARAMS", "CATEGORIES", "DESC"])
        return EXIT_OK
    try:
        text = json.dumps(lev_meta, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise CliError(
            f"The __lev__ of {args.module!r} is not JSON-serialisable: {exc}. Build it with annot.meta."
        ) from None
    print(text)
    return EXIT_OK


def tree_rows(entry: Mapping[str, Any], *, kind: str, name: str, depth: int = 0) -> list[list[str]]:
    """The table lines of ``entry`` and, indented below it, of its exports (recursively)."""
    params = entry.get("params")
    params = params if isinstance(params, list) else []
    param_names = [str(p.get("name", "?")) for p in params if isinstance(p, Mapping)]
    cats = entry.get("cats")
    cat_text = (
        " ".join(f"{group}:{','.join(map(str, values))}" for group, values in cats.items() if values)
        if isinstance(cats, Mapping) else ""
    )
    desc = str(entry.get("desc") or "").strip()
    desc = desc.splitlines()[0] if desc else ""
    if len(desc) > DESC_WIDTH:
        desc = desc[: DESC_WIDTH - 3] + "..."
    rows = [["  " * depth + name, kind, ", ".join(param_names) or "-", cat_text or "-", desc]]
    exports = entry.get("exports")
    for child in exports if isinstance(exports, list) else []:
        if not isinstance(child, Mapping):
            continue
        child_kind = str(child.get("kind", "?"))
        if child.get("async") and child_kind == "mode":
            child_kind = "async mode"
        rows += tree_rows(child, kind=child_kind, name=str(child.get("name", "?")), depth=depth + 1)
    return rows


CHECK = Command("check", "print a tool's __lev__ metadata (JSON, or --format table)", _arguments, check)
