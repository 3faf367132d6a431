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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.queue import Empty, Queue
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

if not __package__:  # run by path (locust -f, python …/agent.py): import the siblings as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = Path(__file__).resolve().parent.name  # "load" in a checkout, "helios_mock_load" installed
from .accounting import Accounting, accounting_text, instances_missing, reconcile  # noqa: E402
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


@events.init_command_line_parser.add_listener
def _failure_arguments(parser: Any) -> None:
    """Options of failure classification and the session accounting (load/accounting.py)."""
    add = parser.add_argument
    add(
        "--helios-queue-timeout",
        type=float,
        default=60.0,
        env_var="LOCUST_HELIOS_QUEUE_TIMEOUT",
        help="Helios: longest wait for a queued session to become ready (then: failure 'queue timeout')",
    )
    add(
        "--helios-stall-seconds",
        type=float,
        default=3.0,
        env_var="LOCUST_HELIOS_STALL_SECONDS",
        help="Helios: no video frame for this long while generating is a 'stall'",
    )
    add(
        "--helios-late-limit",
        type=float,
        default=2.0,
        env_var="LOCUST_HELIOS_LATE_LIMIT",
        help="Helios: a frame later than this (s) behind the session's schedule makes it 'late frames'",
    )
    add(
        "--helios-admin-token",
        default="",
        env_var="LOCUST_HELIOS_ADMIN_TOKEN",
        help="Helios: the mock's --admin-token, for the record reads (fault causes, session accounting)",
    )
    add(
        "--helios-admin-urls",
        default="",
        env_var="LOCUST_HELIOS_ADMIN_URLS",
        help="Helios: comma-separated base URLs of every instance whose GET /admin/record the accounting "
        "reads and merges (several mocks behind a router); default: --host",
    )
    add(
        "--helios-no-admin",
        action="store_true",
        default=False,
        help="Helios: never read the server's /admin record (no fault causes, no session accounting)",
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
        _account_distributed(environment)
        return
    Agent.drain(timeout=15.0)  # cut sessions report their frames once closed
    if not isinstance(environment.runner, WorkerRunner):
        print(summary_text(_grand), flush=True)
        _account(environment, list(_runs))


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


# ---------------------------------------------------------------------- session accounting
# Every creation attempt of this process is a run: {session_id, outcome, kinds} (load/accounting.py). At the
# end of the test the master (or the local runner) collects every run and compares them with the server's
# GET /admin/record (of every instance in --helios-admin-urls, merged, behind a router): sessions still open,
# or known to only one side, fail the run (exit code 1).

ACCOUNT_REQUEST = "helios_account"  # master → workers: stop, drain, send your runs
ACCOUNT_REPLY = "helios_runs"  # worker → master: {runs, totals}
WORKER_ANSWER_WAIT = 60.0  # seconds the master waits for every worker's runs
SETTLE_WAIT = 10.0  # seconds the server gets to close the sessions the users deleted
_runs: list[dict[str, Any]] = []  # every run of this process (cumulative)
_before: set[str] | None = None  # server sessions known when the test started (None: no admin record)
_worker_runs: dict[str, list[dict[str, Any]]] = {}  # master: each worker's runs, once it answered


def _run_record(msg: dict[str, Any]) -> dict[str, Any]:
    summary = msg.get("summary") or {}
    return {
        "session_id": summary.get("session_id"),
        "outcome": summary.get("outcome"),
        "kinds": list(summary.get("kinds") or ()),
    }


def _admin_urls(environment: Environment) -> list[str]:
    """Where the accounting reads ``GET /admin/record``: every ``--helios-admin-urls`` entry, else --host."""
    text = environment.parsed_options.helios_admin_urls if environment.parsed_options else ""
    listed = [url.strip().rstrip("/") for url in (text or "").split(",") if url.strip()]
    return listed or [(environment.host or "").rstrip("/")]


def _admin_sessions(environment: Environment) -> list[dict[str, Any]] | None:
    """The server's sessions (GET /admin/record of every admin URL, merged), or None when admin reads are
    off or one of them failed."""
    opts = environment.parsed_options
    if opts is None or opts.helios_no_admin or not (environment.host or opts.helios_admin_urls):
        return None
    sessions: list[dict[str, Any]] = []
    for url in _admin_urls(environment):
        headers = {"X-Helios-Admin-Token": opts.helios_admin_token} if opts.helios_admin_token else {}
        try:
            _check_host(url, bool(opts.helios_allow_remote))
            request = urllib.request.Request(url + "/admin/record", headers=headers)
            with urllib.request.urlopen(request, timeout=60) as resp:
                sessions += list(json.load(resp).get("sessions") or [])
        except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: bad JSON, URL or host
            print(f"Helios: cannot read {url}/admin/record: {exc}", flush=True)
            return None
    return sessions


@events.init.add_listener
def _init(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(ACCOUNT_REPLY, _on_worker_runs)
    elif isinstance(runner, WorkerRunner):
        runner.register_message(ACCOUNT_REQUEST, _on_account_request, concurrent=True)


@events.test_start.add_listener
def _test_start(environment: Environment, **_kwargs: Any) -> None:
    global _before
    if isinstance(environment.runner, WorkerRunner):
        return
    sessions = _admin_sessions(environment)
    _before = None if sessions is None else {str(s.get("session_id")) for s in sessions}


def _on_account_request(environment: Environment, msg: Any, **_kwargs: Any) -> None:
    """Worker: stop the users (their sessions close), wait for every outcome, send the runs to the master."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    if runner.state in (STATE_RUNNING, STATE_SPAWNING):
        runner.stop()
    Agent.drain(timeout=15.0)
    totals = dict(_totals)  # not yet reported: the master would miss them after it stops listening
    for key in TOTAL_KEYS:
        _totals[key] = 0
    runner.send_message(ACCOUNT_REPLY, {"runs": list(_runs), "totals": totals})


def _on_worker_runs(environment: Environment, msg: Any, **_kwargs: Any) -> None:
    data = msg.data or {}
    _add(_grand, data.get("totals") or {})
    _worker_runs[msg.node_id] = list(data.get("runs") or ())


def _account_distributed(environment: Environment) -> None:
    runner = environment.runner
    assert isinstance(runner, MasterRunner)
    expected = {worker.id for worker in runner.clients.all if worker.state != STATE_MISSING}
    _worker_runs.clear()
    runner.send_message(ACCOUNT_REQUEST)
    deadline = time.monotonic() + WORKER_ANSWER_WAIT
    while not expected <= set(_worker_runs) and time.monotonic() < deadline:
        gevent.sleep(0.2)
    problems = [
        f"worker {worker} did not send its sessions within {WORKER_ANSWER_WAIT:.0f} s"
        for worker in sorted(expected - set(_worker_runs))
    ]
    _account(environment, [run for runs in _worker_runs.values() for run in runs], problems)


def _account(environment: Environment, runs: list[dict[str, Any]], problems: list[str] | None = None) -> None:
    """Print the accounting table; a session unaccounted for or still open sets exit code 1."""
    if _before is None:
        print("Helios session accounting skipped: the server's /admin/record was not read", flush=True)
        return
    deadline = time.monotonic() + SETTLE_WAIT
    while True:
        sessions = _admin_sessions(environment)
        if sessions is None:
            print("Helios session accounting skipped: the server's record could not be read", flush=True)
            return
        accounting: Accounting = reconcile(runs, sessions, _before)
        if not accounting.still_open or time.monotonic() > deadline:
            break
        gevent.sleep(0.5)
    accounting.problems += problems or []
    missing = instances_missing(accounting, sessions)
    if missing:
        accounting.problems.append(
            f"the record read ({', '.join(_admin_urls(environment))}) holds no session of instance "
            f"{', '.join(missing)}: behind a router GET /admin/record reaches one instance only; pass "
            "--helios-admin-urls with the URL of every instance"
        )
    print(accounting_text(accounting), flush=True)
    if not accounting.accounted:
        environment.process_exit_code = 1


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
                _runs.append(_run_record(msg))
            queue = self.queues.get(str(msg.get("id")))
            if queue is not None:
                queue.put(msg)
        for _run_id in self.active:  # never reported: the accounting counts them as "no outcome"
            _runs.append({"session_id": None, "outcome": None, "kinds": []})
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
            "queue_timeout": float(opts.helios_queue_timeout),
            "stall_seconds": float(opts.helios_stall_seconds),
            "late_limit": float(opts.helios_late_limit),
            "admin": not opts.helios_no_admin,
            "admin_token": opts.helios_admin_token,
        }
        budget = 120.0 + float(opts.helios_queue_timeout) + 3 * chunks * 33 / (24.0 * speed)
        return {"config": config, "scenario": opts.helios_scenario, "chunks": chunks}, budget

    @task
    def session(self) -> None:
        request, budget = self._request()
        agent = Agent.get()
        run_id, queue = agent.run(request)
        finished = False
        retry_after = 0.0
        try:
            finished, retry_after = self._follow(queue, budget)
        finally:
            agent.forget(run_id, cancel=not finished)
        if retry_after > 0:  # a refused creation named when to come back: honour it
            gevent.sleep(retry_after)

    def _follow(self, queue: Queue, budget: float) -> tuple[bool, float]:
        """Fire a request event for every measurement of the run until it is done: (done, retry_after).

        Failures (``err`` set) are rows of type ``failure`` named by their kind (load/accounting.py)."""
        fire = self.environment.events.request.fire
        deadline = time.monotonic() + budget
        while True:
            try:
                msg = queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except Empty:
                fire(
                    request_type="failure",
                    name="session timeout",
                    response_time=budget * 1000.0,
                    response_length=0,
                    exception=TimeoutError("the session exceeded the user's time budget"),
                    context={},
                )
                return False, 0.0
            if msg.get("ev") == "done":
                return True, float((msg.get("summary") or {}).get("retry_after") or 0.0)
            error = msg.get("err")
            fire(
                request_type="failure" if error else "helios",
                name=msg["name"],
                response_time=float(msg["ms"]),
                response_length=int(msg.get("len") or 0),
                exception=RuntimeError(error) if error else None,
                context={},
            )
