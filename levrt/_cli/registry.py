"""``levrt publish``, ``levrt tools``, ``levrt unpublish``: the tool registry from a shell.

Why these three together: they are the registry's whole command-line face (``levrt._core.registry``
keeps it). ``publish`` takes what ``levrt check`` takes and checks the package the same way first:
a package whose metadata ``levrt check`` refuses is refused with the same message, and nothing is
stored.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from levrt._cli.base import (
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    cluster,
    load_module,
    print_table,
)
from levrt._cli.cells import cell_text, escape_controls
from levrt._cli.published import calls_of
from levrt._clients.store import opened
from levrt._core.jobrecords import identify
from levrt._core.registry import REGISTRY_DATABASE, Registry, publisher_store
from levrt._shapes import jobrecord
from levrt._shapes.registry import ToolName, pack, parse_tool, tool_of_package
from levrt._stored import human_size
from levrt.errors import RecordNotFound

__all__ = ["PUBLISH", "TOOLS", "UNPUBLISH", "package_of", "version_of"]


# -- publish ------------------------------------------------------------------------------------------


def _publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check a tool package as `levrt check` does, then store it in the registry with its metadata: "
        "named NAMESPACE/TOOL after its folder lev/NAMESPACE/TOOL, versioned by its __version__ (else its "
        "content's hash). The same content again changes nothing. Publishing is trusted: published code runs "
        "as the orchestrator."
    )
    parser.add_argument("target", metavar="PATH",
                        help="the tool package's folder (lev/demo/portscan), a file in it, or its dotted name")
    add_cluster_options(parser)


def package_of(target: str) -> tuple[ModuleType, ToolName, Path]:
    """The tool package ``target`` names (loaded as ``levrt check`` loads it), its registry name
    and its folder. ``CliError`` for a module outside the ``lev/<namespace>/<tool>`` layout, or
    without metadata."""
    module = load_module(target)
    parts = module.__name__.split(".")
    tool = tool_of_package(".".join(parts[:3]))
    package = sys.modules.get(".".join(parts[:3])) if tool is not None else None
    if tool is None or package is None or not getattr(package, "__path__", None):
        raise CliError(
            f"{target!r} is not in a tool package: a published tool lives in a folder lev/NAMESPACE/TOOL/ "
            f"(with an __init__.py holding __lev__), imported as lev.NAMESPACE.TOOL; it was loaded as "
            f"{module.__name__!r}.")
    meta = getattr(package, "__lev__", None)
    if not isinstance(meta, Mapping):
        raise CliError(f"The package {package.__name__} has no __lev__ metadata (see `levrt check {target}`): "
                       "a tool is published with the metadata its users find it by.")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise CliError(f"The __lev__ of {package.__name__} is not JSON-serialisable: {exc}. Build it with "
                       "annot.meta.") from None
    return package, tool, Path(next(iter(package.__path__)))


def version_of(package: ModuleType, folder: Path) -> str | None:
    """The version the package declares: its ``__version__``, else ``[project].version`` of a
    ``pyproject.toml`` in its folder or the folders above it up to ``lev/``'s parent."""
    declared = getattr(package, "__version__", None)
    if isinstance(declared, str) and declared.strip():
        return declared.strip()
    for folder_up in (folder, *folder.parents[:3]):
        pyproject = folder_up / "pyproject.toml"
        if pyproject.is_file():
            try:
                version = tomllib.loads(pyproject.read_text()).get("project", {}).get("version")
            except (OSError, tomllib.TOMLDecodeError):
                continue
            if isinstance(version, str) and version.strip():
                return version.strip()
    return None


