"""Start and stop the single-node test cluster as plain processes, tracked by pid.

Why: the tests need real Kubernetes on a VM with no registry, no Docker and cgroup v1.
``up`` is idempotent: a healthy cluster is left alone, a half-started one is torn down and
started again. ``down`` undoes everything ``up`` did: processes (by pid, plus every container
process found in the kubepods cgroups), mounts under the state directory, pod network
namespaces, the bridge, the iptables chains and the sysctls it changed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import gotools, pki
from tests.cluster.log import progress

NODE_NAME = "levrt-node"
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_CIDR = "10.244.0.0/16"
DNS_IP = "10.96.0.10"
BRIDGE = "levrt0"
NAMESPACE = "levrt"
STORE_NODE_PORT = 30017
REPO = Path(__file__).resolve().parents[2]
ADDONS = Path(__file__).resolve().parent / "addons"

# Order matters: started in this order, stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd",
              "kubelet", "kube-proxy")

SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv4/conf/all/route_localnet",
)

# Command -> Debian package. containerd, its shim, ctr and runc are built from Go modules
# (gotools.py); runc's cgo build needs gcc, pkg-config and libseccomp's headers.
DEBIAN_PACKAGES = {
    "iptables": "iptables", "conntrack": "conntrack", "patchelf": "patchelf", "busybox": "busybox-static",
    "redis-server": "redis-server", "ip": "iproute2", "gcc": "gcc", "ldd": "libc-bin", "pkg-config": "pkg-config",
    "nmap": "nmap", "tmux": "tmux",
    # The kind tier (tests/kind): Docker's engine, and debootstrap for the kind node's base image.
    "dockerd": "docker.io", "debootstrap": "debootstrap",
    # The console's browser tests (tests/e2e/test_browser.py): headless Chromium and its WebDriver.
    "chromium": "chromium", "chromedriver": "chromium-driver",
}
# File -> Debian package, for packages without a command of their own.
DEBIAN_FILES = {
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/include/seccomp.h": "libseccomp-dev",
}


class ClusterError(RuntimeError):
    """The test cluster could not be started; the message names the component and its log."""


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def containerd_sock(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def info(self) -> Path:
        return self.root / "cluster.json"


def paths() -> Paths:
    return Paths(Path(os.environ.get("LEVRT_CLUSTER_DIR", "/var/lib/levrt-test")))


def node_ip() -> str:
    """The address other hosts would use for this machine: the source of the default route."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.123", 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


# --- prerequisites -------------------------------------------------------------------------

def ensure_packages() -> None:
    """Install the Debian packages the node needs, once (apt only when something is missing)."""
    missing = sorted({pkg for cmd, pkg in DEBIAN_PACKAGES.items() if shutil.which(cmd) is None}
                     | {pkg for path, pkg in DEBIAN_FILES.items() if not Path(path).exists()})
    if missing:
        progress(f"installing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env,
                       stdout=subprocess.DEVNULL)


# --- processes ------------------------------------------------------------------------------

