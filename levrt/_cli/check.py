"""``levrt check MODULE``: print a tool module's ``__lev__`` metadata as JSON."""

from __future__ import annotations

import argparse
import json

from levrt._cli.base import EXIT_OK, CliError, Command, load_module

__all__ = ["CHECK"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", help="dotted module name (tools.nmap) or path (tools/nmap.py)")


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


CHECK = Command("check", "print a tool module's __lev__ metadata as JSON", _arguments, check)
