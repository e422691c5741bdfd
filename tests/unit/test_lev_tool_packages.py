"""Tool packages in the levrt 1.x layout (``lev/<namespace>/<tool>/``) load and check unchanged.

What is pinned: ``annot.Param``'s placeholder normal form (a str, or a list of str; ints in
decimal) and its bad inputs; ``annot.meta`` with modules in the export list (module entries, kinds,
async modes, the empty-module error); ``load_module`` on a package folder, a file inside a package
that imports relatively, a dotted name from the current directory, across tool packages through
``lev.*``, with namespace or plain ``lev/`` folders; ``levrt check`` JSON and ``--format table``
on the example package ``examples/lev/demo``; and that the example's entries, pickled here, run
where ``lev.*`` cannot be imported (as in a task container).

No cluster. Each test leaves ``sys.modules`` and ``sys.path`` as it found them (``clean_imports``).
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from typing import Any

import pytest

from levrt import annot, payload
from levrt._cli import main
from levrt._cli.base import LONE_FILE_PREFIX, CliError, load_module
from levrt._cli.check import tree_rows
from levrt._core.sources import package_root
from levrt.annot import Param, meta
from levrt.annot.cats import Attck, BlackArch
from levrt.errors import MetaError

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
PORTSCAN = EXAMPLES / "lev" / "demo" / "portscan"
TMP_TOPS = ("lev", "plainpkg")


def _ours(name: str) -> bool:
    return name.partition(".")[0] in TMP_TOPS or name.startswith(LONE_FILE_PREFIX)


@pytest.fixture(autouse=True)
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget the ``lev*`` (and temporary) modules a test imported; restore ``sys.path``."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    leaked = sorted(n for n in before if n.partition(".")[0] in TMP_TOPS)
    assert not leaked, f"a previous test leaked {leaked}"
    importlib.invalidate_caches()
    yield
    for name in [n for n in sys.modules if n not in before and _ours(n)]:
        del sys.modules[name]


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


def write_tree(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


# -- Param: the placeholder's normal form -----------------------------------------------------


@pytest.mark.parametrize(
    ("holder", "placeholder"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (8080, "8080"),
        (0, "0"),
        (["22,80", "8000-8100"], ["22,80", "8000-8100"]),
        (("a", 443), ["a", "443"]),
        ([22], ["22"]),
    ],
)
def test_holder_normal_form(holder: Any, placeholder: Any) -> None:
    p = Param("ports", "ports", holder=holder)
    assert p.to_dict() == {"name": "ports", "desc": "ports", "placeholder": placeholder}
    assert json.loads(json.dumps(p.to_dict()))["placeholder"] == placeholder
    if isinstance(placeholder, list):
        assert p.placeholder == tuple(placeholder) == p.holder  # frozen: a tuple inside, a list in JSON
    else:
        assert p.placeholder == placeholder == p.holder


def test_no_holder_and_an_empty_list_mean_no_placeholder() -> None:
    assert "placeholder" not in Param("x", "d").to_dict()
    assert "placeholder" not in Param("x", "d", holder=[]).to_dict()
    assert Param("x", "d", holder=[]).placeholder is None


@pytest.mark.parametrize(
    ("holder", "named"),
    [
        (True, "True"),
        (1.5, "1.5"),
        ({"a": 1}, "{'a': 1}"),
        (b"raw", "b'raw'"),
        (["22", None], "None"),
        (["22", False], "False"),
        ([["nested"]], "['nested']"),
        (frozenset(), "frozenset()"),
    ],
)
def test_holder_other_types_are_meta_errors_naming_the_value(holder: Any, named: str) -> None:
    with pytest.raises(MetaError) as info:
        Param("port", "TCP port", holder=holder)
    message = str(info.value)
    assert "Param('port'" in message and named in message
    assert "str" in message and "int" in message


# -- meta: modules in the export list ---------------------------------------------------------

TOOL_FILES = {
    "lev/acme/tool/__init__.py": """
        from levrt import annot
        from levrt.annot.cats import Attck, BlackArch

        from . import fast, slow
        from .flows import sweep

        __lev__ = annot.meta([fast, slow, sweep], desc="acme tool",
                             cats={Attck: [Attck.Discovery], BlackArch: [BlackArch.Scanner]}, tags=["acme"])
    """,
    "lev/acme/tool/util.py": """
        IMAGE = "busybox:1.36"

        def argv(target):
            return ["-t", target]
    """,
    "lev/acme/tool/fast.py": '''
        """Fast modes.

        More words that the catalogue does not show.
        """
        from levrt import Cr, annot
        from levrt.annot.cats import Attck

        from .util import IMAGE, argv

        @annot.meta(desc="ping sweep", params=[annot.Param("target", "net", holder="10.0.0.0/24")],
                    cats=[Attck.Discovery])
        def ping(target: str) -> Cr:
            return Cr(IMAGE, cmd=argv(target))

        def helper(x):  # not annotated: not a mode
            return x

        @annot.meta(desc="async mode")
        async def later(target: str) -> Cr:
            return Cr(IMAGE, cmd=argv(target))

        @annot.meta(desc="async mode, qualified annotation")
        async def later2(target: str) -> "levrt.Cr":
            return Cr(IMAGE, cmd=argv(target))

        @annot.meta(desc="raw", params=[annot.ARGV])
        def raw(argv: str) -> Cr:
            return Cr(IMAGE, cmd=argv.split())
    ''',
    "lev/acme/tool/slow.py": """
        from levrt import Cr, annot

        from .fast import ping  # imported: belongs to fast, not to slow

        @annot.meta(desc="deep scan", params=[annot.Param("port", "port", holder=22)])
        def deep(target: str, port: int = 22) -> Cr:
            return ping(f"{target}:{port}")

        __lev__ = annot.meta([deep], desc="slow modes", tags=["slow"])
    """,
    "lev/acme/tool/flows.py": """
        from lev.acme.other.mod import greet

        from levrt import annot, lev

        from . import fast

        @annot.meta(desc="sweep everything")
        async def sweep(net: str) -> dict:
            return {"cr": fast.ping(net), "greeting": greet(net)}

        __lev__ = annot.meta([sweep], desc="flows")
    """,
    "lev/acme/other/__init__.py": """
        from levrt import annot

        from . import mod

        __lev__ = annot.meta([mod], desc="another tool")
    """,
    "lev/acme/other/mod.py": """
        from levrt import annot

        @annot.meta(desc="say hello")
        def greet(name: str) -> str:
            return "hello " + name
    """,
    "lev/acme/empty/__init__.py": """
        from levrt import annot

        from . import util

        __lev__ = annot.meta([util], desc="exports a module without modes")
    """,
    "lev/acme/empty/util.py": """
        def helper():
            return 1
    """,
}


@pytest.fixture(params=["namespace", "plain"])
def tool_root(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> pathlib.Path:
    """The acme packages under ``tmp_path``; ``lev/`` and ``lev/acme/`` namespace or plain packages."""
    files = dict(TOOL_FILES)
    if request.param == "plain":
        files["lev/__init__.py"] = ""
        files["lev/acme/__init__.py"] = ""
    write_tree(tmp_path, files)
    return tmp_path


def test_module_exports_become_module_entries(tool_root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tool_root))
    tool = importlib.import_module("lev.acme.tool")
    data = tool.__lev__
    assert json.loads(json.dumps(data)) == data
    assert [(e["kind"], e["name"]) for e in data["exports"]] == [
        ("module", "lev.acme.tool.fast"), ("module", "lev.acme.tool.slow"), ("workflow", "sweep")]
    assert data["cats"] == {"Attck": ["TA0007"], "BlackArch": ["scanner"]} and data["tags"] == ["acme"]

    fast, slow, sweep = data["exports"]
    # A module without __lev__: its annotated functions, in definition order; its docstring's first line.
    assert fast["desc"] == "Fast modes." and fast["cats"] == {} and fast["tags"] == []
    assert [(e["name"], e["kind"], e.get("async")) for e in fast["exports"]] == [
        ("ping", "mode", None), ("later", "mode", True), ("later2", "mode", True), ("raw", "mode", None)]
    assert fast["exports"][0] == {
        "name": "ping", "kind": "mode", "desc": "ping sweep",
        "params": [{"name": "target", "desc": "net", "placeholder": "10.0.0.0/24"}],
        "cats": {"Attck": ["TA0007"]}, "tags": []}
    assert fast["exports"][3]["params"] == [{"name": "argv", "desc": "Command line arguments"}]
    # A module with its own __lev__: that metadata; functions it only imports are not its own.
    assert slow == {"kind": "module", "name": "lev.acme.tool.slow", "desc": "slow modes", "cats": {},
                    "tags": ["slow"], "exports": [{"name": "deep", "kind": "mode", "desc": "deep scan",
                                                   "params": [{"name": "port", "desc": "port", "placeholder": "22"}],
                                                   "cats": {}, "tags": []}]}
    assert sweep["desc"] == "sweep everything" and sweep["params"] == [{"name": "net", "desc": ""}]
    # The cross-package import resolved through lev.*, and the workflow really uses it.
    assert sys.modules["lev.acme.other.mod"].greet("x") == "hello x"


def test_metadata_is_a_copy(tool_root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tool_root))
    tool = importlib.import_module("lev.acme.tool")
    tool.__lev__["exports"][0]["exports"][0]["params"].clear()
    assert tool.fast.ping.__lev__["params"] != []


def test_a_module_without_annotated_functions_is_a_meta_error(
    tool_root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tool_root))
    with pytest.raises(MetaError, match=r"module 'lev\.acme\.empty\.util' has no annotated modes or workflows"):
        importlib.import_module("lev.acme.empty")


def test_meta_export_errors_name_the_value() -> None:
    module = types.ModuleType("lev_fake_mod", "A fake module.")
    with pytest.raises(MetaError, match="lev_fake_mod"):
        meta([module])
    with pytest.raises(MetaError, match="exports are a list"):
        meta(module)  # type: ignore[call-overload]
    with pytest.raises(MetaError, match="'not a mode'"):
        meta(["not a mode"])  # type: ignore[list-item]


def test_in_memory_module_export_and_async_kinds() -> None:
    module = types.ModuleType("lev_fake_tool", "Fake tool.\nsecond line")

    @meta(desc="scan", cats=[BlackArch.Scanner])
    def scan(target: str) -> object:
        return target

    @meta(desc="flow")
    async def flow(net: str) -> dict[str, str]:
        return {}

    async def bare() -> None:
        pass

    for func in (scan, flow):
        func.__module__ = module.__name__
        setattr(module, func.__name__, func)
    @meta(desc="defined elsewhere")
    def imported_mode(target: str) -> object:
        return target

    module.imported_mode = imported_mode  # type: ignore[attr-defined]  # `from x import mode`: x's, not ours
    module.meta = annot.meta  # type: ignore[attr-defined]
    data = meta([module, bare], cats=Attck.Reconnaissance)
    assert data["cats"] == {"Attck": ["TA0043"]}
    assert data["exports"][0]["desc"] == "Fake tool."
    assert [(e["name"], e["kind"]) for e in data["exports"][0]["exports"]] == [("scan", "mode"), ("flow", "workflow")]
    assert (data["exports"][1]["name"], data["exports"][1]["kind"]) == ("bare", "workflow")


# -- load_module: where the package root is -----------------------------------------------------


def test_package_root_walks_init_files_and_namespace_folders(tool_root: pathlib.Path) -> None:
    tool = tool_root / "lev" / "acme" / "tool"
    assert package_root(tool / "flows.py") == (tool_root.resolve(), "lev.acme.tool.flows")
    assert package_root(tool / "__init__.py") == (tool_root.resolve(), "lev.acme.tool")


def test_package_root_of_other_layouts(tmp_path: pathlib.Path) -> None:
    write_tree(tmp_path, {
        "loose.py": "",
        "plainpkg/__init__.py": "", "plainpkg/sub/__init__.py": "", "plainpkg/sub/mod.py": "",
        # lev/ too far above the package (more than lev/<namespace>/): the package stands alone.
        "lev/a/b/deep/__init__.py": "", "lev/a/b/deep/mod.py": "",
        "bad-name/__init__.py": "", "bad-name/mod.py": "",
    })
    root = tmp_path.resolve()
    assert package_root(tmp_path / "loose.py") is None
    assert package_root(tmp_path / "plainpkg" / "sub" / "mod.py") == (root, "plainpkg.sub.mod")
    assert package_root(tmp_path / "lev/a/b/deep/mod.py") == (root / "lev" / "a" / "b", "deep.mod")
    assert package_root(tmp_path / "bad-name" / "mod.py") is None


def test_a_file_inside_a_package_imports_relatively(tool_root: pathlib.Path) -> None:
    flows = load_module(str(tool_root / "lev" / "acme" / "tool" / "flows.py"))
    assert flows.__name__ == "lev.acme.tool.flows" and flows.__package__ == "lev.acme.tool"
    assert sys.modules["lev.acme.tool.fast"] is flows.fast  # from . import fast
    assert flows.greet is sys.modules["lev.acme.other.mod"].greet  # from lev.acme.other.mod import greet
    assert flows.__lev__["exports"][0]["name"] == "sweep"
    assert str(tool_root.resolve()) in sys.path  # the root stays: later lev.* imports work


def test_a_package_folder_loads_as_the_package(tool_root: pathlib.Path) -> None:
    tool = load_module(str(tool_root / "lev" / "acme" / "tool") + "/")
    assert tool.__name__ == "lev.acme.tool" and hasattr(tool, "__path__")
    assert tool.__lev__["desc"] == "acme tool"


def test_a_dotted_name_from_the_current_directory(tool_root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tool_root)
    assert str(tool_root) not in sys.path
    assert load_module("lev.acme.other").__lev__["exports"][0]["name"] == "lev.acme.other.mod"


def test_a_lone_file_with_relative_imports_says_what_to_do(tmp_path: pathlib.Path) -> None:
    (tmp_path / "flow.py").write_text("from . import scan\n")
    before = set(sys.modules)
    with pytest.raises(CliError, match=r"relative imports .* no __init__\.py"):
        load_module(str(tmp_path / "flow.py"))
    assert set(sys.modules) == before  # not left half-imported


def test_a_folder_without_init_is_not_a_package(tmp_path: pathlib.Path) -> None:
    write_tree(tmp_path, {"lev/demo/tool.py": "__lev__ = {}\n"})
    with pytest.raises(CliError, match=r"without __init__\.py"):
        load_module(str(tmp_path / "lev" / "demo"))


def test_the_same_name_imported_from_elsewhere_is_refused(tool_root: pathlib.Path, tmp_path_factory: Any) -> None:
    other = tmp_path_factory.mktemp("other")
    write_tree(other, {"lev/acme/other/__init__.py": "__lev__ = {'desc': 'impostor'}\n"})
    load_module(str(tool_root / "lev" / "acme" / "other"))
    with pytest.raises(CliError, match="already imported from"):
        load_module(str(other / "lev" / "acme" / "other"))


# -- levrt check on the example package -------------------------------------------------------


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["check", *argv]) == 0, capsys.readouterr().err
    data: dict[str, Any] = json.loads(out_err(capsys)[0])
    return data


def test_check_the_example_package_prints_the_whole_tree(capsys: pytest.CaptureFixture[str]) -> None:
    data = check_json(capsys, str(PORTSCAN))
    assert list(data) == ["package", "desc", "params", "cats", "tags", "exports"]
    assert data["package"] == "lev.demo.portscan"
    assert data["cats"] == {"Attck": ["TA0007", "TA0043"], "BlackArch": ["scanner"]}
    scan, sweep = data["exports"]
    assert (scan["kind"], scan["name"], scan["desc"]) == ("module", "lev.demo.portscan.scan",
                                                          "TCP connect scan and HTTP path probe")
    tcp, paths = scan["exports"]
    assert (tcp["kind"], tcp["name"], paths["kind"], paths["name"]) == ("mode", "tcp", "mode", "paths")
    assert {p["name"]: p["placeholder"] for p in tcp["params"]} == {
        "target": "10.0.0.1", "ports": ["22,80,443", "8000-8100"], "workers": "64"}
    assert [p["name"] for p in paths["params"]] == ["target", "port", "words"]
    assert paths["cats"] == {"Attck": ["TA0043"], "BlackArch": ["webapp", "scanner"]}
    assert (sweep["kind"], sweep["name"]) == ("workflow", "sweep")
    assert sweep["params"] == [{"name": "chunks", "desc": "port ranges per block of 100 ports",
                                "regex": ["^[0-9]+$"], "placeholder": "2"}]
    assert "lev.demo.banner.grab" in sys.modules  # the workflow's import of the other tool package


def test_check_the_example_as_folder_or_dotted_name_is_the_same(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    by_folder = check_json(capsys, "examples/lev/demo/portscan")
    for name in [n for n in sys.modules if _ours(n)]:
        del sys.modules[name]
    monkeypatch.chdir(EXAMPLES)
    assert check_json(capsys, "lev.demo.portscan") == by_folder
    assert check_json(capsys, "lev.demo.banner")["exports"][0]["exports"][0]["params"][1] == {
        "name": "port", "desc": "TCP port", "regex": ["^[0-9]+$"], "placeholder": "22"}


def test_check_a_file_inside_the_example_package(capsys: pytest.CaptureFixture[str]) -> None:
    data = check_json(capsys, str(PORTSCAN / "flows.py"))
    assert data["module"] == "lev.demo.portscan.flows"
    assert [(e["kind"], e["name"]) for e in data["exports"]] == [("workflow", "sweep")]


def test_check_a_module_without_lev_points_at_its_package(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(PORTSCAN / "util.py")]) == 2
    err = out_err(capsys)[1]
    assert "has no __lev__" in err and "Its package lev.demo.portscan has one" in err


def test_check_a_lone_file_keeps_its_metadata_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    data = check_json(capsys, "examples/tcpscan.py")
    assert list(data) == ["desc", "params", "cats", "tags", "exports"]  # nothing added for a lone file
    assert [e["name"] for e in data["exports"]] == ["scan", "banner"]


EXPECTED_TABLE = [
    ["NAME", "KIND", "PARAMS", "CATEGORIES"],
    ["lev.demo.portscan", "package", "-", "Attck:TA0007,TA0043 BlackArch:scanner"],
    ["  lev.demo.portscan.scan", "module", "-", "-"],
    ["    tcp", "mode", "target, ports, workers", "Attck:TA0007 BlackArch:scanner"],
    ["    paths", "mode", "target, port, words", "Attck:TA0043 BlackArch:webapp,scanner"],
    ["  sweep", "workflow", "chunks", "Attck:TA0007,TA0043"],
]


def test_check_table_is_an_indented_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(PORTSCAN), "--format", "table"]) == 0
    lines = out_err(capsys)[0].splitlines()
    assert len(lines) == len(EXPECTED_TABLE)
    starts = [lines[0].index(h) for h in ("KIND", "PARAMS", "CATEGORIES", "DESC")]
    cells = [[line[: starts[0]].rstrip(), *(line[a:b].strip() for a, b in itertools.pairwise(starts))]
             for line in lines]
    assert cells == EXPECTED_TABLE
    assert lines[3][starts[3]:].startswith("TCP connect scan of one host")
    # -o is the short form, as for `levrt get`
    assert main(["check", "examples/tcpscan.py", "-o", "table"]) == 0
    assert out_err(capsys)[0].splitlines()[1].startswith("examples/tcpscan.py   module")


def test_table_rows_cope_with_hand_written_metadata() -> None:
    rows = tree_rows({"desc": "a tool\nmore", "modes": ["fast"], "exports": ["x", {"name": "m", "async": True,
                                                                                  "kind": "mode"}]},
                     kind="module", name="tool")
    assert rows == [["tool", "module", "-", "-", "a tool"], ["  m", "async mode", "-", "-", ""]]


def test_check_table_needs_a_dict(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "odd.py").write_text("__lev__ = ['not', 'a', 'dict']\n")
    assert main(["check", str(tmp_path / "odd.py"), "--format", "table"]) == 2
    assert "not a dict" in out_err(capsys)[1]
    assert main(["check", str(tmp_path / "odd.py")]) == 0
    assert json.loads(out_err(capsys)[0]) == ["not", "a", "dict"]


# -- levrt run loads a workflow file inside a package -------------------------------------------


def test_run_loads_a_workflow_inside_a_package(capsys: pytest.CaptureFixture[str]) -> None:
    flows = load_module("examples/lev/demo/portscan/flows.py")
    import inspect

    assert inspect.iscoroutinefunction(flows.sweep)
    # `levrt run FILE:FUNC` loads the file before it opens a job: a missing function is a usage
    # error naming the file, not "attempted relative import with no known parent package".
    assert main(["run", "examples/lev/demo/portscan/flows.py:nosuch"]) == 2
    err = out_err(capsys)[1]
    assert "has no function 'nosuch'; its workflows: sweep" in err and "relative import" not in err
    assert "usage: levrt run examples/lev/demo/portscan/flows.py:sweep" in err  # a function that exists


# -- the example's modes and entries ------------------------------------------------------------


@pytest.fixture
def portscan(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.setenv("LEVRT_EXAMPLE_IMAGE", "example.local/busybox:test")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("lev.demo.portscan")


def test_example_modes_build_their_crs(portscan: types.ModuleType) -> None:
    from lev.demo.banner.grab import banner
    from lev.demo.portscan import scan, util

    cr = scan.tcp("10.0.0.9", "22,80-82", workers="8")
    assert (cr.image, cr.schema) == ("example.local/busybox:test", "demo/ports@1.0")
    assert cr.entry is not None and cr.entry.args == ("10.0.0.9", [22, 80, 81, 82], 8, 0.5)
    without = scan.paths("10.0.0.9", "8080")
    assert dict(without.files) == {}  # words=None: no file
    with_words = scan.paths("10.0.0.9", 8080, words=b"admin\n")
    assert dict(with_words.files) == {"/words": b"admin\n"}
    assert banner("h", "22").schema == "demo/banner@1.0"
    assert util.chunk_ranges(2) == ["2200-2249", "2250-2299", "8000-8049", "8050-8099"]
    assert util.chunk_ranges(3)[:3] == ["2200-2233", "2234-2267", "2268-2299"]


CONTAINER = """
import http.server, json, socket, sys, threading
from levrt import payload
from levrt.context import bind_task

