"""Build OCI images without Docker and import them into the test node's containerd.

Why: no registry is reachable and no Docker engine runs here, yet every Pod needs an image.
An image is a list of host directories (one layer each) plus a little config; the product's
writer (``levrt._build.oci``, behind ``levrt image build``) makes an OCI image-layout archive
with deterministic tars, which we hand to ``ctr images import``. Rootfs directories are
assembled from host binaries and the shared libraries ``ldd`` reports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from levrt._build.bundle import shared_libraries

# The OCI writer is the product's (``levrt image build``); re-exported for the tests that import it here.
from levrt._build.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Image, layer_tar, write_archive
from tests.cluster import gotools
from tests.cluster.log import progress

__all__ = [
    "COREDNS_REF", "FERRETDB_REF", "OCI_CONFIG", "OCI_LAYER", "OCI_MANIFEST", "PAUSE_REF", "Image", "add_binary",
    "base_files", "build_and_import", "busybox_ref", "copy_into", "debian_version", "import_test_images",
    "layer_tar", "nmap_image", "nmap_ref", "present_digest", "redis_ref", "tag", "test_images", "write_archive",
]


def _ctr(*args: str, capture: bool = False) -> str:
    from tests.cluster.node import ctr_binary, paths

    cmd = [ctr_binary(), "--address", str(paths().containerd_sock), "-n", "k8s.io", *args]
    result = subprocess.run(cmd, check=True, text=True, capture_output=capture)
    return result.stdout if capture else ""


def present_digest(ref: str) -> str | None:
    """The manifest digest containerd holds for ``ref``, or None."""
    out = _ctr("images", "ls", f"name=={ref}", capture=True)
    for line in out.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] == ref:
            return next((c for c in cols if c.startswith("sha256:")), None)
    return None


def tag(source: str, target: str) -> str:
    """Give the node's image ``source`` a second name ``target`` (as if pulled from a registry)."""
    if present_digest(target) is None:
        _ctr("images", "tag", source, target, capture=True)
    return target


def build_and_import(image: Image) -> str:
    """Build ``image`` and import it into the test node unless the same digest is there."""
    cache = gotools.cache_root() / "images"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", image.ref)
    archive = cache / f"{slug}.tar"
    digest = write_archive(image, archive)
    if present_digest(image.ref) == digest:
        return image.ref
    progress(f"importing image {image.ref} ({archive.stat().st_size / 1e6:.1f} MB)")
    _ctr("images", "import", str(archive), capture=True)
    return image.ref


# --- rootfs assembly from host binaries ---------------------------------------------------

def copy_into(rootfs: Path, host_path: Path, at: str | None = None) -> None:
    """Copy a host file into ``rootfs`` at the same (or given) absolute path, following links."""
    target = rootfs / (at or str(host_path)).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(host_path.resolve(), target)


def add_binary(rootfs: Path, host_binary: Path, at: str | None = None) -> None:
    copy_into(rootfs, host_binary, at)
    for lib in shared_libraries(host_binary):
        copy_into(rootfs, lib)


def base_files(rootfs: Path) -> None:
    """The few files every image expects: users, hosts lookup order, writable /tmp."""
    (rootfs / "etc").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (rootfs / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
    for d in ("tmp", "root", "proc", "sys", "dev", "etc"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)


# --- the images the tests need --------------------------------------------------------------

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void quit(int s) { (void)s; _exit(0); }
int main(void) {
  signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
  for (;;) pause();
}
"""


def debian_version(package: str, default: str = "0") -> str:
    """Upstream version of an installed Debian package (tags images honestly); ``default`` if none."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        return default
    # 1:1.35.0-4+b3 -> 1.35.0
    return out.stdout.split(":", 1)[-1].split("-", 1)[0].split("~", 1)[0].split("+", 1)[0]


def busybox_ref() -> str:
    return "levrt.local/busybox:" + ".".join(debian_version("busybox-static", "1.35").split(".")[:2])


def redis_ref() -> str:
    return "levrt.local/redis:" + debian_version("redis-server", "7.0.15")


def nmap_ref() -> str:
    return "levrt.local/nmap:" + debian_version("nmap", "7.93")


PAUSE_REF = "levrt.local/pause:3.10"
FERRETDB_REF = "levrt.local/ferretdb:1.24.0"
COREDNS_REF = "levrt.local/coredns:1.12.4"


def _fresh(workdir: Path, name: str) -> Path:
    root = workdir / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


def busybox_rootfs(root: Path) -> None:
    """busybox-static with every applet linked in /bin: a shell and coreutils, no Python."""
    base_files(root)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")


def nmap_rootfs(root: Path) -> None:
    """Debian's nmap as it runs on the host, without a shell or Python: the binary and the
    libraries ldd names, its data (/usr/share/nmap: service and OS fingerprint databases, NSE
    scripts), and the libc name databases it falls back to (/etc/services, /etc/protocols).
    OpenSSL's legacy provider is loaded by path at run time (no ldd line): without it every
    ``-sV`` run logs "OpenSSL legacy provider failed to load"."""
    binary = Path("/usr/bin/nmap")
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: install Debian's nmap (python3 -m tests.cluster packages)")
    base_files(root)
    add_binary(root, binary)
    for provider in Path("/usr/lib/x86_64-linux-gnu/ossl-modules").glob("legacy.so"):
        add_binary(root, provider)
    shutil.copytree("/usr/share/nmap", root / "usr" / "share" / "nmap", symlinks=True)
    for name in ("services", "protocols"):
        copy_into(root, Path("/etc") / name)


def nmap_image(workdir: Path) -> Image:
    """The nmap image, assembled under ``workdir`` (tests/e2e/test_nmap.py imports it alone)."""
    root = _fresh(workdir, "nmap")
    nmap_rootfs(root)
    return Image(nmap_ref(), (root,), entrypoint=("/usr/bin/nmap",), workdir="/tmp")


def ferretdb_image(workdir: Path) -> Image:
    """The store's image: FerretDB built from its Go module (the test cluster's and the kind tier's)."""
    root = _fresh(workdir, "ferretdb")
    base_files(root)
    shutil.copy2(gotools.binary("ferretdb"), root / "ferretdb")
    (root / "state").mkdir()
    return Image(FERRETDB_REF, (root,), entrypoint=("/ferretdb",), workdir="/state")


def test_images(workdir: Path) -> list[Image]:
    """Every image the cluster and its tests use, assembled under ``workdir``."""
    pause = _fresh(workdir, "pause")
    src = workdir / "pause.c"
    src.write_text(PAUSE_C)
    subprocess.run(["gcc", "-Os", "-static", "-o", str(pause / "pause"), str(src)], check=True)

    busybox = _fresh(workdir, "busybox")
    busybox_rootfs(busybox)

    redis = _fresh(workdir, "redis")
    base_files(redis)
    add_binary(redis, Path("/usr/bin/redis-server"))
    (redis / "data").mkdir()

    coredns = _fresh(workdir, "coredns")
    base_files(coredns)
    shutil.copy2(gotools.binary("coredns"), coredns / "coredns")

    return [
        Image(PAUSE_REF, (pause,), entrypoint=("/pause",)),
        Image(busybox_ref(), (busybox,), cmd=("sh",)),
        Image(redis_ref(), (redis,), entrypoint=("/usr/bin/redis-server", "--protected-mode", "no"), workdir="/data"),
        ferretdb_image(workdir),
        Image(COREDNS_REF, (coredns,), entrypoint=("/coredns",)),
        nmap_image(workdir),
    ]


def import_test_images() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="levrt-images-") as tmp:
        return [build_and_import(image) for image in test_images(Path(tmp))]
