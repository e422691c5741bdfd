"""Fan-out: N trivial levrt tasks at once against N bare Pods running the same trivial command.

Why: bench/roundtrip.py measures one task at a time; a scan starts hundreds at once through
``Concurrent``, where what counts is the client under load: its submits (three requests a task),
its one watch, its rate limit, its memory. Each side runs in a worker process of its own, one
after the other on the same node, so the wall times compare and each peak RSS is its own:

- levrt: ``session()`` + ``Concurrent()`` over N ``Cr(busybox, entry=trivial())`` (the entry
  writes ``ok=1`` to the store) in the default runtime mode (the image volume where the cluster
  has it), again with the runtime copied into the Pod (the fallback; ``--no-copy`` skips
  it), and with the chart's node cache (``runtime_host_path``) if asked (``--cache``);
- bare: the same client (``Kube``, same rate limit) creates N busybox Pods running ``echo ok``,
  follows them through one ``PodWatch`` and deletes each when it ended.

Per-task latency is from the start of the fan-out to the task's end (Pod deleted), so p50/p95
show how the batch drains; memory is the worker's peak RSS (``getrusage().ru_maxrss``, MiB).

Run (test cluster up, see tests/cluster/README.md):
    eval "$(python3 -m tests.cluster env)"
    python3 -m bench.fanout --n 60 200 --json bench/out/fanout.json   # plot: bench/out/fanout.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import levrt
from bench import common
from levrt import Concurrent, Cr, lev

BUSYBOX = os.environ.get("LEVRT_TEST_BUSYBOX") or os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")
SIDES = ("bare", "levrt", "levrt-copy", "levrt-cache")
LABELS = {"bare": "bare Pods", "levrt": "levrt (default)", "levrt-copy": "levrt, copy",
          "levrt-cache": "levrt, node cache"}


@levrt.remote
def trivial() -> None:
    lev.set(ok=1)


# -- workers ----------------------------------------------------------------------------------------


async def levrt_side(n: int, *, host_path: str | None, mode: str = "auto") -> dict[str, Any]:
    from levrt.run import session
    from levrt.settings import Settings

    settings = Settings.from_env().replace(runtime_host_path=host_path, runtime_mode=mode)
    latencies: list[float] = []
    # A collection of this run's own, dropped at the end: on the test store (FerretDB on SQLite)
    # a write to a record scans its collection, so records of earlier runs would slow this one.
    schema = f"bench/fanout-{uuid.uuid4().hex[:8]}@1.0"
    async with session(settings=settings) as engine:
        common.announce_cleanup(f"levrt.io/job={engine.job_id}")
        rss_before = common.rss_mb()

        async def one() -> None:
            doc = await Cr(BUSYBOX, schema, entry=trivial())
            latencies.append(time.perf_counter() - began)
            assert (await doc.get()) == {"ok": 1}

        began = time.perf_counter()
        async with Concurrent() as c:
            for _ in range(n):
                c.start(one())
        wall = time.perf_counter() - began
        await engine.store.collection(schema).drop()
        limiter = engine.kube.limiter
        return {"wall": wall, "latencies": latencies, "rss_before": rss_before,
                "limiter_delayed": limiter.delayed, "limiter_waited": limiter.waited,
                "retried": engine.kube.retried, "requests": limiter.granted, "mode": engine.runtime.mode}


async def bare_side(n: int) -> dict[str, Any]:
    from levrt._clients.kube import Kube
    from levrt._clients.submit import delete_pod
    from levrt._clients.watch import PodWatch
    from levrt._shapes.names import api_path
    from levrt._shapes.podstatus import container_status, finished
    from levrt.settings import Settings

    ns = Settings.from_env().namespace
    run = uuid.uuid4().hex[:8]
    selector = f"levrt.io/bench=fanout-{run}"
    common.announce_cleanup(selector)
    latencies: list[float] = []
    async with await Kube.connect() as kube:
        watch = PodWatch(kube, namespace=ns, selector=selector)
        await watch.start()
        rss_before = common.rss_mb()

        async def one(index: int) -> None:
            name = f"lev-bench-fan-{run}-{index}"
            body = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "levrt",
                                                      "levrt.io/bench": f"fanout-{run}"}},
                "spec": {
                    "restartPolicy": "Never", "enableServiceLinks": False, "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                    "command": ["sh", "-c", "echo ok"]}],
                },
            }
            await kube.request("POST", api_path("pods", namespace=ns), body=body)
            pod = await watch.wait(name, finished, timeout=600)
            assert container_status(pod)["state"]["terminated"]["exitCode"] == 0
            await delete_pod(kube, ns, name)
            watch.forget(name)
            latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await watch.close()
        wall = time.perf_counter() - began
        return {"wall": wall, "latencies": latencies, "rss_before": rss_before,
                "limiter_delayed": kube.limiter.delayed, "limiter_waited": kube.limiter.waited,
                "retried": kube.retried, "requests": kube.limiter.granted}


def worker(side: str, n: int, host_path: str | None) -> None:
    if side == "bare":
        result = asyncio.run(bare_side(n))
    else:
        result = asyncio.run(levrt_side(n, host_path=host_path if side == "levrt-cache" else None,
                                        mode="copy" if side == "levrt-copy" else "auto"))
    result["peak_rss"] = common.peak_rss_mb()
    result["client_cpu"] = common.cpu_seconds()
    common.emit(result)


# -- the parent -------------------------------------------------------------------------------------


async def node_cache_path() -> str | None:
    """The chart's runtime node cache directory, if the platform has it enabled."""
    from levrt._clients.api import ApiError
    from levrt._clients.kube import Kube
    from levrt.settings import Settings

    ns = Settings.from_env().namespace
    async with await Kube.connect() as kube:
        try:
            cm = await kube.request("GET", f"/api/v1/namespaces/{ns}/configmaps/levrt-settings")
        except ApiError:
            return None
    return cm.get("data", {}).get("LEVRT_RUNTIME_HOST_PATH") or None