def publish_command(args: argparse.Namespace) -> int:
    package, tool, folder = package_of(args.target)
    try:
        archive = pack(folder, tool)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    sha256 = hashlib.sha256(archive).hexdigest()
    version = version_of(package, folder) or sha256[:12]
    try:
        parse_tool(f"{tool.name}@{version}")
    except ValueError as exc:
        raise CliError(f"The package's version: {exc}") from None

    async def go() -> tuple[dict[str, Any], bool, str]:
        async with cluster(args) as (kube, settings):
            publisher = (await identify(kube, kubeconfig=args.kubeconfig)).name
            async with publisher_store(settings, kube) as store:
                record, stored = await Registry(store).publish(tool, version=version, archive=archive,
                                                               meta=dict(package.__lev__), calls=calls_of(package),
                                                               publisher=publisher)
                return record, stored, publisher

    record, stored, publisher = asyncio.run(go())
    what = f"{tool.name}@{version} (sha256 {sha256[:12]}, {human_size(len(archive))})"
    if stored:
        print(f"published {what} as {publisher}")
    else:
        print(f"{what} is published already with this content (by {record.get('publisher')}); nothing changed")
    return EXIT_OK


# -- tools ----------------------------------------------------------------------------------------------


def _tools_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("List published tools, the newest version of each: all of them, or those matching "
                          "every word of TEXT (in name, description, tags, categories and modes), --tag and --cat.")
    parser.add_argument("text", nargs="?", metavar="TEXT", help="words to search for")
    parser.add_argument("--tag", help="only tools with this tag")
    parser.add_argument("--cat", help="only tools in this category: an ATT&CK tactic id or name (TA0043, "
                                      "reconnaissance) or a BlackArch group (scanner)")
    parser.add_argument("--all-versions", action="store_true", help="every published version, not the newest")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table",
                        help="table (default); json: a list of the registry's records")
    add_cluster_options(parser)


def tool_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as ``levrt tools -o json`` prints them."""
    return [{"name": r.get("name"), "version": r.get("version"), "desc": r.get("desc"), "tags": r.get("tags"),
             "cats": r.get("cats"), "publisher": r.get("publisher"),
             "published": jobrecord.iso(jobrecord.epoch(r.get("published"))), "sha256": r.get("sha256"),
             "size": r.get("size"),
             "meta": r.get("meta")} for r in records]


def tools_command(args: argparse.Namespace) -> int:
    async def go() -> list[dict[str, Any]]:
        async with cluster(args) as (kube, settings):
            async with opened(settings.replace(database=REGISTRY_DATABASE), kube=kube) as store:
                return await Registry(store).find(args.text, tag=args.tag, cat=args.cat,
                                                  all_versions=args.all_versions)

    rows = tool_rows(asyncio.run(go()))
    if args.output == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:
        print_table([[escape_controls(str(r["name"])), escape_controls(str(r["version"])),
                      cell_text(r["desc"] or "-", width=50), cell_text(r["tags"] or "-", width=30),
                      cell_text(r["cats"] or "-", width=40), escape_controls(str(r["publisher"]))] for r in rows],
                    ["NAME", "VERSION", "DESC", "TAGS", "CATEGORIES", "PUBLISHER"])
    if not rows:
        asked = " ".join(f"{k} {v!r}" for k, v in (("matching", args.text), ("tagged", args.tag),
                                                    ("in category", args.cat)) if v)
        print(f"No published tools{' ' + asked if asked else ''}. `levrt publish PATH` publishes one.",
              file=sys.stderr)
    return EXIT_OK


# -- unpublish ------------------------------------------------------------------------------------------


def _unpublish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tool", metavar="NAME[@VERSION]", help="the tool (every version of it), or one version")
    add_cluster_options(parser)


def unpublish_command(args: argparse.Namespace) -> int:
    try:
        tool = parse_tool(args.tool)
    except ValueError as exc:
        raise CliError(str(exc)) from None

    async def go() -> list[str]:
        async with cluster(args) as (kube, settings):
            async with publisher_store(settings, kube) as store:
                return await Registry(store).unpublish(tool)

    try:
        removed = asyncio.run(go())
    except RecordNotFound as exc:
        raise CliError(str(exc)) from None
    print(f"unpublished {tool.name}@{', '.join(removed)}")
    return EXIT_OK


PUBLISH = Command("publish", "check a tool package and store it in the registry", _publish_arguments,
                  publish_command)
TOOLS = Command("tools", "list or search the published tools", _tools_arguments, tools_command)
UNPUBLISH = Command("unpublish", "remove a published tool, or one version of it", _unpublish_arguments,
                    unpublish_command)
