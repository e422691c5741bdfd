"""The pinned versions CI installs agree with pyproject.toml and cover what levrt[dev] needs.

Why: ``tests/run`` installs from ``tests/constraints.txt`` (``tests/deps.py``). A dependency added
to pyproject without refreshing the pins would be installed at whatever version is newest that
day, the very drift the pins exist to stop; a pin outside pyproject's range would make CI test
versions no user can install. (Transitive dependencies are pinned by ``tests.deps freeze`` too, but
which ones there are depends on the versions installed, so they are not checked here: this test
also runs under ``tests.deps latest`` and ``minimum``.)
"""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests import deps

PINS = deps.parse_pins(deps.CONSTRAINTS.read_text())


def test_every_pin_is_inside_pyprojects_ranges() -> None:
    project = tomllib.loads((deps.REPO / "pyproject.toml").read_text())["project"]
    extras = [line for extra in deps.EXTRAS for line in project["optional-dependencies"][extra]]
    lines = project["dependencies"] + extras
    for requirement in map(Requirement, lines):
        pinned = PINS.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not pinned"
        assert requirement.specifier.contains(pinned, prereleases=True), f"{requirement}: pinned {pinned}"


def test_the_lowest_pins_are_the_runtime_dependencies_lower_bounds() -> None:
    project = tomllib.loads((deps.REPO / "pyproject.toml").read_text())["project"]
    floors = {Requirement(line).name: Requirement(line).specifier for line in project["dependencies"]}
    lowest = dict(pin.split("==") for pin in deps.lowest_pins())
    assert set(lowest) >= {"kubernetes_asyncio", "aiohttp", "pymongo", "cloudpickle", "rich"}
    for name, version in lowest.items():
        assert floors[name].contains(version), f"{name}=={version} is outside {floors[name]}"
        assert f">={version}" in str(floors[name]), f"{name}=={version} is not the floor of {floors[name]}"


def test_parse_pins_skips_comments_and_normalises_names() -> None:
    assert deps.parse_pins("# a comment == x\nPyYAML==6.0.3\n\nkubernetes_asyncio==36.1.0\n") == {
        "pyyaml": "6.0.3", "kubernetes-asyncio": "36.1.0"}