async def store_pod_uid() -> str | None:
    """The uid of the chart's store Pod, whose CPU time the node figures count apart."""
    from levrt._clients.kube import Kube
    from levrt._shapes.names import api_path
    from levrt.settings import Settings

    async with await Kube.connect() as kube:
        listing = await kube.request("GET", api_path("pods", namespace=Settings.from_env().namespace),
                                     query={"labelSelector": "app.kubernetes.io/component=store"})
    items = listing.get("items", [])
    return str(items[0]["metadata"]["uid"]) if items else None


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    lat = raw["latencies"]
    return {"wall": raw["wall"], "p50": statistics.median(lat), "p95": common.percentile(lat, 0.95),
            "peak_rss_mb": raw["peak_rss"], "rss_before_mb": raw["rss_before"], "tasks": len(lat),
            "requests": raw["requests"], "limiter_delayed": raw["limiter_delayed"],
            "limiter_waited_s": raw["limiter_waited"], "retried": raw["retried"], "latencies": lat,
            "client_cpu_s": raw["client_cpu"], "node_cpu_s": raw.get("node_cpu", {}),
            **({"mode": raw["mode"]} if "mode" in raw else {})}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(result["n"], key=int)
    fig, axes = plt.subplots(1, len(ns), figsize=(6 * len(ns), 4.5), squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        for side, figures in result["n"][n].items():
            lat = sorted(figures["latencies"])
            ax.step(lat, [(i + 1) / len(lat) for i in range(len(lat))], where="post",
                    label=f"{LABELS[side]} (wall {figures['wall']:.1f}s)")
        ax.set_title(f"{n} trivial tasks at once")
        ax.set_xlabel("seconds from the start of the fan-out to the task's end")
        ax.set_ylabel("fraction of tasks done")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("levrt fan-out vs bare Pods: per-task latency (ECDF)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def print_table(result: dict[str, Any]) -> None:
    print()
    head = f"{'N':>5} {'side':<19}{'wall':>9}{'p50':>9}{'p95':>9}{'peak RSS':>11}{'waited':>9}{'429s':>6}"
    print(head)
    print("-" * len(head))
    for n in sorted(result["n"], key=int):
        for side, f in result["n"][n].items():
            print(f"{n:>5} {LABELS[side]:<19}{f['wall']:>8.2f}s{f['p50']:>8.2f}s{f['p95']:>8.2f}s"
                  f"{f['peak_rss_mb']:>8.1f}MiB{f['limiter_waited_s']:>8.1f}s{f['retried']:>6}")
        for side in SIDES[1:]:
            if side in result["ratios"][n]:
                r = result["ratios"][n][side]
                print(f"{'':>5} {'ratio ' + side:<19}{r['wall_ratio']:>8.2f}x{r['p50_ratio']:>8.2f}x"
                      f"{r['p95_ratio']:>8.2f}x   (levrt / bare; target wall <= 1.25x)")
    print("peak RSS: getrusage(RUSAGE_SELF).ru_maxrss of each worker process; waited: seconds requests "
          "spent in the client's rate limit, summed")
    print_cpu(result)


def print_cpu(result: dict[str, Any]) -> None:
    """CPU seconds by component: what a levrt task costs the node beyond a bare Pod."""
    rows = [(n, side, f) for n in sorted(result["n"], key=int) for side, f in result["n"][n].items()
            if f["node_cpu_s"]]
    if not rows:
        print("node CPU: not measured (the bench does not run on the cluster's node)")
        return
    parts = [key for key in rows[0][2]["node_cpu_s"] if key != "busy"]
    print()
    head = f"{'N':>5} {'side':<19}{'busy':>8}{'client':>8}" + "".join(f"{p[:12]:>13}" for p in parts)
    print(head)
    print("-" * len(head))
    for n, side, f in rows:
        cpu = f["node_cpu_s"]
        print(f"{n:>5} {LABELS[side]:<19}{cpu['busy']:>8.1f}{f['client_cpu_s']:>8.1f}"
              + "".join(f"{cpu[p]:>13.1f}" for p in parts))
    print("node CPU seconds during each side (from /proc and the kubelet's cgroups); 'other Pods' are the "
          "tasks' containers, 'other' is shims, runc, the kernel and the bench client ('client')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[60, 200], help="tasks at once (default: 60 200)")
    parser.add_argument("--json", help="also write the figures to this file (the plot goes next to it)")
    parser.add_argument("--plot", help="where to write the PNG (default: next to --json, or bench/out/fanout.png)")
    parser.add_argument("--cache", action="store_true", help="also run levrt with the chart's node cache")
    parser.add_argument("--no-copy", action="store_true", help="skip the levrt run in copy mode")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--host-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    common.cluster_env()
    if args.worker:
        worker(args.worker, args.n[0], args.host_path)
        return

    try:  # fail now, not after minutes of measuring
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("bench.fanout draws its plot with matplotlib: pip install -e '.[bench]'") from None
    host_path = asyncio.run(node_cache_path()) if args.cache else None
    meter = common.NodeCpu(asyncio.run(store_pod_uid()))
    sides = ["bare", "levrt"] + ([] if args.no_copy else ["levrt-copy"]) + (["levrt-cache"] if host_path else [])
    workers = common.Workers("bench.fanout")
    result: dict[str, Any] = {"image": BUSYBOX, "memory": "peak RSS (ru_maxrss) of each worker process, MiB",
                              "n": {}, "ratios": {}, "wall_ratio": {}, "p50_ratio": {}, "p95_ratio": {}}
    try:
        for n in args.n:
            figures: dict[str, Any] = {}
            for side in sides:
                print(f"== {n} tasks: {LABELS[side]}", flush=True)
                extra = ["--host-path", host_path] if side == "levrt-cache" and host_path else []
                meter.start()
                raw = workers.run(["--worker", side, "--n", str(n), *extra])
                raw["node_cpu"] = meter.stop()
                figures[side] = summarize(raw)
                f = figures[side]
                print(f"   wall {f['wall']:.2f}s  p50 {f['p50']:.2f}s  p95 {f['p95']:.2f}s  "
                      f"peak RSS {f['peak_rss_mb']:.1f} MiB", flush=True)
            key = str(n)
            result["n"][key] = figures
            result["ratios"][key] = {
                side: {"wall_ratio": figures[side]["wall"] / figures["bare"]["wall"],
                       "p50_ratio": figures[side]["p50"] / figures["bare"]["p50"],
                       "p95_ratio": figures[side]["p95"] / figures["bare"]["p95"]}
                for side in sides if side != "bare"
            }
            for name in ("wall_ratio", "p50_ratio", "p95_ratio"):
                result[name][key] = result["ratios"][key]["levrt"][name]
    finally:
        with contextlib.suppress(Exception):
            from levrt.settings import Settings

            left = asyncio.run(workers.cleanup(Settings.from_env().namespace))
            if left:
                print(f"cleaned up {left} Pod(s) a worker left behind")
    print_table(result)
    png = Path(args.plot or (Path(args.json).with_suffix(".png") if args.json else "bench/out/fanout.png"))
    plot(result, png)
    print(f"plot: {png}")
    if args.json:
        common.write_figures(args.json, result)


if __name__ == "__main__":
    main()
