"""1.x platform images: ``Cr(".user.tool:tag")`` runs ``<LEVRT_IMAGE_REGISTRY>/user.tool:tag``."""

from __future__ import annotations

import pytest

from levrt import Cr
from levrt.errors import CrError, SettingsError
from levrt.settings import Settings
from tests.helpers import build

REGISTRY = Settings(image_registry="platform.levrt.test:5000/tools")


def images(cr: Cr, settings: Settings) -> list[str]:
    spec = build(cr, settings=settings).pod["spec"]
    return [c["image"] for c in [*spec.get("initContainers", []), *spec["containers"]]]


def test_a_platform_image_runs_from_the_configured_registry() -> None:
    cr = Cr(".alice.nmap:7.9", cmd=["-sn"], services={"db": Cr(".alice.redis")})
    assert images(cr, REGISTRY) == [
        "platform.levrt.test:5000/tools/alice.redis",
        "platform.levrt.test:5000/tools/alice.nmap:7.9",
    ]
    assert images(Cr("busybox:1.36"), REGISTRY) == ["busybox:1.36"]  # other images are left alone
    assert cr.image == ".alice.nmap:7.9"  # the Cr keeps what the author wrote


def test_the_registry_comes_from_the_environment() -> None:
    settings = Settings.from_env({"LEVRT_IMAGE_REGISTRY": "registry.example"})
    assert settings.image_registry == "registry.example"
    assert images(Cr(".bob.tool:1"), settings) == ["registry.example/bob.tool:1"]


def test_without_a_registry_the_error_names_the_setting_before_anything_is_built() -> None:
    with pytest.raises(SettingsError, match=r"'\.alice\.nmap:7\.9'.*LEVRT_IMAGE_REGISTRY"):
        build(Cr(".alice.nmap:7.9"), settings=Settings())


@pytest.mark.parametrize("image", [".", "..tool", ".Alice.Tool", ".alice/tool", ".alice.tool:", ".a..b", ". x"])
def test_a_malformed_platform_image_is_named(image: str) -> None:
    with pytest.raises(CrError, match="not a platform image name") as info:
        Cr(image)
    assert repr(image) in str(info.value)


@pytest.mark.parametrize("registry", ["https://registry.example", "registry.example/", "reg istry", "host:port"])
def test_a_malformed_registry_is_refused(registry: str) -> None:
    with pytest.raises(SettingsError, match="LEVRT_IMAGE_REGISTRY="):
        Settings(image_registry=registry)
