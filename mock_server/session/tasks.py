"""Supervised background tasks of one session: a task that dies is logged, recorded, and ends the session.

No task ever stops silently. A task that raises is logged with its traceback, recorded as an event in the
session record, and handed to the owner's failure handler (the session ends with the reason).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mock_server.logging_setup import SessionLogger
from mock_server.session.record import SessionRecord

log = logging.getLogger("helios_mock.session")

FailureHandler = Callable[[str, BaseException], Awaitable[None]]


class TaskSupervisor:
    """Starts, watches and cancels the background tasks of one session."""

    def __init__(self, owner: str, record: SessionRecord, on_failure: FailureHandler) -> None:
        self._owner = owner
        self._record = record
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[None]] = set()
        self._finish: set[asyncio.Task[None]] = set()  # tasks left to finish when the session ends

    def spawn(
        self, what: str, work: Coroutine[Any, Any, None], *, cancel_on_close: bool = True
    ) -> asyncio.Task[None]:
        """Run `work` in the background under supervision; `what` names it in logs ("the chunk clock").

        A task with `cancel_on_close=False` (e.g. closing a replaced peer) is left to finish by `cancel_all`.
        """
        task = asyncio.get_running_loop().create_task(self._guard(what, work), name=f"{self._owner}: {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if not cancel_on_close:
            self._finish.add(task)
            task.add_done_callback(self._finish.discard)
        return task

    async def _guard(self, what: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            SessionLogger(log, session=self._owner).exception("%s died", what)
            self._record.add(
                "event", "task failed", body={"task": what, "error": f"{type(exc).__name__}: {exc}"}
            )
            await self._on_failure(what, exc)

    def cancel_all(self) -> None:
        """Cancel every supervised task except the one calling (a task never cancels itself)."""
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current and task not in self._finish:
                task.cancel()

    @property
    def running(self) -> int:
        return sum(1 for task in self._tasks if not task.done())
