"""What every ``levrt`` subcommand shares: the command record, exit codes, usage errors, common
options, the cluster connection, and plain-text tables.

Exit codes follow kubectl and helm: 0 success, 1 the operation failed, 2 a usage mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import pathlib
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import ModuleType

from levrt._clients import pods
from levrt._clients.api import NotFound
from levrt._clients.kube import Kube
from levrt._clients.store import Store, opened
from levrt._core.sources import package_root
from levrt._shapes.names import ATTEMPT_LABEL, pod_name
from levrt._shapes.podstatus import parse_timestamp
from levrt.checks.patterns import DNS1123_LABEL
from levrt.errors import LevrtError
from levrt.settings import Settings

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "LONE_FILE_PREFIX",
    "CliError",
    "Command",
    "ImportFailed",
    "add_cluster_options",
    "age",
    "cluster",
    "load_module",
    "open_store",
    "parse_duration",
    "pod_of",
    "print_table",
    "resolve_pod",
    "settings_of",
    "task_pod_missing",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it
# A .py file outside any package is loaded under a name of its own: this prefix and a random part.
LONE_FILE_PREFIX = "levrt_check_"

Handler = Callable[[argparse.Namespace], int]


class CliError(LevrtError):
    """A command-line mistake: printed without a traceback, exit status 2."""


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its name and help, how it adds its arguments, and what it runs."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace of levrt's objects (default: $LEVRT_NAMESPACE or levrt)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")


def settings_of(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with ``--namespace`` applied."""
    settings = Settings.from_env()
    if getattr(args, "namespace", None):
        settings = settings.replace(namespace=args.namespace)
    return settings


@contextlib.asynccontextmanager
async def cluster(args: argparse.Namespace) -> AsyncIterator[tuple[Kube, Settings]]:
    """A connection to the cluster named by ``--kubeconfig``, and the settings; closed afterwards."""
    settings = settings_of(args)
    async with await Kube.connect(kubeconfig=getattr(args, "kubeconfig", None)) as kube:
        yield kube, settings


def open_store(args: argparse.Namespace) -> contextlib.AbstractAsyncContextManager[Store]:
    """The store this machine reaches (``Settings.store_uri``, else the platform's Secret read with
    ``--kubeconfig``), closed afterwards."""
    return opened(settings_of(args), kubeconfig=getattr(args, "kubeconfig", None))


@contextlib.contextmanager
def task_pod_missing(pod: str) -> Iterator[None]:
    """A task Pod that is not there is a usage mistake (a wrong id, or already cleaned up)."""
    try:
        yield
    except NotFound:
        raise CliError(f"No task Pod {pod!r} (it may have ended and been removed; see `levrt ps`).") from None


def pod_of(task: str) -> str:
    """The Pod name of a task given as ``JOB.TASK`` (``12.3``) or as a Pod name (``lev-j12-t3``)."""
    match = re.fullmatch(r"(\d+)\.(\d+)", task)
    if match:
        return pod_name(int(match.group(1)), int(match.group(2)))
    if DNS1123_LABEL.match(task):
        return task
    raise CliError(f"{task!r} is not a task. Give JOB.TASK (e.g. 12.3, see `levrt ps`) or a Pod name.")


