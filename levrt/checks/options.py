"""The checks of the run options, shared by ``Settings`` (the defaults) and ``Cr`` (per task).

Why shared: one check per option, parameterised by the error to raise and the name the user
wrote, so a value is judged the same way whether it comes from ``LEVRT_RESOURCES`` or
``Cr(resources=...)`` (DESIGN.md "Run options").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from levrt.checks.patterns import DNS1123_SUBDOMAIN, LABEL_NAME_RE, QUANTITY_RE
from levrt.errors import LevrtError

__all__ = [
    "MAX_TIMEOUT",
    "RESOURCE_SECTIONS",
    "check_node_selector",
    "check_resources",
    "check_timeout",
    "check_tolerations",
    "quantity",
]

RESOURCE_SECTIONS = ("limits", "requests")
# Beyond this a timeout is no limit, and activeDeadlineSeconds (timeout + margins) could overflow
# the apiserver's int64.
MAX_TIMEOUT = 365 * 24 * 3600
_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")},
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
_TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def check_timeout(value: object, *, what: str, error: type[LevrtError]) -> int | None:
    """A whole number of seconds 1..``MAX_TIMEOUT``, or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        hint = f" (e.g. {what}={max(1, math.ceil(value))})" if isinstance(value, float) and value > 0 else ""
        raise error(f"{what}={value!r}; use a whole number of seconds >= 1{hint}, or None.")
    if isinstance(value, int) and value > MAX_TIMEOUT:
        raise error(f"{what}={value!r} is over {MAX_TIMEOUT} seconds (a year); use None for no time limit.")
    return value


def quantity(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity string ('500m' → 0.5, '1Gi' → 1073741824), or None."""
    match = QUANTITY_RE.match(text)
    if match is None:
        return None
    suffix = match["suffix"] or ""
    number = Decimal(match["num"])
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIX[suffix]


def check_resources(value: object, *, what: str, error: type[LevrtError]) -> dict[str, dict[str, str]] | None:
    """Kubernetes' ``{"requests": {...}, "limits": {...}}`` with names and quantities checked;
    numbers become quantity strings. None stays None."""
    if value is None:
        return None
    example = "{'limits': {'cpu': '1', 'memory': '512Mi'}}"
    if not isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} must be a dict like {example}.")
    checked: dict[str, dict[str, str]] = {}
    for section, amounts in value.items():
        if section not in RESOURCE_SECTIONS:
            if isinstance(section, str) and (_resource_name_ok(section) or section.lower() in _RESOURCE_NAMES):
                raise error(
                    f"{what} has {section!r} at the top level; amounts go under 'limits' or 'requests': "
                    f"use {{'limits': {{{section!r}: {amounts!r}}}}}."
                )
            raise error(f"{what} key {section!r} is not 'limits' or 'requests' (e.g. {example}).")
        if not isinstance(amounts, Mapping):
            raise error(f"{what}[{section!r}]={amounts!r:.60} must be a dict of amounts, e.g. {{'cpu': '1'}}.")
        checked[section] = {}
        for name, amount in amounts.items():
            where = f"{what}[{section!r}][{name!r}]"
            if not isinstance(name, str) or not _resource_name_ok(name):
                hint = ""
                if isinstance(name, str):
                    close = [n for n in _RESOURCE_NAMES if n.startswith(name.lower()[:3])]
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                raise error(
                    f"{what}[{section!r}] names {name!r}, which is not a resource: use 'cpu', 'memory', "
                    f"'ephemeral-storage', 'hugepages-<size>' or an extended resource 'domain/name'.{hint}"
                )
            if isinstance(amount, bool) or not isinstance(amount, int | float | str):
                raise error(f"{where}={amount!r} must be a quantity such as '500m', '2' or '1Gi'.")
            text = amount if isinstance(amount, str) else format(Decimal(str(amount)), "f")
            if quantity(text) is None:
                hint = " Memory is written '512Mi' or '1Gi' (no 'B')." if text[-1:] in "bB" else ""
                raise error(
                    f"{where}={amount!r} is not a Kubernetes quantity (e.g. '500m' or '2' for cpu, '512Mi' "
                    f"or '1Gi' for memory).{hint}"
                )
            checked[section][name] = text
    requests, limits = checked.get("requests", {}), checked.get("limits", {})
    for name, asked in requests.items():
        if name in limits and (quantity(asked) or 0) > (quantity(limits[name]) or 0):
            raise error(
                f"{what} requests {name}={asked!r}, more than its limit {limits[name]!r}. A request must not "
                "exceed the limit: raise the limit or lower the request."
            )
    return checked


def _resource_name_ok(name: str) -> bool:
    if name in _RESOURCE_NAMES or (name.startswith("hugepages-") and quantity(name[10:]) is not None):
        return True
    prefix, slash, rest = name.partition("/")
    return bool(slash) and _label_key_ok(name) and "." in prefix and bool(rest)


def _label_key_ok(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not DNS1123_SUBDOMAIN.match(prefix) or len(prefix) > 253):
        return False
    return len(name) <= 63 and bool(LABEL_NAME_RE.match(name))


def check_node_selector(value: object, *, what: str, error: type[LevrtError]) -> dict[str, str] | None:
    """A dict of label key to label value (both as Kubernetes accepts them), or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} must be a dict of node label to value, e.g. {{'disktype': 'ssd'}}.")
    checked: dict[str, str] = {}
    for key, label in value.items():
        if not isinstance(key, str) or not _label_key_ok(key):
            raise error(
                f"{what} key {key!r} is not a label key ('[prefix/]name': name up to 63 letters, digits, "
                "'-', '_', '.'; e.g. 'kubernetes.io/hostname')."
            )
        if not isinstance(label, str):
            raise error(f"{what}[{key!r}]={label!r} must be a str (label values are strings: {str(label)!r}).")
        if label and (len(label) > 63 or not LABEL_NAME_RE.match(label)):
            raise error(
                f"{what}[{key!r}]={label!r} is not a label value (up to 63 letters, digits, '-', '_', '.', "
                "starting and ending with a letter or digit)."
            )
        checked[key] = label
    return checked


