"""Looking after the platform: ``levrt gc``, ``reap`` and ``doctor`` (``up``/``down`` live in ``laptop``)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
from typing import Any

from levrt._cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    cluster,
    parse_duration,
)
from levrt._clients import lease, pods, resources
from levrt._clients.api import Forbidden, NotFound
from levrt._clients.kube import MIN_MINOR, Kube
from levrt._clients.store import COUNTERS, opened, short_error
from levrt._core import retention, runtime_mode
from levrt._shapes.names import JOB_LABEL, job_selector
from levrt._shapes.podstatus import parse_timestamp
from levrt._stored import BUCKET, FILES, human_size
from levrt.checks import check_schema
from levrt.errors import LevrtError, SchemaError

__all__ = ["DOCTOR", "GC", "REAP", "same_image"]


# -- gc -----------------------------------------------------------------------------------------


def _gc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", default="1h",
                        help="objects of jobs without a Lease (levrt 1.x-era, or made without the right to "
                             "create one), and Leases of jobs kept with --keep: only older than this "
                             "(default: 1h; 0 = all)")
    parser.add_argument("--job", type=int, metavar="N", help="end job N now, live or not: delete its Lease "
                        "(everything of the job goes with it), or its objects when it has none")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    retention = parser.add_argument_group("retention (the store, not the cluster)")
    retention.add_argument("--records-older-than", metavar="DURATION",
                           help="delete the records of jobs that ended longer ago than this (e.g. 30d), then "
                                "the stored files nothing refers to any more")
    retention.add_argument("--schema", help="with --records-older-than: only this schema's records")
    retention.add_argument("--ns", help="with --schema: the namespace they were written in (a/b)")
    retention.add_argument("--files-grace", default="1h", metavar="DURATION",
                           help="stored files younger than this are kept whatever refers to them (default: 1h: "
                                "an upload still running, a Digest about to be mounted)")
    add_cluster_options(parser)


def gc_command(args: argparse.Namespace) -> int:
    """Remove what dead or finished jobs left: never a live job's objects (its Lease is renewed)."""
    if args.records_older_than is not None:
        return _gc_records(args)
    if args.schema is not None or args.ns is not None:
        raise CliError("--schema and --ns choose records: give --records-older-than DURATION too.")
    min_age = parse_duration(args.older_than)
    if args.job is not None and args.job < 0:
        raise CliError(f"--job {args.job}: a job id is a number >= 0 (see `levrt ps`).")

    async def go() -> tuple[list[str], list[str], list[str]]:
        removed: list[str] = []
        failed: list[str] = []
        kept: list[str] = []
        async with cluster(args) as (kube, settings):
            ns, now = settings.namespace, time.time()
            try:
                leases = await lease.list_leases(kube, ns)
            except NotFound:  # an apiserver without the coordination API: 1.x behaviour only
                leases = []
            live: set[str] = set()
            for item in leases:
                job = lease.lease_job(item)
                name = item["metadata"]["name"]
                renewed = lease.renewed_at(item) or now
                if args.job is not None:
                    doomed = job == args.job
                    why = "ended on request"
                elif lease.kept(item):
                    doomed = now - renewed >= min_age
                    why = f"kept after it ended, {age_text(now - renewed)} ago"
                else:
                    doomed = lease.expired(item, now=now)
                    why = f"its client stopped renewing its Lease {age_text(now - renewed)} ago"
                if not doomed:
                    live.add(str(job))
                    if lease.kept(item):
                        kept.append(_kept_line(item, job, now - renewed, args.older_than))
                    continue
                owned = [f"pods/{p['metadata']['name']}" for p in await pods.job_pods(kube, ns, job)]
                if not args.dry_run:
                    try:
                        await lease.delete_lease(kube, ns, name)
                    except LevrtError as exc:
                        failed.append(f"could not delete leases/{name}: {exc}")
                        continue
                removed.append(f"leases/{name} (job {job}: {why})"
                               + (f" and with it {', '.join(owned)}" if owned else ""))
            if args.job is not None and leases and any(lease.lease_job(i) == args.job for i in leases):
                return removed, failed, kept
            # Objects of no Lease (levrt 1.x-era jobs, or a client that could not create one): an
            # owned object lives and dies with its owner; the rest by age, never a live job's.
            for kind in ("Pod", "Secret", "ConfigMap"):
                plural = resources.KINDS[kind].resource
                for item in await resources.list_objects(kube, kind, namespace=ns, labels=job_selector(args.job)):
                    meta = item["metadata"]
                    if meta.get("ownerReferences") or (meta.get("labels") or {}).get(JOB_LABEL) in live:
                        continue
                    if args.job is None and now - parse_timestamp(meta["creationTimestamp"]) < min_age:
                        continue
                    if not args.dry_run:
                        try:
                            await resources.delete(kube, kind, meta["name"], namespace=ns,
                                                   query={"gracePeriodSeconds": 0})
                        except NotFound:
                            pass  # gone already (the garbage collector took it with its Pod)
                        except LevrtError as exc:
                            failed.append(f"could not delete {plural}/{meta['name']}: {exc}")
                            continue
                    removed.append(f"{plural}/{meta['name']}")
        return removed, failed, kept

    removed, failed, kept = asyncio.run(go())
    for name in removed:
        print(("would delete " if args.dry_run else "deleted ") + name)
    for line in kept:
        print(line)
    for message in failed:
        print(message, file=sys.stderr)
    if not removed and not failed:
        if args.job is not None:
            print(f"Nothing of job {args.job} is left.", file=sys.stderr)
        elif kept:
            print(f"Nothing to remove yet: kept jobs go once kept longer than --older-than {args.older_than}.",
                  file=sys.stderr)
        else:
            print("Nothing to remove.", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _gc_records(args: argparse.Namespace) -> int:
    """``--records-older-than``: records of long-ended jobs, then the stored files nothing names."""
    older, grace = parse_duration(args.records_older_than), parse_duration(args.files_grace)
    if args.job is not None:
        raise CliError("--records-older-than collects by age; --job N ends one job's objects: give one of them.")
    if args.ns is not None and args.schema is None:
        raise CliError("--ns names the namespace of --schema's records: give --schema too.")
    if args.schema is not None:
        try:
            check_schema(args.schema)
        except SchemaError as exc:
            raise CliError(str(exc)) from None
    now = time.time()

    async def go() -> tuple[list[int], dict[str, int], list[tuple[str, int]]]:
        async with cluster(args) as (kube, settings), opened(settings, kube=kube) as store:
            jobs = await retention.ended_before(store, now - older)
            gone = await retention.delete_records(store, jobs, schema=args.schema, ns=args.ns, dry_run=args.dry_run)
            live = retention.shas_in_pods(await pods.job_pods(kube, settings.namespace))
            leaving = {name: set(jobs) for name in gone}  # a dry run's records are still there
            keep = await retention.referenced_files(store, leaving=leaving) | live
            cutoff = dt.datetime.fromtimestamp(now - grace, dt.UTC)
            files = await retention.collect_files(store, keep=keep, uploaded_before=cutoff, dry_run=args.dry_run)
            return jobs, gone, files

    jobs, gone, files = asyncio.run(go())
    verb = "would delete" if args.dry_run else "deleted"
    what = f"{args.schema} records" if args.schema else "records"
    print(f"{verb} {sum(gone.values())} {what} of {len(jobs)} jobs that ended more than {args.records_older_than} "
          f"ago" + (f": {', '.join(f'{n} {c}' for c, n in sorted(gone.items()))}" if gone else ""))
    print(f"{verb} {len(files)} stored files nothing refers to ({human_size(sum(size for _, size in files))}; "
          f"files younger than {args.files_grace} are kept)")
    return EXIT_OK


def _kept_line(item: dict[str, Any], job: int | None, kept_for: float, older_than: str) -> str:
    """What a kept Lease too young to remove holds (the Pods its annotation names)."""
    held = lease.kept_pods(item)
    what = f": {', '.join(f'pods/{name}' for name in held)}" if held else " (it names no Pods)"
    return (f"keeps leases/{item['metadata']['name']} (job {job}, kept {age_text(kept_for)} ago; removed when kept "
            f"longer than --older-than {older_than}, or now with `levrt gc --job {job}`){what}")


def age_text(seconds: float) -> str:
    """``95s``, ``12m``, ``3h``, ``2d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


# -- reap ---------------------------------------------------------------------------------------


def _reap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", default="15s", help="time between two sweeps (default: 15s)")
    parser.add_argument("--grace", default=None,
                        help="how long past its duration a Lease may go unrenewed (default: one more duration)")
    parser.add_argument("--once", action="store_true", help="one sweep, then exit")
    add_cluster_options(parser)


def reap_command(args: argparse.Namespace) -> int:
    """The chart's reaper: delete the Leases of jobs whose client died, and with them their objects."""
    period = parse_duration(args.period)
    grace = None if args.grace is None else parse_duration(args.grace)
    if period <= 0:
        raise CliError(f"--period {args.period}: give a duration > 0, e.g. 15s.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    async def go() -> None:
        async with cluster(args) as (kube, settings):
            reaper = lease.Reaper(kube, namespace=settings.namespace, grace=grace)
            logging.getLogger("lev").info("reaper: watching job Leases in %s every %.0f s", settings.namespace, period)
            if args.once:
                await reaper.sweep()
            else:
                await reaper.run(period=period)

    asyncio.run(go())
    return EXIT_OK


# -- doctor -------------------------------------------------------------------------------------

Check = tuple[str, bool, str]
# What levrt does in its namespace: (resource, verb, subresource).
NEEDED_ACCESS = (("pods", "create", ""), ("pods", "watch", ""), ("pods", "create", "exec"),
                 ("pods", "get", "log"), ("secrets", "create", ""), ("configmaps", "create", ""))


def doctor_command(args: argparse.Namespace) -> int:
    checks = asyncio.run(_doctor(args))
    width = max(len(name) for name, _, _ in checks)
    for name, ok, detail in checks:
        print(f"{'ok ' if ok else 'FAIL'} {name.ljust(width)}  {detail}")
    return EXIT_OK if all(ok for _, ok, _ in checks) else EXIT_FAILED


async def _doctor(args: argparse.Namespace) -> list[Check]:
    checks: list[Check] = []
    try:
        async with cluster(args) as (kube, settings):
            version = await kube.server_version()
            checks.append(("cluster version", version.supported,
                           f"{version.git_version} (levrt needs >= 1.{MIN_MINOR})"))
            runtime = await runtime_mode.decide(kube, settings, server=version.git_version, minor=version.minor)
            names = {"image": "image volume", "copy": "init-container copy", "node": "node cache"}
            checks.append(("runtime mode", True, f"{names[runtime.mode]}: {runtime.reason}"))
            for resource, verb, sub in NEEDED_ACCESS:
                review = await resources.create(kube, "SelfSubjectAccessReview", {
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"namespace": settings.namespace, "verb": verb,
                                                    "resource": resource, "subresource": sub}}})
                allowed = bool(review.get("status", {}).get("allowed"))
                checks.append((f"may {verb} {resource}{'/' + sub if sub else ''}", allowed,
                               f"in namespace {settings.namespace}"))
            try:
                async with opened(settings, kube=kube, timeout=5) as store:
                    await store.collection(COUNTERS).find_one({"_id": "job"})
                    checks.append(("store reachable", True, "answered"))
                    checks.append(await _store_size(store))
            except Exception as exc:
                checks.append(("store reachable", False, short_error(exc)))
            checks.append(await _runtime_image_check(kube, settings.runtime_image, settings.namespace))
    except LevrtError as exc:
        checks.append(("cluster reachable", False, str(exc)))
    return checks