def _pid(name: str) -> int | None:
    try:
        pid = int((paths().pids / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if name.encode() in cmdline else None


_STARTED: dict[str, subprocess.Popen[bytes]] = {}


def _exited(name: str) -> bool:
    """True when a component this process started (or found by pid) is gone."""
    proc = _STARTED.get(name)
    if proc is not None:
        return proc.poll() is not None
    return _pid(name) is None


def _start(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    p = paths()
    p.logs.mkdir(parents=True, exist_ok=True)
    p.pids.mkdir(parents=True, exist_ok=True)
    with (p.logs / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, **(env or {})))
    _STARTED[name] = proc
    (p.pids / f"{name}.pid").write_text(str(proc.pid))


def _tail(name: str, lines: int = 15) -> str:
    try:
        text = (paths().logs / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _wait(what: str, check: Callable[[], bool], *, timeout: float, component: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if component and _exited(component):
            raise ClusterError(f"{component} exited while waiting for {what}; log {paths().logs}/{component}.log:\n"
                               + _tail(component))
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.3)
    hint = f"; last lines of {paths().logs}/{component}.log:\n{_tail(component)}" if component else ""
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")


def _https_ok(url: str) -> bool:
    p = paths()
    ctx = ssl.create_default_context(cafile=str(p.pki / "ca.crt"))
    ctx.load_cert_chain(str(p.pki / "admin.crt"), str(p.pki / "admin.key"))
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
        return bool(resp.status == 200)


def kubectl_binary() -> str:
    """kubectl built with the cluster (same version as the apiserver), else the one on PATH."""
    built = gotools.binary("kubectl")
    return str(built) if built.is_file() else (shutil.which("kubectl") or str(built))


def kubectl(*args: str, kubeconfig: str | None = None, input: str | None = None, check: bool = True) -> str:
    """Run kubectl against this cluster (or ``kubeconfig``'s); stdout, or ClusterError with stderr."""
    result = subprocess.run([kubectl_binary(), "--kubeconfig", kubeconfig or str(paths().kubeconfig), *args],
                            input=input, capture_output=True, text=True, timeout=180)
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


# --- configuration --------------------------------------------------------------------------

def _write_pki(ip: str) -> None:
    p = paths()
    ca = pki.CertificateAuthority(p.pki)
    ca.issue("apiserver", "kube-apiserver", server_names=[
        "127.0.0.1", ip, "10.96.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local", NODE_NAME,
    ])
    for ident in (*pki.CLIENTS, pki.Identity("kubelet", f"system:node:{NODE_NAME}", "system:nodes")):
        ca.issue(ident.file, ident.common_name, ident.organization)
    pki.service_account_keys(p.pki)
    for name in ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"):
        target = p.kubeconfig if name == "admin" else p.root / f"{name}.kubeconfig"
        pki.kubeconfig(target, server=f"https://{ip}:6443", ca=p.pki / "ca.crt",
                       cert=p.pki / f"{name}.crt", key=p.pki / f"{name}.key", user=name)


def _containerd_config() -> Path:
    """containerd 2.x configuration, version 3 (plugin IDs ``io.containerd.cri.v1.*``)."""
    p = paths()
    root = p.root / "containerd"
    cfg = root / "config.toml"
    runc = gotools.binary("runc")
    socket_dir = root / "s"
    # A shim socket is <dir>/<64 hex digits>; containerd refuses directories longer than 42.
    shim_sockets = (f"[plugins.'io.containerd.shim.v1.manager']\n  socket_dir = \"{socket_dir}\"\n"
                    if len(str(socket_dir)) <= 42 else "")
    cfg.write_text(f"""version = 3
root = "{root / 'root'}"
state = "{root / 'state'}"
temp = "{root / 'tmp'}"
# Nothing outside the state directory: no /opt/containerd, no NRI socket in /var/run/nri,
# shim sockets and runc's state here rather than in /run/containerd/{{s,runc}}.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]
[grpc]
  address = "{p.containerd_sock}"
[ttrpc]
  address = "{p.containerd_sock}.ttrpc"
{shim_sockets}[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{_sandbox_image()}"
[plugins.'io.containerd.cri.v1.runtime']
  enable_unprivileged_ports = true
  # This VM withholds CAP_SYS_RESOURCE even from root, so the -998 OOM score the kubelet asks
  # for sandboxes cannot be set; clamp it to containerd's own score instead of failing runc.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        # cgroupfs: this VM's cgroup v1 hierarchy is not delegated to systemd.
        SystemdCgroup = false
        BinaryName = "{runc}"
        Root = "{root / 'runc'}"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{p.cni_conf}"
""")
    return cfg


def _sandbox_image() -> str:
    from tests.cluster.images import PAUSE_REF

    return PAUSE_REF


def _containerd_env() -> dict[str, str]:
    """containerd finds ``containerd-shim-runc-v2`` on PATH: ours first, never Debian's."""
    dirs = [str(gotools.binary("containerd-shim-runc-v2").parent), str(gotools.binary("runc").parent)]
    return {"PATH": ":".join([*dirs, os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])}


def ctr_binary() -> str:
    """ctr built with our containerd (images.py imports and tags images with it)."""
    return str(gotools.binary("ctr"))


def _kubelet_config() -> Path:
    p = paths()
    cfg = p.root / "kubelet-config.yaml"
    cfg.write_text(f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {p.pki / 'ca.crt'}}}
authorization: {{mode: Webhook}}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{p.containerd_sock}
clusterDomain: cluster.local
clusterDNS: [{DNS_IP}]
resolvConf: /etc/resolv.conf
rotateCertificates: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
maxPods: 110
""")
    return cfg


def _cni_config(pod_cidr: str) -> None:
    p = paths()
    p.cni_conf.mkdir(parents=True, exist_ok=True)
    conf = {
        "cniVersion": "1.0.0",
        "name": "levrt",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}],
                         "dataDir": str(p.root / "cni" / "networks")},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (p.cni_conf / "10-levrt.conflist").write_text(json.dumps(conf, indent=2))


def _set_sysctls() -> None:
    saved_path = paths().root / "sysctls.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    for key in SYSCTLS:
        f = Path("/proc/sys") / key
        if f.exists():
            saved.setdefault(key, f.read_text().strip())
    saved_path.write_text(json.dumps(saved))
    for key in SYSCTLS[:3]:
        f = Path("/proc/sys") / key
        if f.exists():
            f.write_text("1")


# --- up -------------------------------------------------------------------------------------

def healthy() -> bool:
    p = paths()
    if not p.info.exists() or any(_pid(c) is None for c in COMPONENTS):
        return False
    try:
        ip = json.loads(p.info.read_text())["node_ip"]
        return _https_ok(f"https://{ip}:6443/readyz")
    except Exception:
        return False


def up() -> Path:
    """Start the cluster (or keep the running one); return the admin kubeconfig path."""
    started = time.monotonic()
    ensure_packages()
    gotools.build_all()
    if healthy():
        progress(f"cluster already running; kubeconfig {paths().kubeconfig}")
        _install_addons()
        return paths().kubeconfig
    if paths().root.exists():
        progress("found a stopped or half-started cluster; cleaning it up first")
        down()
    p = paths()
    ip = node_ip()
    for d in (p.root, p.logs, p.pids, p.root / "etcd", p.root / "containerd", p.root / "kubelet", p.cni_conf):
        d.mkdir(parents=True, exist_ok=True)
    p.info.write_text(json.dumps({"node_ip": ip, "node": NODE_NAME}))
    _write_pki(ip)
    _set_sysctls()
    bins = {b: str(gotools.binary(b)) for b in ("etcd", "kube-apiserver", "kube-controller-manager",
                                                "kube-scheduler", "kubelet", "kube-proxy")}
    k = p.pki

    progress("starting etcd")
    _start("etcd", [bins["etcd"], "--name=levrt", f"--data-dir={p.root / 'etcd'}",
                    "--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
                    "--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                    "--initial-cluster=levrt=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn"])
    _wait("etcd health", lambda: urllib.request.urlopen("http://127.0.0.1:2379/health", timeout=2).status == 200,
          timeout=30, component="etcd")

    progress("starting kube-apiserver")
    _start("kube-apiserver", [
        bins["kube-apiserver"], "--etcd-servers=http://127.0.0.1:2379", f"--advertise-address={ip}",
        "--bind-address=0.0.0.0", "--secure-port=6443", f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
        f"--client-ca-file={k / 'ca.crt'}", f"--tls-cert-file={k / 'apiserver.crt'}",
        f"--tls-private-key-file={k / 'apiserver.key'}",
        f"--kubelet-client-certificate={k / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={k / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={k / 'sa.pub'}", f"--service-account-signing-key-file={k / 'sa.key'}",
        "--service-node-port-range=30000-32767", "--profiling=false", "--v=1",
    ])
    _wait("kube-apiserver /readyz", lambda: _https_ok(f"https://{ip}:6443/readyz"), timeout=90,
          component="kube-apiserver")

    progress("starting kube-controller-manager and kube-scheduler")
    _start("kube-controller-manager", [
        bins["kube-controller-manager"], f"--kubeconfig={p.root / 'controller-manager.kubeconfig'}",
        f"--authentication-kubeconfig={p.root / 'controller-manager.kubeconfig'}",
        f"--authorization-kubeconfig={p.root / 'controller-manager.kubeconfig'}",
        "--bind-address=127.0.0.1", "--leader-elect=false", "--allocate-node-cidrs=true",
        f"--cluster-cidr={CLUSTER_CIDR}", "--node-cidr-mask-size=24", f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cluster-signing-cert-file={k / 'ca.crt'}", f"--cluster-signing-key-file={k / 'ca.key'}",
        f"--root-ca-file={k / 'ca.crt'}", f"--service-account-private-key-file={k / 'sa.key'}",
        "--use-service-account-credentials=true", "--controllers=*,bootstrapsigner,tokencleaner",
        "--concurrent-gc-syncs=10", "--v=1",
    ])
    _start("kube-scheduler", [
        bins["kube-scheduler"], f"--kubeconfig={p.root / 'scheduler.kubeconfig'}",
        f"--authentication-kubeconfig={p.root / 'scheduler.kubeconfig'}",
        f"--authorization-kubeconfig={p.root / 'scheduler.kubeconfig'}",
        "--bind-address=127.0.0.1", "--leader-elect=false", "--v=1",
    ])

    progress("starting containerd")
    _start("containerd", [str(gotools.binary("containerd")), "--config", str(_containerd_config())],
           env=_containerd_env())
    _wait("containerd socket", lambda: subprocess.run(
        [ctr_binary(), "--address", str(p.containerd_sock), "version"], capture_output=True).returncode == 0,
        timeout=30, component="containerd")

    progress("building and importing images")
    from tests.cluster import images

    images.import_test_images()

    progress("starting kubelet")
    _start("kubelet", [bins["kubelet"], f"--config={_kubelet_config()}",
                       f"--kubeconfig={p.root / 'kubelet.kubeconfig'}", f"--hostname-override={NODE_NAME}",
                       f"--node-ip={ip}", f"--root-dir={p.root / 'kubelet'}", "--v=1"])
    pod_cidr: list[str] = []

    def cidr_assigned() -> bool:
        out = kubectl("get", "node", NODE_NAME, "-o", "jsonpath={.spec.podCIDR}", check=False).strip()
        if out:
            pod_cidr.append(out)
        return bool(out)

    _wait("the node to register and get a pod CIDR", cidr_assigned, timeout=90, component="kubelet")
    _cni_config(pod_cidr[0])

    progress("starting kube-proxy")
    _start("kube-proxy", [bins["kube-proxy"], f"--kubeconfig={p.root / 'kube-proxy.kubeconfig'}",
                          f"--hostname-override={NODE_NAME}", f"--cluster-cidr={CLUSTER_CIDR}",
                          "--proxy-mode=iptables", "--conntrack-max-per-core=0",
                          "--metrics-bind-address=127.0.0.1:10249", "--v=1"])
    _wait("the node to be Ready", lambda: kubectl(
        "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True",
        timeout=90, component="kubelet")

    _install_addons()
    progress(f"cluster up in {time.monotonic() - started:.0f}s; kubeconfig {p.kubeconfig}")
    return p.kubeconfig


def _install_addons() -> None:
    """CoreDNS, the levrt namespace, the runtime image, and the platform (the chart: the store
    and the runtime node cache)."""
    from tests.cluster import images
    from tests.runtime.image import build_runtime_image, runtime_ref

    progress("installing CoreDNS")
    kubectl("apply", "-f", str(ADDONS / "coredns.yaml"))
    kubectl("create", "namespace", NAMESPACE, check=False)
    progress("building and importing the levrt runtime image")
    before = images.present_digest(runtime_ref())
    build_runtime_image()
    changed = images.present_digest(runtime_ref()) != before
    progress("installing the chart (store, runtime node cache)")
    _install_chart()
    if changed:
        # Same tag, new content (this checkout's levrt changed): refill the node cache, and restart
        # what runs levrt from the image for good (the console, the reaper), or they keep the old code.
        for workload in ("daemonset/levrt-runtime-cache", "deployment/levrt-console", "deployment/levrt-reaper"):
            kubectl("-n", NAMESPACE, "rollout", "restart", workload)
        for workload in ("daemonset/levrt-runtime-cache", "deployment/levrt-console", "deployment/levrt-reaper"):
            kubectl("-n", NAMESPACE, "rollout", "status", workload, "--timeout=120s")
    kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s")


STORE_CLASS = "levrt-test-local"
"""StorageClass name of the store's volume: no provisioner, the one PersistentVolume below."""
STORE_PV = "levrt-test-store"


def store_volume_dir() -> Path:
    """Where the store's data lives on this host: inside the cluster's state directory, so
    ``down`` removes it with everything else."""
    return paths().root / "store-data"


def ensure_store_volume() -> None:
    """A hostPath PersistentVolume reserved (claimRef) for the chart's store claim, so the store
    keeps its records when its Pod is deleted or restarted (issue 12: an emptyDir lost them).

    A StatefulSet's volumeClaimTemplates cannot change: a store made with an emptyDir (a cluster
    started before this volume existed) is deleted first, and the chart makes it again."""
    store_volume_dir().mkdir(parents=True, exist_ok=True)
    volume = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": STORE_PV, "labels": {"app.kubernetes.io/part-of": "levrt"}},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORE_CLASS,
            "claimRef": {"namespace": NAMESPACE, "name": "data-levrt-store-0"},
            "hostPath": {"path": str(store_volume_dir()), "type": "DirectoryOrCreate"},
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(volume))
    templates = kubectl("-n", NAMESPACE, "get", "statefulset", "levrt-store", "--ignore-not-found",
                        "-o", "jsonpath={.metadata.name}/{.spec.volumeClaimTemplates[*].metadata.name}")
    if templates == "levrt-store/":
        progress("replacing the store's emptyDir by its PersistentVolume (its records are lost once)")
        kubectl("-n", NAMESPACE, "delete", "statefulset", "levrt-store", "--wait=true")


def _install_chart() -> None:
    chart = REPO / "charts" / "levrt"
    helm = str(gotools.binary("helm"))
    ensure_store_volume()
    subprocess.run([helm, "--kubeconfig", str(paths().kubeconfig), "upgrade", "--install", "levrt", str(chart),
                    "--namespace", NAMESPACE, "--wait", "--timeout", "180s",
                    "--set", "store.engine=ferretdb", "--set", "store.persistence.enabled=true",
                    "--set", f"store.persistence.storageClassName={STORE_CLASS}",
                    "--set", "store.persistence.size=1Gi",
                    "--set", "store.nodePort.enabled=true", "--set", f"store.nodePort.port={STORE_NODE_PORT}",
                    "--set", "runtime.nodeCache.enabled=true",
                    # tests/faults kill clients: their jobs' Leases are reaped within seconds, not a minute
                    "--set", "reaper.periodSeconds=3",
                    "--set", f"runtime.nodeCache.hostPath={paths().root / 'node-runtime'}"],
                   check=True, stdout=subprocess.DEVNULL)


def store_uri_for_host() -> str:
    ip = json.loads(paths().info.read_text())["node_ip"]
    return f"mongodb://{ip}:{STORE_NODE_PORT}/"


def env_lines() -> list[str]:
    """Shell exports pointing levrt at the test cluster (``eval "$(python -m tests.cluster env)"``)."""
    from levrt import __version__
    from tests.cluster.images import busybox_ref

    return [
        f"export LEVRT_EXAMPLE_IMAGE={busybox_ref()}",
        f"export KUBECONFIG={paths().kubeconfig}",
        f"export LEVRT_NAMESPACE={NAMESPACE}",
        f"export LEVRT_STORE_URI={store_uri_for_host()}",
        f"export LEVRT_RUNTIME_IMAGE=levrt.local/runtime:{__version__}",
    ]


# --- down -----------------------------------------------------------------------------------

def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stop_component(name: str) -> None:
    pid = _pid(name)
    if pid is None:
        return
    _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    _kill(pid)


def _kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory, deepest first, across the v1 controllers."""
    found: list[Path] = []
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / "kubepods"
        if top.is_dir():
            found += [d for d in top.rglob("*") if d.is_dir()] + [top]
    return sorted(found, key=lambda d: len(d.parts), reverse=True)


def _kill_containers() -> None:
    sock = str(paths().containerd_sock)
    for _ in range(20):
        pids = set()
        for cg in _kubepods_cgroups():
            try:
                pids |= {int(x) for x in (cg / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmd = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"containerd-shim" in cmd and sock.encode() in cmd:
                    pids.add(int(proc.name))
        if not pids:
            break
        for pid in pids:
            _kill(pid)
        time.sleep(0.3)
    for cg in _kubepods_cgroups():
        try:
            cg.rmdir()
        except OSError:
            pass


def _mounts_under(prefixes: tuple[str, ...]) -> list[str]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target.startswith(prefixes):
            mounts.append(target)
    return sorted(set(mounts), key=len, reverse=True)


def _unmount_all(root: Path) -> None:
    prefixes = (str(root) + "/", "/run/netns/cni-", "/var/run/netns/cni-")
    for _ in range(5):
        targets = _mounts_under(prefixes)
        if not targets:
            break
        for t in targets:
            if subprocess.run(["umount", t], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", t], capture_output=True)
    for d in (Path("/run/netns"), Path("/var/run/netns")):
        for ns in d.glob("cni-*") if d.exists() else ():
            ns.unlink(missing_ok=True)


def _clean_iptables() -> None:
    """Remove every KUBE-*/CNI-* chain and the built-in-chain rules that jump to them."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("nat", "filter", "mangle"):
            out = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True)
            if out.returncode != 0:
                continue
            ours = lambda s: "KUBE-" in s or "CNI-" in s  # noqa: E731
            for rule in out.stdout.splitlines():
                if rule.startswith("-A ") and ours(rule) and not rule.split()[1].startswith(("KUBE-", "CNI-")):
                    subprocess.run([tool, "-t", table, "-D", *shlex.split(rule)[1:]], capture_output=True)
            chains = [r.split()[1] for r in out.stdout.splitlines()
                      if r.startswith("-N ") and r.split()[1].startswith(("KUBE-", "CNI-"))]
            for chain in chains:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
            for chain in chains:
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def _restore_sysctls(root: Path) -> None:
    saved_path = root / "sysctls.json"
    if not saved_path.exists():
        return
    for key, value in json.loads(saved_path.read_text()).items():
        try:
            (Path("/proc/sys") / key).write_text(value)
        except OSError:
            pass


