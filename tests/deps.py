"""The versions CI installs, and the two ways to try others on purpose: ``python3 -m tests.deps``.

Why: pyproject.toml gives users ranges, so a release made overnight (cloudpickle 3.1.3 did it)
would turn a green CI red with nothing changed here. CI installs from ``tests/constraints.txt``,
the exact versions the whole suite last passed with; newer and older versions are tried by hand:

- ``freeze``: write the constraints from this environment (every distribution ``levrt[dev]``
  needs, transitively, at the version installed here). Run it after the suite passed.
- ``latest [--write]``: a fresh virtualenv with the newest versions the ranges allow, the fast tier
  in it, and what differs from the constraints; ``--write`` refreshes the constraints from it when
  the fast tier passed (then run the whole suite before committing them).
- ``minimum``: a fresh virtualenv with the lowest version each runtime dependency's range allows,
  and the fast tier's tests in it (not its lint and type checks: older stubs are no fault of the code).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "tests" / "constraints.txt"
FAST_TIER = REPO / "tests" / "fast-tier"
EXTRAS = ("dev",)
HEADER = (
    "# The versions the whole suite (bash tests/run) last passed with; tests/run installs these.\n"
    "# Refresh: python3 -m tests.deps latest --write (then run the suite), or python3 -m tests.deps freeze.\n"
)


def closure(root: str = "levrt", extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """``{name: version}`` of every installed distribution ``root[extras]`` needs, transitively."""
    found: dict[str, str] = {}
    pending: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while pending:
        name, wanted = pending.pop()
        dist = metadata.distribution(name)
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({**default_environment(), "extra": extra}) for extra in ("", *wanted)
            ):
                continue
            key = canonicalize_name(requirement.name)
            if key not in found:
                found[key] = metadata.version(requirement.name)
                pending.append((requirement.name, tuple(requirement.extras)))
    return dict(sorted(found.items()))


def constraints_text(versions: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in versions.items())


def parse_pins(text: str) -> dict[str, str]:
    """``{name: version}`` from ``name==version`` lines; comments skipped."""
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def lowest_pins() -> list[str]:
    """``name==X`` for each runtime dependency with a lower bound ``>=X`` in pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = []
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        floor = next((spec.version for spec in requirement.specifier if spec.operator == ">="), None)
        if floor is not None:
            pins.append(f"{requirement.name}=={floor}")
    return pins


def _venv(name: str) -> Path:
    """A fresh virtualenv under the cache (the fast tier's bundle tests copy its Python)."""
    root = Path(os.environ.get("LEVRT_CACHE", Path.home() / ".cache" / "levrt")) / "venvs" / name
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    return root


def _pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *args], check=True, cwd=REPO)


def _fast_tier(venv: Path, *args: str) -> int:
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    return subprocess.run(["bash", str(FAST_TIER), *args], env=env, cwd=REPO).returncode


def _versions_in(venv: Path) -> dict[str, str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "tests.deps", "show"], check=True, cwd=REPO,
                         capture_output=True, text=True).stdout
    return parse_pins(out)


def _report(pinned: dict[str, str], tried: dict[str, str]) -> None:
    changed = [name for name in sorted(set(pinned) | set(tried)) if pinned.get(name) != tried.get(name)]
    if not changed:
        print("same versions as tests/constraints.txt")
    for name in changed:
        print(f"  {name}: {pinned.get(name, '-')} (pinned) -> {tried.get(name, '-')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.deps", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("freeze", help="write tests/constraints.txt from this environment")
    sub.add_parser("show", help="print the versions tests.deps freeze would write")
    latest = sub.add_parser("latest", help="the fast tier with the newest versions the ranges allow")
    latest.add_argument("--write", action="store_true", help="refresh tests/constraints.txt when it passes")
    sub.add_parser("minimum", help="the fast tier with each runtime dependency at its lowest allowed version")
    args = parser.parse_args(argv)
    if args.command == "show":
        print(constraints_text(closure()), end="")
        return 0
    if args.command == "freeze":
        CONSTRAINTS.write_text(constraints_text(closure()))
        print(f"wrote {CONSTRAINTS.relative_to(REPO)}")
        return 0
    venv = _venv(args.command)
    extra = lowest_pins() if args.command == "minimum" else []
    print(f"== {args.command}: installing into {venv}" + (f" ({' '.join(extra)})" if extra else ""), flush=True)
    _pip(venv, "--upgrade", "-e", f".[{','.join(EXTRAS)}]", *extra)
    tried = _versions_in(venv)
    _report(parse_pins(CONSTRAINTS.read_text()), tried)
    code = _fast_tier(venv, *(["--tests-only"] if args.command == "minimum" else []))
    print(f"== the fast tier {'passed' if code == 0 else 'FAILED'} with these versions", flush=True)
    if code == 0 and getattr(args, "write", False):
        CONSTRAINTS.write_text(constraints_text(tried))
        print(f"wrote {CONSTRAINTS.relative_to(REPO)}: run bash tests/run before committing it")
    return code


if __name__ == "__main__":
    sys.exit(main())

