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
