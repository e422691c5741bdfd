"""The client's rate limit and its retries of shed requests, against a fake clock and the fake apiserver.

Why: a fan-out of thousands of tasks goes through one ``Kube``; it must pace itself (a token
bucket, ``Limits``), serve deletions and half-done submits before new Pods, wait as long as the
apiserver asks when it sheds load (429, 503 with ``Retry-After``) and give up after a bounded
number of tries, while its watch stream is never held back. The timing is checked with an
injected clock, so these tests take milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import levrt
from levrt import Cr
from levrt._clients.api import (
    ApiError,
    NotFound,
    Response,
    ServiceUnavailable,
    TooManyRequests,
    retry_after_seconds,
)
from levrt._clients.http import HttpTransport
from levrt._clients.kube import DEFAULT_BURST, DEFAULT_QPS, Kube, Limiter, Limits, Priority, use_transport
from levrt._clients.submit import delete_pod, submit
from levrt._shapes.build import build_task
from levrt.errors import ClusterError, SettingsError
from levrt.settings import Settings
from tests.fakes import FakeApiServer
from tests.helpers import Config

PODS = "/api/v1/namespaces/levrt/pods"


class FakeClock:
    """Time that moves only when somebody sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        for _ in range(50):  # what is ready runs first, at the current time: requests answered, next ones queued
            await asyncio.sleep(0)
        self.now += seconds


def limiter(clock: FakeClock, qps: float, burst: int) -> Limiter:
    return Limiter(qps, burst, clock=clock, sleep=clock.sleep)


async def grant_times(lim: Limiter, clock: FakeClock, priorities: list[int]) -> list[tuple[int, float]]:
    """Start one acquire per priority, in order; return (index, time granted) in the order granted."""
    granted: list[tuple[int, float]] = []

    async def one(index: int, priority: int) -> None:
        await lim.acquire(priority)
        granted.append((index, clock.now))

    await asyncio.gather(*(one(i, p) for i, p in enumerate(priorities)))
    return granted


# -- the token bucket -------------------------------------------------------------------------------


async def test_a_burst_goes_at_once_then_requests_are_paced_at_qps() -> None:
    clock = FakeClock()
    lim = limiter(clock, qps=10, burst=5)
    granted = await grant_times(lim, clock, [Priority.NORMAL] * 9)
    times = [round(t - 1000.0, 6) for _, t in granted]
    assert times == [0.0] * 5 + [0.1, 0.2, 0.3, 0.4]
    assert [i for i, _ in granted] == list(range(9))  # first come, first served
    assert (lim.granted, lim.delayed) == (9, 4)
    assert lim.waited == pytest.approx(0.1 + 0.2 + 0.3 + 0.4)


async def test_tokens_refill_while_idle_but_never_beyond_the_burst() -> None:
    clock = FakeClock()
    lim = limiter(clock, qps=10, burst=3)
    await grant_times(lim, clock, [Priority.NORMAL] * 3)
    clock.now += 60.0  # a long quiet spell refills 3 tokens, not 600
    granted = await grant_times(lim, clock, [Priority.NORMAL] * 5)
    assert [round(t - granted[0][1], 6) for _, t in granted] == [0.0, 0.0, 0.0, 0.1, 0.2]


