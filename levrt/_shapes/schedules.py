"""A schedule as Kubernetes' own CronJob: its name and cron expression checked, and the CronJob built
around the orchestration Pod ``levrt run --in-cluster`` would submit.

Why Kubernetes' CronJob and not a scheduler of ours: it already runs on every cluster, survives any
client, keeps a history, forbids overlapping runs (``concurrencyPolicy: Forbid``) and takes time
zones; levrt only builds it. Each run is an orchestration Pod (the same command, image, account and
settings), so it opens an ordinary job, whose record names the schedule (``SCHEDULE_ENV``). The
orchestration's files ride in a ConfigMap the CronJob owns, as ``--in-cluster`` ships them.
Pure: ``levrt._cli.schedules`` does the I/O.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from levrt._shapes.build import TaskObjects
from levrt._shapes.names import MANAGED_BY, RUN_LABEL
from levrt._shapes.orchestrator import orchestration_job_spec
from levrt.podenv import SCHEDULE_ENV

__all__ = ["MAX_NAME", "SCHEDULE_LABEL", "WHAT_ANNOTATION", "check_cron", "check_name",
           "schedule_objects", "schedule_row"]

SCHEDULE_LABEL = "levrt.io/schedule"
WHAT_ANNOTATION = "levrt.io/what"
"""What a schedule runs, as ``levrt ps`` would show it (``flows.py:sweep chunks=1``)."""
MAX_NAME = 52
"""A CronJob's name is at most 52 characters: its Jobs add 11 to it."""
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
          ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS))
HISTORY = 3
"""Finished runs (Jobs) a CronJob keeps of each outcome; their jobs' records stay in the store."""


def check_name(name: str) -> str:
    """A schedule's name: a DNS label of at most ``MAX_NAME`` characters; ``ValueError`` saying why."""
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a schedule name: lower-case letters, digits and '-', starting and ending "
                         f"with a letter or digit, at most {MAX_NAME} characters (e.g. nightly-sweep)")
    return name


def _value(text: str, low: int, high: int, names: list[str] | None, field: str, cron: str) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if names is MONTHS else 0)
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{cron!r}: {text!r} is not a {field} ({low}-{high}"
                         f"{', or ' + names[0] + '-' + names[-1] if names else ''})")
    return int(text)


def check_cron(cron: str) -> str:
    """A cron expression as Kubernetes' CronJob takes it: five fields (minute hour day-of-month month
    day-of-week; ``*``, lists, ranges, steps, month and day names) or a macro (``@daily``);
    ``ValueError`` naming the wrong part."""
    text = cron.strip()
    if text.lower() in MACROS:
        return text.lower()
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"{cron!r} is not a cron expression: five fields, minute hour day-of-month month "
                         "day-of-week (e.g. '*/15 * * * *', '0 3 * * mon-fri'), or @hourly, @daily, @weekly...")
    for part, (field, low, high, names) in zip(parts, FIELDS, strict=True):
        for item in part.split(","):
            span, slash, step = item.partition("/")
            if slash and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"{cron!r}: {item!r} has a step that is not a whole number above 0")
            if span == "*":
                continue
            first, dash, last = span.partition("-")
            start = _value(first, low, high, names, field, cron)
            if dash and _value(last, low, high, names, field, cron) < start:
                raise ValueError(f"{cron!r}: the {field} range {span!r} runs backwards")
    return " ".join(parts)


def schedule_objects(name: str, orchestration: TaskObjects, *, cron: str, time_zone: str | None, what: str,
                     suspended: bool = False) -> TaskObjects:
    """The CronJob running ``orchestration`` (``orchestrator_objects``' Pod, not detached) on ``cron``,
    with its ConfigMap (if any) renamed for the schedule; ``TaskObjects.pod`` is the CronJob, and
    ``owned`` the ConfigMap, to be created with the CronJob as its owner."""
    labels = {**MANAGED_BY, SCHEDULE_LABEL: name}
    pod = copy.deepcopy(orchestration.pod)
    pod["metadata"]["labels"] = {**{k: v for k, v in pod["metadata"]["labels"].items() if k != RUN_LABEL},
                                 SCHEDULE_LABEL: name}
    job_spec = orchestration_job_spec(pod)
    job_spec.pop("ttlSecondsAfterFinished")  # the CronJob keeps its last runs (its history limits)
    spec = job_spec["template"]["spec"]
    container = spec["containers"][0]
    container["env"] = [*container.get("env", []), {"name": SCHEDULE_ENV, "value": name}]
    owned = []
    for configmap in orchestration.owned:
        renamed = copy.deepcopy(configmap)
        old = renamed["metadata"]["name"]
        renamed["metadata"]["name"] = f"{name}-schedule-source"
        renamed["metadata"]["labels"] = {**{k: v for k, v in renamed["metadata"]["labels"].items() if k != RUN_LABEL},
                                         SCHEDULE_LABEL: name}
        for volume in spec.get("volumes", []):
            if volume.get("configMap", {}).get("name") == old:
                volume["configMap"]["name"] = renamed["metadata"]["name"]
        owned.append(renamed)
    cronjob: dict[str, Any] = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": pod["metadata"]["namespace"], "labels": labels,
                     "annotations": {WHAT_ANNOTATION: what}},
        "spec": {
            "schedule": cron, "concurrencyPolicy": "Forbid", "suspend": suspended,
            "successfulJobsHistoryLimit": HISTORY, "failedJobsHistoryLimit": HISTORY,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": job_spec,
            },
        },
    }
    if time_zone:
        cronjob["spec"]["timeZone"] = time_zone
    return TaskObjects(pod=cronjob, owned=owned)


def schedule_row(cronjob: Mapping[str, Any]) -> dict[str, Any]:
    """A CronJob as ``levrt schedule list`` shows it."""
    spec, status = cronjob.get("spec", {}), cronjob.get("status", {})
    what = (cronjob["metadata"].get("annotations") or {}).get(WHAT_ANNOTATION, "-")
    return {"name": cronjob["metadata"]["name"], "cron": spec.get("schedule"), "timeZone": spec.get("timeZone"),
            "suspended": bool(spec.get("suspend")), "what": what,
            "lastScheduled": status.get("lastScheduleTime"), "lastSucceeded": status.get("lastSuccessfulTime"),
            "running": len(status.get("active") or [])}
