"""Fixtures the CLI's unit tests share: a fake apiserver and a fake store, installed behind levrt's
transport and store-client seams for the length of one test.

Why here: the command tests (test_cli_commands, test_ps, test_cli_files) talk to both through
levrt's own clients; a test module that needs them bare (not installed) defines its own
fixture of the same name, which takes precedence over these.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from tests.fakes import FakeApiServer, FakeMongo

FAKE_STORE = "mongodb://127.0.0.1:30017/"


@pytest.fixture
def laptop_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A laptop's environment as the fakes need it: no ``LEVRT_*`` but the store's address, and no
    kubeconfig (the fake apiserver answers whatever the client connects to)."""
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LEVRT_STORE_URI", FAKE_STORE)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    api = FakeApiServer(namespaces=["levrt", "scans"])
    with use_transport(lambda: api):
        yield api


@pytest.fixture
def mongo() -> Iterator[FakeMongo]:
    mongo = FakeMongo()
    with use_client(mongo.client):
        yield mongo
