"""Every policy's tick at its own interval, from Kopf's index of DriftPolicies.

Why not a Kopf daemon per policy: Kopf puts a finalizer on every object that has a daemon,
so a DriftPolicy could not be deleted without a running operator. On ``helm uninstall``
the operator (or its RBAC) can go first, and the policy, and then its namespace, would be
stuck. An index blocks nothing: the operator reads the policies from it, ticks each one in
a thread (the tick blocks on HTTP and numpy), at most one tick per policy at a time and a
bounded number in all, and forgets a policy once it leaves the index. What a policy owns
(its ConfigMap and Jobs) carries owner references, so the garbage collector removes it
whether or not the operator saw the deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .executor import TickResult

log = logging.getLogger("driftkeeper.operator")

Key = tuple[str, str]  # (namespace, name)

CONCURRENT_TICKS = 8
"""Ticks running at once across all policies (each holds a thread while it waits on I/O)."""
IDLE = 0.5
"""Seconds between looks at the index when nothing is due."""
MIN_WAIT = 0.005
"""The shortest sleep between looks (a tick just due is started on the next look)."""


class Worker(Protocol):
    def tick(self, body: Mapping[str, Any]) -> TickResult: ...


@dataclass
class _Scheduled:
    worker: Worker
    due: float = 0.0  # loop time of its next tick
    running: asyncio.Task | None = field(default=None, repr=False)


class PolicyScheduler:
    """Runs ``worker.tick(body)`` for every policy in the index when it is due."""

    def __init__(self, make_worker: Callable[[str, str], Worker],
                 post: Callable[[Mapping[str, Any], TickResult], None],
                 forget: Callable[[str, str], None] | None = None,
                 concurrency: int = CONCURRENT_TICKS) -> None:
        self.make_worker = make_worker
        self.post = post  # events and logging of a finished tick, on the event loop
        self.forget = forget
        self.slots = asyncio.Semaphore(concurrency)
        self.scheduled: dict[Key, _Scheduled] = {}
        self.woken = asyncio.Event()  # a tick ended, or the run is to stop

    async def run(self, policies: Mapping[Key, Any], stopped: asyncio.Event) -> None:
        """Until ``stopped``: start each due policy's tick; forget policies that left."""
        loop = asyncio.get_running_loop()
        relay = asyncio.create_task(self._wake_when(stopped))
        try:
            while not stopped.is_set():
                self.step(policies, loop.time())
                # Sleep until the next tick is due, or a tick ends (it is then due again),
                # not a fixed IDLE: polling alone made every tick up to IDLE late.
                wait = min(IDLE, max(self.next_due() - loop.time(), MIN_WAIT))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), wait)
                self.woken.clear()
        finally:
            relay.cancel()
        running = [s.running for s in self.scheduled.values() if s.running]
        if running:
            await asyncio.wait(running, timeout=30)

    async def _wake_when(self, stopped: asyncio.Event) -> None:
        await stopped.wait()
        self.woken.set()

    def next_due(self) -> float:
        """When the earliest waiting tick is due (inf: none waits; running ones reschedule
        themselves when they end, and the index is looked at every IDLE anyway)."""
        return min((s.due for s in self.scheduled.values() if s.running is None),
                   default=float("inf"))

    def step(self, policies: Mapping[Key, Any], now: float) -> None:
        """One look at the index (on the event loop: no I/O here)."""
        for key in [k for k in self.scheduled if k not in policies]:
            gone = self.scheduled.pop(key)
            if gone.running is None and self.forget is not None:
                self.forget(*key)
        for key in list(policies):
            bodies = list(policies[key])
            if not bodies:
                continue
            scheduled = self.scheduled.get(key)
            if scheduled is None:
                scheduled = self.scheduled[key] = _Scheduled(self.make_worker(*key))
            if scheduled.running is None and now >= scheduled.due:
                scheduled.running = asyncio.create_task(self._tick(key, scheduled, bodies[-1]))

    async def _tick(self, key: Key, scheduled: _Scheduled, body: Mapping[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self.slots:
                result = await asyncio.to_thread(scheduled.worker.tick, body)
            scheduled.due = loop.time() + result.delay
            if key in self.scheduled:
                self.post(body, result)
        except Exception:  # the worker never raises; this is a bug, not a policy's failure
            log.exception("%s/%s: tick crashed", *key)
            scheduled.due = loop.time() + 5.0
        finally:
            scheduled.running = None
            self.woken.set()
            if key not in self.scheduled and self.forget is not None:
                self.forget(*key)
