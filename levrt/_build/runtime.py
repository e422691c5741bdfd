"""The levrt runtime image, built from this machine's Python without Docker: ``levrt image build``.

Why: task Pods need ``Settings.runtime_image`` on the node, and its Python must be the client's
minor with the client's cloudpickle (payloads are refused otherwise). Building it from the
interpreter that runs ``levrt`` gives both by construction. Three layers: the bundle's prefix
(``bin/``, ``lib/``) at the image's root, so the image mounted as a volume at ``/levrt`` is the
runtime; the link ``/levrt`` -> ``.``, so in a container of this image (the init copy,
orchestration Pods) ``/levrt/bin/python3`` and its ELF interpreter path work too; the client-side
packages at ``/opt/levrt-orchestrator`` for in-cluster orchestration Pods. Every layer is cached
by content under ``${LEVRT_CACHE:-~/.cache/levrt}``; so is the archive ``levrt up`` loads.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from levrt._build import progress
from levrt._build.bundle import build_bundle, build_client_site, cache_root, client_distributions
from levrt._build.oci import Image, write_archive
from levrt.podenv import ORCHESTRATOR_SITE, PYTHON, RUNTIME_MOUNT
from levrt.settings import DEFAULT_RUNTIME_IMAGE

__all__ = ["build_archive", "cached_archive", "runtime_image", "runtime_ref"]

KEEP_ARCHIVES = 2  # cached archives of recent levrt versions; each is ~100 MB


def runtime_ref() -> str:
    """The runtime image's name: the default of ``LEVRT_RUNTIME_IMAGE`` (and of the chart's runtime.image)."""
    return DEFAULT_RUNTIME_IMAGE


def runtime_image(ref: str | None = None) -> Image:
    """The runtime image's layers, built (or found in the cache) from this interpreter."""
    bundle = build_bundle()
    key = hashlib.sha256(
        "".join(f"{d.metadata['Name']}={d.version};" for d in client_distributions()).encode()
    ).hexdigest()[:16]
    client_root = cache_root() / f"runtime-client-{key}"
    client_site = client_root / ORCHESTRATOR_SITE.lstrip("/")
    client_site.parent.mkdir(parents=True, exist_ok=True)
    build_client_site(client_site)
    link = cache_root() / "runtime-link"
    mount_link = link / RUNTIME_MOUNT.lstrip("/")  # the /levrt -> . link: the image's root is the bundle
    if not mount_link.is_symlink():
        link.mkdir(parents=True, exist_ok=True)
        mount_link.symlink_to(".")
    return Image(ref or runtime_ref(), (bundle / "levrt", link, client_root), entrypoint=(PYTHON,),
                 labels={"io.levrt.python": f"{sys.version_info.major}.{sys.version_info.minor}"})


def build_archive(dest: Path, ref: str | None = None, *, image: Image | None = None) -> str:
    """Write the runtime image (``image``, else built for ``ref``) as an OCI archive at ``dest``; its digest."""
    image = image or runtime_image(ref)
    started = time.monotonic()
    progress(f"writing the image archive {dest} ({image.ref})")
    digest = write_archive(image, dest)
    progress(f"image archive written in {time.monotonic() - started:.1f}s, {dest.stat().st_size / 1e6:.1f} MB, "
             f"{digest}")
    return digest


def cached_archive(ref: str | None = None) -> Path:
    """The runtime image's archive in the cache, written unless the same layers and name are there."""
    image = runtime_image(ref)
    key = hashlib.sha256("|".join([image.ref, *(p.name for p in image.layers)]).encode()).hexdigest()[:16]
    target = cache_root() / "images" / f"runtime-{key}.tar"
    if target.exists():
        progress(f"runtime image archive cached: {target}")
        return target
    build_archive(target, image=image)
    cached = sorted(target.parent.glob("runtime-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in cached if p != target][KEEP_ARCHIVES - 1 :]:
        old.unlink(missing_ok=True)
    return target
