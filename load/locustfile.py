"""Locust load test: every user plays full Helios sessions over the real wire against a mock (or Reactor).

    locust -f load/locustfile.py --headless -u 3 -r 3 -t 20s --host http://127.0.0.1:8080 \\
        --helios-wire v1 --helios-scenario mixed --helios-chunks 12 --helios-speed 1
    # distributed: a master plus workers (each worker starts its own agent)
    locust -f load/locustfile.py --master --master-bind-host 127.0.0.1 --expect-workers 2 --headless ...
    locust -f load/locustfile.py --worker --master-host 127.0.0.1

The server must allow many production sessions: ``helios-mock serve --max-sessions-per-account 0
--max-creations-per-minute 0 --ice-addresses 127.0.0.1``; ``--helios-speed`` must match its ``--speed``.

**gevent vs asyncio.** Locust monkey-patches sockets, ``select``, ``threading`` and ``time`` for gevent;
aiortc needs a genuine asyncio loop. So each Locust process (standalone, or each ``--worker``) starts one
helper process, ``load/agent.py``, that runs every session of that process on its own asyncio loop, and
talks to it over stdin/stdout pipes (one JSON object per line; gevent makes those pipe reads cooperative).
A user's task sends ``run``, then blocks its greenlet on a gevent queue fed by a reader greenlet and fires
``events.request`` for every measurement the agent streams back (request_type ``helios``). A stopped user
sends ``cancel``; the agent then ends that session (DELETE) itself. The agent also keeps the heavy
per-packet work off the Locust process, and it quits when its input closes.

Stats rows (request_type ``helios``): ``connect→ready``, ``first frame``, ``command→answer <cmd>``,
``command→effect <cmd>`` (video shows the change; Average size column = chunk delta, 1 = next chunk),
``upload``, ``chunk video`` (per chunk; size = frames), ``late frames`` (per chunk with late frames; size =
late frames; response time = worst lateness), ``session`` (size = frames). A summary of frames received,
late, missing and unreadable is printed at the end (totals of all workers in distributed mode) and written
as JSON with ``--helios-summary PATH``. Definitions of "late" and "missing": ``load/video.py``.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.queue import Empty, Queue
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

if not __package__:  # run by path (locust -f, python …/agent.py): import the siblings as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = Path(__file__).resolve().parent.name  # "load" in a checkout, "helios_mock_load" installed
from .session import SCENARIOS, SEED  # noqa: E402

AGENT = Path(__file__).resolve().parent / "agent.py"
TOTAL_KEYS = (
    "sessions",
    "sessions_ok",
    "sessions_failed",
    "received",
    "late",
    "missing",
    "unreadable",
    "lost_packets",
)


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    add = parser.add_argument
    add(
        "--helios-wire",
        choices=["v0", "v1"],
        default="v0",
        env_var="LOCUST_HELIOS_WIRE",
        help="Helios: data-channel encoding, v0 JSON (JS-like) or v1 protobuf (PY-like)",
    )
    add(
        "--helios-scenario",
        choices=list(SCENARIOS),
        default="mixed",
        env_var="LOCUST_HELIOS_SCENARIO",
        help="Helios: what each session does (prompts, upload, pause, mixed, hold)",
    )
    add(
        "--helios-chunks",
        type=int,
        default=12,
        env_var="LOCUST_HELIOS_CHUNKS",
        help="Helios: chunks per session (33 frames each)",
    )
    add(
        "--helios-speed",
        type=float,
        default=1.0,
        env_var="LOCUST_HELIOS_SPEED",
        help="Helios: the server's --speed (needed for the frame timeline)",
    )
    add(
        "--helios-token",
        default="load-test",
        env_var="LOCUST_HELIOS_TOKEN",
        help="Helios: bearer token for POST /sessions (any token works on the mock)",
    )
    add(
        "--helios-seed",
        type=int,
        default=SEED,
        env_var="LOCUST_HELIOS_SEED",
        help="Helios: seed set in every session (same content in every session)",
    )
    add(
        "--helios-no-decode",
        action="store_true",
        default=False,
        help="Helios: count frames without decoding VP8 (no markers; use with --helios-scenario hold)",
    )
    add(
        "--helios-summary",
        default="",
        env_var="LOCUST_HELIOS_SUMMARY",
        help="Helios: write the frame totals as JSON to this path at the end",
    )
    add(
        "--helios-allow-remote",
        action="store_true",
        default=False,
        help="Helios: allow a non-loopback --host (default: refuse; load stays on this machine)",
    )


# ---------------------------------------------------------------------- frame totals (per process)

_totals: dict[str, int] = dict.fromkeys(TOTAL_KEYS, 0)  # since the last report to the master
_grand: dict[str, int] = dict.fromkeys(TOTAL_KEYS, 0)  # what this process (or the master) has seen


def _add(into: dict[str, int], data: dict[str, Any]) -> None:
    for key in TOTAL_KEYS:
        into[key] = into.get(key, 0) + int(data.get(key, 0) or 0)


def _count_session(ok: bool, summary: dict[str, Any]) -> None:
    item = {key: summary.get(key, 0) for key in TOTAL_KEYS}
    item.update(sessions=1, sessions_ok=int(ok), sessions_failed=int(not ok))
    _add(_totals, item)
    _add(_grand, item)


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any]) -> None:
    data["helios"] = dict(_totals)
    for key in TOTAL_KEYS:
        _totals[key] = 0


@events.worker_report.add_listener
def _worker_report(client_id: str, data: dict[str, Any]) -> None:
    _add(_grand, data.get("helios") or {})


def summary_text(totals: dict[str, int]) -> str:
    received = totals.get("received", 0)
    due = received - totals.get("unreadable", 0) + totals.get("missing", 0)

    def pct(n: int) -> str:
        return f"{100.0 * n / due:.2f} %" if due else "n/a"

    return (
        f"Helios sessions: {totals.get('sessions', 0)} ({totals.get('sessions_ok', 0)} ok, "
        f"{totals.get('sessions_failed', 0)} failed or cut by the time limit); frames received {received}, "
        f"late {totals.get('late', 0)} ({pct(totals.get('late', 0))}), missing {totals.get('missing', 0)} "
        f"({pct(totals.get('missing', 0))}), unreadable {totals.get('unreadable', 0)}, "
        f"lost RTP packets {totals.get('lost_packets', 0)}"
    )


@events.test_stop.add_listener
def _test_stop(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return
    Agent.drain(timeout=15.0)  # cut sessions report their frames once closed
    if not isinstance(environment.runner, WorkerRunner):
        print(summary_text(_grand), flush=True)


@events.quitting.add_listener
def _quitting(environment: Environment, **_kwargs: Any) -> None:
    Agent.shutdown()
    if isinstance(environment.runner, WorkerRunner):
        return
    if isinstance(environment.runner, MasterRunner):
        print(summary_text(_grand), flush=True)
    path = environment.parsed_options.helios_summary if environment.parsed_options else ""
    if path:
        Path(path).write_text(json.dumps(_grand, indent=2) + "\n")


# ---------------------------------------------------------------------- the agent bridge


class Agent:
    """The helper process of this Locust process (started on first use, one per process)."""

    _instance: Agent | None = None
    _lock = Semaphore()

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(AGENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self.queues: dict[str, Queue] = {}
        self.ready = Event()
        self.active: set[str] = set()
        self._ids = itertools.count(1)
        self._reader = gevent.spawn(self._read)

    @classmethod
    def get(cls) -> Agent:
        with cls._lock:
            if cls._instance is None or cls._instance.proc.poll() is not None:
                cls._instance = Agent()
            agent = cls._instance
        if not agent.ready.wait(timeout=60):
            raise RuntimeError("the Helios load agent did not start within 60 s")
        return agent

    @classmethod
    def shutdown(cls) -> None:
        agent, cls._instance = cls._instance, None
        if agent is None:
            return
        try:
            agent._send({"op": "quit"})
            agent.proc.stdin.close()
            agent.proc.wait(timeout=15)
        except Exception:  # already gone, or stuck: make sure it does not outlive us
            agent.proc.kill()

    @classmethod
    def drain(cls, timeout: float) -> None:
        """Wait (cooperatively) until every session of the agent has reported `done`."""
        agent = cls._instance
        deadline = time.monotonic() + timeout
        while agent is not None and agent.active and time.monotonic() < deadline:
            gevent.sleep(0.1)

    def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if msg.get("ev") == "ready":
                self.ready.set()
                continue
            if msg.get("ev") == "done":
                self.active.discard(str(msg.get("id")))
                _count_session(bool(msg.get("ok")), msg.get("summary") or {})
            queue = self.queues.get(str(msg.get("id")))
            if queue is not None:
                queue.put(msg)
        self.active.clear()
        for queue in self.queues.values():  # the agent died: wake every waiting user
            queue.put({"ev": "done", "ok": False, "error": "the load agent exited", "summary": {}})

    def run(self, request: dict[str, Any]) -> tuple[str, Queue]:
        run_id = str(next(self._ids))
        queue: Queue = Queue()
        self.queues[run_id] = queue
        self.active.add(run_id)
        self._send({"op": "run", "id": run_id, **request})
        return run_id, queue

    def forget(self, run_id: str, cancel: bool) -> None:
        self.queues.pop(run_id, None)
        if cancel and self.proc.poll() is None:
            try:
                self._send({"op": "cancel", "id": run_id})
            except OSError:
                pass


# ---------------------------------------------------------------------- the user


def _check_host(host: str, allow_remote: bool) -> None:
    hostname = urlparse(host).hostname or ""
    try:
        loopback = hostname == "localhost" or ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(f"--host {host!r} is not a loopback address; pass --helios-allow-remote to allow it")


class HeliosUser(User):
    """Plays one full Helios session per task iteration (see the module docstring)."""

    wait_time = constant(0.2)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.host = (self.host or self.environment.host or "").rstrip("/")
        _check_host(self.host, bool(opts and opts.helios_allow_remote))

    def _request(self) -> tuple[dict[str, Any], float]:
        opts = self.environment.parsed_options
        speed = float(opts.helios_speed)
        chunks = int(opts.helios_chunks)
        config = {
            "url": self.host,
            "wire": opts.helios_wire,
            "token": opts.helios_token,
            "speed": speed,
            "seed": int(opts.helios_seed),
            "decode": not opts.helios_no_decode,
        }
        budget = 120.0 + 3 * chunks * 33 / (24.0 * speed)
        return {"config": config, "scenario": opts.helios_scenario, "chunks": chunks}, budget

    @task
    def session(self) -> None:
        request, budget = self._request()
        agent = Agent.get()
        run_id, queue = agent.run(request)
        fire = self.environment.events.request.fire
        finished = False
        deadline = time.monotonic() + budget
        try:
            while True:
                try:
                    msg = queue.get(timeout=max(0.1, deadline - time.monotonic()))
                except Empty:
                    fire(
                        request_type="helios",
                        name="session",
                        response_time=budget * 1000.0,
                        response_length=0,
                        exception=TimeoutError(f"session exceeded {budget:.0f} s"),
                        context={},
                    )
                    return
                if msg.get("ev") == "done":
                    finished = True
                    return
                error = msg.get("err")
                fire(
                    request_type="helios",
                    name=msg["name"],
                    response_time=float(msg["ms"]),
                    response_length=int(msg.get("len") or 0),
                    exception=RuntimeError(error) if error else None,
                    context={},
                )
        finally:
            agent.forget(run_id, cancel=not finished)
