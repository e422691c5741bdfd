"""Document over a fake AsyncCollection: get/set/all semantics of SPEC 1."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from levrt import Document
from levrt.errors import LevrtError, StoreError


def _match(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, want in query.items():
        if key == "$and":
            if not all(_match(doc, q) for q in want):
                return False
            continue
        value: Any = doc
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value != want:
            return False
    return True


class Cursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def sort(self, key: str, direction: int) -> Cursor:
        def get(d: dict[str, Any]) -> Any:
            for part in key.split("."):
                d = d[part]
            return d

        return Cursor(sorted(self.docs, key=get, reverse=direction < 0))

    async def _iter(self) -> AsyncIterator[dict[str, Any]]:
        for d in self.docs:
            yield copy.deepcopy(d)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iter()


class FakeCollection:
    """The subset of pymongo's AsyncCollection a Document uses."""

    def __init__(self, name: str) -> None:
        self.name = self.full_name = name
        self.docs: list[dict[str, Any]] = []
        self.calls: list[tuple[str, Any]] = []

    async def find_one(self, query: dict[str, Any], projection: Any = None) -> dict[str, Any] | None:
        self.calls.append(("find_one", (query, projection)))
        for d in self.docs:
            if _match(d, query):
                out = copy.deepcopy(d)
                if projection:
                    out = {k: v for k, v in out.items() if k in projection or k == "_id"}
                return out
        return None

    async def update_one(self, filter: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> None:
        self.calls.append(("update_one", (filter, update, upsert)))
        for d in self.docs:
            if _match(d, filter):
                d.update(update["$set"])
                return
        assert upsert
        self.docs.append({**copy.deepcopy(filter), **update["$set"]})

    def find(self, query: dict[str, Any], projection: Any = None) -> Cursor:
        self.calls.append(("find", (query, projection)))
        return Cursor([d for d in self.docs if _match(d, query)])


def doc(coll: FakeCollection, job: int, task: int) -> Document:
    return Document(coll, {"_id": {"job": job, "task": task}})


async def test_get_returns_user_fields_only_and_none_when_absent() -> None:
    coll = FakeCollection("ts/issues@1.0")
    d = doc(coll, 1, 0)
    assert await d.get() is None
    coll.docs.append({"_id": {"job": 1, "task": 0}, "target": "example.com", "issues": ["Some issues"]})
    assert {"target": "example.com", "issues": ["Some issues"]} == await d.get()
    assert d.coll.name == "ts/issues@1.0"
    assert (d.job_id, d.task_id) == (1, 0)


async def test_get_with_query_and_projection() -> None:
    coll = FakeCollection("c")
    coll.docs.append({"_id": {"job": 1, "task": 0}, "a": 1, "b": 2})
    d = doc(coll, 1, 0)
    assert await d.get({"a": 1}, ["a"]) == {"a": 1}
    assert await d.get({"a": 2}) is None
    assert coll.calls[-1] == ("find_one", ({"_id": {"job": 1, "task": 0}, "a": 2}, None))


async def test_set_upserts_and_merges() -> None:
    coll = FakeCollection("c")
    d = doc(coll, 2, 5)
    await d.set({"a": 1}, b=2)
    await d.set(b=3)
    await d.set()
    assert await d.get() == {"a": 1, "b": 3}
    assert coll.calls[0] == ("update_one", ({"_id": {"job": 2, "task": 5}}, {"$set": {"a": 1, "b": 2}}, True))
    with pytest.raises(LevrtError, match="_id"):
        await d.set(_id=1)


async def test_all_iterates_records_of_the_same_job() -> None:
    coll = FakeCollection("c")
    coll.docs += [
        {"_id": {"job": 1, "task": 1}, "n": "b"},
        {"_id": {"job": 2, "task": 0}, "n": "other job"},
        {"_id": {"job": 1, "task": 0}, "n": "a"},
    ]
    got = [r async for r in doc(coll, 1, 0).all()]
    assert got == [{"n": "a"}, {"n": "b"}]
    assert [r async for r in doc(coll, 1, 0).all({"n": "b"})] == [{"n": "b"}]


async def test_store_failures_become_store_errors() -> None:
    class Broken(FakeCollection):
        async def find_one(self, query: dict[str, Any], projection: Any = None) -> dict[str, Any] | None:
            raise ConnectionError("no route to host")

    with pytest.raises(StoreError, match="no route to host"):
        await doc(Broken("c"), 1, 0).get()


def test_equality_and_repr() -> None:
    coll = FakeCollection("c")
    assert doc(coll, 1, 0) == doc(coll, 1, 0) != doc(coll, 1, 1)
    assert "c" in repr(doc(coll, 1, 0))
