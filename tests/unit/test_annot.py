"""annot: categories exactly as SPEC 1, Param, meta as module metadata and as decorator."""

from __future__ import annotations

import json

import pytest

from levrt import annot, cli
from levrt.annot import ARGV, Param, meta
from levrt.annot.cats import Attck, BlackArch, Category

ATTCK = {
    "InitialAccess": "TA0001",
    "Execution": "TA0002",
    "Persistence": "TA0003",
    "PrivilegeEscalation": "TA0004",
    "DefenseEvasion": "TA0005",
    "CredentialAccess": "TA0006",
    "Discovery": "TA0007",
    "LateralMovement": "TA0008",
    "Collection": "TA0009",
    "Exfiltration": "TA0010",
    "CommandandControl": "TA0011",
    "NetworkEffects": "TA0038",
    "RemoteServiceEffects": "TA0039",
    "Impact": "TA0040",
    "ResourceDevelopment": "TA0042",
    "Reconnaissance": "TA0043",
}
BLACKARCH_NAMES = (
    "AntiForensic Automation Automobile Backdoor Binary Bluetooth CodeAudit Config Cracker Crypto "
    "Database Debugger Decompiler Defensive Disassembler Dos Drone Exploitation Fingerprint Firmware "
    "Forensic Fuzzer Gpu Hardware Honeypot Ids Keylogger Malware Misc Mobile Networking Nfc Packer "
    "Proxy Radio Recon Reversing Scanner Sniffer Social Spoof Stego Tunnel Unpacker Voip Webapp "
    "Windows Wireless"
).split()
BLACKARCH_SPECIAL = {"AntiForensic": "anti-forensic", "CodeAudit": "code-audit"}


def test_attck_exact() -> None:
    assert {m.name: m.value for m in Attck} == ATTCK


def test_blackarch_exact() -> None:
    expected = {n: BLACKARCH_SPECIAL.get(n, n.lower()) for n in BLACKARCH_NAMES}
    assert {m.name: m.value for m in BlackArch} == expected
    assert len(BlackArch) == 48


def test_category_base_has_no_members() -> None:
    assert list(Category) == []
    assert annot.cats.Attck is Attck


def test_param() -> None:
    p = Param("ip", "Target IP", holder="192.168.1.1/24", regex=r"^\d")
    assert p.placeholder == "192.168.1.1/24" == p.holder
    assert p.regex == (r"^\d",)
    assert p.to_dict() == {
        "name": "ip",
        "desc": "Target IP",
        "regex": [r"^\d"],
        "placeholder": "192.168.1.1/24",
    }
    assert ARGV == Param("argv", "Command line arguments")


@meta(
    desc="Detect live hosts",
    params=Param("ip", "target", holder="10.0.0.0/24"),
    cats=[Attck.Reconnaissance, BlackArch.Scanner, Attck.Discovery],
    tags="nmap",
)
def alive(ip: str) -> object:
    return cli("-sn", ip)


@meta(desc="Raw nmap", params=[ARGV], cats={Attck: [Attck.Reconnaissance], BlackArch: BlackArch.Scanner})
def raw(argv: str) -> object:
    return argv


async def workflow(domain: str) -> None:
    pass


def test_decorator_sets_lev() -> None:
    assert alive.__lev__ == {  # type: ignore[attr-defined]
        "desc": "Detect live hosts",
        "params": [{"name": "ip", "desc": "target", "placeholder": "10.0.0.0/24"}],
        "cats": {"Attck": ["TA0043", "TA0007"], "BlackArch": ["scanner"]},
        "tags": ["nmap"],
    }
    assert raw.__lev__["cats"] == {"Attck": ["TA0043"], "BlackArch": ["scanner"]}  # type: ignore[attr-defined]


def test_module_metadata_is_json() -> None:
    data = meta(
        [raw, alive, workflow], desc="nmap tool", tags=["nmap", "scan"], ext={"homepage": "https://nmap.org"}
    )
    assert json.loads(json.dumps(data)) == data
    assert [e["name"] for e in data["exports"]] == ["raw", "alive", "workflow"]
    assert [e["kind"] for e in data["exports"]] == ["mode", "mode", "workflow"]
    assert data["exports"][2]["params"] == [{"name": "domain", "desc": ""}]
    assert data["ext"] == {"homepage": "https://nmap.org"} and data["tags"] == ["nmap", "scan"]


def test_cats_under_wrong_class() -> None:
    with pytest.raises(annot.MetaError if hasattr(annot, "MetaError") else Exception, match="Scanner"):
        meta(cats={Attck: [BlackArch.Scanner]})
