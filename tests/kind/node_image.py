"""The kind node image: our base image plus Kubernetes, and every image the node would pull.

Why: ``kind build node-image`` always fetches the images kubeadm lists and kind's addons from a
registry (``ctr content fetch``), which no host of ours reaches. We build the same result the
same way instead: run a container of the base image, copy the Kubernetes binaries in, import
image archives written with tests/cluster's OCI writer into its containerd (unpacked later by
the node), add /kind/version and the default storage manifest, and ``docker commit``.

Image names: every image is ``levrt.local/<name>:<version>``; the test kind config points
kubeadm there (``imageRepository`` and the etcd/CoreDNS tags of what we build), so no name of
a registry host is needed anywhere. The node image is ``levrt.local/kind-node:<k8s>-<key>`` and
also tagged ``levrt.local/kind-node:<k8s>``, the name tests/kind/kind-config.yaml uses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.cluster import gotools
from tests.cluster.images import (
    FERRETDB_REF,
    PAUSE_C,
    PAUSE_REF,
    Image,
    add_binary,
    base_files,
    busybox_ref,
    busybox_rootfs,
    ferretdb_image,
    write_archive,
)
from tests.cluster.log import progress
from tests.kind import base, dockerd

REPO = "levrt.local"
NODE_REPO = f"{REPO}/kind-node"
KUBE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")
NODE_FILES = ("default-storage.yaml", "10-levrt-bridge.conflist")
# Bump when this module changes what it puts in the node image.
REVISION = 2
IPTABLES_COMMANDS = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                     "ip6tables-restore")


def etcd_tag() -> str:
    return gotools.required_version("kind-etcd", "go.etcd.io/etcd/server/v3").lstrip("v")


def coredns_tag() -> str:
    return gotools.required_version("coredns", "github.com/coredns/coredns").lstrip("v")


def local_path_ref() -> str:
    return f"{REPO}/local-path-provisioner:{gotools.LOCAL_PATH_PROVISIONER_VERSION}"


def _tools() -> list[gotools.GoTool]:
    return [gotools.tool(n) for n in ("kubernetes", "kubeadm", "kind-etcd", "coredns", "local-path-provisioner",
                                       "ferretdb")]


def key() -> str:
    digest = hashlib.sha256()
    digest.update(repr((REVISION, base.key(), PAUSE_REF, busybox_ref(), FERRETDB_REF, PAUSE_C)).encode())
    for t in _tools():
        digest.update(f"{t.name}-{t.key()}".encode())
    for name in NODE_FILES:
        digest.update(name.encode() + (base.FILES / name).read_bytes())
    return digest.hexdigest()[:16]


def stable_ref() -> str:
    return f"{NODE_REPO}:{gotools.KUBE_VERSION}"


def ref() -> str:
    return f"{NODE_REPO}:{gotools.KUBE_VERSION}-{key()}"


def saved_tarball() -> Path:
    return base.cache_dir() / f"kind-node-{gotools.KUBE_VERSION}-{key()}.tar"


def ensure() -> str:
    """The node image in Docker (built, or loaded from the cache), tagged with its stable name too."""
    image = ref()
    if not base.has_image(image):
        tarball = saved_tarball()
        if tarball.exists():
            started = time.monotonic()
            progress(f"loading {image} from {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
            with tarball.open("rb") as fh:
                subprocess.run(["docker", "load"], stdin=fh, env=dockerd.docker_env(), check=True,
                               stdout=subprocess.DEVNULL)
            progress(f"loaded in {time.monotonic() - started:.0f}s")
        else:
            build(image)
            progress(f"saving {image} to {tarball} (reloaded after Docker's data is wiped)")
            partial = tarball.with_suffix(".partial")
            dockerd.docker("save", "-o", str(partial), image)
            partial.rename(tarball)
            for old in base.cache_dir().glob("kind-node-*.tar"):
                if old != tarball:
                    old.unlink()
    dockerd.docker("tag", image, stable_ref())
    return image


def component_images(workdir: Path) -> list[Image]:
    """Every image the node runs: kubeadm's list (under levrt.local), the sandbox, the storage addon."""
    images = []
    for name in KUBE_IMAGES:
        root = workdir / name
        base_files(root)
        binary = root / "usr/local/bin" / name
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(gotools.binary(name), binary)
        layers: tuple[Path, ...] = (root,)
        if name == "kube-proxy":
            layers = (_busybox(workdir), _iptables(workdir), root)
        images.append(Image(f"{REPO}/{name}:{gotools.KUBE_VERSION}", layers))

    etcd = workdir / "etcd"
    base_files(etcd)
    (etcd / "usr/local/bin").mkdir(parents=True)
    etcd_tool = gotools.tool("kind-etcd")
    shutil.copy2(etcd_tool.bin_dir(gotools.cache_root()) / "etcd", etcd / "usr/local/bin/etcd")
    images.append(Image(f"{REPO}/etcd:{etcd_tag()}", (etcd,)))

    coredns = workdir / "coredns"
    base_files(coredns)
    shutil.copy2(gotools.binary("coredns"), coredns / "coredns")
    images.append(Image(f"{REPO}/coredns:{coredns_tag()}", (coredns,), entrypoint=("/coredns",)))

    pause = workdir / "pause"
    pause.mkdir()
    (workdir / "pause.c").write_text(PAUSE_C)
    subprocess.run(["gcc", "-Os", "-static", "-o", str(pause / "pause"), str(workdir / "pause.c")], check=True)
    images.append(Image(PAUSE_REF, (pause,), entrypoint=("/pause",)))

    provisioner = workdir / "local-path-provisioner"
    base_files(provisioner)
    (provisioner / "usr/local/bin").mkdir(parents=True)
    shutil.copy2(gotools.binary("local-path-provisioner"), provisioner / "usr/local/bin/local-path-provisioner")
    images.append(Image(local_path_ref(), (provisioner,), entrypoint=("/usr/local/bin/local-path-provisioner",)))

    # The storage helper Pod runs sh scripts: the test busybox image serves (kind's helper is a busybox too).
    images.append(Image(busybox_ref(), (_busybox(workdir),), cmd=("sh",)))

    # The store a laptop would pull (the chart's mongo:7.0) cannot be pulled here: the kind tier
    # installs the chart with store.engine=ferretdb, the test cluster's store, preloaded like the rest.
    images.append(ferretdb_image(workdir))
    return images


