"""lev namespaces on contextvars, and the in-task API delegation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from levrt import ctx, lev
from levrt.context import bind_task, collection_name, current_prefix
from levrt.errors import OutsideTaskError


def test_prefixes_compose() -> None:
    assert current_prefix() == "" and collection_name(None) == "default"
    assert collection_name("ts/issues@1.0") == "ts/issues@1.0"
    with lev / "example":
        assert collection_name("ts/issues@1.0") == "example|ts/issues@1.0"
    with lev / "httpbin" / "org":
        assert collection_name("ts/issues@1.0") == "httpbin|org|ts/issues@1.0"
        with ctx / "deeper":
            assert current_prefix() == "httpbin|org|deeper|"
        assert current_prefix() == "httpbin|org|"
    assert current_prefix() == ""


def test_namespace_object_is_reusable_and_restores_on_error() -> None:
    space = lev / "a" / "b"
    assert repr(space) == "lev / 'a' / 'b'"
    with pytest.raises(RuntimeError):
        with space:
            with space:
                assert current_prefix() == "a|b|a|b|"
            raise RuntimeError
    assert current_prefix() == ""


async def test_two_orchestrations_in_one_loop_keep_their_prefixes() -> None:
    seen: dict[str, list[str]] = {"one": [], "two": []}
    gate = asyncio.Event()

    async def orchestration(name: str, space: str) -> None:
        with lev / space:
            seen[name].append(collection_name("ts/x@1.0"))
            if name == "one":
                await gate.wait()  # "two" enters and leaves its namespace meanwhile
            else:
                gate.set()
            await asyncio.sleep(0)
            seen[name].append(collection_name("ts/x@1.0"))
            async with lev / "inner":
                await asyncio.sleep(0)
                seen[name].append(current_prefix())
        seen[name].append(current_prefix())

    await asyncio.gather(orchestration("one", "alpha"), orchestration("two", "beta"))
    assert seen["one"] == ["alpha|ts/x@1.0", "alpha|ts/x@1.0", "alpha|inner|", ""]
    assert seen["two"] == ["beta|ts/x@1.0", "beta|ts/x@1.0", "beta|inner|", ""]
    assert current_prefix() == ""


def test_lev_set_outside_a_task() -> None:
    with pytest.raises(OutsideTaskError, match=r"await doc\.set"):
        lev.set(x=1)
    with pytest.raises(OutsideTaskError):
        _ = lev.job_id


class Binding:
    def __init__(self) -> None:
        self.job_id, self.task_id = 3, 1
        self.writes: list[dict[str, Any]] = []
        self.doc = "the-doc"

    def set(self, data: dict[str, Any]) -> None:
        self.writes.append(data)


def test_lev_inside_a_task_delegates_to_the_binding() -> None:
    binding = Binding()
    previous = bind_task(binding)
    try:
        lev.set({"a": 1}, b=2)
        lev.set(c=3)
        lev.set()
        assert binding.writes == [{"a": 1, "b": 2}, {"c": 3}]
        assert (lev.job_id, lev.task_id, lev.doc) == (3, 1, "the-doc")
    finally:
        bind_task(previous)
    with pytest.raises(OutsideTaskError):
        lev.set(x=1)
