"""The tool registry: published packages and their metadata, in a database of their own.

Why a database apart from the results (``levrt_registry``, not ``levrt``): published code runs as
the orchestrator, and task containers hold credentials for the results database; a scan that gains
code execution in its container must not be able to replace a published tool. On a store with
users (the chart's MongoDB) the registry is written only by the publisher's and the console's user;
the orchestration checks an archive's sha256 against its record before it imports a line of it.

Each published version is one record (``levrt._shapes.registry.tool_document``) whose archive is
in the registry database's own file storage, content-addressed: publishing the same tree again
changes nothing, a new version keeps the old ones.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from levrt._clients import resources
from levrt._clients.api import Forbidden, NotFound
from levrt._clients.blobs import FileStore
from levrt._clients.kube import Kube
from levrt._clients.store import Store, opened
from levrt._shapes.registry import ToolName, tool_document, tool_id, unpack
from levrt.errors import LevrtError, RecordNotFound, StoreError
from levrt.podenv import STORE_SECRET_KEY
from levrt.settings import Settings

__all__ = ["REGISTRY_DATABASE", "REGISTRY_SECRET", "REGISTRY_URI_ENV", "TOOLS", "Published", "Registry",
           "publisher_store", "rehosted"]

REGISTRY_DATABASE = "levrt_registry"
"""The registry's database; the chart's ``levrt.registryDatabase`` (a chart test pins them equal)."""
REGISTRY_SECRET = "levrt-registry"
"""The chart's Secret (key ``uri``) with the URI of the one store user that may write the registry."""
REGISTRY_URI_ENV = "LEVRT_REGISTRY_URI"
"""A publisher's own registry URI, over the Secret."""
TOOLS = "tools"


class Published(LevrtError):
    """A published version's content is not what was expected: another tree under the same version,
    or an archive that no longer matches its record (nothing of it is stored or run)."""


@contextlib.asynccontextmanager
async def publisher_store(settings: Settings, kube: Kube) -> AsyncIterator[Store]:
    """The registry's database as its writer reaches it: ``LEVRT_REGISTRY_URI``, else the Secret
    ``levrt-registry``; where the platform has none (a store of the team's own, engine external),
    the store's own URI. Reading the registry (``levrt tools``, a run by name) uses the store's URI:
    the application user may read it, not write it."""
    uri = os.environ.get(REGISTRY_URI_ENV)
    if not uri:
        try:
            secret = await resources.get(kube, "Secret", REGISTRY_SECRET, namespace=settings.namespace)
            uri = base64.b64decode(secret.get("data", {}).get(STORE_SECRET_KEY, "")).decode() or None
        except NotFound:
            uri = None
        except Forbidden:
            raise StoreError(
                f"Publishing needs the registry's credential: this account may not read the Secret "
                f"{settings.namespace}/{REGISTRY_SECRET}. Ask for the right to publish (get on that Secret), or set "
                f"{REGISTRY_URI_ENV}.") from None
        if uri and settings.store_uri:  # this machine reaches the store at its own address (a NodePort)
            uri = rehosted(uri, settings.store_uri)
    async with opened(settings.replace(database=REGISTRY_DATABASE, **({"store_uri": uri} if uri else {})),
                      kube=kube) as store:
        yield store


def rehosted(uri: str, address: str) -> str:
    """``uri``'s user, database and options at ``address``'s hosts: the Secret's URI names the store
    by its in-cluster name, which a laptop reaching it through ``LEVRT_STORE_URI`` cannot resolve."""
    credential, hosts = urlsplit(uri), urlsplit(address)
    userinfo = credential.netloc.rpartition("@")[0]
    where = hosts.netloc.rpartition("@")[2]
    return urlunsplit((credential.scheme, f"{userinfo}@{where}" if userinfo else where, credential.path,
                       credential.query, credential.fragment))


