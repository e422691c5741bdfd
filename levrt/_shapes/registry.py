"""A published tool as the registry keeps it: its name, its archive, its version, and what search reads.

Why pure and apart: ``levrt publish`` writes these, ``levrt tools`` and the platform's API read
them, and the orchestration that runs a published tool unpacks the archive; all of them must agree
on one name syntax, one archive layout (so equal trees give equal sha256s, whoever packs them) and
one reading of a search. Nothing here touches the store.

A tool is named ``<namespace>/<tool>`` after its place in the 1.x layout, ``lev/<namespace>/<tool>/``
(SPEC 10); a version is ``@<version>``: the package's ``__version__``, else its content hash.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from levrt.annot.cats import Attck

__all__ = [
    "ARCHIVE_ROOT",
    "ToolName",
    "archive_files",
    "pack",
    "parse_tool",
    "search_terms",
    "tool_document",
    "tool_id",
    "tool_of_package",
    "unpack",
]

NAME_PART = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""A namespace or tool name: what a 1.x package folder under ``lev/`` is called (Python-importable
and lower case)."""
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
ARCHIVE_ROOT = "lev"
"""Every archive holds ``lev/<namespace>/<tool>/...``: unpacked into a folder put on ``sys.path``,
the tool imports as ``lev.<namespace>.<tool>``, as it did where it was written."""
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
"""A tool package larger than this (packed) is refused: it is code and small data, not wordlists
(those go to the file storage with ``levrt.upload``)."""


@dataclasses.dataclass(frozen=True)
class ToolName:
    """``demo/portscan`` or ``demo/portscan@1.2``."""

    namespace: str
    tool: str
    version: str | None = None

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.tool}"

    @property
    def package(self) -> str:
        """The dotted name it imports as."""
        return f"{ARCHIVE_ROOT}.{self.namespace}.{self.tool}"

    def __str__(self) -> str:
        return self.name + (f"@{self.version}" if self.version else "")


def parse_tool(text: str) -> ToolName:
    """``NAMESPACE/TOOL[@VERSION]``; ``ValueError`` saying what is wrong."""
    name, _, version = text.partition("@")
    namespace, slash, tool = name.partition("/")
    if not slash or not NAME_PART.fullmatch(namespace) or not NAME_PART.fullmatch(tool):
        raise ValueError(f"{text!r} is not a tool name: give NAMESPACE/TOOL (e.g. demo/portscan), lower case, "
                         "as the package's folder lev/NAMESPACE/TOOL is named")
    if "@" in text and not VERSION.fullmatch(version):
        raise ValueError(f"{text!r}: {version!r} is not a version (letters, digits and . _ + -, e.g. 1.2.0)")
    return ToolName(namespace, tool, version or None)


def tool_of_package(dotted: str) -> ToolName | None:
    """The tool a package imported as ``lev.<namespace>.<tool>`` publishes as; None for another layout."""
    parts = dotted.split(".")
    if len(parts) != 3 or parts[0] != ARCHIVE_ROOT:
        return None
    try:
        return parse_tool(f"{parts[1]}/{parts[2]}")
    except ValueError:
        return None


def tool_id(tool: ToolName, version: str) -> str:
    """The registry record's ``_id``: ``demo/portscan@1.2``."""
    return f"{tool.name}@{version}"


def archive_files(root: Path) -> list[Path]:
    """The files of the package folder ``root`` that are published, sorted: everything but caches,
    compiled files and version-control folders. Symbolic links are refused (their target may lie
    outside the package)."""
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in SKIPPED_DIRS for part in relative.parts) or path.suffix in SKIPPED_SUFFIXES:
            continue
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link: a published package holds its files themselves")
        if path.is_file():
            found.append(relative)
    return found


