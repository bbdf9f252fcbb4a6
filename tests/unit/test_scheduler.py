"""The scheduler that replaced Kopf's per-policy daemons (which force a finalizer): each
policy in the index ticks at its own interval, never twice at once, and is forgotten
once it leaves the index."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

from driftkeeper.policy.engine import Event
from driftkeeper_operator.executor import TickResult
from driftkeeper_operator.scheduler import PolicyScheduler


class FakeWorker:
    def __init__(self, name: str, delay: float, work: float = 0.0) -> None:
        self.name, self.delay, self.work = name, delay, work
        self.ticks = 0
        self.running = 0
        self.overlapped = False
        self.lock = threading.Lock()

    def tick(self, body: Mapping[str, Any]) -> TickResult:
        with self.lock:
            self.running += 1
            self.overlapped |= self.running > 1
        time.sleep(self.work)
        with self.lock:
            self.running -= 1
            self.ticks += 1
        return TickResult(self.delay, [Event("Normal", "Ticked", body["spec"]["n"], 0.0)],
                          None)


def test_each_policy_ticks_at_its_interval_and_is_forgotten_when_gone() -> None:
    workers: dict[tuple[str, str], FakeWorker] = {}
    posted: list[tuple[str, str]] = []
    forgotten: list[tuple[str, str]] = []
    delays = {"fast": 0.05, "slow": 0.4}

    def make(namespace: str, name: str) -> FakeWorker:
        workers[(namespace, name)] = FakeWorker(name, delays[name], work=0.02)
        return workers[(namespace, name)]

    def post(body: Mapping[str, Any], result: TickResult) -> None:
        posted.extend((body["spec"]["n"], e.reason) for e in result.events)

    index: dict[tuple[str, str], list[dict]] = {
        ("ml", "fast"): [{"spec": {"n": "fast"}}], ("ml", "slow"): [{"spec": {"n": "slow"}}]}

    async def scenario() -> None:
        scheduler = PolicyScheduler(make, post, forget=lambda *k: forgotten.append(k))
        stopped = asyncio.Event()
        task = asyncio.create_task(scheduler.run(index, stopped))
        await asyncio.sleep(1.3)
        del index[("ml", "fast")]  # the policy is deleted
        await asyncio.sleep(0.8)
        stopped.set()
        await task

    from driftkeeper_operator import scheduler as module
    module.IDLE, idle = 0.01, module.IDLE
    try:
        asyncio.run(scenario())
    finally:
        module.IDLE = idle
    fast, slow = workers[("ml", "fast")], workers[("ml", "slow")]
    assert fast.ticks >= 8 and 2 <= slow.ticks <= 6  # each at its own pace
    assert not fast.overlapped and not slow.overlapped  # one tick at a time per policy
    assert forgotten == [("ml", "fast")]
    ticks_when_gone = fast.ticks
    assert ("fast", "Ticked") in posted and ("slow", "Ticked") in posted
    assert posted.count(("fast", "Ticked")) <= ticks_when_gone
    assert slow.ticks > 2  # the other policy carried on


def test_concurrency_is_bounded_across_policies() -> None:
    active, peak = [0], [0]
    lock = threading.Lock()

    class Slow(FakeWorker):
        def tick(self, body: Mapping[str, Any]) -> TickResult:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.1)
            with lock:
                active[0] -= 1
            return TickResult(10.0, [], None)

    index = {("ml", f"p{i}"): [{"spec": {"n": str(i)}}] for i in range(10)}

    async def scenario() -> None:
        scheduler = PolicyScheduler(lambda ns, n: Slow(n, 10.0), lambda b, r: None,
                                    concurrency=3)
        stopped = asyncio.Event()
        task = asyncio.create_task(scheduler.run(index, stopped))
        await asyncio.sleep(0.8)
        stopped.set()
        await task

    asyncio.run(scenario())
    assert peak[0] == 3


def test_a_tick_starts_when_due_not_at_the_next_look_at_the_index() -> None:
    """The loop sleeps until the earliest due tick: a policy with a 0.05 s interval ticks
    about 18 times a second, where looking every IDLE (0.5 s) would allow 2 or 3."""
    worker = FakeWorker("fast", 0.05)
    index = {("ml", "fast"): [{"spec": {"n": "fast"}}]}

    async def scenario() -> None:
        scheduler = PolicyScheduler(lambda namespace, name: worker, lambda body, result: None)
        stopped = asyncio.Event()
        task = asyncio.create_task(scheduler.run(index, stopped))
        await asyncio.sleep(1.0)
        stopped.set()
        await task

    asyncio.run(scenario())
    assert worker.ticks >= 6, worker.ticks
