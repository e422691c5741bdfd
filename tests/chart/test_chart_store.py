"""The store's credentials and engines in the rendered chart (issue 12, items 3 and 4).

Why: task Pods run hostile-facing tools; the URI they get (Secret ``levrt-store``) must not be the
store's root credential, and ``store.engine: external`` must make no store of its own while every
consumer reads the platform team's Secret. FerretDB in the test cluster has no authentication, so
the MongoDB user itself is checked here, on what the chart renders (real helm, no cluster).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.chart import CHART, by_key, helm_binary, render, run_helm

pytestmark = pytest.mark.helm


@pytest.fixture(scope="module")
def helm() -> Iterator[str]:
    yield helm_binary()


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_pods_get_an_application_user_limited_to_the_levrt_database(helm: str) -> None:
    objects = by_key(render(helm, "settings.database=scans"))
    auth = objects[("Secret", "levrt-store-auth")]["stringData"]
    uri = urlsplit(objects[("Secret", "levrt-store")]["stringData"]["uri"])
    assert (uri.username, uri.password) == (auth["appUsername"], auth["appPassword"])
    assert auth["appUsername"] != auth["username"] and auth["appPassword"] != auth["password"]
    assert auth["password"] not in objects[("Secret", "levrt-store")]["stringData"]["uri"]
    assert uri.path == "/scans" and parse_qs(uri.query) == {"authSource": ["scans"]}

    job = objects[("Job", "levrt-store-user")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = env_of(container)
    assert env["LEVRT_DB"] == "scans"
    assert env["ROOT_PASSWORD"] == {"secretKeyRef": {"name": "levrt-store-auth", "key": "password"}}
    script = container["command"][-1]
    assert ('roles = [{role: "readWrite", db: env.LEVRT_DB}, {role: "readWrite", db: env.JOURNAL_DB},\n'
            '               {role: "read", db: env.REGISTRY_DB}]') in script
    assert env["JOURNAL_DB"] == "scans_journal"
    assert "admin\").runCommand({ping" in script
    assert all(auth[k] not in " ".join(container["command"])
               for k in ("password", "appPassword", "registryPassword", "taskPassword"))
    assert pod["spec"]["automountServiceAccountToken"] is False
    # The store's NetworkPolicy lets this Job in.
    policy = objects[("NetworkPolicy", "levrt-store")]
    sources = [s.get("podSelector", {}).get("matchLabels") for s in policy["spec"]["ingress"][0]["from"]]
    assert {"levrt.io/role": "store-admin"} in sources
    assert pod["metadata"]["labels"]["levrt.io/role"] == "store-admin"


def test_the_root_credential_reaches_only_the_store_and_its_user_job(helm: str) -> None:
    objects = by_key(render(helm))
    readers = []
    for (kind, name), obj in objects.items():
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for value in env_of(container).values():
                ref = (value or {}).get("secretKeyRef", {}) if isinstance(value, dict) else {}
                if ref.get("name") == "levrt-store-auth" and ref.get("key") == "password":
                    readers.append(f"{kind}/{name}")
    assert sorted(readers) == ["Job/levrt-store-user", "StatefulSet/levrt-store"]


def test_ferretdb_has_no_users_and_no_user_job(helm: str) -> None:
    objects = by_key(render(helm, "store.engine=ferretdb"))
    assert ("Job", "levrt-store-user") not in objects and ("Secret", "levrt-store-auth") not in objects
    assert urlsplit(objects[("Secret", "levrt-store")]["stringData"]["uri"]).username is None


def test_an_external_store_makes_no_store_and_points_everyone_at_the_teams_secret(helm: str) -> None:
    objects = by_key(render(helm, "store.engine=external", "store.external.secretName=corp-mongo"))
    kinds = {key for key in objects if key[0] in ("StatefulSet", "Service", "Secret", "Job", "NetworkPolicy")}
    assert not any("store" in name for _, name in kinds), kinds
    assert objects[("ConfigMap", "levrt-settings")]["data"]["LEVRT_STORE_SECRET"] == "corp-mongo"


def test_an_external_store_needs_its_secret(helm: str) -> None:
    result = run_helm(helm, "template", "levrt", str(CHART), "--set", "store.engine=external")
    assert result.returncode != 0 and "external/secretName" in result.stderr
    result = run_helm(helm, "template", "levrt", str(CHART), "--set", "store.engine=external",
                      "--set", "store.external.secretName=Not_A_Name")
    assert result.returncode != 0 and "secretName" in result.stderr


def test_the_registry_is_written_only_by_its_own_user_whose_uri_no_pod_reads(helm: str) -> None:
    """Issue 23, item 5: a task container holds the application user's URI; with it the registry can
    be read (orchestrations run published tools) but not written."""
    from levrt._core.registry import REGISTRY_DATABASE

    objects = by_key(render(helm))
    auth = objects[("Secret", "levrt-store-auth")]["stringData"]
    registry = urlsplit(objects[("Secret", "levrt-registry")]["stringData"]["uri"])
    assert (registry.username, registry.password) == (auth["registryUsername"], auth["registryPassword"])
    assert registry.path == f"/{REGISTRY_DATABASE}" and parse_qs(registry.query) == {"authSource": [REGISTRY_DATABASE]}
    assert len({auth["password"], auth["appPassword"], auth["registryPassword"], auth["taskPassword"]}) == 4

    container = objects[("Job", "levrt-store-user")]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["REGISTRY_DB"] == REGISTRY_DATABASE
    script = container["command"][-1]
    assert ('const roles = [{role: "readWrite", db: env.LEVRT_DB}, {role: "readWrite", db: env.JOURNAL_DB},\n'
            '               {role: "read", db: env.REGISTRY_DB}];') in script  # the app user: registry read-only
    assert ('const registryRoles = [{role: "readWrite", db: env.REGISTRY_DB}, {role: "readWrite", db: env.LEVRT_DB}]'
            in script)
    assert "ensure(env.REGISTRY_DB, env.REGISTRY_USERNAME, env.REGISTRY_PASSWORD, registryRoles)" in script

    readers = []  # nothing the chart runs reads the registry's credential but the Job that creates the user
    for (kind, name), obj in objects.items():
        spec = obj.get("spec", {}).get("template", {}).get("spec", {}) or obj.get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for value in env_of(container).values():
                ref = (value or {}).get("secretKeyRef", {}) if isinstance(value, dict) else {}
                if ref.get("name") == "levrt-registry" or ref.get("key") == "registryPassword":
                    readers.append(f"{kind}/{name}")
    assert readers == ["Job/levrt-store-user"]


def test_ferretdb_keeps_the_registry_apart_by_database_only(helm: str) -> None:
    objects = by_key(render(helm, "store.engine=ferretdb"))
    assert urlsplit(objects[("Secret", "levrt-registry")]["stringData"]["uri"]).username is None


def test_task_pods_get_a_user_that_cannot_write_levrts_journal(helm: str) -> None:
    """Issue 23, item 5: job records (their owners), task status and log archives are in levrt's
    journal database, which the task user may not write; task Pods get only the task user's URI."""
    from levrt._clients.store import journal_database
    from levrt._shapes.build import build_task
    from levrt.cr import Cr
    from levrt.settings import Settings

    objects = by_key(render(helm))
    auth = objects[("Secret", "levrt-store-auth")]["stringData"]
    task_uri = urlsplit(objects[("Secret", "levrt-store-task")]["stringData"]["uri"])
    assert (task_uri.username, task_uri.password) == (auth["taskUsername"], auth["taskPassword"])
    assert task_uri.path == "/levrt" and auth["taskUsername"] not in (auth["appUsername"], auth["username"])
    container = objects[("Job", "levrt-store-user")]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["JOURNAL_DB"] == journal_database("levrt")
    script = container["command"][-1]
    assert ('ensure(env.LEVRT_DB, env.TASK_USERNAME, env.TASK_PASSWORD, [{role: "readWrite", db: env.LEVRT_DB}]);'
            in script)
    # What the SDK builds for a task on the chart's store (``task_credentials``) reads exactly that Secret,
    # in every container that reaches the store.
    settings = Settings(runtime_image="levrt.local/runtime:t", task_store_secret="levrt-store-task")  # as a job sets
    pod = build_task(Cr("busybox:1.36", cmd=["true"]), job=1, task=0, collection="default", settings=settings).pod
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for c in pod["spec"]["containers"] + pod["spec"].get(
        "initContainers", []) for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs <= {"levrt-store-task"}


def test_ferretdb_gives_tasks_the_same_address_under_the_task_secret(helm: str) -> None:
    objects = by_key(render(helm, "store.engine=ferretdb"))
    assert (objects[("Secret", "levrt-store-task")]["stringData"]["uri"]
            == objects[("Secret", "levrt-store")]["stringData"]["uri"])
