"""``Settings.runtime_host_path``: the bundle from a node directory instead of an init-container copy."""

from __future__ import annotations

import pytest

import levrt
from levrt import Cr, lev
from levrt._shapes.delivery import runtime_delivery
from levrt.errors import SettingsError
from levrt.settings import Settings
from tests.helpers import build


@levrt.remote
def entry() -> None:
    lev.set(ok=1)


CR = Cr("busybox:1.36", entry=entry())


def test_copy_mode_copies_the_bundle_in_a_poststart_hook_before_main_starts() -> None:
    spec = build(CR).pod["spec"]
    assert "initContainers" not in spec
    copier, main = spec["containers"]
    assert (copier["name"], main["name"]) == ("levrt-runtime", "main")
    hook = copier["lifecycle"]["postStart"]["exec"]["command"]
    assert hook[0] == "/levrt/bin/python3" and hook[-2:] == ["bin", "lib"] and ".copied" in hook[2]
    assert ".copied" in copier["command"][2]  # it exits once the hook has copied
    assert {"name": "levrt-runtime", "emptyDir": {}} in spec["volumes"]


def test_with_services_the_copy_stays_an_init_container_that_runs_first() -> None:
    spec = build(Cr("busybox:1.36", entry=entry(), services={"db": Cr("redis:7")})).pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["levrt-runtime", "db"]
    assert [c["name"] for c in spec["containers"]] == ["main"]
    assert "lifecycle" not in spec["initContainers"][0]


def test_host_path_mounts_the_node_cache_and_skips_the_init_container() -> None:
    spec = build(CR, settings=Settings(runtime_host_path="/var/lib/levrt/runtime/2.0.0")).pod["spec"]
    assert "initContainers" not in spec
    assert {"name": "levrt-runtime",
            "hostPath": {"path": "/var/lib/levrt/runtime/2.0.0", "type": "Directory"}} in spec["volumes"]
    mount = next(m for m in spec["containers"][-1]["volumeMounts"] if m["name"] == "levrt-runtime")
    assert mount == {"name": "levrt-runtime", "mountPath": "/levrt", "readOnly": True}


def test_host_path_from_env_and_validated() -> None:
    assert Settings.from_env({"LEVRT_RUNTIME_HOST_PATH": "/x/y"}).runtime_host_path == "/x/y"
    with pytest.raises(SettingsError, match="absolute path"):
        Settings(runtime_host_path="relative/dir")


@pytest.mark.parametrize(
    ("settings", "services", "volume", "init", "regular"),
    [
        (Settings(), False, "emptyDir", [], ["levrt-runtime"]),
        (Settings(runtime_mode="copy"), True, "emptyDir", ["levrt-runtime"], []),
        (Settings(runtime_mode="image"), True, "image", [], []),
        (Settings(runtime_host_path="/var/lib/levrt/runtime/2.0.0"), False, "hostPath", [], []),
    ],
)
def test_the_runtime_delivery_names_its_volume_and_where_its_copier_goes(
    settings: Settings, services: bool, volume: str, init: list[str], regular: list[str]
) -> None:
    delivery = runtime_delivery(settings, services=services)
    assert delivery.volume["name"] == "levrt-runtime" and volume in delivery.volume
    assert [c["name"] for c in delivery.init_containers] == init
    assert [c["name"] for c in delivery.containers] == regular
    assert all("lifecycle" in c for c in delivery.containers)  # a regular copier copies in its postStart hook