def check_tolerations(value: object, *, what: str, error: type[LevrtError]) -> list[dict[str, Any]]:
    """A list of Kubernetes tolerations (fields, operator and effect checked); None → []."""
    if value is None:
        return []
    example = "[{'key': 'dedicated', 'operator': 'Equal', 'value': 'scan', 'effect': 'NoSchedule'}]"
    if isinstance(value, Mapping):
        raise error(f"{what}={value!r:.80} is one toleration; pass a list of them: {what}=[{value!r:.60}].")
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise error(f"{what}={value!r:.80} must be a list of toleration dicts, e.g. {example}.")
    checked: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise error(f"{what} item {item!r:.60} must be a dict, e.g. {example}.")
        unknown = [k for k in item if k not in _TOLERATION_FIELDS]
        if unknown:
            raise error(
                f"{what} item {dict(item)!r:.80} has {unknown[0]!r}, not a toleration field (fields: "
                f"{', '.join(_TOLERATION_FIELDS)})."
            )
        for field in ("key", "operator", "value", "effect"):
            if not isinstance(item.get(field, ""), str):
                raise error(f"{what} item {dict(item)!r:.80}: {field} must be a str.")
        key, operator = item.get("key", ""), item.get("operator", "Equal")
        if key and not _label_key_ok(key):
            raise error(f"{what} item {dict(item)!r:.80}: key {key!r} is not a label key.")
        if operator not in ("Equal", "Exists"):
            raise error(f"{what} item {dict(item)!r:.80}: operator {operator!r}; use 'Equal' or 'Exists'.")
        if operator == "Exists" and item.get("value"):
            raise error(f"{what} item {dict(item)!r:.80}: operator 'Exists' takes no value; drop the value.")
        if not key and operator != "Exists":
            raise error(
                f"{what} item {dict(item)!r:.80}: without a key the operator must be 'Exists' (tolerate every taint)."
            )
        effect = item.get("effect", "")
        if effect and effect not in _TAINT_EFFECTS:
            raise error(f"{what} item {dict(item)!r:.80}: effect {effect!r}; use one of {', '.join(_TAINT_EFFECTS)}.")
        seconds = item.get("tolerationSeconds")
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int):
                raise error(f"{what} item {dict(item)!r:.80}: tolerationSeconds must be a whole number of seconds.")
            if effect != "NoExecute":
                raise error(f"{what} item {dict(item)!r:.80}: tolerationSeconds applies to effect 'NoExecute' only.")
        checked.append(copy.deepcopy(dict(item)))
    return checked
