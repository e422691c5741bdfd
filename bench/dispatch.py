"""Dispatch at scale on KWOK fake nodes: levrt against a raw create loop, 1,000 and 5,000 tasks.

Why: on fake nodes nothing runs, so what is measured is the client and the apiserver path alone
(build, submit, watch, cleanup), at a scale the one real test node cannot hold. KWOK (built by
``python3 -m tests.cluster build``) runs as a process against the test cluster's apiserver and
plays the kubelet of the fake Nodes this script creates (annotation ``kwok.x-k8s.io/node: fake``,
label ``levrt.io/bench-node: kwok``, taint ``kwok.x-k8s.io/node=fake:NoSchedule`` so nothing
else lands there). Its Stages take a Pod managed by levrt to Running with a podIP (init
containers completed) and, ``RUN_MS`` later, to Succeeded with every container terminated with exit code 0;
KWOK's stock stages only complete Job-owned Pods.

Both sides run in worker processes of their own, with the same client (``Kube``, same rate
limit), at most ``--inflight`` tasks at once, one watch each:

- levrt: ``session()`` + ``Concurrent(limit=inflight)`` over N ``Cr(busybox, entry=trivial())``
  with ``Settings(node_selector=..., tolerations=...)`` (payload Secret, then the Pod; ended Pods
  and their payload Secrets swept in batches; three status changes per task, written to the store
  in batches). No runtime runs on a fake node, so a stand-in (``report_ends``) writes to the store
  what each task's runtime would report at its end (``levrt.endreports``: exit 0, an empty output,
  signed with the task's key) once the Pod runs: a real task's output reaches the archive that way,
  without a log read from the apiserver;
- raw: plain POSTs of the same Pod (the builder's Pod), its end seen on one
  ``PodWatch``, then a DELETE: the least a client must do for the same outcome.

Reported: tasks/s overall (N / wall) and sustained (between 10% and 90% of tasks done), the
client's peak RSS and its RSS while ``--inflight`` tasks were in flight (sampled from
/proc/self/statm), and what the rate limit held back. Everything created (fake Nodes and their
Leases, Pods, the kwok process, its temp dir) is removed at the end, on failure and on Ctrl-C.

Run (test cluster up):
    eval "$(python3 -m tests.cluster env)"
    python3 -m bench.dispatch --n 1000 5000 --json bench/out/dispatch.json
    LEVRT_KUBE_QPS=... or --qps/--burst: the client's rate limit for both sides (default: levrt's)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import glob
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import levrt
from bench import common
from levrt import Concurrent, Cr, lev

BUSYBOX = os.environ.get("LEVRT_TEST_BUSYBOX") or os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")
NODE_LABEL = "levrt.io/bench-node"
NODE_PREFIX = "levrt-kwok-"
TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
SIDES = ("raw", "levrt")
RUN_MS = 1000
"""How long a fake Pod runs (Running to Succeeded), on both sides: time for the stand-in of the runtime's
end report, far less than 1,000 tasks in flight take at the client's rate."""

# The Ready conditions a fake Node starts with and renews (two Stages share them).
NODE_CONDITIONS = """\
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
"""
# Pods levrt manages and nobody is deleting (two Stages share them).
LEVRT_POD = """\
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.metadata.labels["app.kubernetes.io/managed-by"]'
      operator: 'In'
      values: ['levrt']
"""

# Pods managed by levrt, pending on a fake node: Running at once, with a podIP, init containers done.
STAGES = """
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 32
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 4
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
@NODE_CONDITIONS@
      addresses:
      - address: {{ NodeIP | Quote }}
        type: InternalIP
      - address: {{ .metadata.name | Quote }}
        type: Hostname
      allocatable:
      {{ YAML .status.allocatable 1 }}
      capacity:
      {{ YAML .status.capacity 1 }}
      nodeInfo:
        architecture: amd64
        kubeletVersion: fake
        operatingSystem: linux
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values: ['True']
  delay:
    durationMilliseconds: 20000
    jitterDurationMilliseconds: 25000
  next:
    statusTemplate: |
@NODE_CONDITIONS@
  immediateNextStage: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: levrt-pod-running
spec:
@LEVRT_POD@
    - key: '.status.podIP'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      {{ $meta := .metadata }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or $meta.uid "" )
        ( or $meta.name "" ) ( or $meta.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: levrt-pod-succeeded
spec:
@LEVRT_POD@
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
  delay:
    durationMilliseconds: @RUN_MS@
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    finalizers: {empty: true}
    delete: true
""".replace("@NODE_CONDITIONS@\n", NODE_CONDITIONS).replace("@LEVRT_POD@\n", LEVRT_POD).replace(
    "@RUN_MS@", str(RUN_MS))


