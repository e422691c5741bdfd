"""Module-level entries and helpers for the payload tests.

Why a module of its own: the container cannot import the user's modules, so functions defined
in them — and the module-level helpers they call — must travel by value. These live in
``tests.unit.entry_helpers``, which a fresh interpreter without the repository on its path
cannot import; the payload tests unpickle them there.
"""

from __future__ import annotations

import levrt
from levrt.remote import Remote

GREETING = "Hello"


def shout(text: str) -> str:
    """A module-level helper the entries use: it must be pickled by value with them."""
    return text.upper() + "!"


class Finding:
    """A user class: instances passed as arguments travel with their class by value."""

    def __init__(self, port: int) -> None:
        self.port = port


@levrt.remote
def greet(name: str, *, punctuation: str = ".") -> str:
    return shout(f"{GREETING}, {name}") + punctuation


@levrt.remote
async def agreet(name: str) -> str:
    return shout(name)


@levrt.remote
def ports(findings: list[Finding]) -> list[int]:
    return [f.port for f in findings]


def make_closure(prefix: str) -> Remote[[int], str]:
    counter = {"n": 0}

    @levrt.remote
    def entry(x: int) -> str:
        counter["n"] += 1
        return f"{prefix}:{shout(str(x))}:{counter['n']}"

    return entry
