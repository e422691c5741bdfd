"""Build the cluster's Go commands from pinned modules into a cache keyed by version.

Why: no container registry and no release tarballs are reachable, only the Go module proxy.
Each tool is a tiny module under ``tools/<name>/`` whose go.mod/go.sum pin exact versions;
the binaries land in ``<cache>/gotools/<name>-<key>/bin`` where ``key`` hashes go.mod,
go.sum and our own ``main.go`` where a tool has one, so a second build is a no-op and a
version bump builds into a fresh directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.log import progress

TOOLS_DIR = Path(__file__).resolve().parent / "tools"


def required_version(tool_name: str, module: str) -> str:
    """The version of ``module`` that ``tools/<tool_name>/go.mod`` requires (the pin, e.g. ``v1.37.2``)."""
    gomod = (TOOLS_DIR / tool_name / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod, re.M)
    if found is None:
        raise KeyError(f"{module} is not required by tools/{tool_name}/go.mod")
    return found.group(1)


KUBE_VERSION = required_version("kubernetes", "k8s.io/kubernetes")
KIND_VERSION = required_version("kind", "sigs.k8s.io/kind")
LOCAL_PATH_PROVISIONER_VERSION = required_version("local-path-provisioner", "github.com/rancher/local-path-provisioner")
CONTAINERD_VERSION = required_version("containerd", "github.com/containerd/containerd/v2")
RUNC_VERSION = required_version("runc", "github.com/opencontainers/runc")


@dataclass(frozen=True)
class GoTool:
    """One module under tools/: which packages to build and which binaries they yield."""

    name: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    ldflags: str = "-s -w"
    tags: tuple[str, ...] = ()
    cgo: bool = False  # runc needs cgo (its nsenter is C, seccomp links libseccomp)
    # Build from another tool's module (kubeadm: the kubernetes pins), in a scratch copy so the
    # extra go.sum lines its packages need never change that module's files or its cache key.
    module: str = ""

    @property
    def module_dir(self) -> Path:
        return TOOLS_DIR / (self.module or self.name)

    def key(self) -> str:
        digest = hashlib.sha256()
        for fname in ("go.mod", "go.sum"):
            digest.update((self.module_dir / fname).read_bytes())
        wrapper = self.module_dir / "main.go"  # a command of our own (tools.go only pins imports)
        if wrapper.is_file():
            digest.update(wrapper.read_bytes())
        if self.tags or self.cgo:  # build options beyond the defaults are part of the key too
            digest.update(repr((self.tags, self.cgo, self.ldflags)).encode())
        return digest.hexdigest()[:16]

    def bin_dir(self, cache: Path) -> Path:
        return cache / "gotools" / f"{self.name}-{self.key()}" / "bin"


def _kube_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in stamp.items()]
    return " ".join(flags)


TOOLS: tuple[GoTool, ...] = (
    GoTool(
        "kubernetes",
        tuple(f"k8s.io/kubernetes/cmd/{c}" for c in
              ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")),
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"),
        ldflags=_kube_ldflags(KUBE_VERSION),
    ),
    GoTool(
        "containerd",
        tuple(f"github.com/containerd/containerd/v2/cmd/{c}" for c in ("containerd", "containerd-shim-runc-v2", "ctr")),
        ("containerd", "containerd-shim-runc-v2", "ctr"),
        ldflags="-s -w " + " ".join(f"-X github.com/containerd/containerd/v2/version.{k}={v}" for k, v in (
            ("Version", CONTAINERD_VERSION), ("Revision", CONTAINERD_VERSION),
            ("Package", "github.com/containerd/containerd/v2"))),
        tags=("urfave_cli_no_docs",),
    ),
    GoTool(
        "runc", ("github.com/opencontainers/runc",), ("runc",),
        ldflags=f"-s -w -X main.gitCommit={RUNC_VERSION}",
        # seccomp: links Debian's libseccomp (libseccomp-dev); without libpathrs (a Rust library
        # Debian 12 does not ship), which runc 1.5 still treats as optional.
        tags=("seccomp", "urfave_cli_no_docs"), cgo=True,
    ),
    GoTool("etcd", (".",), ("etcd",)),
    GoTool("coredns", ("github.com/coredns/coredns",), ("coredns",)),
    GoTool("ferretdb", (".",), ("ferretdb",)),
    GoTool("helm", ("helm.sh/helm/v3/cmd/helm",), ("helm",)),
    GoTool("kwok", ("sigs.k8s.io/kwok/cmd/kwok",), ("kwok",)),
    # NetworkPolicy analyzer: tests/chart checks the chart's policies with its offline probe simulation.
    GoTool("cyclonus", ("github.com/mattfenwick/cyclonus/cmd/cyclonus",), ("cyclonus",)),
    # The kind tier (tests/kind): kind itself, kubeadm for its node image (same Kubernetes pins and
    # version stamp as the kubernetes tool), and the storage provisioner kind's node image ships.
    GoTool("kind", ("sigs.k8s.io/kind",), ("kind",)),
    GoTool("kubeadm", ("k8s.io/kubernetes/cmd/kubeadm",), ("kubeadm",), ldflags=_kube_ldflags(KUBE_VERSION),
           module="kubernetes"),
    GoTool("local-path-provisioner", ("github.com/rancher/local-path-provisioner",), ("local-path-provisioner",)),
    # The etcd kubeadm's static Pod expects (its flags changed after the 3.5 the test cluster runs);
    # gotools.binary("etcd") still names the test cluster's.
    GoTool("kind-etcd", (".",), ("etcd",)),
)


def cache_root() -> Path:
    return Path(os.environ.get("LEVRT_CACHE", Path.home() / ".cache" / "levrt"))


def tool(name: str) -> GoTool:
    for candidate in TOOLS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def binary(name: str) -> Path:
    """Path of a built binary (e.g. ``kubelet``), whichever tool provides it."""
    for candidate in TOOLS:
        if name in candidate.binaries:
            return candidate.bin_dir(cache_root()) / name
    raise KeyError(name)


def is_built(t: GoTool) -> bool:
    return all((t.bin_dir(cache_root()) / b).is_file() for b in t.binaries)


def build(t: GoTool) -> Path:
    """Build ``t`` unless its keyed directory already holds every binary; return that directory."""
    out = t.bin_dir(cache_root())
    if is_built(t):
        return out
    out.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{t.name}-", dir=out.parent.parent))
    env = dict(os.environ, CGO_ENABLED="1" if t.cgo else "0", GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    tags = [f"-tags={','.join(t.tags)}"] if t.tags else []
    started = time.monotonic()
    progress(f"building {t.name} ({', '.join(t.binaries)}) with go build (cached by go.sum afterwards)")
    workdir = t.module_dir
    try:
        if t.module:
            workdir = staging / ".module"
            shutil.copytree(t.module_dir, workdir)
        subprocess.run(
            ["go", "build", "-trimpath", *tags, f"-ldflags={t.ldflags}", "-o", str(staging) + "/", *t.packages],
            cwd=workdir, env=env, check=True,
        )
        if t.module:
            shutil.rmtree(workdir)
        if t.packages == (".",):
            # `go build .` names the binary after the module's last path element.
            built = staging / t.module_dir.name
            if built.exists() and built.name != t.binaries[0]:
                built.rename(staging / t.binaries[0])
        missing = [b for b in t.binaries if not (staging / b).is_file()]
        if missing:
            raise RuntimeError(f"go build of {t.name} produced no {missing}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"built {t.name} in {time.monotonic() - started:.0f}s")
    return out


# Built by the kind tier only (tests/kind builds them on demand): the test cluster does not wait for them.
KIND_TIER_TOOLS = ("kind", "kubeadm", "local-path-provisioner", "kind-etcd")


def build_all(names: list[str] | None = None) -> None:
    """The test cluster's tools (or those named)."""
    for t in TOOLS:
        if (t.name not in KIND_TIER_TOOLS) if names is None else (t.name in names):
            build(t)