@levrt.remote
def trivial() -> None:
    lev.set(ok=1)  # never runs on a fake node: the Pod only looks as if it did


def fake_settings() -> Any:
    from levrt.settings import Settings

    return Settings.from_env().replace(
        node_selector={NODE_LABEL: "kwok"}, tolerations=(TOLERATION,), runtime_host_path=None,
        schedule_timeout=3600.0, start_timeout=3600.0,
    )


# -- workers ----------------------------------------------------------------------------------------


class Progress:
    """Tasks in flight and done over time, and the client's RSS, sampled every 0.25 s."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.inflight = 0
        self.done: list[float] = []
        self.samples: list[tuple[float, float, int, int]] = []  # (t, rss MiB, in flight, done)
        self.began = time.perf_counter()
        self.memory: list[str] | None = None
        """With ``--memory``: the largest allocation sites once the most tasks were in flight."""

    def start(self) -> None:
        self.inflight += 1

    def end(self) -> None:
        self.inflight -= 1
        self.done.append(time.perf_counter() - self.began)

    async def sample(self, *, inflight: int = 0) -> None:
        while True:
            self.samples.append((time.perf_counter() - self.began, common.rss_mb(), self.inflight, len(self.done)))
            if self.inflight >= inflight and tracemalloc.is_tracing() and self.memory is None:
                self.memory = memory_sites(tracemalloc.take_snapshot())
            await asyncio.sleep(0.25)

    def figures(self, n: int, inflight: int) -> dict[str, Any]:
        done = sorted(self.done)
        wall = done[-1] if done else float("nan")
        i10, i90 = int(0.1 * (len(done) - 1)), int(0.9 * (len(done) - 1))
        full = [rss for _, rss, flying, _ in self.samples if flying >= min(inflight, n)]
        return {
            "cpu": common.cpu_seconds() - self.cpu,
            "tasks": len(done), "wall": wall, "rate": len(done) / wall,
            "sustained_rate": (i90 - i10) / (done[i90] - done[i10]) if done[i90] > done[i10] else None,
            "max_inflight": max((s[2] for s in self.samples), default=0),
            "rss_at_inflight": max(full) if full else None,
            "samples": self.samples,
            "memory": self.memory,
        }


async def levrt_side(n: int, inflight: int) -> dict[str, Any]:
    from levrt.run import session

    common.dump_tasks_on_sigusr1()
    progress = Progress()
    warned = common.Warnings("lev")
    async with session(settings=fake_settings()) as engine:
        common.announce_cleanup(f"levrt.io/job={engine.job_id}")
        rss_before = common.rss_mb()

        async def one() -> None:
            progress.start()
            await Cr(BUSYBOX, entry=trivial())
            progress.end()

        sampler = asyncio.get_running_loop().create_task(progress.sample(inflight=min(n, inflight)))
        reporter = asyncio.get_running_loop().create_task(report_ends(engine))
        progress.began, progress.cpu = time.perf_counter(), common.cpu_seconds()
        try:
            async with Concurrent(limit=inflight) as c:
                for _ in range(n):
                    c.start(one())
        finally:
            sampler.cancel()
            reporter.cancel()
        figures = progress.figures(n, inflight)
        closing = time.perf_counter()
    figures["close"] = time.perf_counter() - closing  # the store's records written, the watch closed
    limiter, kube = engine.kube.limiter, engine.kube
    return {**figures, "rss_before": rss_before, "requests": limiter.granted, "limiter_delayed": limiter.delayed,
            "limiter_waited": limiter.waited, "retried": kube.retried, "job": engine.job_id,
            "status_writes": engine.status.writes, "warnings": warned.messages}


async def report_ends(engine: Any) -> None:
    """The stand-in of each task runtime's end report (``levrt.endreports``): on a fake node no runtime
    runs, so once a Pod runs this writes what its runtime would have, signed with the task's key. The
    writes go to the store, not the apiserver, as the runtime's do."""
    from levrt._shapes.names import TASK_LABEL
    from levrt.endreports import COLLECTION, signed_report

    reported: set[str] = set()
    reports = engine.store.collection(COLLECTION)
    while True:
        await asyncio.sleep(0.1)
        batch = []
        for pod in engine.watch.pods():
            name = pod["metadata"]["name"]
            if name in reported or pod.get("status", {}).get("phase") != "Running" or not engine.ends.expects(name):
                continue
            task = int(pod["metadata"]["labels"][TASK_LABEL])
            batch.append(signed_report(engine.ends.key(task), pod=name, job=engine.job_id, task=task, exit=0,
                                       output=b""))
            reported.add(name)
        if batch:
            await reports.insert_many(batch)


