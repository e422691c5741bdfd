"""What levrt builds and ships for a cluster of its own: the runtime image and the files ``levrt up`` needs.

Why a package of its own: the runtime image is built from the user's own interpreter (so the
runtime's Python minor and cloudpickle match the client's by construction), without Docker or a
base image; the same code builds the test cluster's runtime image and runs inside the Dockerfile
for registry users. It is a build tool, not a cluster client: it never imports ``levrt._clients``
(pyproject.toml's contracts say so). ``chart`` is the Helm chart as package data (a link to the
checkout's ``charts/levrt``, a copy in a wheel); ``kind`` holds the pure plans of ``levrt up``.

Modules: ``oci`` (the image archive writer), ``bundle`` (the relocatable CPython prefix at
``/levrt``), ``runtime`` (the runtime image: bundle, link, client site), ``kind`` (the kind config,
the chart's location and the commands of ``levrt up``/``down``).
"""

from __future__ import annotations

import sys

from levrt.errors import LevrtError

__all__ = ["BuildError", "progress"]


class BuildError(LevrtError):
    """The runtime image or its bundle cannot be built here: a tool is missing or a step failed."""


def progress(message: str) -> None:
    """A line on stderr while a long step runs (a cold build takes a while; silence looks like a hang)."""
    print(f"progress: {message}", file=sys.stderr, flush=True)
