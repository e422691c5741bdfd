"""``levrt ps``: your jobs from their records (who ran what, where, how it ended, its tasks by
state), or one job's tasks (``--job N``) from their status records and Pods.

Why apart from ``logs``/``kill``: listing reads the store's records and the job Leases; the other
two act on one task's Pod.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Mapping, Sequence, Set
from typing import Any

from levrt._cli.base import (
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    cluster,
    print_table,
)
from levrt._cli.cells import cell_text, escape_controls
from levrt._clients.pods import job_pods
from levrt._clients.store import JOB_RECORDS, opened
from levrt._core.history import live_jobs
from levrt._core.jobrecords import identify
from levrt._shapes import jobrecord
from levrt._shapes.names import ATTEMPT_LABEL, JOB_LABEL, TASK_LABEL
from levrt._shapes.podstatus import parse_timestamp, summary

__all__ = ["PS", "elapsed_text", "job_rows", "jobs_table", "ps_rows", "ps_table"]


# -- tasks and jobs -----------------------------------------------------------------------------------------
#
# ``levrt ps`` lists jobs from their records (``levrt_jobs``, written by ``levrt._core.jobrecords``):
# the caller's own by default, as the SelfSubjectReview that names a job's owner names the caller.
# A record still ``running`` whose Lease is gone is read as ``lost`` (``levrt._shapes.jobrecord``).
#
# ``levrt ps --job N`` lists one job's tasks from the store: every task records its status there (``levrt_tasks``,
# ``levrt._core.records``), and those records outlive the Pods, which a job deletes as its tasks end.
# A task whose Pod is still there shows the Pod's state (fresher than the last record); a Pod of a
# job without a record (an orchestration Pod, a record not written yet) is listed from the Pod alone.

DEFAULT_JOBS = 20
"""How many jobs ``levrt ps`` lists by default, the newest first (``--limit``; ``--all`` for every one)."""
ENDED = {"succeeded": "done", "failed": "failed", "timed-out": "timed-out", "deleted": "deleted", "cached": "cached"}
"""Final states of a status record, as ``levrt ps`` (and the live display) names them."""
PS_COLUMNS = ("TASK", "NAME", "STATE", "RETRIES", "ELAPSED", "AGE")
PS_WIDE = ("POD", "IMAGE", "HOST", "NODE", "REASON")
JOB_COLUMNS = ("JOB", "WHAT", "OWNER", "WHERE", "STATE", "TASKS", "STARTED", "DURATION")
JOB_WIDE = ("ENDED", "ERROR")
NARROW_CELL = 40
"""Characters of a task's name or a job's WHAT in the narrow table (``-o wide``: all of it)."""


def _ps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List your jobs from their records, the newest first: what ran, where, how it ended and its tasks' "
        "counts. --all-users: everyone's; --job N: that job's tasks, from the store's status records, with "
        "the state of their Pods where those still exist."
    )
    parser.add_argument("--job", type=int, help="the tasks of this job instead of the jobs")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--limit", type=int, default=DEFAULT_JOBS,
                       help=f"at most this many jobs, the newest first (default {DEFAULT_JOBS}; 0: all)")
    which.add_argument("--all", action="store_true", help="every job in the store, however old (as --limit 0)")
    parser.add_argument("--all-users", action="store_true", help="everyone's jobs, not only your own")
    parser.add_argument("--schedule", metavar="NAME", help="the runs of this schedule (whoever made it)")
    parser.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table",
                        help="table (default); wide: also when jobs ended and their errors (with --job: the "
                             "Pod, image, host, node and reason of each task); json: a list")
    add_cluster_options(parser)


def elapsed_text(seconds: float | None) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``; ``-`` when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _retries(done: Any, allowed: Any) -> str:
    count = done if isinstance(done, int) else 0
    if isinstance(allowed, int) and allowed:
        return f"{count}/{allowed}"
    return str(count) if count else "-"


def ps_rows(records: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], *, running_jobs: Set[int],
            now: float) -> list[dict[str, Any]]:
    """One row per task, sorted by job and task: the store's record, the live Pod's state over a
    state the record has not ended in yet; Pods without a record after the records."""
    by_name = {pod["metadata"]["name"]: pod for pod in pods}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        job, task = record.get("job"), record.get("task")
        if not isinstance(job, int) or not isinstance(task, int):
            continue
        pod_name = str(record.get("pod") or "")
        pod = by_name.get(pod_name)
        seen.add(pod_name)
        recorded = str(record.get("state") or "unknown")
        submitted, updated = jobrecord.epoch(record.get("submitted")), jobrecord.epoch(record.get("updated"))
        if recorded in ENDED:
            state, end = ENDED[recorded], updated
            if recorded == "failed" and record.get("reason"):
                state = f"failed({record['reason']})"
        elif pod is not None:
            state, end = summary(pod), None
        elif job in running_jobs:
            state, end = ("pending" if recorded == "submitting" else recorded), None
        else:  # not ended, and neither its Pod nor its job is there: its client went away
            state, end = "lost", updated
        rows.append({
            "task": f"{job}.{task}", "job": job, "name": record.get("name") or record.get("image") or "-",
            "state": state, "retries": record.get("retries") or 0, "maxRetries": record.get("maxRetries"),
            # A cached task ran nothing: no time of its own to show.
            "elapsed": None if submitted is None or recorded == "cached"
            else round((end if end is not None else now) - submitted, 1),
            "submitted": submitted, "pod": pod_name or "-", "image": record.get("image") or "-",
            "host": record.get("host") or _pod_ip(pod), "node": record.get("node") or _pod_node(pod),
            "reason": record.get("reason") or record.get("retryReason") or "",
        })
    for pod in pods:
        name = pod["metadata"]["name"]
        if name in seen:
            continue
        labels = pod["metadata"].get("labels", {})
        job_text, task_text = labels.get(JOB_LABEL, "?"), labels.get(TASK_LABEL, "?")
        created = pod["metadata"].get("creationTimestamp")
        submitted = parse_timestamp(created) if created else None
        rows.append({
            "task": f"{job_text}.{task_text}", "job": int(job_text) if job_text.isdigit() else None, "name": name,
            "state": summary(pod), "retries": int(labels.get(ATTEMPT_LABEL, "0") or 0), "maxRetries": None,
            "elapsed": None if submitted is None else round(now - submitted, 1), "submitted": submitted,
            "pod": name, "image": next((c["image"] for c in pod["spec"]["containers"] if c["name"] == "main"), "-"),
            "host": _pod_ip(pod), "node": _pod_node(pod), "reason": "",
        })

    def order(row: dict[str, Any]) -> tuple[int, int, str]:
        job_part, _, task_part = row["task"].partition(".")
        big = 1 << 62
        return (int(job_part) if job_part.isdigit() else big, int(task_part) if task_part.isdigit() else big,
                row["pod"])

    return sorted(rows, key=order)


def _pod_ip(pod: Mapping[str, Any] | None) -> str:
    return str((pod or {}).get("status", {}).get("podIP") or "-")


def _pod_node(pod: Mapping[str, Any] | None) -> str:
    return str((pod or {}).get("spec", {}).get("nodeName") or "-")


def ps_table(rows: Sequence[Mapping[str, Any]], *, wide: bool, now: float) -> tuple[list[list[str]], list[str]]:
    """The table cells of ``ps_rows``, and its header."""
    header = [*PS_COLUMNS, *(PS_WIDE if wide else ())]
    cells = []
    for row in rows:
        submitted = row.get("submitted")
        line = [row["task"], cell_text(row["name"], width=NARROW_CELL) if not wide else str(row["name"]), row["state"],
                _retries(row["retries"], row["maxRetries"]), elapsed_text(row["elapsed"]),
                _age(None if submitted is None else now - submitted)]
        if wide:
            line += [row["pod"], row["image"], row["host"], row["node"], row["reason"].splitlines()[0][:80]
                     if row["reason"] else "-"]
        line = [escape_controls(str(cell)) for cell in line]  # a name or an argument never acts on the terminal
        cells.append(line)
    return cells, header


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def ps_command(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise CliError(f"--limit {args.limit}: give a number of jobs (0 for all of them).")
    if args.job is not None:
        if args.all or args.all_users or args.limit != DEFAULT_JOBS:
            raise CliError("--job N lists one job's tasks: --all, --all-users and --limit choose among jobs.")
        return _ps_tasks(args)
    return _ps_jobs(args)


def _ps_tasks(args: argparse.Namespace) -> int:
    now = time.time()

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[int]]:
        async with cluster(args) as (kube, settings):
            pods = await job_pods(kube, settings.namespace, args.job)
            running = {job for job in (_pod_job(p) for p in pods) if job is not None}
            running |= await live_jobs(kube, settings.namespace, now=now) or set()  # None: the Pods tell
            async with opened(settings, kube=kube) as store:
                records = await store.task_records(args.job)
        return records, pods, running

    records, pods, running = asyncio.run(go())
    rows = ps_rows(records, pods, running_jobs=running, now=now)
    if args.output == "json":
        for row in rows:  # a time people and jq both read
            row["submitted"] = jobrecord.iso(row["submitted"])
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        cells, header = ps_table(rows, wide=args.output == "wide", now=now)
        print_table(cells, header)
    else:
        print(f"No levrt tasks in job {args.job}.", file=sys.stderr)
    return EXIT_OK


def job_rows(records: Sequence[Mapping[str, Any]], *, live_jobs: Set[int] | None,
             now: float) -> list[dict[str, Any]]:
    """One row per job record, as ``levrt ps -o json`` prints it. ``live_jobs``: the jobs whose Lease
    is there (None: unknown, the account may not list Leases; no job is then judged lost)."""
    views = (jobrecord.job_view(record, lease_gone=live_jobs is not None and record.get("_id") not in live_jobs,
                                now=now) for record in records)
    return [view for view in views if view is not None]


def jobs_table(rows: Sequence[Mapping[str, Any]], *, wide: bool, now: float) -> tuple[list[list[str]], list[str]]:
    """The table cells of ``job_rows``, and its header."""
    header = [*JOB_COLUMNS, *(JOB_WIDE if wide else ())]
    cells = []
    for row in rows:
        started = _epoch_of_iso(row["started"])
        line = [str(row["job"]), cell_text(row["what"], width=NARROW_CELL) if not wide else row["what"], row["owner"],
                row["where"],
                row["state"], jobrecord.tasks_text(row["tasks"]),
                "-" if started is None else _age(now - started) + " ago", elapsed_text(row["duration"])]
        if wide:
            error_lines = str(row["error"] or "").strip().splitlines()
            line += [row["ended"] or "-", error_lines[-1][:80] if error_lines else "-"]
        cells.append([escape_controls(str(cell)) for cell in line])
    return cells, header


def _epoch_of_iso(text: str | None) -> float | None:
    return None if text is None else dt.datetime.fromisoformat(text).timestamp()


def _ps_jobs(args: argparse.Namespace) -> int:
    now = time.time()
    limit = 0 if args.all else args.limit

    async def go() -> tuple[list[dict[str, Any]], int, set[int] | None, str | None]:
        async with cluster(args) as (kube, settings):
            everyone = args.all_users or args.schedule is not None
            owner = None if everyone else (await identify(kube, kubeconfig=args.kubeconfig)).name
            live = await live_jobs(kube, settings.namespace, now=now)  # None: no job is judged lost
            query = {**({} if owner is None else {"owner": owner}),
                     **({} if args.schedule is None else {"what.schedule": args.schedule})}
            async with opened(settings, kube=kube) as store:
                records, total = await store.newest(JOB_RECORDS, query, limit=limit)
        return records, total, live, owner

    records, total, live, owner = asyncio.run(go())
    rows = job_rows(records, live_jobs=live, now=now)
    if args.output == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        cells, header = jobs_table(rows, wide=args.output == "wide", now=now)
        print_table(cells, header)
    else:
        whose = "" if owner is None else f" of {owner} (--all-users: everyone's)"
        print(f"No job records{whose}; `levrt ps --job N` lists a job's tasks.", file=sys.stderr)
    if rows and len(rows) < total:
        print(f"{len(rows)} of {total} jobs, newest first (--limit {limit}; --all shows all).", file=sys.stderr)
    return EXIT_OK


def _pod_job(pod: Mapping[str, Any]) -> int | None:
    text = pod["metadata"].get("labels", {}).get(JOB_LABEL, "")
    return int(text) if text.isdigit() else None


PS = Command("ps", "list your jobs (--all-users: everyone's), or one job's tasks (--job N)",
             _ps_arguments, ps_command)
