"""Where an orchestration's Python comes from: the package a file belongs to, and the files to ship
with it when it runs in a Pod.

Why in the core: ``levrt check``/``levrt run`` import a file inside a package under its dotted
name (so relative imports work), and an in-cluster run must ship that package, laid out the same
way, so the Pod imports it the same way. Both ask this module; it reads the file system only.
"""

from __future__ import annotations

import pathlib

__all__ = ["orchestration_sources", "package_root"]


def package_root(path: pathlib.Path) -> tuple[pathlib.Path, str] | None:
    """``(folder to put on sys.path, dotted name)`` of a ``.py`` file inside a package, or None.

    ``examples/lev/demo/portscan/flows.py`` → ``(examples, "lev.demo.portscan.flows")`` whether
    ``lev/`` and ``lev/demo/`` have an ``__init__.py`` or not. None for a file whose folder is
    not a package, or whose dotted name would not be made of identifiers.
    """
    path = path.resolve()
    folder = path.parent
    if not (folder / "__init__.py").is_file():
        return None
    parts = [] if path.name == "__init__.py" else [path.stem]
    top = folder
    while True:  # the __init__.py chain, stopping at a folder named lev
        parts.insert(0, top.name)
        if top.name == "lev" or not (top.parent / "__init__.py").is_file() or top.parent == top:
            break
        top = top.parent
    root = top.parent
    if top.name != "lev":  # namespace folders up to lev/: lev/<namespace>/<tool>/
        gap: list[str] = []
        for ancestor in list(top.parents)[:2]:
            gap.insert(0, ancestor.name)
            if ancestor.name == "lev":
                parts, root = gap + parts, ancestor.parent
                break
    if not all(part.isidentifier() for part in parts):
        return None
    return root, ".".join(parts)


def orchestration_sources(path: pathlib.Path) -> tuple[dict[str, bytes], str]:
    """The ``.py`` files an orchestration file needs in a Pod, by relative POSIX path, and the
    file's own path among them.

    A file inside a package ships its whole top-level package (``lev/**.py`` for a 1.x tool
    package: sibling modules and the other tool packages it imports through ``lev.*``), laid out
    under the package root. A file on its own ships with the ``.py`` files beside it.
    """
    located = package_root(path)
    if located is None:
        sources = {p.name: p.read_bytes() for p in sorted(path.parent.glob("*.py"))}
        sources[path.name] = path.read_bytes()
        return sources, path.name
    root, dotted = located
    top = root / dotted.partition(".")[0]
    sources = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(top.rglob("*.py"))
        if "__pycache__" not in p.parts
    }
    return sources, path.resolve().relative_to(root).as_posix()