async def _store_size(store: Any) -> Check:
    """What the store holds, the largest collections first, and the file storage apart (``gc
    --records-older-than`` shrinks both). Informational: never a failure."""
    try:
        sizes = await store.sizes()
    except LevrtError as exc:
        return ("store size", True, f"not reported by this store ({short_error(exc)})")
    total = sum(size for _, _, size in sizes)
    files = sum(size for name, _, size in sizes if name.startswith(BUCKET + "."))
    stored = next((count for name, count, _ in sizes if name == FILES), 0)
    largest = ", ".join(f"{name} {human_size(size)} ({count})" for name, count, size
                        in sorted(sizes, key=lambda s: -s[2])[:5])
    return ("store size", True, f"{human_size(total)} in {len(sizes)} collections; file storage {human_size(files)} "
                                f"in {stored} files; largest: {largest or 'none'}")


async def _runtime_image_check(kube: Kube, image: str, namespace: str) -> Check:
    try:
        nodes = await resources.list_objects(kube, "Node")
    except Forbidden as exc:
        return ("runtime image on nodes", False,
                f"cannot list nodes to look for {image} ({exc}); ask for `list nodes` or check with kubectl")
    present = [n["metadata"]["name"] for n in nodes
               if any(same_image(image, name) for img in n.get("status", {}).get("images", [])
                      for name in img.get("names") or [])]
    if present:
        return ("runtime image on nodes", True, f"{image} on {', '.join(present)}")
    # A node lists a newly loaded image only at its next status update (up to about a minute):
    # right after `levrt up`, a running Pod of the image (the chart's reaper) shows it is there.
    found = await resources.list_objects(kube, "Pod", namespace=namespace)
    running = sorted({p["spec"].get("nodeName", "?") for p in found
                      if p.get("status", {}).get("phase") == "Running"
                      and any(same_image(image, c.get("image", "")) for c in p["spec"].get("containers", []))})
    if running:
        return ("runtime image on nodes", True, f"{image} on {', '.join(running)} (a running Pod uses it; "
                                                "the node lists it at its next status update)")
    return ("runtime image on nodes", False,
            f"{image} on no node: build and load it (nodes list new images within about a minute)")


def same_image(wanted: str, listed: str) -> bool:
    """Whether a node's image name is ``wanted``, also when the runtime lists it with the default
    registry's host prepended (short names are expanded that way on kind nodes)."""
    return listed == wanted or (listed.endswith("/" + wanted) and "." in listed.split("/", 1)[0])


GC = Command("gc", "remove what dead or finished jobs left (never a live job's); --job N ends one job",
             _gc_arguments, gc_command)
REAP = Command("reap", "delete the Leases (and so the objects) of jobs whose client died; the chart runs it",
               _reap_arguments, reap_command)
DOCTOR = Command("doctor", "check the cluster, permissions, store and runtime image", add_cluster_options,
                 doctor_command)
