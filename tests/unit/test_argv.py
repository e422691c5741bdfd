"""levrt.cli: the argv builder."""

from __future__ import annotations

import pathlib

from levrt import cli


def test_spec_example() -> None:
    assert cli("-sV", ports="80", verbose=True) == ["-sV", "--ports", "80", "--verbose"]


def test_single_letter_false_none_underscores_numbers() -> None:
    assert cli(p=80, v=True, q=False, x=None, min_rate=1.5, class_="a") == [
        "-p",
        "80",
        "-v",
        "--min-rate",
        "1.5",
        "--class",
        "a",
    ]


def test_lists_repeat_and_positionals_flatten() -> None:
    assert cli(["a", 1], pathlib.Path("/x"), port=[80, 443]) == [
        "a",
        "1",
        "/x",
        "--port",
        "80",
        "--port",
        "443",
    ]


def test_empty() -> None:
    assert cli() == []