async def raw_side(n: int, inflight: int) -> dict[str, Any]:
    from levrt._clients.kube import Kube
    from levrt._clients.submit import delete_pod
    from levrt._clients.watch import PodWatch
    from levrt._shapes.build import build_task
    from levrt._shapes.names import api_path, job_selector
    from levrt._shapes.podstatus import finished

    common.dump_tasks_on_sigusr1()
    settings = fake_settings()
    ns = settings.namespace
    job = random.randrange(10**8, 10**9)  # no real job has such an id: its own selector
    template = build_task(Cr(BUSYBOX, entry=trivial()), job=job, task=0, collection="default",
                          settings=settings).pod
    selector = job_selector(job)
    common.announce_cleanup(selector)
    progress = Progress()
    semaphore = asyncio.Semaphore(inflight)
    path = api_path("pods", namespace=ns)
    async with await Kube.connect() as kube:
        watch = PodWatch(kube, namespace=ns, selector=selector)
        await watch.start()
        rss_before = common.rss_mb()

        async def one(index: int) -> None:
            async with semaphore:
                progress.start()
                body = copy.deepcopy(template)
                name = body["metadata"]["name"] = f"lev-j{job}-t{index}"
                body["metadata"]["labels"]["levrt.io/task"] = str(index)
                await kube.request("POST", path, body=body)
                await watch.wait(name, finished)
                await delete_pod(kube, ns, name)
                watch.forget(name)
                progress.end()

        sampler = asyncio.get_running_loop().create_task(progress.sample(inflight=min(n, inflight)))
        progress.began, progress.cpu = time.perf_counter(), common.cpu_seconds()
        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            sampler.cancel()
            await watch.close()
        figures = progress.figures(n, inflight)
        limiter = kube.limiter
        return {**figures, "close": 0.0, "rss_before": rss_before, "requests": limiter.granted,
                "limiter_delayed": limiter.delayed, "limiter_waited": limiter.waited, "retried": kube.retried}


def memory_sites(snapshot: tracemalloc.Snapshot, top: int = 15) -> list[str]:
    """The ``top`` source lines holding the most memory, one line each (size, blocks, where)."""
    stats = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("lineno")
    return [f"{stat.size / 2**20:7.2f} MiB {stat.count:8d} {stat.traceback[0].filename}:{stat.traceback[0].lineno}"
            for stat in stats[:top]]


def worker(side: str, n: int, inflight: int, *, memory: bool = False) -> None:
    if memory:  # slows every allocation: for finding where memory goes, not for the rates
        tracemalloc.start()
    run = raw_side if side == "raw" else levrt_side
    gc = common.GcTimer()
    result = asyncio.run(run(n, inflight))
    result.update(gc.figures())
    result["peak_rss"] = common.peak_rss_mb()
    common.emit(result)


