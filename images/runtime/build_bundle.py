"""Build the levrt runtime bundle: a relocatable CPython prefix meant to live at ``/levrt``.

Why: entries run inside images without Python (busybox, scratch-based tools). The bundle is
this interpreter (the client's minor version), its trimmed standard library, the shared
libraries it needs (glibc and its loader included), and the pure dependencies of the runtime:
levrt itself, cloudpickle, pymongo (with bson, gridfs) and dnspython. The interpreter's ELF
interpreter and every object's rpath point at ``/levrt/lib``, so nothing of the image is used.
Python finds its own prefix from the executable's location: no PYTHONHOME, no PYTHONPATH.

Usage: ``python images/runtime/build_bundle.py [DEST] [--client-site DIR]`` prints the directory
holding ``levrt/``. Without DEST the result is cached under
``${LEVRT_CACHE:-~/.cache/levrt}/runtime-bundle-<key>``; the key covers the interpreter, the
versions of the packages and the sources of levrt and of this script. ``images/runtime/
Dockerfile`` runs this script for users who build the runtime image with Docker.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PREFIX = "/levrt"
REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("levrt", "cloudpickle", "pymongo", "bson", "gridfs", "dns")
DISTRIBUTIONS = ("cloudpickle", "pymongo", "dnspython")
# Parts of the standard library an entry has no use for (GUI, tests, installers, 2to3).
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "site-packages",
    "__pycache__", "turtle.py", "unittest/test", "ctypes/test", "sqlite3/test", "distutils/tests",
}
# Libraries glibc loads with dlopen, which ldd cannot see. libgcc_s: a daemon thread still
# running when the interpreter exits is ended with pthread_exit, which aborts the process
# ("libgcc_s.so.1 must be installed for pthread_exit to work") without it.
DLOPENED = ("libgcc_s.so.1",)
DYNLOAD_SKIP = re.compile(r"^(_tkinter|_test|_xxtest|xx|_ctypes_test)")


def progress(message: str) -> None:
    print(f"progress: {message}", file=sys.stderr, flush=True)


def _version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def cache_key() -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(Path(__file__).read_bytes())
    for dist in DISTRIBUTIONS:
        digest.update(f"{dist}={importlib.metadata.version(dist)}".encode())
    for path in sorted((REPO / "levrt").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("LEVRT_CACHE", Path.home() / ".cache" / "levrt"))


def shared_libraries(path: Path) -> list[Path]:
    """Absolute paths of the libraries (loader included) ``ldd`` says ``path`` needs."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def _find_library(name: str) -> Path:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.strip().split(" => ")
        if len(parts) == 2 and parts[0].split()[0] == name and "x86-64" in parts[0]:
            return Path(parts[1])
    raise RuntimeError(f"{name} not found by ldconfig; the runtime bundle needs it (Debian package libgcc-s1)")


def _is_elf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"