def _busybox(workdir: Path) -> Path:
    root = workdir / "busybox"
    if not root.exists():
        root.mkdir(parents=True)
        busybox_rootfs(root)
    return root


IPTABLES_WRAPPER = """#!/bin/sh
# kube-proxy's iptables: the backend (nft or legacy) that already holds the node's rules, chosen
# once per container; the node's entrypoint picks the same way.
mode_file=/run/iptables-mode
[ -s "$mode_file" ] || {
  legacy=$(xtables-legacy-multi iptables-save 2>/dev/null | grep -c '^-')
  nft=$(xtables-nft-multi iptables-save 2>/dev/null | grep -c '^-')
  if [ "${nft:-0}" -gt "${legacy:-0}" ]; then echo nft; else echo legacy; fi > "$mode_file"
}
exec "xtables-$(cat "$mode_file")-multi" "$(basename "$0")" "$@"
"""


def _iptables(workdir: Path) -> Path:
    """The host's iptables (Debian, both backends) and its extension modules, behind a chooser."""
    root = workdir / "iptables"
    for multi in ("xtables-nft-multi", "xtables-legacy-multi"):
        add_binary(root, Path("/usr/sbin") / multi, f"/usr/sbin/{multi}")
    # The extensions are loaded by path at run time (no ldd line for the binaries): each brings the
    # libraries it links (libxt_statistic needs libm, which kube-proxy's rules use for >1 endpoint).
    for extension in sorted(Path("/usr/lib/x86_64-linux-gnu/xtables").glob("*.so")):
        add_binary(root, extension)
    wrapper = root / "usr/sbin/iptables-wrapper"
    wrapper.write_text(IPTABLES_WRAPPER)
    wrapper.chmod(0o755)
    for command in IPTABLES_COMMANDS:
        (root / "usr/sbin" / command).symlink_to("iptables-wrapper")
    (root / "run").mkdir()
    return root


