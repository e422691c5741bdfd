"""The console's application on the fake apiserver and store, for the unit tests of its API and pages.

Why one helper: both test modules sign callers in by token (the fake apiserver's TokenReview and
SubjectAccessReview answer from ``api.tokens`` and ``api.rights``), publish the demo packages the
way a user does, and talk to the application in-process through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Set
from pathlib import Path
from typing import Any

import httpx

from levrt._cli import main
from levrt._clients.kube import Kube
from levrt._clients.store import Store
from levrt._console.app import Parts, create_app
from levrt._console.auth import API_GROUP, Reviewer
from levrt._console.service import Console
from levrt._core.registry import REGISTRY_DATABASE, Registry
from levrt.settings import Settings
from tests.fakes import FakeApiServer

REPO = Path(__file__).resolve().parents[2]
STORE = "mongodb://127.0.0.1:30017/"
SETTINGS = Settings(store_uri=STORE, runtime_image="levrt.local/runtime:t")
READS = {("get", "tools"), ("list", "tools"), ("get", "jobs"), ("list", "jobs")}
RIGHTS: Mapping[str, Set[tuple[str, str]]] = {
    "viewer": READS, "runner": READS | {("create", "jobs"), ("delete", "jobs")}, "nobody": set()}


@contextlib.contextmanager
def own_lev_imports() -> Iterator[None]:
    """Each test imports its own copy of the published packages (``lev.*``), and leaves ``sys.path``."""
    before, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - before:
        if name == "lev" or name.startswith("lev."):
            del sys.modules[name]
    sys.path[:] = path


@contextlib.asynccontextmanager
async def console_client(api: FakeApiServer, *, tools: tuple[str, ...] = ("portscan",),
                         **client: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The console with callers ``token-<who>`` for each of ``RIGHTS`` and the demo ``tools`` published."""
    for user, rights in RIGHTS.items():
        api.tokens[f"token-{user}"] = user
        api.rights |= {(user, verb, API_GROUP, resource) for verb, resource in rights}
    for tool in tools:  # the CLI runs its own event loop: from a thread, as a shell would beside the server
        assert await asyncio.to_thread(main, ["publish", str(REPO / "examples" / "lev" / "demo" / tool)]) == 0

    @contextlib.asynccontextmanager
    async def parts() -> AsyncIterator[Parts]:
        kube = await Kube.connect()
        yield Parts(Console(kube=kube, settings=SETTINGS, store=Store.connect(STORE, database=SETTINGS.database),
                            registry=Registry(Store.connect(STORE, database=REGISTRY_DATABASE))),
                    Reviewer(kube, SETTINGS.namespace))
        await kube.close()

    app = create_app(parts)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://console", **client) as http:
        yield http