class Binding:
    job_id, task_id, doc = 1, 0, None
    record = {}
    def set(self, data):
        self.record.update(data)

binding = Binding()
bind_task(binding)
assert "lev" not in sys.modules
try:
    import lev  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("lev is importable here: the test proves nothing")

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=sys.argv[1]))
threading.Thread(target=server.serve_forever, daemon=True).start()
closed = socket.socket(); closed.bind(("127.0.0.1", 0)); closed_port = closed.getsockname()[1]; closed.close()
results = []
for blob_path in sys.argv[2:]:
    func, args, kwargs = payload.loads_call(open(blob_path, "rb").read())
    args = [server.server_address[1] if a == "HTTP_PORT" else closed_port if a == "CLOSED_PORT" else a for a in args]
    args = [[server.server_address[1] if p == -1 else closed_port if p == -2 else p for p in a]
            if isinstance(a, list) else a for a in args]
    binding.record.clear()
    func(*args, **kwargs)
    results.append(dict(binding.record))
server.shutdown()
print(json.dumps(results, default=lambda b: b.decode("latin-1")))
"""


def test_example_entries_run_where_lev_cannot_be_imported(portscan: types.ModuleType, tmp_path: pathlib.Path) -> None:
    """Pickled here (by value: ``lev`` is not in the runtime), run in a process without ``lev``."""
    from lev.demo.banner.grab import _grab
    from lev.demo.portscan import scan

    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hi")
    blobs = []
    calls = [
        scan._connect_scan("127.0.0.1", [-1, -2], 4, 1.0),
        scan._probe_paths("127.0.0.1", "HTTP_PORT", 2.0),
        _grab("127.0.0.1", "HTTP_PORT", b"GET / HTTP/1.0\r\n\r\n", 2.0),
    ]
    for i, call in enumerate(calls):
        blob = tmp_path / f"call{i}"
        blob.write_bytes(payload.dumps_call(call))
        blobs.append(str(blob))
    (tmp_path / "container.py").write_text(CONTAINER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(tmp_path / "container.py"), str(www), *blobs], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ports, paths, banner = json.loads(proc.stdout)
    assert ports["target"] == "127.0.0.1" and ports["scanned"] == 2 and len(ports["open"]) == 1  # ctx.update
    assert paths["wordlist"] == "built-in" and paths["tried"] == 4
    assert paths["found"] == [{"path": "/index.html", "status": 200}]
    assert banner["banner"].startswith("HTTP/1.") and banner["port"] > 0  # ctx.set, twice
