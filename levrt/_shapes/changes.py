"""What changed between two jobs' records of one schema: added, removed and changed records by key.

Why pure and apart: ``levrt diff``, the SDK's ``levrt.changes`` and the job record's counts must agree
on one reading of "the same record" (the values of the key fields), of "changed" (any other field
differs, levrt's own fields aside) and of which earlier job a run is compared with by default (the
newest earlier job of the same tool or workflow). Nothing here reads the store.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["Changes", "compare", "key_of", "parse_key", "same_workflow", "workflow_of"]

IGNORED = frozenset({"_id", "_artifacts"})
"""levrt's own fields of a record: where it came from (job, task) and its files' listing (a report's
bytes change with its timestamps), never what a scan found."""
MISSING = object()


def parse_key(text: str) -> tuple[str, ...]:
    """``--key host,port`` as field names (dotted paths reach into sub-documents); ``ValueError``."""
    fields = tuple(part.strip() for part in text.split(","))
    if not text.strip() or any(not f or f.startswith(".") or f.endswith(".") or ".." in f for f in fields):
        raise ValueError(f"--key {text!r}: give one or more field names, comma-separated (e.g. host,port)")
    if any(f.split(".")[0] in IGNORED for f in fields):
        raise ValueError(f"--key {text!r}: _id and _artifacts are levrt's own fields, not a record's key")
    return fields


def _at(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def key_of(record: Mapping[str, Any], fields: Sequence[str]) -> tuple[str, ...] | None:
    """The record's key (each field's value as canonical JSON); None when a key field is missing."""
    values = [_at(record, f) for f in fields]
    if any(v is MISSING for v in values):
        return None
    return tuple(_canonical(v) for v in values)


def _body(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in IGNORED}


@dataclasses.dataclass(frozen=True)
class Changes:
    """The records of the newer job not in the older (``added``), the older's no longer there
    (``removed``) and those whose other fields differ (``changed``: ``{"key", "before", "after",
    "fields"}``), by key; records without every key field are counted apart (``unkeyed``)."""

    key: tuple[str, ...]
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    unkeyed: int = 0

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                "unkeyed": self.unkeyed}


def compare(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]],
            key: Sequence[str]) -> Changes:
    """``after``'s records against ``before``'s, matched by ``key``. Records sharing a key in one job
    are taken together: the key is changed when the set of them differs."""
    sides: list[dict[tuple[str, ...], list[dict[str, Any]]]] = [{}, {}]
    unkeyed = 0
    for side, records in zip(sides, (before, after), strict=True):
        for record in records:
            found = key_of(record, key)
            if found is None:
                unkeyed += 1
                continue
            side.setdefault(found, []).append(_body(record))
    old, new = sides
    added = [r for k, rs in new.items() if k not in old for r in rs]
    removed = [r for k, rs in old.items() if k not in new for r in rs]
    changed = []
    for found, records in new.items():
        if found not in old:
            continue
        then = old[found]
        if sorted(map(_canonical, then)) == sorted(map(_canonical, records)):
            continue
        fields = sorted({f for r in [*then, *records] for f in r
                         if len({_canonical(x.get(f)) for x in [*then, *records]}) > 1})
        changed.append({"key": {f: json.loads(v) for f, v in zip(key, found, strict=True)},
                        "before": then[0] if len(then) == 1 else then,
                        "after": records[0] if len(records) == 1 else records, "fields": fields})
    return Changes(tuple(key), added, removed, changed, unkeyed)


def workflow_of(what: Mapping[str, Any] | None) -> str | None:
    """What a job ran, versions aside: ``demo/nmap:scan.tcp`` for a published tool at any version,
    else its target (``flows.py:sweep``); None when its record does not say."""
    if not what or not what.get("target"):
        return None
    target = str(what["target"])
    if what.get("tool"):
        return f"{what['tool']}:{target.rpartition(':')[2]}"
    return target


def same_workflow(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    found = workflow_of(a)
    return found is not None and found == workflow_of(b)
