"""In-process background work that no answer waits for (conversation titles), owned by the
Runtime: bounded in number, logged when it fails, and finished or cancelled at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("llm_service.background")

# Past this many running tasks new ones are dropped (each is one vendor call at most): a burst of
# new conversations must not grow the process without bound.
MAX_TASKS = 256
# At shutdown, running tasks get this long to finish before they are cancelled.
SHUTDOWN_GRACE_S = 5.0


class BackgroundTasks:
    def __init__(self, limit: int = MAX_TASKS) -> None:
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> bool:
        """Run `work` in the background; False (and `work` dropped) when closed or full."""
        if self._closed or len(self._tasks) >= self._limit:
            work.close()
            log.warning("background task %s dropped: %s", name,
                        "shutting down" if self._closed else f"{self._limit} already running")
            return False
        task = asyncio.get_running_loop().create_task(self._run(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    @staticmethod
    async def _run(work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed", name)

    async def wait_idle(self, timeout_s: float) -> None:
        """Wait until no task runs (those spawned meanwhile included); TimeoutError after
        `timeout_s`. For tests and shutdown: nothing else waits on background work."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    async def close(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Take no more tasks, give the running ones `grace_s`, then cancel the rest."""
        self._closed = True
        try:
            await self.wait_idle(grace_s)
        except TimeoutError:
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("%d background task(s) cancelled at shutdown", len(pending))