def down() -> None:
    """Stop everything ``up`` started and remove what it created. Safe to run twice."""
    p = paths()
    progress("stopping the cluster")
    for name in reversed(COMPONENTS):
        _stop_component(name)
    ports = _bridge_ports()
    _kill_containers()
    _unmount_all(p.root)
    # A Pod's veth goes with its network namespace, which the kernel frees asynchronously after its last
    # process: seen left over for a moment after `down` returned. Deleting one end deletes the pair now.
    for veth in ports:
        subprocess.run(["ip", "link", "delete", veth], capture_output=True)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    _clean_iptables()
    subprocess.run(["conntrack", "-F"], capture_output=True)
    _restore_sysctls(p.root)
    _remove_state(p.root)
    progress("cluster stopped and its state removed")


def _bridge_ports() -> list[str]:
    """The host ends of the Pods' veths (the ports of the cluster's bridge)."""
    listed = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in listed.splitlines() if line.count(":") >= 2]


def _remove_state(root: Path) -> None:
    """Remove the state directory; retry while dying processes and lazy unmounts settle."""
    errors: list[str] = []
    for _ in range(10):
        if not root.exists():
            return
        errors.clear()
        shutil.rmtree(root, onerror=lambda _f, path, info: errors.append(f"{path}: {info[1]}"))
        if not root.exists():
            return
        _kill_containers()
        _unmount_all(root)
        time.sleep(0.5)
    raise ClusterError(f"could not remove {root}: " + "; ".join(errors[:5]))