def pack(root: Path, tool: ToolName) -> bytes:
    """The package folder ``root`` as a gzip'd tar of ``lev/<namespace>/<tool>/...``, the same bytes
    for the same tree wherever and whenever it is packed (sorted, no times, owners or modes but
    executable or not)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        prefix = f"{ARCHIVE_ROOT}/{tool.namespace}/{tool.tool}"
        for relative in archive_files(root):
            path = root / relative
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{prefix}/{relative.as_posix()}")
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    if len(packed) > MAX_ARCHIVE_BYTES:
        raise ValueError(f"{root} packs to {len(packed)} bytes, more than a tool package may hold "
                         f"({MAX_ARCHIVE_BYTES} bytes): keep data out of it (levrt.upload, Digest)")
    return packed


def unpack(archive: bytes, dest: Path, *, sha256: str) -> Path:
    """Check ``archive`` against ``sha256`` (``ValueError`` if it differs: nothing is written), then
    unpack it into ``dest``; returns ``dest`` (put it on ``sys.path``). Only regular files under
    ``lev/`` are written."""
    actual = hashlib.sha256(archive).hexdigest()
    if actual != sha256:
        raise ValueError(f"the archive's sha256 is {actual}, not the {sha256} its registry record names: "
                         "it was changed after it was published; nothing of it is run")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            parts = Path(member.name).parts
            outside = not parts or parts[0] != ARCHIVE_ROOT or ".." in parts or member.name.startswith("/")
            if outside or not member.isfile():
                raise ValueError(f"the archive holds {member.name!r}, which no published package holds")
        tar.extractall(dest, members=members, filter="data")
    return dest


def search_terms(meta: Mapping[str, Any]) -> list[str]:
    """Every word a search matches a tool on: its description's and its exports' words, its tags and
    categories, with each ATT&CK tactic's name beside its id (``TA0007`` and ``discovery``)."""
    words: list[str] = []

    def visit(entry: Mapping[str, Any]) -> None:
        words.extend(str(entry.get("desc") or "").lower().split())
        if entry.get("name"):
            words.append(str(entry["name"]).lower())
        words.extend(str(tag).lower() for tag in entry.get("tags") or ())
        words.extend(category_terms(entry.get("cats") or {}))
        for child in entry.get("exports") or ():
            if isinstance(child, Mapping):
                visit(child)

    visit(meta)
    return sorted(set(words))


def category_terms(cats: Mapping[str, Iterable[Any]] | Any) -> list[str]:
    """A metadata ``cats`` mapping as search terms: values lower-cased, tactics also by name."""
    if not isinstance(cats, Mapping):
        return []
    names = {member.value: member.name.lower() for member in Attck}
    terms: list[str] = []
    for values in cats.values():
        for value in values if isinstance(values, Iterable) and not isinstance(values, str) else ():
            terms.append(str(value).lower())
            if value in names:
                terms.append(names[value])
    return terms


def tool_document(tool: ToolName, *, version: str, sha256: str, size: int, meta: Mapping[str, Any],
                  calls: Sequence[Mapping[str, Any]], publisher: str, published: float) -> dict[str, Any]:
    """The registry's record of one published version. ``calls``: each mode and workflow, named as a
    run gives it (``sweep``, ``scan.tcp``), with its kind, description and parameters as
    ``levrt._cli.callargs.describe`` gives them: what the API checks a call on without importing
    the tool."""
    entries = _entries(meta)
    tags = sorted({str(t).lower() for entry in entries for t in entry.get("tags") or ()})
    cats = sorted({term for entry in entries for term in category_terms(entry.get("cats") or {})})
    return {
        "_id": tool_id(tool, version), "name": tool.name, "namespace": tool.namespace, "tool": tool.tool,
        "version": version, "sha256": sha256, "size": size, "desc": str(meta.get("desc") or ""),
        "meta": dict(meta), "calls": [dict(c) for c in calls], "tags": tags, "cats": cats,
        "terms": [*search_terms(meta), tool.namespace, tool.tool],
        "publisher": publisher, "published": published,
    }


def _entries(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``meta`` and every export under it, depth first."""
    found = [meta]
    for child in meta.get("exports") or ():
        if isinstance(child, Mapping):
            found += _entries(child)
    return found