def build(image: str) -> None:
    started = time.monotonic()
    for t in _tools():
        gotools.build(t)
    base_image = base.ensure()
    progress(f"building {image} from {base_image}")
    name = f"levrt-kind-build-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="kind-node-", dir=base.cache_dir()) as tmp:
        workdir = Path(tmp)
        written = time.monotonic()
        archives = []
        for img in component_images(workdir / "rootfs"):
            archive = workdir / "archives" / (img.ref.replace("/", "_").replace(":", "_") + ".tar")
            write_archive(img, archive)
            archives.append((img.ref, archive))
        progress(f"wrote {len(archives)} image archives in {time.monotonic() - written:.0f}s")
        dockerd.docker("run", "-d", "--name", name, "--entrypoint", "sleep", "--security-opt", "seccomp=unconfined",
                       base_image, "infinity")
        try:
            _fill(name, archives)
            dockerd.docker("commit",
                           "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                           "--change", "CMD []",
                           name, image)
        finally:
            dockerd.docker("rm", "-f", "-v", name, check=False)
    progress(f"built {image} in {time.monotonic() - started:.0f}s")


def _exec(container: str, *argv: str, stdin: Path | None = None) -> None:
    cmd = ["docker", "exec", *(["-i"] if stdin else []), container, *argv]
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as fh:
        result = subprocess.run(cmd, stdin=fh, env=dockerd.docker_env(), capture_output=True, check=False)
    if result.returncode != 0:
        raise dockerd.DockerError(f"{' '.join(argv[:4])} in the build container failed: "
                                  f"{result.stderr.decode(errors='replace').strip()[-400:]}")


def _fill(container: str, archives: list[tuple[str, Path]]) -> None:
    for binary in NODE_BINARIES:
        dockerd.docker("cp", str(gotools.binary(binary)), f"{container}:/usr/bin/{binary}")
    _exec(container, "sh", "-c", "echo -n " + gotools.KUBE_VERSION + " > /kind/version")
    manifest = (base.FILES / "default-storage.yaml").read_text()
    manifest = manifest.replace("@PROVISIONER_IMAGE@", local_path_ref()).replace("@HELPER_IMAGE@", busybox_ref())
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(manifest)
        fh.flush()
        _exec(container, "mkdir", "-p", "/kind/manifests", "/etc/cni/net.d")
        dockerd.docker("cp", fh.name, f"{container}:/kind/manifests/default-storage.yaml")
    dockerd.docker("cp", str(base.FILES / "10-levrt-bridge.conflist"), f"{container}:/etc/cni/net.d/")
    # containerd only to receive the archives: --no-unpack, since overlayfs cannot stack on the
    # build container's own overlay root; the node unpacks on its /var volume when a Pod needs one.
    _exec(container, "sh", "-c", "containerd >/tmp/containerd.log 2>&1 & echo $! > /tmp/containerd.pid")
    for _ in range(60):
        try:
            _exec(container, "ctr", "version")
            break
        except dockerd.DockerError:
            time.sleep(0.5)
    for image_ref, archive in archives:
        progress(f"importing {image_ref} ({archive.stat().st_size / 1e6:.0f} MB) into the node image")
        _exec(container, "ctr", "--namespace=k8s.io", "images", "import", "--no-unpack", "--digests",
              "--label=io.cri-containerd.pinned=pinned", "-", stdin=archive)
    # Wait until containerd has exited (a zombie counts: `sleep` as PID 1 reaps nobody), so its
    # database is closed before the commit.
    _exec(container, "sh", "-c", 'p=$(cat /tmp/containerd.pid); kill "$p"; i=0; '
          'while [ -e "/proc/$p" ] && [ "$(cut -d" " -f3 "/proc/$p/stat")" != Z ] && [ $i -lt 100 ]; '
          "do sleep 0.2; i=$((i+1)); done; rm -f /tmp/containerd.pid /tmp/containerd.log")