async def resolve_pod(kube: Kube, namespace: str, task: str) -> str:
    """The Pod a task runs in now: for ``JOB.TASK`` the latest attempt (a retried task runs in
    ``lev-j12-t3-r1``, then ``-r2``...); a Pod name is taken as given."""
    first = pod_of(task)
    match = re.fullmatch(r"(\d+)\.(\d+)", task)
    if not match:
        return first
    attempts: dict[int, str] = {}
    for item in await pods.job_pods(kube, namespace, int(match.group(1)), task=match.group(2)):
        attempt = item["metadata"].get("labels", {}).get(ATTEMPT_LABEL, "0")
        attempts[int(attempt) if attempt.isdigit() else 0] = item["metadata"]["name"]
    return attempts[max(attempts)] if attempts else first


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``2h``, ``7d`` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise CliError(f"{text!r} is not a duration. Use e.g. 30s, 15m, 2h or 7d.")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def age(stamp: str | None) -> str:
    """``3d``, ``5h``, ``12m``, ``40s`` since an API timestamp, or ``-``."""
    if not stamp:
        return "-"
    seconds = time.time() - parse_timestamp(stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def load_module(target: str) -> ModuleType:
    """Import ``target``: a dotted module name, or a path to a ``.py`` file or package directory.

    A path inside a package (its folder has an ``__init__.py``) is imported under its dotted name,
    so relative imports work: the package root is found by walking up the ``__init__.py`` chain
    and, for levrt 1.x tool packages (``lev/<namespace>/<tool>/``), on through at most two
    namespace-package folders (no ``__init__.py``) up to the folder named ``lev``. The folder
    holding that root goes on ``sys.path`` (and stays, so later ``lev.*`` imports work). A file
    outside any package is executed on its own, with its folder on ``sys.path`` while it runs.
    """
    path = pathlib.Path(target)
    looks_like_path = target.endswith(".py") or "/" in target or "\\" in target or path.is_dir()
    if not looks_like_path:
        return _import_dotted(target)
    if path.is_dir():
        if not (path / "__init__.py").is_file():
            raise CliError(
                f"{target!r} is a folder without __init__.py. Give a tool package folder "
                "(lev/<namespace>/<tool>/ with an __init__.py) or a .py file."
            )
        path = path / "__init__.py"
    if not path.is_file():
        raise CliError(
            f"{target!r}: no such file. Give a module name (tools.nmap) or a path (tools/nmap.py)."
        )
    located = package_root(path)
    if located is not None:
        return _import_in_package(target, path, *located)
    return _exec_file(target, path)


def _import_in_package(target: str, path: pathlib.Path, root: pathlib.Path, dotted: str) -> ModuleType:
    root_entry = str(root)
    if root_entry not in sys.path:
        sys.path.insert(0, root_entry)
    # As for a lone file, the file's own folder is searched too (last), for absolute imports of
    # siblings written before the file lived in a package.
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.append(folder)
    try:
        module = importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and (dotted == exc.name or dotted.startswith(exc.name + ".")):
            raise CliError(
                f"{target!r} is {dotted} under {root}, but importing it failed: {exc}. Is another "
                f"{exc.name.partition('.')[0]!r} package earlier on sys.path?"
            ) from None
        raise _missing_module(target, exc, package=dotted) from None
    except ImportError as exc:
        raise _failed_import(target, exc) from None
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    found = getattr(module, "__file__", None)
    if found is None or pathlib.Path(found).resolve() != path.resolve():
        raise CliError(
            f"{target!r} is {dotted} under {root}, but that name is already imported from {found}. "
            "Run levrt from elsewhere, or remove the other copy from sys.path."
        )
    return module


def _exec_file(target: str, path: pathlib.Path) -> ModuleType:
    name = f"{LONE_FILE_PREFIX}{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"{target!r} cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, ModuleNotFoundError):
            raise _missing_module(target, exc) from None
        if "no known parent package" in str(exc):
            raise CliError(
                f"{target!r} uses relative imports (from . import ...), but its folder has no __init__.py, "
                "so it is not part of a package. Add an __init__.py to the folder (and to the tool "
                "package's folders: lev/<namespace>/<tool>/__init__.py)."
            ) from None
        raise _failed_import(target, exc) from None
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _import_dotted(target: str) -> ModuleType:
    if str(pathlib.Path.cwd()) not in sys.path:
        sys.path.insert(0, str(pathlib.Path.cwd()))
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise CliError(
                f"No module named {target!r} (searched the current directory and sys.path). "
                "Give a dotted module name or a file path such as tools/nmap.py."
            ) from None
        raise _missing_module(target, exc, package=target) from None
    except ImportError as exc:
        raise _failed_import(target, exc) from None


class ImportFailed(LevrtError):
    """What ``load_module`` loads failed to import (a module it needs is missing, a name is not
    where it imports it from): the target's matter, not levrt's, so exit status 1 naming it."""


def _missing_module(target: str, exc: ModuleNotFoundError, *, package: str | None = None) -> ImportFailed:
    """The failed import of ``target`` said as the target's missing dependency, with the line that
    imports it (a ``ModuleNotFoundError`` without a name, raised by hand, is said as it is).

    A module of the target's own package that does not exist is the package's mistake, not a
    dependency to install; anything else is a third-party module the target needs.
    """
    if not exc.name:
        return _failed_import(target, exc)
    where = _import_site(exc)
    at = f" (imported at {where})" if where else ""
    if package and exc.name.partition(".")[0] == package.partition(".")[0]:
        return ImportFailed(f"{target} imports {exc.name!r}{at}, which its own package does not have.")
    return ImportFailed(
        f"{target} needs the module {exc.name!r}{at}, which is not installed here: install the package that "
        f"provides it (pip install {exc.name.partition('.')[0]}, if that is its name), or, when only the "
        "task's image needs it, import it inside the @levrt.remote entry that uses it."
    )


def _failed_import(target: str, exc: ImportError) -> ImportFailed:
    """Any other failed import in ``target`` (``from x import name`` where x has no ``name``): the
    target's own mistake, said with the line, not as a bug of levrt's."""
    where = _import_site(exc)
    return ImportFailed(f"{target}: an import failed{f' at {where}' if where else ''}: {exc}")


def _import_site(exc: BaseException) -> str | None:
    """``path:line`` of the import statement that failed: the innermost frame of Python source
    (importlib's own frames are ``<frozen ...>``), relative to the current directory when inside it."""
    site = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<"):
            site = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if site is None:
        return None
    path = pathlib.Path(site[0])
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to(pathlib.Path.cwd().resolve())
    return f"{path}:{site[1]}"