# -- the fake nodes and kwok --------------------------------------------------------------------------


def kwok_binary() -> str:
    cache = os.environ.get("LEVRT_CACHE") or os.path.expanduser("~/.cache/levrt")
    found = sorted(glob.glob(os.path.join(cache, "gotools", "kwok-*", "bin", "kwok")), key=os.path.getmtime)
    if not found:
        raise SystemExit("No kwok binary: build it with `python3 -m tests.cluster build`.")
    return found[-1]


def fake_node(name: str, pods: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {NODE_LABEL: "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "kwok"},
        },
        "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "1k", "memory": "1Ti", "pods": str(pods)},
            "capacity": {"cpu": "1k", "memory": "1Ti", "pods": str(pods)},
        },
    }


class FakeCluster:
    """The kwok process and the fake Nodes; ``close`` removes both (idempotent)."""

    def __init__(self, nodes: int, pods_per_node: int) -> None:
        self.names = [f"{NODE_PREFIX}{i}" for i in range(nodes)]
        self.pods_per_node = pods_per_node
        self.tmp = tempfile.TemporaryDirectory(prefix="levrt-kwok-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(self.tmp.name) / "kwok.log"

    async def open(self) -> None:
        from levrt._clients.api import Conflict
        from levrt._clients.kube import Kube, Limits

        config = Path(self.tmp.name) / "kwok.yaml"
        config.write_text(STAGES)
        self.proc = subprocess.Popen(
            [kwok_binary(), f"--kubeconfig={os.environ['KUBECONFIG']}", f"--config={config}",
             "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
             "--node-lease-duration-seconds=40", "--node-ip=10.255.255.1"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        async with await Kube.connect(limits=Limits(qps=0)) as kube:
            for name in self.names:
                try:
                    await kube.request("POST", "/api/v1/nodes", body=fake_node(name, self.pods_per_node))
                except Conflict:
                    pass  # left by an earlier run that could not clean up: kwok takes it over
            deadline = time.monotonic() + 60
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(f"kwok exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
                ready = 0
                for name in self.names:
                    node = await kube.request("GET", f"/api/v1/nodes/{name}")
                    conditions = node.get("status", {}).get("conditions", [])
                    ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
                if ready == len(self.names):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"fake nodes not Ready after 60 s; kwok log:\n{self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.5)

    async def close(self, workers: common.Workers, namespace: str) -> None:
        """Stop kwok, then delete the Pods workers left, the fake Nodes and their Leases; while the
        apiserver is unreachable (a restart), keep trying for up to two minutes."""
        from levrt._clients.api import NotFound
        from levrt._clients.kube import Kube, Limits
        from levrt.errors import ClusterError

        try:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
        finally:
            self.tmp.cleanup()
        deadline = time.monotonic() + 120
        while True:
            try:
                left = await workers.cleanup(namespace)
                if left:
                    print(f"cleaned up {left} Pod(s) a worker left behind", file=sys.stderr)
                async with await Kube.connect(limits=Limits(qps=0)) as kube:
                    for name in self.names:
                        for path in (f"/api/v1/nodes/{name}",
                                     f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"):
                            with contextlib.suppress(NotFound):
                                await kube.request("DELETE", path)
                return
            except ClusterError as exc:
                if time.monotonic() > deadline:
                    print(f"could not clean up the fake nodes ({exc}); delete the Nodes {NODE_PREFIX}* "
                          "by hand", file=sys.stderr)
                    raise
                print(f"cleanup: {exc}; retrying", file=sys.stderr)
                await asyncio.sleep(5)


# -- the parent -------------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    print()
    head = (f"{'N':>6} {'side':<7}{'wall':>9}{'tasks/s':>9}{'sustained':>11}{'peak RSS':>11}"
            f"{'RSS@inflight':>14}{'requests':>10}{'held':>9}{'429s':>6}")
    print(head)
    print("-" * len(head))
    for n, sides in result["n"].items():
        for side, f in sides.items():
            at = f"{f['rss_at_inflight']:.1f}MiB" if f["rss_at_inflight"] else "-"
            sustained = f"{f['sustained_rate']:.1f}" if f["sustained_rate"] else "-"
            print(f"{n:>6} {side:<7}{f['wall']:>8.1f}s{f['rate']:>9.1f}{sustained:>11}{f['peak_rss']:>8.1f}MiB"
                  f"{at:>14}{f['requests']:>10}{f['limiter_waited'] / max(1, f['tasks']):>8.2f}s{f['retried']:>6}")
        r = result["ratios"][n]
        print(f"{'':>6} {'ratio':<7}{'':>9}{r['rate_ratio']:>8.2f}x{r['sustained_ratio'] or 0:>10.2f}x"
              "   (levrt / raw; targets: >= 100 tasks/s sustained, >= 0.9x raw, RSS <= 150 MB)")
    print(f"rate limit: {result['limits']}; held: mean seconds a task's requests waited for it; "
          "RSS@inflight: max RSS sampled while --inflight tasks were in flight")


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000], help="tasks per run (default: 1000 5000)")
    parser.add_argument("--inflight", type=int, default=1000, help="tasks in flight at most (default: 1000)")
    parser.add_argument("--nodes", type=int, default=4, help="fake nodes (default: 4)")
    parser.add_argument("--qps", type=float, help="LEVRT_KUBE_QPS for both sides (default: the environment's)")
    parser.add_argument("--burst", type=int, help="LEVRT_KUBE_BURST for both sides")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--memory", action="store_true",
                        help="trace allocations; print where memory is held at the most in flight (slows both sides)")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    common.cluster_env()
    if args.qps is not None:
        os.environ["LEVRT_KUBE_QPS"] = str(args.qps)
    if args.burst is not None:
        os.environ["LEVRT_KUBE_BURST"] = str(args.burst)
    if args.worker:
        worker(args.worker, args.n[0], args.inflight, memory=args.memory)
        return

    from levrt._clients.kube import Limits

    limits = Limits.from_env()
    namespace = fake_settings().namespace
    workers = common.Workers("bench.dispatch")
    fake = FakeCluster(args.nodes, pods_per_node=max(110, 2 * args.inflight // args.nodes + 100))
    signal.signal(signal.SIGTERM, interrupted)  # a CI timeout or kill cleans up as Ctrl-C does
    result: dict[str, Any] = {"limits": {"qps": limits.qps, "burst": limits.burst}, "inflight": args.inflight,
                              "nodes": args.nodes, "n": {}, "ratios": {}}
    try:
        asyncio.run(fake.open())
        print(f"kwok running (log {fake.log}), {args.nodes} fake nodes Ready", flush=True)
        for n in args.n:
            sides: dict[str, Any] = {}
            for side in args.sides:
                print(f"== {n} tasks: {side}", flush=True)
                sides[side] = workers.run(["--worker", side, "--n", str(n), "--inflight", str(args.inflight),
                                           *(["--memory"] if args.memory else [])])
                f = sides[side]
                for line in f.get("memory") or []:
                    print(f"   {line}", flush=True)
                print(f"   {f['tasks']} tasks in {f['wall']:.1f}s: {f['rate']:.1f}/s "
                      f"(sustained {f['sustained_rate'] or 0:.1f}/s), peak RSS {f['peak_rss']:.1f} MiB", flush=True)
            result["n"][str(n)] = sides
            if "raw" in sides and "levrt" in sides:
                lv, raw = sides["levrt"], sides["raw"]
                result["ratios"][str(n)] = {
                    "rate_ratio": lv["rate"] / raw["rate"],
                    "sustained_ratio": (lv["sustained_rate"] / raw["sustained_rate"]
                                        if lv["sustained_rate"] and raw["sustained_rate"] else None),
                }
    finally:
        asyncio.run(fake.close(workers, namespace))
        print("fake nodes, their Pods and kwok removed", flush=True)
    if all(len(s) == 2 for s in result["n"].values()):
        print_table(result)
    if args.json:
        common.write_figures(args.json, result)


if __name__ == "__main__":
    main()
