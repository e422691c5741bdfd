"""``levrt schedule create|list|suspend|resume|run-now|delete``: recurring runs on Kubernetes' own CronJob.

Why on top of ``run``: creating a schedule checks the call exactly as ``levrt run --in-cluster``
does (the file imported, the arguments bound; a published tool taken from the registry) before
anything is made, then makes a CronJob instead of a Pod (``levrt._shapes.schedules``). The other
actions are the CronJob's own verbs. Names, cron expressions and time zones are checked first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import zoneinfo
from typing import Any

from levrt._cli import run
from levrt._cli.base import EXIT_OK, CliError, Command, add_cluster_options, cluster, print_table
from levrt._clients import resources
from levrt._clients.api import NotFound
from levrt._shapes.names import MANAGED_BY
from levrt._shapes.schedules import SCHEDULE_LABEL, check_cron, check_name, schedule_row

__all__ = ["SCHEDULE"]

ACTIONS = ("create", "list", "suspend", "resume", "run-now", "delete")


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="run FILE[:FUNC] or TOOL:MODE on a cron schedule")
    create.add_argument("name", help="the schedule's name (lower case, digits, '-')")
    create.add_argument("target", metavar="FILE[:FUNC] | NAMESPACE/TOOL:MODE")
    create.add_argument("args", nargs="*", metavar="ARG | NAME=VALUE")
    create.add_argument("--cron", required=True, help="when: five cron fields ('0 3 * * *') or @daily, @hourly...")
    create.add_argument("--time-zone", help="the time zone of --cron (e.g. Europe/Paris; default: the cluster's)")
    create.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of each run's orchestration Pod (repeatable)")
    add_cluster_options(create)
    listing = actions.add_parser("list", help="the schedules, their last runs")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    add_cluster_options(listing)
    for name, text in (("suspend", "stop starting runs (a running one goes on)"), ("resume", "start runs again"),
                       ("run-now", "start a run now (refused while one runs)"),
                       ("delete", "delete the schedule (its runs' records stay)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("name")
        add_cluster_options(action)


def schedule_command(args: argparse.Namespace) -> int:
    if args.action == "create":
        return _create(args)
    if args.action == "list":
        return _list(args)
    return asyncio.run(_act(args))


def _create(args: argparse.Namespace) -> int:
    try:
        check_name(args.name)
        cron = check_cron(args.cron)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.time_zone:
        try:
            zoneinfo.ZoneInfo(args.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise CliError(f"--time-zone {args.time_zone!r} is not a time zone (e.g. UTC, Europe/Paris).") from None
    asyncio.run(_absent(args))
    as_run = argparse.Namespace(**{**vars(run.blank_arguments()), "target": args.target, "args": args.args,
                                   "env": args.env, "schedule": args.name, "cron": cron, "time_zone": args.time_zone,
                                   "namespace": args.namespace, "kubeconfig": args.kubeconfig})
    return run.run_command(as_run)


async def _absent(args: argparse.Namespace) -> None:
    async with cluster(args) as (kube, settings):
        try:
            await resources.get(kube, "CronJob", args.name, namespace=settings.namespace)
        except NotFound:
            return
    raise CliError(f"A schedule {args.name!r} exists already: `levrt schedule delete {args.name}` first, or pick "
                   "another name.")


def _list(args: argparse.Namespace) -> int:
    async def go() -> list[dict[str, Any]]:
        async with cluster(args) as (kube, settings):
            found = await resources.list_objects(kube, "CronJob", namespace=settings.namespace, labels=SCHEDULE_LABEL)
        return sorted((schedule_row(item) for item in found), key=lambda row: str(row["name"]))

    rows = asyncio.run(go())
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif rows:
        print_table([[r["name"], r["cron"] + (f" ({r['timeZone']})" if r["timeZone"] else ""),
                      "suspended" if r["suspended"] else "active", r["what"], r["lastScheduled"] or "-",
                      r["lastSucceeded"] or "-", str(r["running"])] for r in rows],
                    ["NAME", "CRON", "STATE", "WHAT", "LAST RUN", "LAST SUCCESS", "RUNNING"])
    else:
        print("No schedules; `levrt schedule create NAME FILE[:FUNC] --cron EXPR` makes one.", file=sys.stderr)
    return EXIT_OK


async def _act(args: argparse.Namespace) -> int:
    async with cluster(args) as (kube, settings):
        ns = settings.namespace
        try:
            cronjob = await resources.get(kube, "CronJob", args.name, namespace=ns)
        except NotFound:
            raise CliError(f"No schedule {args.name!r} (`levrt schedule list` shows them).") from None
        if SCHEDULE_LABEL not in (cronjob["metadata"].get("labels") or {}):
            raise CliError(f"The CronJob {args.name!r} is not a levrt schedule; levrt leaves it alone.")
        if args.action in ("suspend", "resume"):
            await resources.patch(kube, "CronJob", args.name, {"spec": {"suspend": args.action == "suspend"}},
                                  namespace=ns)
            print(f"schedule {args.name}: {'suspended' if args.action == 'suspend' else 'resumed'}")
        elif args.action == "delete":
            await resources.delete(kube, "CronJob", args.name, namespace=ns, query={"propagationPolicy": "Background"})
            print(f"schedule {args.name}: deleted (its runs' job records stay in the store)")
        else:
            if cronjob.get("status", {}).get("active"):
                raise CliError(f"Schedule {args.name} has a run going; runs of a schedule never overlap.")
            template = cronjob["spec"]["jobTemplate"]
            job = {"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": f"{args.name}-now-{secrets.token_hex(3)}",
                                "labels": {**MANAGED_BY, **(template.get("metadata", {}).get("labels") or {})},
                                "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": args.name,
                                                     "uid": cronjob["metadata"]["uid"]}]},
                   "spec": template["spec"]}
            made = await resources.create(kube, "Job", job, namespace=ns)
            print(f"schedule {args.name}: run {made['metadata']['name']} started; its job shows in "
                  f"`levrt ps --schedule {args.name}`")
    return EXIT_OK


SCHEDULE = Command("schedule", "recurring runs on Kubernetes' CronJob: create, list, suspend, resume, run-now, delete",
                   _arguments, schedule_command)