def status() -> dict[str, object]:
    report: dict[str, object] = {name: ("running" if _pid(name) else "stopped") for name in COMPONENTS}
    report["healthy"] = healthy()
    report["kubeconfig"] = str(paths().kubeconfig)
    return report



def restart_apiserver(*, down_for: float = 0.0, timeout: float = 90.0) -> float:
    """Stop kube-apiserver (SIGTERM, then SIGKILL after 10 s), keep it down ``down_for`` seconds,
    start it again with the very command line it ran with, and wait for /readyz. Returns the seconds
    it did not answer. For fault tests: it is started again even if the wait is interrupted."""
    pid = _pid("kube-apiserver")
    if pid is None:
        raise ClusterError("kube-apiserver is not running (python3 -m tests.cluster status)")
    argv = [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]
    ip = json.loads(paths().info.read_text())["node_ip"]
    began = time.monotonic()
    _STARTED.pop("kube-apiserver", None)  # _exited() must look at the new process
    try:
        _stop_component("kube-apiserver")
        time.sleep(down_for)
    finally:
        if _pid("kube-apiserver") is None:
            _start("kube-apiserver", argv)
    _wait("kube-apiserver /readyz", lambda: _https_ok(f"https://{ip}:6443/readyz"), timeout=timeout,
          component="kube-apiserver")
    return time.monotonic() - began
