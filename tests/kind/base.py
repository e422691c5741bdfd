"""The kind node's base image: Debian bookworm from debootstrap, our containerd and runc, our files.

Why: kind's own base image comes from a registry we cannot reach. A node needs systemd, the
tools kubeadm and the kubelet call (iptables, conntrack, mount, ...), a container runtime and
CNI plugins; Debian provides the packages, tests/cluster's Go tools the runtime, tests/kind/files
the units, configs and entrypoint. The result is imported into Docker as ``levrt.local/kind-base:<key>``,
the key hashing all of those inputs, and its root filesystem tar is kept in the cache so a wiped
Docker gets it back without debootstrap.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.cluster import gotools
from tests.cluster.images import PAUSE_REF
from tests.cluster.log import progress
from tests.kind import dockerd

SUITE = "bookworm"
# What kind's base image installs that Debian has, minus network storage (nfs, iscsi) and
# fuse-overlayfs (for hosts without overlayfs), plus Debian's CNI plugins.
PACKAGES = (
    "systemd", "dbus", "iptables", "nftables", "iproute2", "conntrack", "ethtool", "socat", "util-linux", "mount",
    "kmod", "procps", "ca-certificates", "libseccomp2", "e2fsprogs", "bash", "containernetworking-plugins",
)
FILES = Path(__file__).resolve().parent / "files"
# The files of tests/kind/files this image holds (the node image adds the others).
BASE_FILES = ("entrypoint", "containerd.toml", "containerd.service", "kubelet.service", "kubelet.slice",
              "10-kubeadm.conf", "kubelet.default")
# Bump when _customize changes what it writes (the key hashes inputs, not this module's text).
REVISION = 1
REPO = "levrt.local/kind-base"


def cache_dir() -> Path:
    return gotools.cache_root() / "kind"


def mirror() -> str:
    """The Debian mirror this host's apt uses (so the base matches what the host can reach)."""
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if source.exists():
            found = re.search(r"^(?:URIs:\s*|deb\s+)(\S+/debian)\s*$", source.read_text(), re.M)
            if found is None:
                found = re.search(r"^(?:URIs:\s*|deb\s+)(\S+/debian)\b", source.read_text(), re.M)
            if found:
                return found.group(1)
    raise RuntimeError("no Debian mirror in /etc/apt/sources.list(.d): cannot debootstrap the kind base image")


def _runtime_tools() -> list[gotools.GoTool]:
    return [gotools.tool("containerd"), gotools.tool("runc")]


def key() -> str:
    digest = hashlib.sha256()
    digest.update(repr((REVISION, SUITE, PACKAGES, PAUSE_REF)).encode())
    for name in BASE_FILES:
        digest.update(name.encode() + (FILES / name).read_bytes())
    for t in _runtime_tools():
        digest.update(f"{t.name}-{t.key()}".encode())
    return digest.hexdigest()[:16]


def ref() -> str:
    return f"{REPO}:{key()}"


def has_image(image: str) -> bool:
    return dockerd.docker("image", "inspect", image, check=False).strip().startswith("[{")


def ensure() -> str:
    """The base image's reference, importing or building it when Docker lacks it."""
    image = ref()
    if has_image(image):
        return image
    tarball = cache_dir() / f"kind-base-{key()}.tar"
    if not tarball.exists():
        _build_rootfs_tar(tarball)
    progress(f"importing {image} into Docker ({tarball.stat().st_size / 1e6:.0f} MB)")
    # (docker import takes no STOPSIGNAL; kind removes nodes with `docker rm -f`, a SIGKILL anyway.)
    with tarball.open("rb") as fh:
        subprocess.run(
            ["docker", "import",
             "--change", "ENV container=docker",
             "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
             "-", image],
            stdin=fh, env=dockerd.docker_env(), check=True, stdout=subprocess.DEVNULL,
        )
    return image


