"""Helper process that runs Helios sessions (asyncio + aiortc) on behalf of a Locust process.

Locust runs on gevent and monkey-patches sockets, ``select``, ``threading`` and ``time`` in its process;
aiortc/aioice need a plain asyncio loop. Rather than run asyncio inside a patched process, each Locust
process (standalone or worker) starts **one** of these agents (``python load/agent.py``) and talks to it
over pipes, one JSON object per line:

* Locust → agent: ``{"op": "run", "id": ..., "config": {...SessionConfig}, "scenario": ..., "chunks": N}``,
  ``{"op": "cancel", "id": ...}``, ``{"op": "quit"}`` (end of input also quits).
* agent → Locust: ``{"ev": "ready"}`` once, then per run ``{"id", "ev": "req", "name", "ms", "len", "err"}``
  for every measurement (``err`` set: a failure, ``name`` its kind, see load/accounting.py) and a final
  ``{"id", "ev": "done", "ok", "error", "summary"}``; the summary names the ``session_id`` (None if none
  was created), the ``outcome`` (``ok``, ``degraded``, ``cut`` or the kind that ended it), every failure
  ``kinds`` and the ``retry_after`` of a refused creation.

All sessions of the agent share one event loop; ICE is restricted to 127.0.0.1 (loopback-only load).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

if not __package__:  # run by path (locust -f, python …/agent.py): import the siblings as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = Path(__file__).resolve().parent.name  # "load" in a checkout, "helios_mock_load" installed

from mock_server.transport.ice import restrict_host_addresses  # noqa: E402

from .session import LoadSession, SessionConfig, play  # noqa: E402

CANCEL_GRACE = 10.0  # seconds a cancelled session gets to close (DELETE, peer close)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _run(run_id: str, request: dict[str, Any]) -> None:
    def report(name: str, ms: float, length: int, error: str | None) -> None:
        _emit({"id": run_id, "ev": "req", "name": name, "ms": round(ms, 3), "len": length, "err": error})

    def done(ok: bool, error: str | None, summary: dict[str, Any]) -> None:
        _emit({"id": run_id, "ev": "done", "ok": ok, "error": error, "summary": summary})

    try:
        session = LoadSession(SessionConfig(**request["config"]), report)
        scenario, chunks = str(request["scenario"]), int(request["chunks"])
    except Exception as exc:  # a malformed request
        report("client error", 0.0, 0, f"request: {type(exc).__name__}: {exc}")
        done(False, f"{type(exc).__name__}: {exc}", {"outcome": "client error"})
        return
    try:
        result = await play(session, scenario, chunks)
        done(result.ok, result.error, result.summary)
    except asyncio.CancelledError:  # the user was stopped: report what the session received
        done(False, "cancelled", session.summary())
        raise
    except Exception as exc:  # e.g. a scenario that needs decoded video: make it visible in the stats
        report("client error", 0.0, 0, f"session: {type(exc).__name__}: {exc}")
        done(False, f"{type(exc).__name__}: {exc}", {**session.summary(), "outcome": "client error"})


async def main() -> None:
    restrict_host_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: dict[str, asyncio.Task[None]] = {}
    _emit({"ev": "ready"})
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            request = json.loads(line)
        except ValueError:
            continue
        op = request.get("op")
        if op == "quit":
            break
        run_id = str(request.get("id"))
        if op == "run":
            task = loop.create_task(_run(run_id, request))
            tasks[run_id] = task
            task.add_done_callback(lambda _t, rid=run_id: tasks.pop(rid, None))
        elif op == "cancel" and run_id in tasks:
            tasks[run_id].cancel()
    for task in tasks.values():
        task.cancel()
    if tasks:
        await asyncio.wait(list(tasks.values()), timeout=CANCEL_GRACE)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="agent %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiortc", "aioice"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
