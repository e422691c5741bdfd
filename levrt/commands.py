"""The ``levrt`` command's shell: argparse, ``levrt check MODULE``, and the registry ``COMMANDS``
that the operator commands (``run``, ``ps``, ``logs``, ``kill``, ``get``, ``gc``, ``doctor``, in
``levrt.ops``) join with ``@command``.

Why argparse and lazy imports: the command must start fast and work where only the SDK's
dependencies are installed; rich (progress, tables) and the cluster clients are imported inside
the subcommands that need them, never at module top.

Not named ``levrt/cli.py``: ``levrt.cli`` is the public argv builder, and importing a submodule
of that name would rebind the package attribute ``levrt.cli`` to the module.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import pathlib
import sys
import uuid
from collections.abc import Callable, Sequence
from types import ModuleType

from levrt._version import __version__
from levrt.errors import LevrtError

__all__ = ["COMMANDS", "build_parser", "load_module", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]
# name → (help, add_arguments, handler). Other subcommands are added here.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


class CliError(LevrtError):
    """A command-line mistake: printed without a traceback, exit status 2."""


def command(
    name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help, arguments, handler)
        return handler

    return register


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


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", help="dotted module name (tools.nmap) or path (tools/nmap.py)")


@command("check", "print a tool module's __lev__ metadata as JSON", _check_arguments)
def check(args: argparse.Namespace) -> int:
    module = load_module(args.module)
    lev_meta = getattr(module, "__lev__", None)
    if lev_meta is None:
        raise CliError(
            f"Module {args.module!r} has no __lev__ metadata. Export its modes with "
            "`__lev__ = levrt.annot.meta([mode1, mode2], desc=...)`."
        )
    try:
        text = json.dumps(lev_meta, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise CliError(
            f"The __lev__ of {args.module!r} is not JSON-serialisable: {exc}. Build it with annot.meta."
        ) from None
    print(text)
    return EXIT_OK


def _load_operator_commands() -> None:
    """Register the subcommands of ``levrt.ops`` (they import their clients lazily)."""
    try:
        importlib.import_module("levrt.ops")
    except ModuleNotFoundError as exc:
        if exc.name != "levrt.ops":
            raise


def build_parser() -> argparse.ArgumentParser:
    _load_operator_commands()
    parser = argparse.ArgumentParser(
        prog="levrt", description="Kubernetes-native job runner for security tooling."
    )
    parser.add_argument("--version", action="version", version=f"levrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, arguments, handler) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        arguments(sp)
        sp.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``levrt`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except CliError as exc:
        print(f"levrt {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LevrtError as exc:
        print(f"levrt {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `levrt get ... | head`: the reader left; end quietly, as kubectl does.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