async def test_cleanup_goes_first_then_work_under_way_then_new_work() -> None:
    clock = FakeClock()
    lim = limiter(clock, qps=1, burst=1)
    await lim.acquire()  # the bucket is empty now: everything below waits its turn
    order = [Priority.NEW_WORK, Priority.NEW_WORK, Priority.NORMAL, Priority.CLEANUP, Priority.NORMAL]
    granted = await grant_times(lim, clock, order)
    assert [i for i, _ in granted] == [3, 2, 4, 0, 1]
    assert [round(t - 1000.0, 6) for _, t in granted] == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_a_cancelled_waiter_takes_no_token() -> None:
    clock = FakeClock()
    lim = limiter(clock, qps=1, burst=1)
    await lim.acquire()
    gone = asyncio.ensure_future(lim.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    began = clock.now
    await lim.acquire()
    assert clock.now - began == pytest.approx(1.0)  # the next token, not the one after it
    assert lim.waiting == 0


async def test_a_hold_stops_everyone_until_it_ends() -> None:
    clock = FakeClock()
    lim = limiter(clock, qps=100, burst=100)
    lim.hold(2.5)
    granted = await grant_times(lim, clock, [Priority.CLEANUP, Priority.NORMAL])
    assert [round(t - 1000.0, 6) for _, t in granted] == [2.5, 2.5]


async def test_no_limit_lets_everything_through_at_once() -> None:
    clock = FakeClock()
    lim = limiter(clock, qps=0, burst=1)
    granted = await grant_times(lim, clock, [Priority.NORMAL] * 1000)
    assert {t for _, t in granted} == {1000.0} and clock.sleeps == []


# -- the settings ---------------------------------------------------------------------------------


def test_defaults_and_the_environment() -> None:
    assert Limits.from_env({}) == Limits(qps=DEFAULT_QPS, burst=DEFAULT_BURST)
    assert (DEFAULT_QPS, DEFAULT_BURST) == (50.0, 100)
    assert Limits.from_env({"LEVRT_KUBE_QPS": "200", "LEVRT_KUBE_BURST": "400"}) == Limits(qps=200.0, burst=400)
    assert Limits.from_env({"LEVRT_KUBE_QPS": "0"}).qps == 0.0
    with pytest.raises(SettingsError, match="LEVRT_KUBE_QPS='fast'"):
        Limits.from_env({"LEVRT_KUBE_QPS": "fast"})
    with pytest.raises(SettingsError, match="LEVRT_KUBE_BURST"):
        Limits.from_env({"LEVRT_KUBE_BURST": "0"})


async def test_connect_reads_the_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEVRT_KUBE_QPS", "75")
    monkeypatch.setenv("LEVRT_KUBE_BURST", "150")
    with use_transport(lambda: FakeApiServer()):
        async with await Kube.connect() as kube:
            assert (kube.limits.qps, kube.limits.burst) == (75.0, 150)
            assert (kube.limiter.qps, kube.limiter.burst) == (75.0, 150)
    monkeypatch.setenv("LEVRT_KUBE_QPS", "many")
    with use_transport(lambda: FakeApiServer()), pytest.raises(SettingsError):
        await Kube.connect()


def test_retry_after_is_read_as_seconds_or_a_date_or_from_the_status_body() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds(formatdate(time.time() + 30, usegmt=True)) == pytest.approx(30, abs=2)
    assert retry_after_seconds(formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert retry_after_seconds(None, {"details": {"retryAfterSeconds": 2}}) == 2.0
    assert retry_after_seconds("soon", {"message": "x"}) is None
    assert retry_after_seconds(None) is None


# -- requests through Kube --------------------------------------------------------------------------


def fast_kube(api: FakeApiServer, **limits: Any) -> tuple[Kube, FakeClock]:
    """A Kube on the fake whose limiter runs on a fake clock (Retry-After waits cost no time)."""
    kube = Kube(api, limits=Limits(**limits))
    clock = FakeClock()
    kube.limiter = limiter(clock, kube.limits.qps, kube.limits.burst)
    return kube, clock


async def test_a_429_is_retried_after_its_retry_after_then_succeeds() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.fail("GET", f"{PODS}/p", 429, "too many requests, please try again later", times=2, retry_after=3)
    api.put({"kind": "Pod", "metadata": {"name": "p"}})
    kube, clock = fast_kube(api)
    pod = await kube.request("GET", f"{PODS}/p")
    assert pod["metadata"]["name"] == "p"
    assert [r.path for r in api.requests] == [f"{PODS}/p"] * 3
    assert clock.now - 1000.0 == pytest.approx(6.0)  # waited 3 s twice, as asked
    assert kube.retried == 2


async def test_a_post_shed_with_429_is_sent_again_and_created_once() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.fail("POST", PODS, 429, times=1, retry_after=1)
    kube, _ = fast_kube(api)
    await kube.request("POST", PODS, body={"kind": "Pod", "metadata": {"name": "p"}})
    assert api.names("pods") == ["p"]


async def test_while_one_request_waits_out_a_retry_after_the_others_wait_too() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.put({"kind": "Pod", "metadata": {"name": "p"}})
    api.fail("GET", f"{PODS}/p", 429, times=1, retry_after=5)
    kube, clock = fast_kube(api, qps=1000, burst=1000)
    await kube.request("GET", f"{PODS}/p")
    sent_at = clock.now
    await kube.request("GET", f"{PODS}/p")
    assert sent_at - 1000.0 == pytest.approx(5.0)


async def test_retries_are_bounded_then_the_429_is_raised_with_what_was_tried() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.fail("GET", f"{PODS}/p", 429, "slow down", times=100, retry_after=1)
    kube, clock = fast_kube(api, retries=3)
    with pytest.raises(TooManyRequests) as caught:
        await kube.request("GET", f"{PODS}/p")
    assert isinstance(caught.value, ApiError) and caught.value.status == 429
    assert "slow down" in str(caught.value)
    assert any("4 times" in note for note in caught.value.__notes__)
    assert len(api.requests) == 4
    assert clock.now - 1000.0 == pytest.approx(3.0)


async def test_a_long_retry_after_is_cut_to_max_delay() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.put({"kind": "Pod", "metadata": {"name": "p"}})
    api.fail("GET", f"{PODS}/p", 429, times=1, retry_after=3600)
    kube, clock = fast_kube(api, max_delay=10.0)
    await kube.request("GET", f"{PODS}/p")
    assert clock.now - 1000.0 == pytest.approx(10.0)


async def test_a_429_without_retry_after_backs_off_exponentially() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.put({"kind": "Pod", "metadata": {"name": "p"}})
    api.before("GET", f"{PODS}/p", lambda: Response(429, "shed"), times=3)
    kube, clock = fast_kube(api)
    await kube.request("GET", f"{PODS}/p")
    assert clock.now - 1000.0 == pytest.approx(0.5 + 1.0 + 2.0)


async def test_503_is_retried_only_when_the_server_said_retry_after() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.put({"kind": "Pod", "metadata": {"name": "p"}})
    api.fail("GET", f"{PODS}/p", 503, "apiserver is shutting down", times=1, retry_after=1)
    kube, _ = fast_kube(api)
    assert (await kube.request("GET", f"{PODS}/p"))["metadata"]["name"] == "p"
    api.fail("GET", f"{PODS}/p", 503, "unavailable", times=1)
    with pytest.raises(ServiceUnavailable):
        await kube.request("GET", f"{PODS}/p")
    api.fail("GET", f"{PODS}/p", 500, "boom", times=1)
    with pytest.raises(ApiError) as caught:
        await kube.request("GET", f"{PODS}/p")
    assert caught.value.status == 500 and kube.retried == 1


async def test_other_errors_are_not_retried() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    kube, _ = fast_kube(api)
    with pytest.raises(NotFound):
        await kube.request("GET", f"{PODS}/missing")
    assert len(api.requests) == 1 and kube.retried == 0


async def test_streams_are_not_held_back_by_the_limit() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    kube = Kube(api, limits=Limits(qps=0.001, burst=1))  # one request, then one per 1000 s
    await kube.request("GET", PODS)
    blocked = asyncio.ensure_future(kube.request("GET", PODS))
    lines = kube.lines(PODS, query={"watch": True, "resourceVersion": "0"})
    reader = asyncio.ensure_future(lines.__anext__())
    await api.until(lambda: api.watches)  # the watch is open while the GET still waits
    assert not blocked.done() and kube.limiter.waiting == 1
    api.put({"kind": "Pod", "metadata": {"name": "p"}})
    assert b'"ADDED"' in await asyncio.wait_for(reader, 2)
    blocked.cancel()
    await lines.aclose()
    await kube.close()


async def test_closing_the_client_ends_what_waits_for_the_limit() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    kube = Kube(api, limits=Limits(qps=0.001, burst=1))
    await kube.request("GET", PODS)
    blocked = asyncio.ensure_future(kube.request("GET", PODS))
    await asyncio.sleep(0)
    await kube.close()
    with pytest.raises(ClusterError, match="closed"):
        await blocked


# -- submit and cleanup under the limit ----------------------------------------------------------------


@levrt.remote
def entry() -> None:
    pass


async def test_deletes_and_submits_under_way_go_before_new_pods() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    for name in ("old-1", "old-2"):
        api.put({"kind": "Pod", "metadata": {"name": name}})
    kube, _ = fast_kube(api, qps=10, burst=1)
    settings = Settings(runtime_image="levrt.local/runtime:t")
    tasks = [build_task(Cr("busybox:1.36", entry=entry()), job=1, task=i, collection="default", settings=settings)
             for i in range(3)]
    await kube.request("GET", PODS)  # the bucket is empty from here on
    await asyncio.gather(
        *(submit(kube, "levrt", objs) for objs in tasks),
        *(delete_pod(kube, "levrt", name) for name in ("old-1", "old-2")),
    )
    sent = [(r.method, r.path.removeprefix("/api/v1/namespaces/levrt/")) for r in api.requests[1:]]
    assert sent[:2] == [("DELETE", "pods/old-1"), ("DELETE", "pods/old-2")]
    # The first Pod's Secret and gate go before the second Pod is created, and so on.
    assert sent[2:] == [
        ("POST", "pods"), ("POST", "secrets"), ("PATCH", "pods/lev-j1-t0"),
        ("POST", "pods"), ("POST", "secrets"), ("PATCH", "pods/lev-j1-t1"),
        ("POST", "pods"), ("POST", "secrets"), ("PATCH", "pods/lev-j1-t2"),
    ]
    assert sorted(api.names("pods")) == ["lev-j1-t0", "lev-j1-t1", "lev-j1-t2"]


# -- the real transport reads Retry-After -----------------------------------------------------------


@contextlib.asynccontextmanager
async def http_kube(app: web.Application) -> AsyncIterator[Kube]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession()
    kube = Kube(HttpTransport(Config(f"http://127.0.0.1:{port}"), session, aiohttp), limits=Limits())
    try:
        yield kube
    finally:
        await kube.close()
        await runner.cleanup()


async def test_the_http_transport_passes_retry_after_and_the_request_is_retried() -> None:
    seen: list[float] = []

    async def pods(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return web.json_response({"kind": "Status", "code": 429, "message": "too many requests"},
                                     status=429, headers={"Retry-After": "0.2"})
        return web.json_response({"kind": "PodList", "items": []})

    app = web.Application()
    app.router.add_get(PODS, pods)
    async with http_kube(app) as kube:
        assert (await kube.request("GET", PODS))["kind"] == "PodList"
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.19
