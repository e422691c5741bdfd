"""Settings from the environment, and ``levrt check``."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from levrt._cli import main
from levrt.settings import DEFAULT_RUNTIME_IMAGE, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.namespace, s.store_secret, s.database, s.keep, s.timeout) == (
        "levrt",
        "levrt-store",
        "levrt",
        False,
        None,
    )
    assert s.runtime_image == DEFAULT_RUNTIME_IMAGE and s.store_uri is None


def test_from_env() -> None:
    s = Settings.from_env(
        {
            "LEVRT_NAMESPACE": "scans",
            "LEVRT_RUNTIME_IMAGE": "r:1",
            "LEVRT_STORE_URI": "mongodb://x/",
            "LEVRT_DB": "db",
            "LEVRT_KEEP": "yes",
            "LEVRT_TIMEOUT": "600",
            "LEVRT_IMAGE_PULL_POLICY": "Never",
            "LEVRT_START_TIMEOUT": "30",
            "LEVRT_RESOURCES": '{"limits": {"cpu": "1"}}',
            "LEVRT_NODE_SELECTOR": '{"a": "b"}',
            "LEVRT_TOLERATIONS": '[{"operator": "Exists"}]',
        }
    )
    assert s.namespace == "scans" and s.keep and s.timeout == 600 and s.start_timeout == 30.0
    assert s.resources == {"limits": {"cpu": "1"}} and s.tolerations == ({"operator": "Exists"},)
    assert s.replace(namespace="other").namespace == "other"


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().namespace = "x"  # type: ignore[misc]


TOOL = textwrap.dedent("""
    from levrt import Cr, annot
    from levrt.annot.cats import Attck, BlackArch

    @annot.meta(desc="Detect live hosts", params=[annot.Param("ip", "target", holder="10.0.0.0/24")],
                cats=[Attck.Reconnaissance, BlackArch.Scanner], tags=["nmap"])
    def alive(ip: str) -> Cr:
        return Cr("levkit/nmap:v1.0", cmd=["-sn", ip])

    __lev__ = annot.meta([alive], desc="nmap")
""")


def test_check_prints_metadata(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nmaptool.py"
    path.write_text(TOOL)
    assert main(["check", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["desc"] == "nmap"
    assert data["exports"][0]["name"] == "alive"
    assert data["exports"][0]["cats"] == {"Attck": ["TA0043"], "BlackArch": ["scanner"]}


def test_check_by_module_name(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mytools").mkdir()
    (tmp_path / "mytools" / "__init__.py").write_text("")
    (tmp_path / "mytools" / "nmapmod.py").write_text(TOOL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "mytools.nmapmod"]) == 0
    assert json.loads(capsys.readouterr().out)["exports"][0]["kind"] == "mode"


def test_check_without_lev(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nolev.py"
    path.write_text("x = 1\n")
    assert main(["check", str(path)]) == 2
    assert "__lev__" in capsys.readouterr().err


def test_check_missing_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no_such_module_xyz"]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err
    assert main(["check", "missing/file.py"]) == 2


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "check" in capsys.readouterr().err


def test_console_script_points_at_commands_main() -> None:
    import tomllib

    import levrt

    scripts = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"levrt": "levrt._cli:main"}
    assert levrt.cli("-v", p=1) == ["-v", "-p", "1"]
