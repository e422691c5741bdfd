"""The fault suite at full count: ``python3 -m bench.faults [FAULT] [--runs N]``.

Why a script beside tests/faults: the issue's fault table asks for figures over many repetitions
(20 kills of a client, each a 20-task job), which would make the cluster tier too long; the tests
run a few and this prints the figure over the full count. Faults register by name in ``FAULTS``;
each is a function taking the number of runs and printing its figure (other faults may join).

Needs the test cluster (``eval "$(python3 -m tests.cluster env)"``) and, as tests do, its lock:
``flock -s /tmp/levrt-cluster.lock python3 -m bench.faults client-kill``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

FAULTS: dict[str, Callable[[int], int]] = {}


def fault(name: str) -> Callable[[Callable[[int], int]], Callable[[int], int]]:
    def register(func: Callable[[int], int]) -> Callable[[int], int]:
        FAULTS[name] = func
        return func
    return register


# -- client kill -9 (jobs own their objects) ---------------------------------------------------------


@fault("client-kill")
def client_kill(runs: int) -> int:
    """Kill a client with SIGKILL during a 20-task job, ``runs`` times: objects left after the
    Lease's expiry and the reaper's period (target 0), and the seconds each cleanup took."""
    from tests.cluster.images import busybox_ref
    from tests.cluster.node import NAMESPACE, paths, store_uri_for_host
    from tests.faults.client_killed import LEASE_SECONDS, REAPER_PERIOD, ensure_reaper, kill_client, summary
    from tests.runtime.image import build_runtime_image

    image = build_runtime_image()
    kubeconfig = str(paths().kubeconfig)
    ensure_reaper(kubeconfig, NAMESPACE)
    env = dict(os.environ, KUBECONFIG=kubeconfig, LEVRT_NAMESPACE=NAMESPACE, LEVRT_STORE_URI=store_uri_for_host(),
               LEVRT_RUNTIME_IMAGE=image, LEVRT_EXAMPLE_IMAGE=busybox_ref())
    results = []
    for run in range(runs):
        result = kill_client(env, tasks=20, kill_after=5)
        results.append(result)
        print(f"run {run + 1:2d}: job {result.job}, {result.started} running at the kill, "
              f"{len(result.left)} left, {result.seconds:.1f}s" + (f" {result.left}" if result.left else ""),
              flush=True)
    print(f"client kill -9 (lease {LEASE_SECONDS}s, reaper period {REAPER_PERIOD}s): {summary(results)}")
    return 1 if any(r.left for r in results) else 0


# -- the store (bench/store_faults.py; disrupts the store: run under the EXCLUSIVE lock, flock -x) ---


@fault("store-outage")
def store_outage(runs: int) -> int:
    """The store scaled to 0 for the full 120 s while a task writes every second: records lost (target 0)."""
    return _store_fault("outage", runs)


@fault("store-restart")
def store_restart(runs: int) -> int:
    """The store's Pod deleted after a 5-task job: records lost (target 0)."""
    return _store_fault("restart", runs)


def _store_fault(kind: str, runs: int) -> int:
    import asyncio

    from bench import store_faults
    from bench.common import cluster_env
    from levrt.settings import Settings

    cluster_env()
    settings, kubeconfig = Settings.from_env(), os.environ["KUBECONFIG"]
    lost = 0
    for _ in range(runs if kind == "restart" else 1):  # one two-minute outage is the figure asked
        figures = asyncio.run(store_faults.store_outage(settings, kubeconfig, outage=120.0) if kind == "outage"
                              else store_faults.store_restart(settings, kubeconfig))
        print(" ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
        lost += int(figures["lost"])
    return 1 if lost else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*",
                        help=f"which faults (default: all): {', '.join(sorted(FAULTS))}")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    unknown = [name for name in args.faults if name not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; known: {', '.join(sorted(FAULTS))}")
    status = 0
    for name in args.faults or sorted(FAULTS):
        status |= FAULTS[name](args.runs)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
