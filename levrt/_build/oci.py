"""Write an OCI image-layout archive from host directories, without Docker or a base image.

Why: the runtime image is this machine's own Python (``levrt._build.bundle``) and nothing else, so
there is nothing to pull and nothing to run a build in. An image is a list of directories (one
layer each, stacked in order) plus a little config; the archive is what ``kind load image-archive``,
``ctr images import`` and ``docker load`` read. Tars are deterministic (sorted names, zero times and
owners), so the same directories give the same digest and an import can be skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OCI_CONFIG", "OCI_LAYER", "OCI_MANIFEST", "Image", "layer_tar", "write_archive"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Image:
    """What an image is made of: layers are host directories stacked in order."""

    ref: str
    layers: tuple[Path, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)


def layer_tar(root: Path) -> bytes:
    """A reproducible tar of ``root``: sorted names, zero mtimes and owners."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isfile():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _blob(layout: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    target = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return digest


def write_archive(image: Image, dest: Path) -> str:
    """Write ``image`` as an OCI layout tar at ``dest``; return the manifest digest.

    Written beside ``dest`` and renamed into place, so a reader never sees half an archive.
    """
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp)
        layers, diff_ids = [], []
        for root in image.layers:
            data = layer_tar(root)
            digest = _blob(layout, data)
            diff_ids.append(digest)
            layers.append({"mediaType": OCI_LAYER, "digest": digest, "size": len(data)})
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": list(image.entrypoint) or None,
                "Cmd": list(image.cmd) or None,
                "Env": list(image.env),
                "WorkingDir": image.workdir,
                "Labels": image.labels or None,
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = _blob(layout, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": layers,
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = _blob(layout, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": image.ref,
                    "org.opencontainers.image.ref.name": image.ref.rsplit(":", 1)[-1],
                },
            }],
        }
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            for path in sorted(layout.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
        partial.rename(dest)
    return manifest_digest
