"""What the fan-out benchmarks share: percentiles, memory figures, the cluster's settings, workers.

Why workers: each side of a comparison (levrt, bare Pods, a raw create loop) runs in a child
process of its own, so its peak RSS (``ru_maxrss``) is its own and not the high-water mark left
by the side measured before it. The parent orders the runs, collects one JSON line from each
worker and prints the figures side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULT = "BENCH-RESULT "
"""The prefix of the line a worker prints its figures on (everything else is its log)."""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1), as bench/roundtrip.py computes it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage().ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time (user + system) this process used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cluster_env() -> None:
    """Fill in KUBECONFIG and the LEVRT_* settings of the test cluster when they are not set, as
    ``eval "$(python3 -m tests.cluster env)"`` would."""
    if os.environ.get("KUBECONFIG"):
        return
    try:
        out = subprocess.run([sys.executable, "-m", "tests.cluster", "env"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(
            f"No KUBECONFIG and no test cluster ({exc}). Run: eval \"$(python3 -m tests.cluster env)\""
        ) from exc
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            os.environ.setdefault(key, shlex.split(value)[0] if value else "")


def write_figures(path: str, result: dict[str, Any]) -> None:
    """Write a bench's figures as JSON (``--json``), creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
    print(f"figures: {path}")


def emit(result: dict[str, Any]) -> None:
    """Print a worker's figures for the parent."""
    print(RESULT + json.dumps(result), flush=True)


def announce_cleanup(selector: str) -> None:
    """Tell the parent which Pods to delete (label selector) should this worker die before it cleans up."""
    print(CLEANUP + selector, flush=True)


CLEANUP = "BENCH-CLEANUP "


class Workers:
    """Runs workers one at a time and remembers what they said to clean up after them."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.selectors: list[str] = []

    def run(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run ``python -m module ...args`` and return the figures it emitted; its log goes to our
        stderr. On Ctrl-C (or any error here) the worker gets SIGINT and 30 s to clean up."""
        cmd = [sys.executable, "-m", self.module, *args]
        result: dict[str, Any] | None = None
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(RESULT):
                    result = json.loads(line.removeprefix(RESULT))
                elif line.startswith(CLEANUP):
                    self.selectors.append(line.removeprefix(CLEANUP).strip())
                else:
                    sys.stderr.write(line)
            proc.wait()
        except BaseException:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
        if proc.returncode != 0 or result is None:
            raise SystemExit(f"worker {' '.join(cmd)} failed (exit {proc.returncode})")
        return result

    async def cleanup(self, namespace: str) -> int:
        """Delete every Pod a worker announced and left behind; returns how many."""
        from levrt._clients.kube import Kube, Limits
        from levrt._clients.submit import delete_pod
        from levrt._shapes.names import api_path

        left = 0
        async with await Kube.connect(limits=Limits(qps=0)) as kube:
            for selector in self.selectors:
                listing = await kube.request("GET", api_path("pods", namespace=namespace),
                                             query={"labelSelector": selector})
                names = [item["metadata"]["name"] for item in listing.get("items", [])]
                await asyncio.gather(*(delete_pod(kube, namespace, name) for name in names))
                left += len(names)
        return left


class Warnings(logging.Handler):
    """The warnings a logger gave while a bench ran (a status record not written, a log not archived):
    a figure is only as good as the run behind it."""

    def __init__(self, logger: str) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        logging.getLogger(logger).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 <worker pid>`` prints what every asyncio task of the running loop waits on."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        tasks = asyncio.all_tasks(loop)
        print(f"--- {len(tasks)} asyncio tasks", file=sys.stderr)
        seen: dict[str, int] = {}
        for task in tasks:
            frames = task.get_stack(limit=8)
            where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames)) or repr(task)
            seen[where] = seen.get(where, 0) + 1
        for where, count in sorted(seen.items(), key=lambda item: -item[1]):
            print(f"{count:>6}  {where}", file=sys.stderr)
        sys.stderr.flush()

    loop.add_signal_handler(signal.SIGUSR1, dump)


class GcTimer:
    """Seconds spent in the cyclic garbage collector, by generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._began
            self.runs[info["generation"]] += 1

    def figures(self) -> dict[str, Any]:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)
        return {"gc_seconds": sum(self.seconds), "gc_by_generation": self.seconds, "gc_runs": self.runs}


DAEMONS = ("kube-apiserver", "etcd", "kubelet", "containerd", "kube-controller", "kube-scheduler")
"""Host processes of the test cluster whose CPU time a fan-out costs (``comm`` as /proc shows it)."""

KUBEPODS = Path("/sys/fs/cgroup/cpuacct/kubepods")
"""The kubelet's Pod cgroups (cgroup v1, cgroupfs driver, as the test cluster runs them)."""


class NodeCpu:
    """Where the node's CPU went during a run: the cluster's daemons, the store Pod, every other Pod,
    and the rest (container shims, runc, the kernel, the bench's own client).

    Why: on a 2-core node a fan-out is CPU-bound, so the question "what does a levrt task cost beyond
    a bare Pod" is answered in CPU seconds by component. Readable only where the bench runs on the
    node itself (the test cluster); elsewhere ``available`` is false and no figures are given.
    """

    def __init__(self, store_pod_uid: str | None) -> None:
        self.store_pod_uid = store_pod_uid
        self.available = KUBEPODS.is_dir() and Path("/proc/stat").is_file()
        self._start: dict[str, float] = {}

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _daemons(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        seconds = dict.fromkeys(DAEMONS, 0.0)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                raw = stat.read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            if comm in seconds:
                fields = raw[raw.rindex(")") + 2:].split()
                seconds[comm] += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        return seconds

    def _pods(self) -> dict[str, float]:
        total = int((KUBEPODS / "cpuacct.usage").read_text()) / 1e9
        store = 0.0
        if self.store_pod_uid:
            for qos in ("", "burstable/", "besteffort/"):
                usage = KUBEPODS / f"{qos}pod{self.store_pod_uid}" / "cpuacct.usage"
                if usage.is_file():
                    store = int(usage.read_text()) / 1e9
        return {"store Pod": store, "other Pods": total - store}

    def snapshot(self) -> dict[str, float]:
        return {"busy": self._busy(), **self._daemons(), **self._pods()}

    def start(self) -> None:
        if self.available:
            self._start = self.snapshot()

    def stop(self) -> dict[str, float]:
        """CPU seconds by component since ``start`` (``other`` is the busy time nothing above explains)."""
        if not self.available or not self._start:
            return {}
        end = self.snapshot()
        spent = {key: max(0.0, end[key] - self._start[key]) for key in end}
        named = sum(value for key, value in spent.items() if key != "busy")
        spent["other"] = max(0.0, spent["busy"] - named)
        return spent
