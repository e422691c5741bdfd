"""The levrt runtime image for the test cluster, built without Docker.

Why: task Pods need ``Settings.runtime_image`` on the node. Layer one is the bundle's prefix
(``bin/``, ``lib/``) at the image's root, so the image mounted as a volume at ``/levrt`` is the
runtime; layer two is the link ``/levrt`` → ``.``, so in a container of this image (the init copy,
orchestration Pods) ``/levrt/bin/python3`` and its ELF interpreter path work too; layer three
holds the client-side packages at ``/opt/levrt-orchestrator`` for in-cluster orchestration Pods.
All are cached by content and imported only when the node does not already hold the same digest.
"""

from __future__ import annotations

import hashlib
import sys

from levrt import __version__
from tests.cluster.gotools import cache_root
from tests.cluster.images import Image, build_and_import
from tests.runtime import bundle_builder


def runtime_ref() -> str:
    return f"levrt.local/runtime:{__version__}"


def runtime_image() -> Image:
    builder = bundle_builder()
    bundle = builder.build_bundle()
    key = hashlib.sha256(
        "".join(f"{d.metadata['Name']}={d.version};" for d in builder.client_distributions()).encode()
    ).hexdigest()[:16]
    client_root = cache_root() / f"runtime-client-{key}"
    (client_root / "opt").mkdir(parents=True, exist_ok=True)
    builder.build_client_site(client_root / "opt" / "levrt-orchestrator")
    link = cache_root() / "runtime-link"
    if not (link / "levrt").is_symlink():
        link.mkdir(parents=True, exist_ok=True)
        (link / "levrt").symlink_to(".")
    return Image(runtime_ref(), (bundle / "levrt", link, client_root), entrypoint=("/levrt/bin/python3",),
                 labels={"io.levrt.python": f"{sys.version_info.major}.{sys.version_info.minor}"})


def build_runtime_image() -> str:
    """Build the runtime image from this checkout and import it into the test node; its ref."""
    return build_and_import(runtime_image())