class Registry:
    """The registry in the store's database ``REGISTRY_DATABASE`` (``store`` is opened on it)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.files = FileStore.of(store)
        self._tools = store.collection(TOOLS)

    async def publish(self, tool: ToolName, *, version: str, archive: bytes, meta: Mapping[str, Any],
                      calls: Sequence[Mapping[str, Any]], publisher: str) -> tuple[dict[str, Any], bool]:
        """Store ``archive`` as ``tool@version``; the record, and whether anything was stored. The
        same content under the same version is left as it is (a record from before ``calls`` were
        kept gets them); other content under a version that exists is refused (``Published``): a
        version names one tree for good."""
        sha256 = hashlib.sha256(archive).hexdigest()
        known = await self._find_one({"_id": tool_id(tool, version)})
        if known is not None:
            if known.get("sha256") == sha256:
                # A stored copy that no longer hashes to its name is written again from this one.
                await self.files.upload(archive, name=f"{tool_id(tool, version)}.tar.gz", kind="tool", verify=True)
                if "calls" not in known:
                    await self.store.set_fields(TOOLS, known["_id"], {"calls": [dict(c) for c in calls]})
                    known["calls"] = [dict(c) for c in calls]
                return known, False
            raise Published(
                f"{tool.name}@{version} is published already with other content (sha256 {known.get('sha256')}). "
                f"Give the package a new __version__, or `levrt unpublish {tool.name}@{version}` first.")
        await self.files.upload(archive, name=f"{tool_id(tool, version)}.tar.gz", kind="tool", verify=True)
        document = tool_document(tool, version=version, sha256=sha256, size=len(archive), meta=meta,
                                 calls=calls, publisher=publisher, published=time.time())
        try:
            await self._tools.insert_one(document)
        except Exception as exc:
            raise self.store.unreachable(exc) from exc
        return document, True

    async def find(self, text: str | None = None, *, tag: str | None = None, cat: str | None = None,
                   all_versions: bool = False) -> list[dict[str, Any]]:
        """Published tools matching every word of ``text`` (in their name, description, tags,
        categories and exports), ``tag`` and ``cat`` (an ATT&CK tactic id or name, a BlackArch
        group), by name; the newest version of each unless ``all_versions``."""
        query: dict[str, Any] = {}
        words = [re.escape(word) for word in (text or "").lower().split()]
        if words:
            query["$and"] = [{"terms": {"$regex": word}} for word in words]
        if tag:
            query["tags"] = tag.lower()
        if cat:
            query["cats"] = cat.lower()
        try:
            found = [doc async for doc in self._tools.find(query)]
        except Exception as exc:
            raise self.store.unreachable(exc) from exc
        found.sort(key=lambda doc: (doc.get("name", ""), -float(doc.get("published") or 0)))
        if all_versions:
            return found
        newest: dict[str, dict[str, Any]] = {}
        for doc in found:
            newest.setdefault(str(doc.get("name")), doc)
        return list(newest.values())

    async def get(self, tool: ToolName) -> dict[str, Any]:
        """The record of ``tool`` at its version, or its newest; ``RecordNotFound`` naming what exists."""
        if tool.version:
            found = await self._find_one({"_id": tool_id(tool, tool.version)})
            if found is not None:
                return found
        versions = await self.versions(tool)
        if versions and not tool.version:
            return versions[0]
        if versions:
            raise RecordNotFound(f"{tool} is not published; its versions are: "
                                 f"{', '.join(str(v.get('version')) for v in versions)}.")
        raise RecordNotFound(f"No tool {tool.name} is published (`levrt tools` lists those that are).")

    async def versions(self, tool: ToolName) -> list[dict[str, Any]]:
        """Every published version of ``tool``, the newest first."""
        try:
            found = [doc async for doc in self._tools.find({"name": tool.name})]
        except Exception as exc:
            raise self.store.unreachable(exc) from exc
        return sorted(found, key=lambda doc: -float(doc.get("published") or 0))

    async def unpublish(self, tool: ToolName) -> list[str]:
        """Remove ``tool@version``, or every version of ``tool``; the versions removed. Their archives
        stay in the file storage until collected (another version may share the content)."""
        ids = [tool_id(tool, tool.version)] if tool.version else [str(v["_id"]) for v in await self.versions(tool)]
        removed = []
        for ident in ids:
            try:
                result = await self._tools.delete_one({"_id": ident})
            except Exception as exc:
                raise self.store.unreachable(exc) from exc
            if getattr(result, "deleted_count", 0):
                removed.append(ident.rsplit("@", 1)[1])
        if not removed:
            await self.get(tool)  # raises, naming what is published
        return removed

    async def archive(self, record: Mapping[str, Any]) -> bytes:
        """The archive ``record`` names (its sha256 checked by the file storage on reading)."""
        return await self.files.read(str(record["sha256"]))

    async def load(self, tool: ToolName, dest: Path, *, sha256: str | None = None) -> dict[str, Any]:
        """Unpack the registry's copy of ``tool`` into ``dest`` (to put on ``sys.path``); its record.
        With ``sha256``, only if its record still names that archive. Nothing is written unless the
        archive hashes to its record's sha256."""
        record = await self.get(tool)
        if sha256 is not None and record.get("sha256") != sha256:
            raise Published(
                f"{tool}: the registry's record names the archive {record.get('sha256')}, not the {sha256} this "
                "run was submitted with (it was unpublished and published again since); nothing of it is run.")
        archive = await self.archive(record)
        try:
            unpack(archive, dest, sha256=str(record["sha256"]))
        except ValueError as exc:
            raise Published(f"{tool}: {exc}") from None
        return record

    async def _find_one(self, query: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            found = await self._tools.find_one(dict(query))
        except Exception as exc:
            raise self.store.unreachable(exc) from exc
        return None if found is None else dict(found)
