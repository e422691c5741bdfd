"""``levrt.cli(*args, **kw)``: build a command line for a tool from Python values.

Why: modes turn their parameters into a tool's argv (``cmd=cli("-sV", ports="80")``) and hand
rolling ``["--ports", str(p)]`` everywhere invites mistakes (a forgotten ``str``, a ``False``
flag passed as ``"False"``). The rules are fixed and few:

- positional arguments are kept in order (str, int, float, os.PathLike; lists/tuples flatten);
- ``key=True`` → ``--key``; ``key=False``/``None`` → dropped;
- single-letter keys → ``-k``, longer ones → ``--long-key`` (underscores become dashes; a trailing
  underscore, as in ``class_``, is removed);
- other values → ``--key value`` (two items; numbers via ``str``);
- a list or tuple value repeats the flag: ``port=[80, 443]`` → ``--port 80 --port 443``
  (join it yourself, ``port="80,443"``, for tools that want one comma-separated value).
"""

from __future__ import annotations

import os
from typing import Any

from levrt.errors import ArgvError

__all__ = ["cli"]


def _scalar(value: Any, *, where: str) -> str:
    if isinstance(value, bool):
        raise ArgvError(
            f"cli(): {where} is {value!r}; a bool is only meaningful as a flag: cli(verbose=True)."
        )
    if isinstance(value, str):
        if "\0" in value:
            raise ArgvError(f"cli(): {where} {value!r} contains a NUL character.")
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    raise ArgvError(
        f"cli(): {where} is a {type(value).__name__} ({value!r:.60}); use str, int, float or a path "
        "(convert it yourself, e.g. json.dumps(...) or ','.join(...))."
    )


def cli(*args: Any, **kwargs: Any) -> list[str]:
    """``cli("-sV", ports="80", verbose=True)`` → ``["-sV", "--ports", "80", "--verbose"]``."""
    argv: list[str] = []
    for i, arg in enumerate(args):
        items = arg if isinstance(arg, list | tuple) else [arg]
        argv += [_scalar(item, where=f"positional argument {i}") for item in items]
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-") if key.rstrip("_") else key
        flag = f"-{name}" if len(name) == 1 else f"--{name}"
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                argv += [flag, _scalar(item, where=f"an item of {key}=")]
        else:
            argv += [flag, _scalar(value, where=f"{key}=")]
    return argv
