"""1.x authors append the image's Python 3.10 site-packages to ``sys.path``: pure-Python packages
import under levrt's runtime, a module compiled for 3.10 fails saying which Python runs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OTHER = "3.10" if sys.version_info[:2] != (3, 10) else "3.9"
TAG = OTHER.replace(".", "")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An image's site-packages for another Python: a pure package, and one with a compiled part."""
    packages = tmp_path / f"python{OTHER}" / "site-packages"
    (packages / "purepkg").mkdir(parents=True)
    (packages / "purepkg" / "__init__.py").write_text("ANSWER = 42\n")
    (packages / "mixed").mkdir()
    (packages / "mixed" / "__init__.py").write_text("")
    (packages / "mixed" / f"_speedups.cpython-{TAG}-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (packages / f"_toolext_speedups.cpython-{TAG}-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    return packages


def run(site: Path, body: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(f"""
        import sys
        from levrt.runtime import foreign
        foreign.install()
        sys.path.append({str(site)!r})
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_pure_packages_from_another_python_import(site: Path) -> None:
    result = run(site, "import purepkg, mixed\nprint(purepkg.ANSWER)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


@pytest.mark.parametrize("module", ["_toolext_speedups", "mixed._speedups"])
def test_a_module_compiled_for_another_python_says_which_python_runs(site: Path, module: str) -> None:
    result = run(site, f"import {module}\n")
    assert result.returncode == 1
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"ImportError: {module} is compiled for Python {OTHER}" in result.stderr
    assert f"its own Python {ours}" in result.stderr and "subprocess" in result.stderr


def test_a_missing_module_stays_a_plain_module_not_found(site: Path) -> None:
    result = run(site, "import no_such_module_here\n")
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in result.stderr
