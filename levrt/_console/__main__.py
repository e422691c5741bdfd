"""``python -m levrt._console [--host H] [--port P]``: the ``levrt-console`` Deployment's command.

Why its own entry and not a ``levrt`` subcommand: it is a server the chart runs from the runtime
image, not something a user types; ``levrt console`` (the CLI) only connects a laptop to it. It
connects to the cluster with the Pod's own account (in-cluster credentials) and to the store with
the application user's URI (``LEVRT_STORE_URI``), which may read the registry but not write it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from levrt._clients.kube import Kube
from levrt._clients.store import opened
from levrt._console.app import Parts, create_app
from levrt._console.auth import Reviewer
from levrt._console.service import Console
from levrt._core.registry import REGISTRY_DATABASE, Registry
from levrt.settings import Settings

PORT = 8080


@contextlib.asynccontextmanager
async def cluster_parts() -> AsyncIterator[Parts]:
    """The console on this Pod's account and the store the settings name, for the server's life."""
    settings = Settings.from_env()
    async with await Kube.connect() as kube, opened(settings, kube=kube) as store, \
            opened(settings.replace(database=REGISTRY_DATABASE), kube=kube) as registry_store:
        console = Console(kube=kube, settings=settings, store=store, registry=Registry(registry_store))
        try:
            yield Parts(console, Reviewer(kube, settings.namespace))
        finally:
            await console.close()


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn  # the server; the API itself is built and tested without it

    parser = argparse.ArgumentParser(prog="python -m levrt._console", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(cluster_parts), host=args.host, port=args.port, proxy_headers=False,
                server_header=False, log_level="info")


if __name__ == "__main__":
    main()