def _debootstrap_tar() -> Path:
    """Debian's part alone, cached by suite and package list: changing our files skips debootstrap."""
    digest = hashlib.sha256(repr((SUITE, PACKAGES)).encode()).hexdigest()[:16]
    tarball = cache_dir() / f"debootstrap-{SUITE}-{digest}.tar"
    if tarball.exists():
        return tarball
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        progress(f"debootstrap {SUITE} (minbase + {len(PACKAGES)} packages) from {mirror()}; about a minute")
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), mirror()],
            check=True, stdout=subprocess.DEVNULL,
        )
        _tar(rootfs, tarball)
    for old in cache_dir().glob(f"debootstrap-{SUITE}-*.tar"):
        if old != tarball:
            old.unlink()
    progress(f"debootstrap done in {time.monotonic() - started:.0f}s")
    return tarball


def _tar(rootfs: Path, tarball: Path) -> None:
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)


def _build_rootfs_tar(tarball: Path) -> None:
    for t in _runtime_tools():
        gotools.build(t)
    cache_dir().mkdir(parents=True, exist_ok=True)
    debian = _debootstrap_tar()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kind-base-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-xf", str(debian)], check=True)
        _customize(rootfs)
        _tar(rootfs, tarball)
    for old in cache_dir().glob("kind-base-*.tar"):
        if old != tarball:
            old.unlink()
    progress(f"base root filesystem ready in {time.monotonic() - started:.0f}s")


def _install(src: Path, rootfs: Path, at: str, mode: int = 0o644) -> None:
    target = rootfs / at.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    target.chmod(mode)


def _customize(rootfs: Path) -> None:
    for name in ("containerd", "containerd-shim-runc-v2", "ctr"):
        _install(gotools.binary(name), rootfs, f"/usr/local/bin/{name}", 0o755)
    _install(gotools.binary("runc"), rootfs, "/usr/local/sbin/runc", 0o755)
    _install(FILES / "entrypoint", rootfs, "/usr/local/bin/entrypoint", 0o755)
    config = (FILES / "containerd.toml").read_text().replace("@SANDBOX_IMAGE@", PAUSE_REF)
    (rootfs / "etc/containerd").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/containerd/config.toml").write_text(config)
    (rootfs / "etc/crictl.yaml").write_text("runtime-endpoint: unix:///run/containerd/containerd.sock\n")
    units = rootfs / "etc/systemd/system"
    for unit in ("containerd.service", "kubelet.service", "kubelet.slice"):
        _install(FILES / unit, rootfs, f"/etc/systemd/system/{unit}")
    _install(FILES / "10-kubeadm.conf", rootfs, "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")
    _install(FILES / "kubelet.default", rootfs, "/etc/default/kubelet")
    # Debian's CNI plugins where kind's nodes (and our containerd config) look for them.
    cni = rootfs / "opt/cni/bin"
    cni.mkdir(parents=True, exist_ok=True)
    for plugin in sorted((rootfs / "usr/lib/cni").iterdir()):
        (cni / plugin.name).symlink_to(f"/usr/lib/cni/{plugin.name}")
    # Enable our services, and nothing that a container cannot or should not run.
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ("containerd.service", "kubelet.service"):
        (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")
    for unit in ("systemd-binfmt.service", "getty.target", "console-getty.service", "systemd-timesyncd.service",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        mask = units / unit
        if not mask.exists():
            mask.symlink_to("/dev/null")
    with (rootfs / "etc/systemd/journald.conf").open("a") as fh:
        fh.write("ReadKMsg=no\n")  # the host's kernel log is not this node's
    # Through usr/sbin: with merged /usr, rootfs/sbin is a link that must not lead to the host.
    (rootfs / "usr/sbin/init").unlink(missing_ok=True)
    (rootfs / "usr/sbin/init").symlink_to("/lib/systemd/systemd")
    for d in ("etc/kubernetes/manifests", "kind", "var/lib/kubelet"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/machine-id").write_text("")  # the entrypoint makes one per node
    # debootstrap leaves the host's resolv.conf and apt lists behind; Docker writes the node's own.
    for leftover in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / leftover).unlink(missing_ok=True)
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
