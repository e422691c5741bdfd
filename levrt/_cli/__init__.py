"""The ``levrt`` command: the parser, the list of subcommands, and the exit-code policy.

Why a list written out here: the subcommands live in modules by theme (``check``, ``run``,
``ps``, ``tasks`` for logs/kill, ``attach``, ``results`` for get, ``schemas``, ``put``,
``registry`` for publish/tools/unpublish, ``console``, ``admin`` for gc/reap/doctor,
``laptop`` for up/env/down/image); this module names them in the order ``levrt --help`` shows
them, so nothing registers itself behind an import.

Not named ``levrt/cli.py``: ``levrt.cli`` is the public argv builder, and importing a submodule
of that name would rebind the package attribute ``levrt.cli`` to the module.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from levrt._cli import (
    admin,
    attach,
    check,
    console,
    diff,
    laptop,
    ps,
    put,
    registry,
    results,
    run,
    schedules,
    schemas,
    tasks,
)
from levrt._cli.base import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, Command, Handler
from levrt._version import __version__
from levrt.errors import LevrtError
from levrt.podenv import DEBUG_ENV

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[Command, ...] = (
    check.CHECK,
    run.RUN,
    schedules.SCHEDULE,
    ps.PS,
    tasks.LOGS,
    tasks.KILL,
    attach.ATTACH,
    results.GET,
    diff.DIFF,
    schemas.SCHEMAS,
    put.PUT,
    registry.PUBLISH,
    registry.TOOLS,
    registry.UNPUBLISH,
    console.CONSOLE,
    admin.GC,
    admin.REAP,
    admin.DOCTOR,
    laptop.UP,
    laptop.ENV,
    laptop.DOWN,
    laptop.IMAGE,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the usage block is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="levrt", description="Kubernetes-native job runner for security tooling.")
    parser.add_argument("--version", action="version", version=f"levrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        sp = sub.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(sp)
        sp.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``levrt`` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if extra:  # said by the subcommand, as every other mistake in its arguments
        print(f"levrt {args.command}: unrecognized arguments: {' '.join(extra)} "
              f"(see `levrt {args.command} --help`)", file=sys.stderr)
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
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # Not one of levrt's errors: a bug, or a library's error nobody mapped yet. One line still,
        # with the way to the traceback for the report.
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"levrt {args.command}: unexpected {type(exc).__name__}: {exc} ({DEBUG_ENV}=1 shows the "
              "traceback; please report it)", file=sys.stderr)
        return EXIT_FAILED
