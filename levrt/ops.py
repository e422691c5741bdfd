"""The operator's subcommands of ``levrt``: run, ps, logs, kill, get, gc, doctor, up.

Why apart from ``levrt.commands``: that module is the argument-parsing shell and must import nothing
heavy; these commands talk to the cluster and the store. Each is registered with
``levrt.commands.command`` and imports its clients lazily, when it runs.

Exit codes follow kubectl and helm: 0 success, 1 the operation failed, 2 a usage mistake.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal as signals
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from levrt.commands import EXIT_FAILED, EXIT_OK, CliError, command, load_module
from levrt.errors import LevrtError
from levrt.settings import Settings

EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it

__all__ = ["parse_duration", "pod_of", "up_plan"]

MANAGED = "app.kubernetes.io/managed-by=levrt"


# -- shared helpers -----------------------------------------------------------------------------


def pod_of(task: str) -> str:
    """The Pod name of a task given as ``JOB.TASK`` (``12.3``) or as a Pod name (``lev-j12-t3``)."""
    match = re.fullmatch(r"(\d+)\.(\d+)", task)
    if match:
        return f"lev-j{match.group(1)}-t{match.group(2)}"
    if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", task):
        return task
    raise CliError(f"{task!r} is not a task. Give JOB.TASK (e.g. 12.3, see `levrt ps`) or a Pod name.")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``2h``, ``7d`` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise CliError(f"{text!r} is not a duration. Use e.g. 30s, 15m, 2h or 7d.")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@contextlib.asynccontextmanager
async def _cluster(args: argparse.Namespace) -> AsyncIterator[tuple[Any, Settings]]:
    from levrt.kube import Kube

    settings = _settings(args)
    kube = await Kube.connect(kubeconfig=getattr(args, "kubeconfig", None))
    async with kube:
        yield kube, settings


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "namespace", None):
        settings = settings.replace(namespace=args.namespace)
    return settings


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    seconds = time.time() - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _state(pod: dict[str, Any]) -> str:
    from levrt.engine import container_status

    state = container_status(pod).get("state") or {}
    if "terminated" in state:
        code = state["terminated"].get("exitCode")
        return "done" if code == 0 else f"failed({state['terminated'].get('reason', code)})"
    if "running" in state:
        return "running"
    waiting = (state.get("waiting") or {}).get("reason")
    return f"pending({waiting})" if waiting else "pending"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace of levrt's objects (default: $LEVRT_NAMESPACE or levrt)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")


def _print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- run ----------------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="FILE[:FUNC]",
                        help="orchestration file or module, and the async function to run (default: main)")
    parser.add_argument("args", nargs="*", help="string arguments passed to the function")
    parser.add_argument("--in-cluster", action="store_true",
                        help="run the orchestration itself in a Pod under the levrt ServiceAccount")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                        help="with --in-cluster: an environment variable for the orchestration Pod (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep task Pods after their results are read")
    parser.add_argument("--logs", action="store_true", help="print each task's logs when it ends")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live display")
    _common(parser)


@command("run", "run an orchestration as one job, with live progress", _run_arguments)
def run_command(args: argparse.Namespace) -> int:
    target, _, func_name = args.target.partition(":")
    if args.in_cluster:
        from levrt.incluster import run_in_cluster

        env = dict(_parse_env(item) for item in args.env)
        return run_in_cluster(target, func_name or "main", args.args, settings=_settings(args),
                              kubeconfig=args.kubeconfig, env=env)
    if args.env:
        raise CliError("--env sets variables of the orchestration Pod; it needs --in-cluster. "
                       "For a local run, set them in your shell.")
    module = load_module(target)
    func = getattr(module, func_name or "main", None)
    if func is None or not asyncio.iscoroutinefunction(func):
        raise CliError(
            f"{target} has no async function {func_name or 'main'!r}. "
            "Name it with FILE:FUNC, e.g. levrt run examples/workflow.py:scan_all."
        )
    settings = _settings(args)
    if args.keep:
        settings = settings.replace(keep=True)
    try:
        result = asyncio.run(_run_with_display(func(*args.args), settings=settings, args=args))
    except asyncio.CancelledError:
        print("levrt run: terminated (SIGTERM); the job's Pods were deleted.", file=sys.stderr)
        return EXIT_TERMINATED
    if result is not None:
        print(json.dumps(result, indent=2, default=str) if not isinstance(result, str) else result)
    return EXIT_OK


def _parse_env(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not name.replace("_", "").isalnum():
        raise CliError(f"--env {item!r}: use NAME=VALUE, e.g. --env TARGETS=10.0.0.0/24.")
    return name, value


async def _run_with_display(main: Any, *, settings: Settings, args: argparse.Namespace) -> Any:
    from levrt.concurrent import progress_hook
    from levrt.engine import session

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # SIGTERM (an orchestration Pod being deleted, a `kill`) ends the job like Ctrl-C does: the
    # run is cancelled and the session deletes the job's Pods before the process exits.
    current = asyncio.current_task()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        if current is not None:
            asyncio.get_running_loop().add_signal_handler(signals.SIGTERM, current.cancel)
    async with session(settings=settings, kubeconfig=args.kubeconfig) as engine:
        if args.no_progress or not sys.stderr.isatty():
            return await main
        from rich.live import Live

        fraction = {"value": 0.0}

        def on_progress(done: int, total: int) -> None:
            fraction["value"] = done / total if total else 0.0

        async def refresh(live: Any) -> None:
            while True:
                live.update(_job_table(engine, fraction["value"]))
                await asyncio.sleep(0.25)

        with progress_hook(on_progress), Live(_job_table(engine, 0.0), transient=False) as live:
            ticker = asyncio.create_task(refresh(live))
            try:
                return await main
            finally:
                ticker.cancel()
                live.update(_job_table(engine, fraction["value"]))


def _job_table(engine: Any, fraction: float) -> Any:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    table = Table(title=f"levrt job {engine.job_id}", expand=False)
    for column in ("task", "pod", "image", "state", "host"):
        table.add_column(column)
    for task in engine.tasks[-20:]:
        pod = engine.watch.get(task.pod)
        state = _state(pod) if pod else ("done" if task._document else "ended")
        counts[state.split("(")[0] if state.split("(")[0] in counts else "done"] += 1
        table.add_row(task.id, task.pod, task._cr.image, state, task.host or "-")
    table.caption = " ".join(f"{k}: {v}" for k, v in counts.items())
    grid = Table.grid()
    grid.add_row(table)
    grid.add_row(ProgressBar(total=1.0, completed=fraction, width=50))
    return grid


# -- ps -----------------------------------------------------------------------------------------


def _ps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", type=int, help="only the tasks of this job")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    _common(parser)


@command("ps", "list levrt task Pods", _ps_arguments)
def ps_command(args: argparse.Namespace) -> int:
    async def go() -> list[dict[str, Any]]:
        async with _cluster(args) as (kube, settings):
            selector = MANAGED + (f",levrt.io/job={args.job}" if args.job is not None else "")
            listing = await kube.request("GET", f"/api/v1/namespaces/{settings.namespace}/pods",
                                         query={"labelSelector": selector})
            return list(listing["items"])

    pods = asyncio.run(go())
    rows = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"]):
        labels = pod["metadata"].get("labels", {})
        image = next((c["image"] for c in pod["spec"]["containers"] if c["name"] == "main"), "-")
        rows.append([f"{labels.get('levrt.io/job', '?')}.{labels.get('levrt.io/task', '?')}",
                     pod["metadata"]["name"], image, _state(pod), pod.get("status", {}).get("podIP") or "-",
                     _age(pod["metadata"].get("creationTimestamp"))])
    if args.output == "json":
        keys = ("task", "pod", "image", "state", "host", "age")
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
    elif rows:
        _print_table(rows, ["TASK", "POD", "IMAGE", "STATE", "HOST", "AGE"])
    else:
        print("No levrt tasks.", file=sys.stderr)
    return EXIT_OK


# -- logs ---------------------------------------------------------------------------------------


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="JOB.TASK or Pod name (see `levrt ps`)")
    parser.add_argument("-f", "--follow", action="store_true", help="stream new output until the task ends")
    parser.add_argument("--tail", type=int, help="only the last N lines")
    parser.add_argument("-c", "--container", default="main", help="container (main, or a service name)")
    _common(parser)


@command("logs", "print a task's output", _logs_arguments)
def logs_command(args: argparse.Namespace) -> int:
    pod = pod_of(args.task)

    async def go() -> None:
        async with _cluster(args) as (kube, settings):
            path = f"/api/v1/namespaces/{settings.namespace}/pods/{pod}/log"
            query = {"container": args.container, "tailLines": args.tail}
            if not args.follow:
                sys.stdout.write(await kube.request("GET", path, query=query))
                return
            await kube.follow(path, query=query, out=sys.stdout)

    asyncio.run(_not_found_as_usage(go(), pod))
    return EXIT_OK


async def _not_found_as_usage(coro: Any, pod: str) -> Any:
    from levrt.kube import ApiError

    try:
        return await coro
    except ApiError as exc:
        if exc.status == 404:
            raise CliError(f"No task Pod {pod!r} (it may have ended and been removed; see `levrt ps`).") from None
        raise


# -- kill ---------------------------------------------------------------------------------------


def _kill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="JOB.TASK or Pod name (see `levrt ps`)")
    parser.add_argument("-s", "--signal", default="SIGINT", help="signal name or number (default: SIGINT)")
    _common(parser)


@command("kill", "send a signal to a task's main process", _kill_arguments)
def kill_command(args: argparse.Namespace) -> int:
    from levrt.task import _DELIVER, _signal_number

    pod_name = pod_of(args.task)
    try:
        signum = _signal_number(args.signal)
    except LevrtError as exc:
        raise CliError(str(exc)) from None

    async def go() -> int:
        async with _cluster(args) as (kube, settings):
            pod = await kube.request("GET", f"/api/v1/namespaces/{settings.namespace}/pods/{pod_name}")
            main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
            if (main.get("command") or [""])[0].startswith("/levrt/"):
                cmd = ["/levrt/bin/python3", "-c", _DELIVER, str(signum)]
            else:
                cmd = ["kill", "-s", signals.Signals(signum).name.removeprefix("SIG"), "1"]
            result = await kube.exec(settings.namespace, pod_name, container="main", command=cmd)
            if result.exit_code != 0:
                print(result.stderr.decode(errors="replace"), file=sys.stderr)
                return EXIT_FAILED
            print(f"{signals.Signals(signum).name} delivered to {pod_name}")
            return EXIT_OK

    return int(asyncio.run(_not_found_as_usage(go(), pod_name)))


# -- get ----------------------------------------------------------------------------------------


def _get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("schema", help="schema of the records, e.g. ts/issues@1.0 (or 'default')")
    parser.add_argument("--ns", help="levrt namespace path, e.g. example or httpbin/org")
    parser.add_argument("--job", type=int, help="only the records of this job")
    parser.add_argument("-o", "--output", choices=("json", "table"), default="json",
                        help="a JSON list of the records (default), or a table of their top-level fields")
    parser.add_argument("--limit", type=int, default=100, help="at most this many records (default 100)")
    _common(parser)


@command("get", "print stored records of a schema", _get_arguments)
def get_command(args: argparse.Namespace) -> int:
    from levrt.store import Store

    prefix = "".join(f"{part}|" for part in (args.ns or "").split("/") if part)
    collection = prefix + args.schema

    async def go() -> list[dict[str, Any]]:
        settings = _settings(args)
        uri = settings.store_uri
        if not uri:
            from levrt.engine import _store_uri_from_secret

            async with _cluster(args) as (kube, _):
                uri = await _store_uri_from_secret(kube, settings)
        store = Store.connect(uri, database=settings.database)
        try:
            query = {"_id.job": args.job} if args.job is not None else {}
            cursor = store.collection(collection).find(query).limit(args.limit)
            return [doc async for doc in cursor]
        finally:
            await store.close()

    records = asyncio.run(go())
    if args.output == "json":
        print(json.dumps(records, indent=2, default=str, ensure_ascii=False))
    elif records:
        keys = sorted({k for r in records for k in r if k != "_id"})
        rows = [[f"{r['_id'].get('job')}.{r['_id'].get('task')}", *(_cell(r.get(k)) for k in keys)] for r in records]
        _print_table(rows, ["TASK", *keys])
    if not records:
        print(f"No records in {collection!r}.", file=sys.stderr)
    return EXIT_OK


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = text.replace("\r", "\\r").replace("\n", "\\n")  # one record, one line
    return text if len(text) <= 40 else text[:37] + "..."


# -- gc -----------------------------------------------------------------------------------------


def _gc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", default="1h", help="only objects older than this (default: 1h; 0 = all)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    _common(parser)


@command("gc", "remove leftover levrt Pods, Secrets and ConfigMaps", _gc_arguments)
def gc_command(args: argparse.Namespace) -> int:
    min_age = parse_duration(args.older_than)

    async def go() -> list[str]:
        removed = []
        async with _cluster(args) as (kube, settings):
            for plural in ("pods", "secrets", "configmaps"):
                base = f"/api/v1/namespaces/{settings.namespace}/{plural}"
                listing = await kube.request("GET", base, query={"labelSelector": MANAGED})
                for item in listing["items"]:
                    meta = item["metadata"]
                    age = time.time() - dt.datetime.fromisoformat(
                        meta["creationTimestamp"].replace("Z", "+00:00")).timestamp()
                    if age < min_age:
                        continue
                    removed.append(f"{plural}/{meta['name']}")
                    if not args.dry_run:
                        with contextlib.suppress(LevrtError):
                            await kube.request("DELETE", f"{base}/{meta['name']}", query={"gracePeriodSeconds": 0})
        return removed

    removed = asyncio.run(go())
    for name in removed:
        print(("would delete " if args.dry_run else "deleted ") + name)
    if not removed:
        print("Nothing to remove.", file=sys.stderr)
    return EXIT_OK


# -- doctor -------------------------------------------------------------------------------------


@command("doctor", "check the cluster, permissions, store and runtime image", _common)
def doctor_command(args: argparse.Namespace) -> int:
    checks = asyncio.run(_doctor(args))
    width = max(len(name) for name, _, _ in checks)
    for name, ok, detail in checks:
        print(f"{'ok ' if ok else 'FAIL'} {name.ljust(width)}  {detail}")
    return EXIT_OK if all(ok for _, ok, _ in checks) else EXIT_FAILED


async def _doctor(args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    from levrt.engine import MIN_MINOR, _store_uri_from_secret
    from levrt.store import Store

    checks: list[tuple[str, bool, str]] = []
    try:
        async with _cluster(args) as (kube, settings):
            version = await kube.request("GET", "/version")
            minor = int(re.sub(r"\D", "", str(version.get("minor", "0"))) or 0)
            checks.append(("cluster version", minor >= MIN_MINOR,
                           f"{version.get('gitVersion')} (levrt needs >= 1.{MIN_MINOR})"))
            for resource, verb, sub in (("pods", "create", ""), ("pods", "watch", ""), ("pods", "create", "exec"),
                                        ("pods", "get", "log"), ("secrets", "create", ""),
                                        ("configmaps", "create", "")):
                review = await kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body={
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"namespace": settings.namespace, "verb": verb,
                                                    "resource": resource, "subresource": sub}}})
                allowed = bool(review.get("status", {}).get("allowed"))
                checks.append((f"may {verb} {resource}{'/' + sub if sub else ''}", allowed,
                               f"in namespace {settings.namespace}"))
            try:
                uri = settings.store_uri or await _store_uri_from_secret(kube, settings)
                store = Store.connect(uri, database=settings.database, timeout=5)
                try:
                    await store.collection("levrt_counters").find_one({"_id": "job"})
                    checks.append(("store reachable", True, "answered"))
                finally:
                    await store.close()
            except Exception as exc:
                checks.append(("store reachable", False, str(exc).splitlines()[0][:200]))
            nodes = await kube.request("GET", "/api/v1/nodes")
            image = settings.runtime_image
            present = [n["metadata"]["name"] for n in nodes.get("items", [])
                       if any(_same_image(image, name) for img in n.get("status", {}).get("images", [])
                              for name in img.get("names") or [])]
            where = ", ".join(present) or "no node: build and load it (nodes list new images within about a minute)"
            checks.append(("runtime image on nodes", bool(present), f"{image} on {where}"))
    except LevrtError as exc:
        checks.append(("cluster reachable", False, str(exc)))
    return checks


def _same_image(wanted: str, listed: str) -> bool:
    """Whether a node's image name is ``wanted``, also when the runtime lists it with the default
    registry's host prepended (short names are expanded that way on kind nodes)."""
    return listed == wanted or (listed.endswith("/" + wanted) and "." in listed.split("/", 1)[0])


