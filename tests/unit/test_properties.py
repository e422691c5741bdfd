"""Bad input at scale: thousands of generated ``Cr``s, valid and invalid (issue 12, item 6).

Why property-based on top of tests/unit/test_validation.py: the hand-written cases pin the
messages of the mistakes someone thought of; generated arguments find the ones nobody did (a
trailing newline passing a ``$``-anchored regex, a lone surrogate raising ``UnicodeEncodeError``
instead of a ``LevrtError``). Every invalid Cr must raise a ``LevrtError`` whose message quotes the
bad value; every valid one must build its objects. The apiserver's verdict on the valid ones is
the cluster tier's part (tests/e2e/test_dry_run.py).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings

from levrt import Cr
from levrt.errors import LevrtError
from levrt.settings import Settings
from tests.helpers import build
from tests.strategies import REGISTRY, Bad, bad_cr_kwargs, cr_kwargs

SETTINGS = Settings(image_registry=REGISTRY)
# Thousands of examples (about 20 s, most of it Hypothesis drawing them; a build takes well under a
# millisecond). No example database: a failure prints its example, and the tree stays clean.
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@settings(max_examples=1000, **FAST)
@given(cr_kwargs())
def test_every_valid_cr_builds_its_objects(kwargs: dict[str, Any]) -> None:
    cr = Cr(**kwargs)
    objects = build(cr, settings=SETTINGS)
    pod = objects.pod
    assert pod["metadata"]["name"] == "lev-j1-t0"
    # JSON-ready (what the client sends) and encodable as UTF-8 (what the apiserver reads).
    json.dumps(objects.all(), ensure_ascii=False).encode("utf-8")
    containers = {c["name"]: c for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])}
    main = containers["main"]
    assert main.get("args", []) == list(cr.cmd)
    env = {e["name"]: e.get("value") for e in main.get("env", [])}
    for item in cr.env:
        key, _, value = item.partition("=")
        assert env[key] == value
    for name in cr.services:
        assert containers[name]["restartPolicy"] == "Always"
    mounted = {m["mountPath"] for c in containers.values() for m in c.get("volumeMounts", [])}
    assert set(cr.files) <= mounted
    assert bool(pod["spec"].get("hostNetwork")) == cr.host
    assert pod["spec"]["automountServiceAccountToken"] is False
    if cr.entry is not None:
        secrets = [o for o in objects.owned if o["kind"] == "Secret"]
        assert len(secrets) == 1 and "main" in secrets[0]["data"]


@settings(max_examples=2000, **FAST)
@given(bad_cr_kwargs())
def test_every_invalid_cr_raises_a_levrt_error_naming_the_value(bad: Bad) -> None:
    try:
        Cr(**bad.kwargs)
    except LevrtError as exc:
        assert bad.needle in str(exc), f"{bad.field}: {str(exc)!r} does not name {bad.needle!r}"
    else:
        raise AssertionError(f"Cr accepted {bad.field}={bad.kwargs[bad.field]!r:.200}")


# Regression cases for what the generated inputs found (each was accepted by Cr, then refused by the
# apiserver or raised a non-levrt exception).
FOUND = [
    ({"cmd": ["ok", "\ud800"]}, "'\\ud800'"),  # UnicodeEncodeError before
    ({"env": ["K=\udfff"]}, "'K=\\udfff'"),
    ({"files": {"/etc/\ud800": b"x"}}, "'/etc/\\ud800'"),
    ({"schema": "ns/x@1.0\n"}, "'ns/x@1.0\\n'"),  # `$` matches before a trailing newline
    ({"schema": "ns/x@\u0661.\u0660"}, "'ns/x@"),  # \d matches any Unicode digit
    ({"image": "alpine\n"}, "'alpine\\n'"),
    ({"env": ["KEY\n=1"]}, "'KEY\\n=1'"),
    ({"services": {"svc\n": Cr("redis:7")}}, "'svc\\n'"),
    ({"node_selector": {"disk": "ssd\n"}}, "'ssd\\n'"),
    ({"resources": {"limits": {"cpu": "1\n"}}}, "'1\\n'"),
    ({"links": {"Proxy": "10.0.0.1"}}, "'Proxy'"),  # the apiserver wants lowercase host aliases
    ({"links": {"p": "::ffff:10.0.0.1"}}, "'10.0.0.1'"),  # ... and no IPv4-mapped IPv6
    ({"timeout": 10**20}, "100000000000000000000"),  # activeDeadlineSeconds overflowed int64
]


def test_what_generated_inputs_found_is_rejected() -> None:
    for kwargs, needle in FOUND:
        try:
            Cr(**{"image": "alpine:3.20", **kwargs})
        except LevrtError as exc:
            assert needle in str(exc), (kwargs, str(exc))
        else:
            raise AssertionError(f"Cr accepted {kwargs!r}")
