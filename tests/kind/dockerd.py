"""Start and stop a Docker daemon for the kind tier, and leave the host as it was found.

Why: the kind tier needs Docker, and the CI hosts have Debian's Docker engine package installed but no
init system to run it. We start ``dockerd`` ourselves (root, cgroupfs driver, normal bridge
networking and iptables, since kind maps ports) with its data, logs and pid under one
directory of ours; ``stop`` ends it and removes what it added to the host: its state
directory, its bridges, its iptables chains and rules, and the sysctls it flipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.cluster.log import progress

# The socket a user's Docker has: kind and `levrt up` then need no DOCKER_HOST.
SOCKET = Path("/var/run/docker.sock")
# Where Debian's docker client and dockerd live (a PATH without /usr/local/bin still finds them).
DOCKER_BIN_DIRS = ("/usr/bin", "/usr/sbin")
SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")


_STARTED: list[subprocess.Popen[bytes]] = []


class DockerError(RuntimeError):
    """Docker could not be started or stopped cleanly; the message says what to look at."""


def state_dir() -> Path:
    return Path(os.environ.get("LEVRT_KIND_STATE", "/var/tmp/levrt-kind"))


def docker_env() -> dict[str, str]:
    """The environment every docker/kind command of ours runs with. PATH stays the caller's: a
    newer docker client found first (28.x here) negotiates the daemon's older API by itself, and
    putting /usr/bin first would also swap the caller's python3."""
    path = ":".join([os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "/usr/sbin", "/sbin"])
    return dict(os.environ, PATH=path, DOCKER_HOST=f"unix://{SOCKET}")


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], env=docker_env(), text=True, check=False, capture_output=True)
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])} failed: {result.stderr.strip()[-400:]}")
    return result.stdout


def _pid() -> int | None:
    pidfile = state_dir() / "dockerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def running() -> bool:
    return _pid() is not None and docker("version", "--format", "{{.Server.Version}}", check=False).strip() != ""


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _read_sysctls() -> dict[str, str]:
    found = {}
    for name in SYSCTLS:
        path = Path("/proc/sys") / name
        if path.exists():
            found[name] = path.read_text().strip()
    return found


def _forward_policy() -> str:
    out = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0].split() if out else ["-P", "FORWARD", "ACCEPT"]
    return first[2]


def start() -> None:
    """Start dockerd unless ours already runs; wait until it answers."""
    if running():
        return
    if SOCKET.exists():
        probe = subprocess.run(["docker", "version"], env=docker_env(), capture_output=True, check=False)
        if probe.returncode == 0:
            raise DockerError(f"another Docker daemon answers on {SOCKET}; stop it first (not started by tests.kind)")
        SOCKET.unlink()
    root = state_dir()
    root.mkdir(parents=True, exist_ok=True)
    saved = root / "host-before.json"
    if not saved.exists():  # the first start records the host as it was; restarts keep that record
        saved.write_text(json.dumps({
            "links": sorted(_links()), "sysctls": _read_sysctls(), "forward_policy": _forward_policy(),
            "etc_docker": Path("/etc/docker").exists(),
        }))
    progress("starting dockerd (cgroupfs, bridge networking and iptables)")
    with (root / "dockerd.log").open("ab") as log:
        # Kept in _STARTED: a Popen dropped while its process runs warns (and warnings are errors in pytest).
        _STARTED.append(subprocess.Popen(
            ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "dockerd.pid"), "--host", f"unix://{SOCKET}",
             "--exec-opt", "native.cgroupdriver=cgroupfs", "--storage-driver", "overlay2",
             "--config-file", str(_daemon_json(root))],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=docker_env(), start_new_session=True,
        ))
    deadline = time.monotonic() + 60
    while not running():
        if time.monotonic() > deadline:
            tail = (root / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
            raise DockerError("dockerd did not answer within 60s:\n" + "\n".join(tail))
        time.sleep(0.5)
    progress(f"dockerd {docker('version', '--format', '{{.Server.Version}}').strip()} is up")


RUNC_BOUNDED = Path(__file__).resolve().parent / "files" / "runc-bounded"


def _daemon_json(root: Path) -> Path:
    """Our own config (a host /etc/docker/daemon.json cannot change the tier), whose default runtime
    is runc minus the capabilities this host withholds: every kind node is --privileged."""
    path = root / "daemon.json"
    path.write_text(json.dumps({
        "runtimes": {"runc-bounded": {"path": str(RUNC_BOUNDED)}},
        "default-runtime": "runc-bounded",
    }) + "\n")
    return path


def stop() -> None:
    """Stop dockerd and remove everything it and this tier added; safe to run twice."""
    root = state_dir()
    before_path = root / "host-before.json"
    before = json.loads(before_path.read_text()) if before_path.exists() else None
    pid = _pid()
    if pid is not None:
        progress("stopping dockerd")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    while _STARTED:  # reap the dockerd this process started (no zombie, no warning)
        with contextlib.suppress(subprocess.TimeoutExpired):
            _STARTED.pop().wait(timeout=10)
    _kill_leftover_shims(root)
    _unmount_under(root)
    _clean_iptables()
    if before is not None:
        for link in sorted(_links() - set(before["links"])):
            if link == "docker0" or re.fullmatch(r"br-[0-9a-f]{12}", link):
                subprocess.run(["ip", "link", "delete", link], check=False, capture_output=True)
        for name, value in before["sysctls"].items():
            (Path("/proc/sys") / name).write_text(value + "\n")
        subprocess.run(["iptables", "-P", "FORWARD", before["forward_policy"]], check=False)
        if not before["etc_docker"]:
            shutil.rmtree("/etc/docker", ignore_errors=True)
    if SOCKET.exists() or SOCKET.is_symlink():
        SOCKET.unlink()
    shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _kill_leftover_shims(root: Path) -> None:
    """Shims and containers outlive a killed dockerd; find them by their state paths under ``root``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def _unmount_under(root: Path) -> None:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    prefix = str(root) + "/"
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    for netns in Path("/run/docker/netns").glob("*") if Path("/run/docker/netns").exists() else ():
        subprocess.run(["umount", "-l", str(netns)], check=False, capture_output=True)
    shutil.rmtree("/run/docker", ignore_errors=True)


def _docker_rule(rule: str) -> bool:
    return bool(re.search(r"DOCKER|docker0|\bbr-[0-9a-f]{12}\b", rule))


def _clean_iptables() -> None:
    """Remove Docker's chains and every rule that names them or its bridges (nothing else)."""
    for table in ("filter", "nat"):
        dump = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=False).stdout
        for rule in dump.splitlines():
            if rule.startswith("-A ") and _docker_rule(rule) and not rule.split()[1].startswith("DOCKER"):
                subprocess.run(["iptables", "-t", table, "-D", *rule.split()[1:]], check=False, capture_output=True)
        chains = [r.split()[0][1:] for r in dump.splitlines() if r.startswith(":DOCKER")]
        for chain in chains:
            subprocess.run(["iptables", "-t", table, "-F", chain], check=False, capture_output=True)
        for chain in chains:
            subprocess.run(["iptables", "-t", table, "-X", chain], check=False, capture_output=True)