def _copy_package(name: str, site: Path) -> None:
    if name == "levrt":
        source = REPO / "levrt"
    else:
        spec = __import__(name)
        source = Path(spec.__file__).parent  # type: ignore[arg-type]
    shutil.copytree(source, site / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build_into(root: Path) -> None:
    """Write the bundle's files into ``root`` (which will be mounted as ``/levrt``)."""
    version = _version()
    base = Path(sys.base_prefix)
    exe = base / "bin" / f"python{version}"
    libpython = Path(sysconfig.get_config_var("LIBDIR")) / str(sysconfig.get_config_var("INSTSONAME"))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    bin_dir, lib_dir = root / "bin", root / "lib"
    pylib = lib_dir / f"python{version}"
    bin_dir.mkdir(parents=True)
    lib_dir.mkdir()

    shutil.copy2(exe, bin_dir / f"python{version}")
    (bin_dir / "python3").symlink_to(f"python{version}")

    def skip(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(stdlib)
        skipped = {n for n in names if n in STDLIB_SKIP or str(rel / n) in STDLIB_SKIP}
        skipped |= {n for n in names if n.startswith("config-")}
        if rel.name == "lib-dynload":
            skipped |= {n for n in names if DYNLOAD_SKIP.match(n)}
        return skipped

    shutil.copytree(stdlib, pylib, ignore=skip, symlinks=False)
    site = pylib / "site-packages"
    site.mkdir()
    for name in PACKAGES:
        _copy_package(name, site)
    for pycache in root.rglob("__pycache__"):
        shutil.rmtree(pycache)

    # Shared libraries: everything any ELF object of the bundle needs, glibc's loader included.
    elves = [bin_dir / f"python{version}"] + [p for p in pylib.rglob("*.so") if p.is_file()]
    needed: dict[str, Path] = {libpython.name: libpython}
    for elf in [*elves, libpython]:
        for lib in shared_libraries(elf):
            needed.setdefault(lib.name, lib)
    for name in DLOPENED:
        needed.setdefault(name, _find_library(name))
    loader_name = ""
    for name, lib in needed.items():
        shutil.copy2(lib.resolve(), lib_dir / name)
        if name.startswith("ld-linux"):
            loader_name = name
    if not loader_name:
        raise RuntimeError(f"ldd of {exe} named no ld-linux loader; cannot make the bundle relocatable")

    # Debug symbols are most of libpython's and the extensions' size; the copy runs per task.
    strippable = [bin_dir / f"python{version}", lib_dir / libpython.name, *pylib.rglob("*.so")]
    subprocess.run(["strip", "--strip-unneeded", *map(str, strippable)], check=True)

    rpath = f"{PREFIX}/lib"
    subprocess.run(["patchelf", "--set-interpreter", f"{rpath}/{loader_name}", "--force-rpath",
                    "--set-rpath", rpath, str(bin_dir / f"python{version}")], check=True)
    for elf in [p for p in lib_dir.iterdir() if p.is_file() and _is_elf(p) and not p.name.startswith("ld-linux")] + [
        p for p in pylib.rglob("*.so") if p.is_file()
    ]:
        subprocess.run(["patchelf", "--force-rpath", "--set-rpath", rpath, str(elf)], check=True)

    # The main container mounts the bundle read-only: compile now, with paths as seen in the Pod,
    # and hashes that stay valid whatever the copy does to mtimes.
    compileall.compile_dir(
        str(pylib), quiet=2, workers=0, stripdir=str(root), prependdir=PREFIX, legacy=False,
        invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def client_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions levrt's client side needs beyond the bundle (kubernetes_asyncio...)."""
    from packaging.requirements import Requirement

    in_bundle = {"levrt", "cloudpickle", "pymongo", "dnspython"}
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = ["levrt"]
    while todo:
        try:
            dist = importlib.metadata.distribution(todo.pop())
        except importlib.metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return [d for k, d in sorted(seen.items()) if k not in in_bundle]


def build_client_site(dest: Path) -> Path:
    """Copy the client-side distributions into ``dest`` (the orchestrator's PYTHONPATH entry).

    Orchestration Pods (``levrt run --in-cluster``) run the full SDK from the runtime image;
    these packages stay outside ``/levrt`` so task Pods never copy them.
    """
    if (dest / ".complete").exists():
        return dest
    staging = Path(tempfile.mkdtemp(prefix=".client-site-", dir=dest.parent))
    try:
        for dist in client_distributions():
            for rel in dist.files or []:
                if str(rel).startswith("..") or "__pycache__" in str(rel):
                    continue
                source = Path(str(dist.locate_file(rel)))
                if source.is_file():
                    target = staging / str(rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
        compileall.compile_dir(str(staging), quiet=2, workers=0, stripdir=str(staging),
                               prependdir="/opt/levrt-orchestrator",
                               invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH)
        (staging / ".complete").write_text("")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


KEEP_CACHED = 3  # bundles of recent checkouts kept in the cache; each is ~60 MB


def _complete(target: Path) -> bool:
    return (target / "levrt" / "bin" / "python3").exists()


def _prune_cache(keep: Path) -> None:
    """Drop all but the newest cached bundles: every change to levrt's sources makes a new one."""
    cached = sorted(keep.parent.glob("runtime-bundle-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in cached if p != keep][KEEP_CACHED - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def build_bundle(dest: Path | None = None) -> Path:
    """Return a directory holding ``levrt/`` (the bundle); build it unless cached.

    The bundle is built in a temporary directory beside the target and renamed into place, so a
    concurrent build or an interrupted one never leaves a half-written bundle behind.
    """
    target = dest or cache_root() / f"runtime-bundle-{cache_key()}"
    if _complete(target):
        return target
    started = time.monotonic()
    progress(f"building the runtime bundle (Python {_version()}) into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".runtime-bundle-", dir=target.parent))
    try:
        build_into(staging / "levrt")
        if target.exists() and not _complete(target):
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if not _complete(target):  # not another build winning the race: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if dest is None:
        _prune_cache(target)
    size = sum(p.stat().st_size for p in (target / "levrt").rglob("*") if p.is_file() and not p.is_symlink())
    progress(f"runtime bundle built in {time.monotonic() - started:.1f}s, {size / 1e6:.1f} MB")
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the levrt runtime bundle (mounted at /levrt).")
    parser.add_argument("dest", nargs="?", type=Path,
                        help="directory to hold levrt/ (default: the cache, keyed by content)")
    parser.add_argument("--client-site", type=Path, metavar="DIR",
                        help="also copy the client-side packages for in-cluster orchestration into DIR "
                             "(the image's /opt/levrt-orchestrator)")
    options = parser.parse_args(argv)
    print(build_bundle(options.dest))
    if options.client_site:
        options.client_site.parent.mkdir(parents=True, exist_ok=True)
        print(build_client_site(options.client_site))
    return 0


if __name__ == "__main__":
    sys.exit(main())