# -- up (kind) ----------------------------------------------------------------------------------


# The store's NodePort; kind-config.yaml maps it to 127.0.0.1 on the host (tests/chart checks both agree).
KIND_STORE_PORT = 30017
# Where host connections to the NodePort come from inside kind: its node network, a Docker network
# from Docker's default pools. kind's Pod (10.244.0.0/16) and Service (10.96.0.0/16) ranges are
# outside, so the store's NetworkPolicy still refuses other Pods.
KIND_HOST_CIDRS = ("172.16.0.0/12", "192.168.0.0/16")


def up_plan(*, cluster: str, config: str, chart: str, image: str, dockerfile_dir: str) -> list[list[str]]:
    """The commands ``levrt up`` runs, in order (pure, so it can be tested without Docker)."""
    return [
        ["kind", "create", "cluster", "--name", cluster, "--config", config],
        ["docker", "build", "-t", image, "-f", os.path.join(dockerfile_dir, "Dockerfile"), "."],
        ["kind", "load", "docker-image", image, "--name", cluster],
        ["helm", "upgrade", "--install", "levrt", chart, "--namespace", "levrt", "--create-namespace",
         "--set", f"runtime.image={image}", "--set", "store.nodePort.enabled=true",
         "--set", f"store.nodePort.port={KIND_STORE_PORT}",
         "--set", "store.networkPolicy.allowCIDRs={" + ",".join(KIND_HOST_CIDRS) + "}", "--wait"],
    ]


def _up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="levrt", help="kind cluster name")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")


@command("up", "create a kind cluster with levrt installed (needs Docker, kind and helm)", _up_arguments)
def up_command(args: argparse.Namespace) -> int:
    from levrt._version import __version__

    root = os.getcwd()
    plan = up_plan(cluster=args.name, config=os.path.join(root, "kind-config.yaml"),
                   chart=os.path.join(root, "charts", "levrt"), image=f"levrt.local/runtime:{__version__}",
                   dockerfile_dir=os.path.join(root, "images", "runtime"))
    if args.dry_run:
        for cmd in plan:
            print(" ".join(cmd))
        return EXIT_OK
    missing = [tool for tool in ("docker", "kind", "helm") if shutil.which(tool) is None]
    if missing:
        raise CliError(f"`levrt up` needs {', '.join(missing)} on PATH. Install them, then run it again "
                       "(or use an existing cluster: set KUBECONFIG and install charts/levrt with helm).")
    for cmd in plan:
        print("+ " + " ".join(cmd), file=sys.stderr)
        if subprocess.run(cmd, cwd=root).returncode != 0:
            return EXIT_FAILED
    print("levrt is up. Try: levrt run examples/workflow.py", file=sys.stderr)
    return EXIT_OK
