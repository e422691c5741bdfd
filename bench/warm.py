"""Warm Pods: N trivial entries in a few warm Pods (``Cr(warm=...)``) against N bare Pods; latency once warm.

Why: a trivial task in a Pod of its own costs about a second of the node's work however fast levrt
submits it; warm Pods (``levrt._core.warm``) pay that once per Pod and hand each entry over through
the store. The sides run in worker processes of their own, one after the other on the same node, warm first:

- bare: N busybox Pods running ``echo ok``, created at once and deleted as each ends
  (``bench.fanout``'s bare side: the same client, the same rate limit);
- pods (``--pods``): N levrt tasks, a Pod each (``bench.fanout``'s levrt side);
- warm: N ``Cr(busybox, entry=trivial(), warm=PODS)`` at once through ``Concurrent`` (each entry
  writes ``ok=1``; the N records are counted once the clock stopped); then, the Pods warm,
  ``--latency`` entries one after another, each timed from ``await`` to its Document.

The entries write to a collection of the run's own, dropped at the end: on the test store (FerretDB
on SQLite) a record's write scans its collection, so earlier runs' records would slow this one.

Run (test cluster up, see tests/cluster/README.md):
    eval "$(python3 -m tests.cluster env)"
    python3 -m bench.warm --n 1000 --json bench/out/warm.json   # plot: bench/out/warm.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common
from bench.fanout import BUSYBOX, bare_side, levrt_side, summarize, trivial
from levrt import Concurrent, Cr

LABELS = {"bare": "bare Pods", "pods": "levrt, a Pod each", "warm": "levrt, warm Pods"}


async def warm_side(n: int, *, pods: int, latency_runs: int) -> dict[str, Any]:
    from levrt.run import session
    from levrt.settings import Settings

    schema = f"bench/warm-{uuid.uuid4().hex[:8]}@1.0"
    latencies: list[float] = []
    async with session(settings=Settings.from_env()) as engine:
        common.announce_cleanup(f"levrt.io/job={engine.job_id}")
        rss_before = common.rss_mb()

        async def one() -> None:
            await Cr(BUSYBOX, schema, entry=trivial(), warm=pods)
            latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        async with Concurrent() as c:
            for _ in range(n):
                c.start(one())
        wall = time.perf_counter() - began
        # Every record, read once after the clock: on the test store a read by record id scans the
        # collection, and 1,000 of them during the run would measure that, not the runs (bare Pods read nothing).
        written = await engine.store.count(schema, {"ok": 1, "_id.job": engine.job_id})
        assert written == n, f"{written} of {n} records written"
        warm: list[float] = []
        for _ in range(latency_runs):
            started = time.perf_counter()
            await Cr(BUSYBOX, schema, entry=trivial(), warm=pods)
            warm.append(time.perf_counter() - started)
        await engine.store.collection(schema).drop()
        limiter = engine.kube.limiter
        return {"wall": wall, "latencies": latencies, "warm_latencies": warm, "rss_before": rss_before,
                "limiter_delayed": limiter.delayed, "limiter_waited": limiter.waited,
                "retried": engine.kube.retried, "requests": limiter.granted,
                "made": sum(pool.made for pool in engine.warm.pools.values())}


def worker(side: str, n: int, pods: int, latency_runs: int) -> None:
    if side == "bare":
        result = asyncio.run(bare_side(n))
    elif side == "pods":
        result = asyncio.run(levrt_side(n, host_path=None))
    else:
        result = asyncio.run(warm_side(n, pods=pods, latency_runs=latency_runs))
    result["peak_rss"] = common.peak_rss_mb()
    result["client_cpu"] = common.cpu_seconds()
    common.emit(result)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for side, figures in result["sides"].items():
        lat = sorted(figures["latencies"])
        ax.step(lat, [(i + 1) / len(lat) for i in range(len(lat))], where="post",
                label=f"{LABELS[side]} (wall {figures['wall']:.1f}s)")
    ax.set_xscale("log")
    ax.set_title(f"{result['n']} trivial tasks at once on one node")
    ax.set_xlabel("seconds from the start to the task's end (log scale)")
    ax.set_ylabel("fraction of tasks done")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="tasks at once (default 1000)")
    parser.add_argument("--warm-pods", type=int, default=4, help="Cr(warm=...): the most warm Pods (default 4)")
    parser.add_argument("--latency", type=int, default=50, help="entries timed one by one once warm (default 50)")
    parser.add_argument("--pods", action="store_true", help="also run levrt with a Pod per task")
    parser.add_argument("--json", help="also write the figures to this file (the plot goes next to it)")
    parser.add_argument("--worker", choices=tuple(LABELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    common.cluster_env()
    if args.worker:
        worker(args.worker, args.n, args.warm_pods, args.latency)
        return
    try:  # fail now, not after minutes of measuring
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("bench.warm draws its plot with matplotlib: pip install -e '.[bench]'") from None
    workers = common.Workers("bench.warm")
    # Warm first: a thousand bare Pods leave the node busy tearing down their sandboxes for a while.
    sides = ["warm", "bare", *(["pods"] if args.pods else [])]
    result: dict[str, Any] = {"n": args.n, "image": BUSYBOX, "warm_pods": args.warm_pods, "sides": {}}
    try:
        for side in sides:
            print(f"== {args.n} tasks: {LABELS[side]}", flush=True)
            raw = workers.run(["--worker", side, "--n", str(args.n), "--warm-pods", str(args.warm_pods),
                               "--latency", str(args.latency)])
            figures = summarize(raw)
            if side == "warm":
                lat = raw["warm_latencies"]
                figures.update(warm_p50=statistics.median(lat), warm_p95=common.percentile(lat, 0.95),
                               warm_latencies=lat, pods_made=raw["made"])
            result["sides"][side] = figures
            print(f"   wall {figures['wall']:.2f}s  p50 {figures['p50']:.2f}s  p95 {figures['p95']:.2f}s", flush=True)
    finally:
        with contextlib.suppress(Exception):
            from levrt.settings import Settings

            asyncio.run(workers.cleanup(Settings.from_env().namespace))
    bare = result["sides"]["bare"]
    print()
    head = f"{'side':<20}{'wall':>9}{'ratio':>8}{'p50':>9}{'p95':>9}{'peak RSS':>11}{'requests':>10}"
    print(head)
    print("-" * len(head))
    for side, f in result["sides"].items():
        print(f"{LABELS[side]:<20}{f['wall']:>8.2f}s{f['wall'] / bare['wall']:>7.2f}x{f['p50']:>8.2f}s"
              f"{f['p95']:>8.2f}s{f['peak_rss_mb']:>8.1f}MiB{f['requests']:>10}")
    warm = result["sides"]["warm"]
    result["wall_ratio"] = warm["wall"] / bare["wall"]
    print(f"\nwarm / bare wall: {result['wall_ratio']:.3f}x (target <= 0.1x); {warm['pods_made']} warm Pods made")
    print(f"one entry at a time, Pods warm ({len(warm['warm_latencies'])} runs): p50 {warm['warm_p50'] * 1000:.0f} ms, "
          f"p95 {warm['warm_p95'] * 1000:.0f} ms (target p50 <= 100 ms)")
    if args.json:
        common.write_figures(args.json, result)
        plot(result, Path(args.json).with_suffix(".png"))
        print(f"figures: {args.json}; plot: {Path(args.json).with_suffix('.png')}")


if __name__ == "__main__":
    main()
