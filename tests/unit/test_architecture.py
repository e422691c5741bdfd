"""The house rules of ``levrt/`` that no linter states for us.

- No import cycle among levrt's modules, counting imports inside functions (import-linter, which
  runs in the fast tier too, checks the layers; a cycle hidden in a function body is what let the
  old engine/task/build modules lean on each other).
- An import inside a function is of a third-party library, with a comment saying why it is late.
- Starting the task process (``python -m levrt.runtime``), which every task container does, loads
  no third-party module but cloudpickle: the container ships nothing else it could load at start-up.
- What needs one fact of the runtime stays light: building a Pod (``levrt._shapes.build``) loads no
  debugger, and the ``levrt-files`` init container (``python -m levrt.runtime.fetch``) neither the
  debugger nor cloudpickle.
- The public decorator and ``Cr(entry=...)`` are typed: a type checker rejects wrong calls.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "levrt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement outside ``if TYPE_CHECKING:``, and whether it sits in a function."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if is_type_checking_block(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, inner)

    return walk(tree, False)


def targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The levrt modules an import statement loads (``from a import b`` loads ``a.b`` if it is one)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".")
            if MODULES[module].name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names]
    return [name for name in names if name in MODULES]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for node, _ in imports(ast.parse(path.read_text(), str(path))):
            graph[name].update(t for t in targets(name, node) if t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    # The check itself can fail: a function-level import closing a loop is a cycle.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from levrt import engine\nif TYPE_CHECKING:\n    import levrt.cr\n")
    assert [(type(n).__name__, inside) for n, inside in imports(tree)] == [("ImportFrom", True)]


def test_no_import_cycle_among_levrt_modules() -> None:
    graph = import_graph()
    assert graph["levrt._core.engine"] >= {"levrt._clients.submit", "levrt.task", "levrt._job"}
    assert cycles(graph) == []


# levrt imports deferred on purpose, each for one reason: a task container imports ``levrt`` to
# unpickle its entry, and must not pay for the client side (asyncio, the engine, its clients).
DEFERRED = {
    ("levrt", "levrt.concurrent"): "levrt.Concurrent needs asyncio",
    ("levrt", "levrt.history"): "levrt.job reads the store: its client loads on first use",
    ("levrt.run", "levrt._core.engine"): "the engine loads when a job opens",
    ("levrt.storage", "levrt._clients.blobs"): "levrt.upload outside a job connects to the store when called",
    ("levrt.storage", "levrt._core.uploads"): "levrt.upload outside a job connects to the store when called",
    ("levrt.runtime", "levrt.runtime.process"): "the task process (pdb, cloudpickle) loads only for a task",
}


def test_imports_inside_functions_are_third_party_and_explained() -> None:
    unexplained = []
    for name, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()
        for node, in_function in imports(ast.parse(source, str(path))):
            if not in_function:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            deferred = {(name, target) for target in targets(name, node)} <= DEFERRED.keys()
            assert deferred and not (isinstance(node, ast.ImportFrom) and node.level), (
                f"{where} imports a levrt module inside a function: import it at module top"
            )
            line, above = lines[node.lineno - 1], lines[node.lineno - 2]
            if "#" not in line and "#" not in above and not _follows_an_explained_import(lines, node):
                unexplained.append(where)
    assert unexplained == [], f"function-level imports without a one-line reason: {unexplained}"


def _follows_an_explained_import(lines: list[str], node: ast.stmt) -> bool:
    """Imports grouped under one comment: walk up through the group to its comment."""
    row = node.lineno - 2
    while row >= 0 and lines[row].strip().startswith(("import ", "from ")):
        row -= 1
    return row >= 0 and lines[row].strip().startswith("#") and row < node.lineno - 2


def test_the_task_container_start_loads_only_cloudpickle_beyond_the_standard_library() -> None:
    # What the interpreter loaded before (site hooks of this machine, an editable install's
    # finder) is not levrt's doing: only what the task process (`python -m levrt.runtime`) adds counts.
    code = textwrap.dedent("""
        import sys
        before = set(sys.modules)
        import levrt.runtime.process
        added = {name.partition(".")[0] for name in set(sys.modules) - before}
        print(" ".join(sorted(t for t in added if t not in sys.stdlib_module_names and not t.startswith("_"))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert set(out.split()) == {"levrt", "cloudpickle"}


def test_the_task_container_start_loads_no_client_side_module() -> None:
    code = "import sys, levrt.runtime.process; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=ROOT).stdout.split())
    client_side = {m for m in loaded if m.startswith(("levrt._core", "levrt._clients", "levrt._cli", "asyncio"))}
    assert client_side == set(), "a task container's runtime should not load these; defer them (DEFERRED)"


def loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    code = textwrap.dedent(code) + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return set(out.split())


def test_building_a_pod_does_not_load_the_debugger() -> None:
    # The builder needs names of the Pod <-> runtime contract (levrt.podenv), not the runtime itself.
    loaded = loaded_by("import levrt._shapes.build")
    assert {"pdb", "bdb", "levrt.runtime.debug", "levrt.runtime.process"} & loaded == set()


def test_the_files_init_container_loads_neither_the_debugger_nor_cloudpickle() -> None:
    # As the container runs it: `python3 -m levrt.runtime.fetch DIR SHA256...` (here without
    # arguments: it prints its usage and exits 2, after every import).
    loaded = loaded_by("""
        import runpy, sys
        sys.argv = ["fetch"]
        try:
            runpy.run_module("levrt.runtime.fetch", run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            assert exit.code == 2, exit.code
    """)
    assert "levrt.runtime.blobs" in loaded  # the fetcher's own imports ran
    assert {"pdb", "bdb", "cloudpickle", "levrt.payload", "levrt.runtime.debug"} & loaded == set()


def test_the_runtime_face_gives_the_task_process_names_when_asked() -> None:
    import levrt.runtime
    from levrt.runtime import process

    assert levrt.runtime.main is process.main and levrt.runtime.EXIT_STORE == process.EXIT_STORE
    assert set(levrt.runtime.__all__) <= set(dir(levrt.runtime)) | levrt.runtime._PROCESS_NAMES


TYPED_USE = """
import levrt
from levrt import Cr


@levrt.remote
def scan(ip: str) -> int:
    return len(ip)


@levrt.remote
def hello() -> None:
    pass


reveal_type(scan("10.0.0.1"))
Cr("busybox:1.36", entry=scan("10.0.0.1"))
Cr("busybox:1.36", entry=hello)
scan(1)
Cr("busybox:1.36", entry=len)
Cr("busybox:1.36", entry=scan)
"""


def test_remote_and_cr_entry_are_typed(tmp_path: Path) -> None:
    snippet = tmp_path / "typed_use.py"
    snippet.write_text(TYPED_USE)
    out, _, status = mypy_api.run([str(snippet), "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "c")])
    lines = {line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(str(snippet))}
    assert 'note: Revealed type is "levrt.remote.RemoteCall[int]"' in lines, out
    errors = sorted(int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line)
    rows = TYPED_USE.splitlines()
    assert [rows[n - 1] for n in errors] == [
        "scan(1)",
        'Cr("busybox:1.36", entry=len)',
        'Cr("busybox:1.36", entry=scan)',
    ], out
    assert status == 1
