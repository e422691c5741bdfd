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

from levrt._clients.api import NotFound
from levrt._clients.kube import Kube
from levrt._shapes.names import pod_name
from levrt._shapes.podstatus import parse_timestamp
from levrt.errors import LevrtError
from levrt.settings import Settings

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CliError",
    "Command",
    "add_cluster_options",
    "age",
    "cluster",
    "load_module",
    "parse_duration",
    "pod_of",
    "print_table",
    "settings_of",
    "task_pod_missing",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it

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
    if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", task):
        return task
    raise CliError(f"{task!r} is not a task. Give JOB.TASK (e.g. 12.3, see `levrt ps`) or a Pod name.")


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
    """Import ``target``: a dotted module name, or a path to a ``.py`` file or package directory."""
    path = pathlib.Path(target)
    looks_like_path = target.endswith(".py") or "/" in target or "\\" in target or path.is_dir()
    if looks_like_path:
        if path.is_dir():
            path = path / "__init__.py"
        if not path.is_file():
            raise CliError(
                f"{target!r}: no such file. Give a module name (tools.nmap) or a path (tools/nmap.py)."
            )
        name = f"levrt_check_{path.stem}_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CliError(f"{target!r} cannot be imported as a Python module.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent.resolve()))
        return module
    if str(pathlib.Path.cwd()) not in sys.path:
        sys.path.insert(0, str(pathlib.Path.cwd()))
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise CliError(
                f"No module named {target!r} (searched the current directory and sys.path). "
                "Give a dotted module name or a file path such as tools/nmap.py."
            ) from None
        raise
