"""``levrt run NAMESPACE/TOOL[@VERSION]:FUNC``: a published tool, run by name with no local files.

Why apart from ``run``: where a file is imported from disk, a published tool is taken from the
registry (``levrt._core.registry``), checked against its sha256 and unpacked into a folder of its
own before a line of it is imported. The client does so to check the call (usage errors before
anything is created), then submits an orchestration Pod; the Pod's ``levrt run --published SHA256``
does so again, and runs it only if the registry still holds that very archive.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import inspect
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from levrt._cli.base import CliError, settings_of
from levrt._cli.callargs import describe, kind_of
from levrt._clients.store import opened
from levrt._core.registry import REGISTRY_DATABASE, Registry
from levrt._shapes.registry import ToolName, parse_tool, tool_of_package
from levrt.errors import RecordNotFound

__all__ = ["Loaded", "calls_of", "find_call", "load_published", "published_tool"]

MAX_USED_TOOLS = 20
"""Other published tools one tool may import (each taken from the registry as it is needed)."""


def published_tool(target: str) -> ToolName | None:
    """The published tool ``target`` names (``demo/portscan``, ``demo/portscan@1.0``), or None when it
    is a path that exists or no tool name (a file or a module, as before)."""
    if Path(target).exists():
        return None
    try:
        return parse_tool(target)
    except ValueError:
        return None


class Loaded:
    """A published tool unpacked and imported: the module holding FUNC, FUNC's name in it, and what
    the job record says ran."""

    def __init__(self, record: Mapping[str, Any], module: ModuleType, func: str) -> None:
        self.record = record
        self.module = module
        self.func = func
        self.pinned = f"{record['name']}@{record['version']}"
        """The tool at the version that runs: ``demo/portscan@1.0``."""

    def what(self, named: str, args: list[str]) -> dict[str, Any]:
        return {"target": f"{self.pinned}:{named}", "args": args, "tool": self.record["name"],
                "version": self.record["version"], "sha256": self.record["sha256"],
                **({"uses": list(self.record["uses"])} if self.record.get("uses") else {})}


def load_published(tool: ToolName, named: str, args: Any, *, sha256: str | None = None) -> Loaded:
    """Take ``tool`` from the registry (with ``sha256``: only that archive), unpack it into a fresh
    folder, import it and find FUNC: the package's own attribute, ``module.func`` for a function of
    one of its modules, or the one mode or workflow of that name its metadata lists."""
    dest = Path(tempfile.mkdtemp(prefix="levrt-tool-"))
    atexit.register(shutil.rmtree, dest, True)  # imported from for as long as this process runs

    async def fetch(wanted: ToolName, expected: str | None) -> Mapping[str, Any]:
        settings = settings_of(args).replace(database=REGISTRY_DATABASE)
        async with opened(settings, kubeconfig=args.kubeconfig) as store:
            return await Registry(store).load(wanted, dest, sha256=expected)

    try:
        record = dict(asyncio.run(fetch(tool, sha256)))
    except RecordNotFound as exc:
        raise CliError(f"{exc} (Nor is there a file or folder {str(tool)!r} here.)") from None
    # Only the registry's copies: a folder holding another lev/ (a checkout of the same tools, the
    # current directory) would mix its packages into the registry's namespace package lev.
    sys.path[:] = [str(dest), *(entry for entry in sys.path if not (Path(entry or ".") / "lev").is_dir())]
    uses: list[str] = []
    while True:
        for loaded in [name for name in sys.modules if name == "lev" or name.startswith("lev.")]:
            del sys.modules[loaded]  # a copy imported from elsewhere is not the registry's
        try:
            package = importlib.import_module(tool.package)
            break
        except ModuleNotFoundError as exc:  # another published tool it imports (lev.demo.banner): the registry's too
            needed = tool_of_package(".".join((exc.name or "").split(".")[:3]))
            if needed is None or needed.name in uses or needed.name == tool.name or len(uses) >= MAX_USED_TOOLS:
                raise
            try:
                used = asyncio.run(fetch(needed, None))
            except RecordNotFound:
                raise CliError(f"{tool} imports {exc.name}, and no tool {needed.name} is published: publish it "
                               "too.") from None
            uses.append(f"{used['name']}@{used['version']}")
    record["uses"] = uses
    if not named:
        raise CliError(f"levrt run {tool}: name the mode or workflow to run, {tool}:FUNC; it has: "
                       f"{', '.join(_exported(package)) or 'none'}.")
    module, func = _function_home(package, named)
    return Loaded(record, module, func)


def _function_home(package: ModuleType, named: str) -> tuple[ModuleType, str]:
    """The module holding FUNC ``named`` and FUNC's own name there."""
    if "." in named:
        where, _, func = named.rpartition(".")
        try:
            return importlib.import_module(f"{package.__name__}.{where}"), func
        except ModuleNotFoundError:
            raise CliError(f"{package.__name__} has no module {where!r}; its modes and workflows: "
                           f"{', '.join(_exported(package))}.") from None
    if inspect.isfunction(getattr(package, named, None)):
        return package, named
    homes = [module for module, name in _exports(package) if name == named]
    if len(homes) == 1:
        return importlib.import_module(homes[0]), named
    if len(homes) > 1:
        raise CliError(f"{named!r} is in more than one module of {package.__name__} ({', '.join(homes)}): "
                       f"name it as MODULE.{named}.")
    raise CliError(f"{package.__name__} has no mode or workflow {named!r}; it has: {', '.join(_exported(package))}.")


def _exports(package: ModuleType) -> list[tuple[str, str]]:
    """(module, name) of every mode and workflow the package's metadata lists."""
    found: list[tuple[str, str]] = []

    def visit(entry: Mapping[str, Any], module: str) -> None:
        for child in entry.get("exports") or ():
            if not isinstance(child, Mapping):
                continue
            if child.get("kind") == "module":
                visit(child, str(child.get("name")))
            elif child.get("name"):
                found.append((module, str(child["name"])))

    meta = getattr(package, "__lev__", None)
    if isinstance(meta, Mapping):
        visit(meta, package.__name__)
    return found


def _exported(package: ModuleType) -> list[str]:
    """How each export is named on the command line."""
    return [name if module == package.__name__ else f"{module.removeprefix(package.__name__ + '.')}.{name}"
            for module, name in _exports(package)]


def calls_of(package: ModuleType) -> list[dict[str, Any]]:
    """Every mode and workflow of ``package``: the name a run gives it (``sweep``, ``scan.tcp``:
    ``levrt run TOOL:NAME``), its kind, description and parameters (``callargs.describe``). A list,
    not a mapping by name: a store may refuse field names holding dots."""
    calls: list[dict[str, Any]] = []
    for named in _exported(package):
        module, func_name = _function_home(package, named)
        func = getattr(module, func_name, None)
        if not inspect.isfunction(func):
            continue
        own = getattr(func, "__lev__", None)
        desc = own.get("desc") if isinstance(own, Mapping) else None
        calls.append({"name": named, "kind": kind_of(func) or "mode", "desc": str(desc or ""),
                      "params": describe(func)})
    return calls


def find_call(calls: Sequence[Mapping[str, Any]], named: str) -> Mapping[str, Any] | None:
    """The call ``named`` gives among a tool's ``calls_of``: by its full name, or by its own name when
    one call alone has it (``tcp`` for ``scan.tcp``), as ``levrt run TOOL:FUNC`` finds it."""
    exact = [call for call in calls if call.get("name") == named]
    homes = exact or [call for call in calls if str(call.get("name")).rpartition(".")[2] == named]
    return homes[0] if len(homes) == 1 else None
