"""Capacity benchmark of the Helios mock on this machine, in one command.

    python load/bench.py --out load/results                  # steps 10 … 200 sessions, ~2.5 min
    python load/bench.py --sessions 100 --compare-media      # --media shared vs per-session, with ratios
    python load/bench.py --server-arg=--media=per-session    # any server flag, passed through

One run measures, against mocks it starts itself on 127.0.0.1 (``--resolution 160x96`` native, the client
sends ``set_sr_scale off``, so frames are 160x96; ``--speed 1``; production limits off; log level warning):

1. **connect→ready**: ``--connects`` (50) sequential sessions, then as many again in concurrent bursts of
   ``--burst`` (10), on an idle server: POST /sessions until the peer is connected with every data channel
   open (WireClient's ``connect_to_ready``).
2. **capacity ramp**: sessions are added in steps (10, 25, 50, 75, 100, 125, 150, 175, 200, up to
   ``--sessions``). Every session sets the same seed and prompt, starts, and streams. After ``--settle`` s
   each step is held ``--hold`` s and measured: per-session received fps, late and missing frames
   (``load/video.py``: a frame is late when it arrives more than one frame interval, 41.7 ms, after its
   slot on the session's own 24 fps timeline, computed from the marker band's chunk*33+frame and anchored
   on the first frame's arrival), server CPU (with its encoder worker processes; and its event-loop thread
   alone) and RSS (with the workers) via psutil, client CPU, CPU of everything else on the machine, client
   event-loop lag and the server's ``GET /health`` round trip. A step is **held** when every session is
   connected, the mean received rate is ≥ 23.5 fps and late + missing frames are < 1 % of the frames due.
   The ramp stops after two steps in a row not held.
3. **100 chunks at --speed 1000**: one session on a second mock, ``start`` until ``chunk_complete`` 99
   (``--chunk-runs`` times).

The load client shares the 2 cores with the server, so it is made cheap (``load/video.py``): no jitter
buffer, no bandwidth estimator, no decoder thread; VP8 is decoded inline by FFmpeg and the marker band is
read from the Y plane only, with cached geometry and table-driven CRC. Only every ``--decode-every`` (4)th
session is decoded and judged for lateness; the others count frames from the RTP marker bit. Sessions live
in ``--client-procs`` (2) client processes, so the client is not limited by one Python thread.
Results: ``<out>/bench.json``, ``<out>/bench.png`` and a compact table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run by path (locust -f, python …/agent.py): import the siblings as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = Path(__file__).resolve().parent.name  # "load" in a checkout, "helios_mock_load" installed

import psutil  # noqa: E402

from conformance.server import HeliosServer  # noqa: E402
from mock_server.transport.ice import restrict_host_addresses  # noqa: E402

from .session import PROMPTS, SEED, LoadSession, SessionConfig  # noqa: E402

SHARD_SCRIPT = str(Path(__file__).resolve())  # this file, run again as a client shard (--shard)

DEFAULT_STEPS = (10, 25, 50, 75, 100, 125, 150, 175, 200)
HELD_FPS = 23.5
HELD_BAD_PCT = 1.0
TARGETS = {"sessions": 100, "ready_p50_ms": 150.0, "chunks100_s": 5.0}
BASE_SERVER_ARGS = [
    "--pending-delay", "0",
    "--max-sessions-per-account", "0",
    "--max-creations-per-minute", "0",
    "--log-level", "warning",
]  # fmt: skip


@dataclass
class StepResult:
    sessions: int
    live: int
    connect_failures: int
    window_s: float
    fps_mean: float
    fps_min: float
    fps_median: float
    judged_sessions: int
    received: int
    late: int
    missing: int
    unreadable: int
    lost_packets: int
    late_pct: float
    missing_pct: float
    bad_pct: float
    server_cpu: float  # % of one core
    server_main_cpu: float  # the event-loop thread
    client_cpu: float
    other_cpu: float  # the rest of the machine
    server_rss_mb: float
    rss_per_session_mb: float
    client_lag_p99_ms: float  # event-loop lag of the client processes
    client_lag_max_ms: float
    client_gc_max_ms: float  # longest garbage-collector pause in a client process during the window
    server_probe_p99_ms: float  # GET /health round trip during the window (server event-loop lag)
    server_probe_max_ms: float
    worst_lateness_ms: float  # the latest frame of the window, all judged sessions
    held: bool


@dataclass
class Variant:
    label: str
    server_args: list[str]
    resolution: str = "160x96"  # the server's native size
    sr: str = "off"  # the client's set_sr_scale
    distinct: bool = False  # each session its own seed and prompts (changing every few chunks)
    step_plan: list[int] = field(default_factory=list)  # session counts of the ramp (empty: --steps)
    server_tree: str = ""  # run the server from this source tree (PYTHONPATH) instead of this one
    connect_ms: dict[str, Any] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    chunks100_s: list[float] = field(default_factory=list)
    sessions_held: int = 0  # largest step with this step and every smaller one held
    error: str | None = None


# ---------------------------------------------------------------------- measurement helpers


class GcMonitor:
    """Pauses of this process's garbage collector (they stall every session at once)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._t0)


class LagMonitor:
    """Event-loop lag of this (client) process: how late a 20 ms sleep wakes up."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.02)
            self.samples.append(loop.time() - t - 0.02)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of a process and its children (the server's encoder worker processes)."""
    total = 0.0
    for p in [proc, *_children(proc)]:
        try:
            times = p.cpu_times()
        except psutil.Error:  # a child that just exited
            continue
        total += times.user + times.system
    return total


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and its children."""
    total = 0
    for p in [proc, *_children(proc)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass
class CpuSnapshot:
    t: float
    server: float
    server_main: float
    client: float  # this process and the client shard processes
    busy: float  # all CPUs, seconds not idle

    @classmethod
    def take(cls, server: psutil.Process, clients: list[psutil.Process]) -> CpuSnapshot:
        server_cpu = _tree_cpu(server)
        main = next((th.user_time + th.system_time for th in server.threads() if th.id == server.pid), 0.0)
        client = 0.0
        for proc in [psutil.Process(), *clients]:
            ct = proc.cpu_times()
            client += ct.user + ct.system
        sys_t = psutil.cpu_times()
        idle = sys_t.idle + getattr(sys_t, "iowait", 0.0)
        return cls(time.monotonic(), server_cpu, main, client, sum(sys_t) - idle)


class ServerProbe:
    """GET /health every 100 ms: its round trip shows stalls of the server's event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                t = time.perf_counter()
                try:
                    await http.get(self.url + "/health")
                    self.samples.append(time.perf_counter() - t)
                except httpx.HTTPError:
                    self.samples.append(10.0)
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _pct(seconds: float, wall: float) -> float:
    return round(100.0 * seconds / wall, 1) if wall > 0 else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[k]


async def _gather_limited(coros: list[Any], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


# ---------------------------------------------------------------------- phases


async def measure_connects(
    url: str, wire: str, sequential: int, concurrent: int, burst: int
) -> dict[str, Any]:
    """connect→ready on an idle server: `sequential` one after the other, `concurrent` in bursts."""

    async def once() -> float:
        session = LoadSession(SessionConfig(url, wire=wire))
        try:
            await session.connect()
            assert session.connect_seconds is not None
            return session.connect_seconds * 1000.0
        finally:
            await session.close()

    seq: list[float] = []
    failures = 0
    for _ in range(sequential):
        try:
            seq.append(await once())
        except Exception:
            failures += 1
    conc: list[float] = []
    for start in range(0, concurrent, burst):
        results = await asyncio.gather(
            *(once() for _ in range(min(burst, concurrent - start))), return_exceptions=True
        )
        conc += [r for r in results if isinstance(r, float)]
        failures += sum(1 for r in results if not isinstance(r, float))
    both = seq + conc

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "n": len(values),
            "p50": round(_percentile(values, 50), 1),
            "p99": round(_percentile(values, 99), 1),
            "max": round(max(values), 1) if values else float("nan"),
        }

    return {
        "sequential": stats(seq),
        "concurrent": stats(conc),
        "all": stats(both),
        "failures": failures,
        "burst": burst,
    }


# ---------------------------------------------------------------------- client shards


def session_prompt(index: int, version: int, distinct: bool) -> str:
    """Identical content: one prompt for all. Distinct: each session its own, changed every few chunks."""
    if not distinct:
        return PROMPTS[0]
    return f"{PROMPTS[index % len(PROMPTS)]} (session {index}, take {version})"


async def _rotate_prompts(session: LoadSession, index: int, every_chunks: int) -> None:
    """Distinct content: a new prompt every `every_chunks` chunks (fire and forget, like a user typing)."""
    version = 0
    while True:
        await asyncio.sleep(every_chunks * session.config.chunk_seconds)
        version += 1
        try:
            session.client.send_command("set_prompt", {"prompt": session_prompt(index, version, True)})
        except Exception:  # the session is ending
            return


async def _open_session(url: str, wire: str, decode: bool, content: dict[str, Any]) -> LoadSession:
    """One streaming session; `content`: {index, distinct, sr, prompt_every} (see `session_prompt`)."""
    index, distinct = int(content["index"]), bool(content["distinct"])
    seed = SEED + 1 + index if distinct else SEED
    session = LoadSession(SessionConfig(url, wire=wire, decode=decode, sr_scale=content["sr"], seed=seed))
    try:
        await session.connect()
        await session.start(session_prompt(index, 0, distinct))
    except BaseException:
        await session.close()
        raise
    if distinct:
        rotation = asyncio.get_running_loop().create_task(
            _rotate_prompts(session, index, int(content["prompt_every"]))
        )
        _ROTATIONS[id(session)] = rotation
    return session


_ROTATIONS: dict[int, asyncio.Task[None]] = {}


async def _close_session(session: LoadSession) -> None:
    rotation = _ROTATIONS.pop(id(session), None)
    if rotation is not None:
        rotation.cancel()
    await session.close()


async def shard_main() -> None:
    """A client shard (``bench.py --shard``): hosts sessions, answers the coordinator on stdin/stdout.

    Requests (one JSON object per line): ``open`` {url, wire, decode: [bool, ...], concurrency},
    ``mark`` (counters of every session plus lag and GC pauses since the previous mark), ``close``.
    """
    restrict_host_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_exceptions)
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sessions: list[LoadSession] = []
    lag, gc_pauses = LagMonitor(), GcMonitor()
    lag.start()

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        request = json.loads(line)
        op = request["op"]
        if op == "open":
            content = request["content"]
            opened = await _gather_limited(
                [
                    _open_session(
                        request["url"], request["wire"], flag, {**content, "index": content["first"] + k}
                    )
                    for k, flag in enumerate(request["decode"])
                ],
                int(request["concurrency"]),
            )
            sessions += [item for item in opened if isinstance(item, LoadSession)]
            errors = [f"{type(e).__name__}: {e}" for e in opened if not isinstance(e, LoadSession)]
            gc.collect()
            gc.freeze()  # long-lived session objects: keep them out of later collections
            reply({"opened": len(opened) - len(errors), "errors": errors[:5], "failed": len(errors)})
        elif op == "mark":
            reply(
                {
                    "sessions": [
                        {
                            **item.timeline.counters(),
                            "decode": item.config.decode,
                            "lost": item.video.lost_packets,
                            "worst": item.timeline.window_max_lateness,
                        }
                        for item in sessions
                    ],
                    "lag": lag.samples,
                    "gc": gc_pauses.pauses,
                }
            )
            lag.samples, gc_pauses.pauses = [], []
            for item in sessions:
                item.timeline.window_max_lateness = 0.0
        elif op == "close":
            await _gather_limited([_close_session(item) for item in sessions], 20)
            reply({"closed": len(sessions)})
            sessions = []
        else:
            break


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiortc leaves "Cannot send encrypted data" errors in orphaned tasks while peers close: ignore them."""
    if isinstance(context.get("exception"), ConnectionError):
        return
    loop.default_exception_handler(context)


class ClientShard:
    """Coordinator side of one client shard process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ps = psutil.Process(proc.pid)
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls) -> ClientShard:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            SHARD_SCRIPT,
            "--shard",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        return cls(proc)

    async def call(self, request: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"client shard {self.proc.pid} exited")
        return json.loads(line)

    async def stop(self) -> None:
        try:
            await self.call({"op": "close"}, timeout=60)
            await self.call({"op": "quit"}, timeout=1)
        except (RuntimeError, TimeoutError, OSError):
            pass
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _mark(shards: list[ClientShard]) -> tuple[list[dict[str, Any]], list[float], list[float]]:
    replies = await asyncio.gather(*(shard.call({"op": "mark"}) for shard in shards))
    sessions = [item for r in replies for item in r["sessions"]]
    return sessions, [x for r in replies for x in r["lag"]], [x for r in replies for x in r["gc"]]


async def ramp(
    server: HeliosServer, args: argparse.Namespace, variant: Variant, steps: list[int], deadline: float
) -> list[StepResult]:
    """Add sessions step by step; hold and measure each step (see the module docstring)."""
    assert server.process is not None
    proc = psutil.Process(server.process.pid)
    baseline_rss = tree_rss(proc)
    shards = [await ClientShard.start() for _ in range(args.client_procs)]
    results: list[StepResult] = []
    failures = 0
    live = 0
    probe = ServerProbe(server.url)
    probe.start()
    try:
        for target in steps:
            if time.monotonic() > deadline:
                print(f"  time budget spent; stopping before {target} sessions", flush=True)
                break
            # session i is decoded if i % K == 0; blocks of K sessions alternate between the shards
            every, count = args.decode_every, len(shards)
            new = range(live, target)
            parts = [[i % every == 0 for i in new if (i // every) % count == k] for k in range(count)]
            opened = await asyncio.gather(
                *(
                    shard.call(
                        {
                            "op": "open",
                            "url": server.url,
                            "wire": args.wire,
                            "decode": part,
                            "concurrency": args.connect_concurrency,
                            "content": {
                                "first": 100_000 * k + live,  # unique session index across shards
                                "distinct": variant.distinct,
                                "sr": variant.sr,
                                "prompt_every": args.prompt_every,
                            },
                        }
                    )
                    for k, (shard, part) in enumerate(zip(shards, parts, strict=True))
                )
            )
            live += sum(r["opened"] for r in opened)
            failures += sum(r["failed"] for r in opened)
            for r in opened:
                for error in r["errors"]:
                    print(f"  session failed: {error}", flush=True)
            await asyncio.sleep(args.settle)
            before, _, _ = await _mark(shards)
            probe.samples.clear()
            cpu0 = CpuSnapshot.take(proc, [s.ps for s in shards])
            await asyncio.sleep(args.hold)
            cpu1 = CpuSnapshot.take(proc, [s.ps for s in shards])
            after, lags, pauses = await _mark(shards)
            probes = list(probe.samples)
            rss = tree_rss(proc)
            step = _step(target, failures, before, after, cpu0, cpu1, rss, baseline_rss, lags, pauses, probes)
            results.append(step)
            _print_step(step)
            if step.fps_mean < 12 or step.live < 0.9 * target:
                print("  overloaded: stopping the ramp", flush=True)
                break
            if len(results) >= 2 and not results[-1].held and not results[-2].held:
                print("  two steps in a row not held: stopping the ramp", flush=True)
                break
    finally:
        probe.stop()
        await asyncio.gather(*(shard.stop() for shard in shards), return_exceptions=True)
    return results


def _step(
    target: int,
    failures: int,
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    cpu0: CpuSnapshot,
    cpu1: CpuSnapshot,
    rss: int,
    baseline_rss: int,
    lags: list[float],
    gc_pauses: list[float],
    probes: list[float],
) -> StepResult:
    wall = cpu1.t - cpu0.t
    pairs = list(zip(before, after, strict=True))
    fps = [(b["received"] - a["received"]) / wall for a, b in pairs]
    judged = [(a, b) for a, b in pairs if b["decode"]]

    def total(key: str, items: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        return sum(b[key] - a[key] for a, b in items)

    received = total("received", judged)
    late, missing, unreadable = total("late", judged), total("missing", judged), total("unreadable", judged)
    readable = received - unreadable
    due = readable + missing
    server_cpu = _pct(cpu1.server - cpu0.server, wall)
    client_cpu = _pct(cpu1.client - cpu0.client, wall)
    busy = _pct(cpu1.busy - cpu0.busy, wall)
    live = len(after)
    fps_mean = statistics.fmean(fps) if fps else 0.0
    bad_pct = 100.0 * (late + missing) / due if due else 100.0
    return StepResult(
        sessions=target,
        live=live,
        connect_failures=failures,
        window_s=round(wall, 2),
        fps_mean=round(fps_mean, 2),
        fps_min=round(min(fps), 2) if fps else 0.0,
        fps_median=round(statistics.median(fps), 2) if fps else 0.0,
        judged_sessions=len(judged),
        received=received,
        late=late,
        missing=missing,
        unreadable=unreadable,
        lost_packets=total("lost", pairs),
        late_pct=round(100.0 * late / readable, 3) if readable else 100.0,
        missing_pct=round(100.0 * missing / due, 3) if due else 100.0,
        bad_pct=round(bad_pct, 3),
        server_cpu=server_cpu,
        server_main_cpu=_pct(cpu1.server_main - cpu0.server_main, wall),
        client_cpu=client_cpu,
        other_cpu=round(max(0.0, busy - server_cpu - client_cpu), 1),
        server_rss_mb=round(rss / 2**20, 1),
        rss_per_session_mb=round((rss - baseline_rss) / 2**20 / max(1, live), 3),
        client_lag_p99_ms=round(1000.0 * _percentile(lags, 99), 1),
        client_lag_max_ms=round(1000.0 * max(lags, default=0.0), 1),
        client_gc_max_ms=round(1000.0 * max(gc_pauses, default=0.0), 1),
        server_probe_p99_ms=round(1000.0 * _percentile(probes, 99), 1),
        server_probe_max_ms=round(1000.0 * max(probes, default=0.0), 1),
        worst_lateness_ms=round(1000.0 * max((b["worst"] for _, b in judged), default=0.0), 1),
        held=live == target and fps_mean >= HELD_FPS and bad_pct < HELD_BAD_PCT,
    )


async def chunks_wall_time(url: str, wire: str, chunks: int) -> float:
    """Seconds from `start` sent to `chunk_complete` of chunk `chunks - 1`, one session."""
    session = LoadSession(SessionConfig(url, wire=wire, speed=1000.0))
    try:
        await session.connect()
        await session.command("set_seed", {"seed": session.config.seed})
        await session.command("set_sr_scale", {"sr_scale": session.config.sr_scale})
        await session.command("set_prompt", {"prompt": PROMPTS[0]})
        since = session.client.now()
        await session.command("start")
        await session.wait_chunk_complete(chunks - 1, since=since, timeout=120)
        done = next(
            m
            for m in session.client.messages("chunk_complete", since)
            if int((m.data or {}).get("chunk_index", -1)) >= chunks - 1
        )
        return done.t - since
    finally:
        await session.close()


# ---------------------------------------------------------------------- one variant


async def run_variant(variant: Variant, args: argparse.Namespace, steps: list[int]) -> None:
    extra = BASE_SERVER_ARGS + variant.server_args
    deadline = time.monotonic() + args.max_seconds
    print(
        f"\n== {variant.label}: {output_label(variant)} ({variant.resolution} sr {variant.sr}), "
        f"{'distinct' if variant.distinct else 'identical'} content, "
        f"server args {' '.join(variant.server_args) or '(none)'}",
        flush=True,
    )
    try:
        with _server_tree(variant.server_tree):
            server = HeliosServer.start(speed=1, resolution=variant.resolution, extra=extra)
    except RuntimeError as exc:
        variant.error = f"the server did not start: {exc}"
        print("  " + variant.error, flush=True)
        return
    try:
        print(f"  server {server.url} (pid {server.process.pid if server.process else '?'})", flush=True)
        if args.connects:
            variant.connect_ms = await measure_connects(
                server.url, args.wire, args.connects, args.connects, args.burst
            )
            _print_connects(variant.connect_ms, args.burst)
        variant.steps = await ramp(server, args, variant, variant.step_plan or steps, deadline)
    finally:
        server.stop()
    variant.sessions_held = held_through(variant.steps)
    if args.chunk_runs:
        await _chunk_runs(variant, args, extra)


def _print_connects(c: dict[str, Any], burst: int) -> None:
    print(
        f"  connect→ready: sequential p50 {c['sequential']['p50']} ms p99 {c['sequential']['p99']} ms; "
        f"concurrent (bursts of {burst}) p50 {c['concurrent']['p50']} ms "
        f"p99 {c['concurrent']['p99']} ms; all p50 {c['all']['p50']} ms p99 {c['all']['p99']} ms; "
        f"failures {c['failures']}",
        flush=True,
    )


@contextlib.contextmanager
def _server_tree(tree: str) -> Iterator[None]:
    """Start servers from another checkout (A/B of two code versions in one run)."""
    if not tree:
        yield
        return
    saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = str(Path(tree).resolve())
    os.chdir(tree)  # `python -m mock_server` puts the working directory first on sys.path
    try:
        yield
    finally:
        os.chdir(cwd)
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


async def _chunk_runs(variant: Variant, args: argparse.Namespace, extra: list[str]) -> None:
    try:
        fast = HeliosServer.start(speed=1000, resolution=variant.resolution, extra=extra)
    except RuntimeError as exc:
        variant.error = f"the --speed 1000 server did not start: {exc}"
        return
    try:
        for _ in range(args.chunk_runs):
            variant.chunks100_s.append(round(await chunks_wall_time(fast.url, args.wire, args.chunks), 3))
        print(f"  {args.chunks} chunks at --speed 1000: {variant.chunks100_s} s", flush=True)
    finally:
        fast.stop()


# ---------------------------------------------------------------------- output


def output_label(variant: Variant) -> str:
    """Frame size the client receives: the native size times the sr factor."""
    width, height = (int(x) for x in variant.resolution.lower().split("x"))
    factor = {"off": 1, "2x": 2, "4x": 4}[variant.sr]
    return f"{width * factor}x{height * factor}"


# size label -> (server --resolution, client sr_scale, ramp steps)
TABLE_SIZES = {
    "160x96": ("160x96", "off", [10, 25, 50, 75, 100, 125, 150, 175, 200]),
    "640x384": ("640x384", "off", [2, 4, 8, 12, 16, 24, 32, 48]),
    "1280x768": ("640x384", "2x", [1, 2, 4, 8, 12, 16, 20, 24]),
}


def table_variants(args: argparse.Namespace) -> list[Variant]:
    """--table: identical and distinct content at each size of --table-sizes."""
    variants = []
    for label in args.table_sizes.split(","):
        resolution, sr, plan = TABLE_SIZES[label.strip()]
        for distinct in (False, True):
            name = f"{'distinct' if distinct else 'identical'} {label.strip()}"
            plan_here = [n for n in plan if n <= args.sessions] or plan[:1]
            variants.append(Variant(name, list(args.server_arg), resolution, sr, distinct, plan_here))
    return variants


def capacity_row(variant: Variant) -> dict[str, Any]:
    """Sessions held, and server CPU and RSS per session at the largest step held (else the first step)."""
    held = [s for s in variant.steps if s.held and s.sessions <= variant.sessions_held]
    at = held[-1] if held else (variant.steps[0] if variant.steps else None)
    one = next((s for s in variant.steps if s.sessions == 1), None)
    return {
        "content": "distinct" if variant.distinct else "identical",
        "size": output_label(variant),
        "sessions_held": variant.sessions_held,
        "largest_step_tried": max((s.sessions for s in variant.steps), default=0),
        "measured_at": at.sessions if at else None,
        "server_cpu_per_session_pct": round(at.server_cpu / at.live, 2) if at and at.live else None,
        "rss_per_session_mb": at.rss_per_session_mb if at else None,
        "rss_slope_mb": _rss_slope(held),
        "one_session_cpu_pct": one.server_cpu if one else None,
    }


def _rss_slope(held: list[StepResult]) -> float | None:
    """Server RSS added per session between the first and the last step held (fixed costs excluded)."""
    if len(held) < 2 or held[-1].live == held[0].live:
        return None
    return round((held[-1].server_rss_mb - held[0].server_rss_mb) / (held[-1].live - held[0].live), 2)


def print_table(variants: list[Variant]) -> list[dict[str, Any]]:
    rows = [capacity_row(v) for v in variants]
    print(
        "\n| content / size | sessions held at 24 fps | server CPU per session | server RSS per session "
        "| RSS slope per session |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        held = f"{r['sessions_held']}" + (
            " (largest tried)" if r["sessions_held"] and r["sessions_held"] == r["largest_step_tried"] else ""
        )
        cpu = "—" if r["server_cpu_per_session_pct"] is None else f"{r['server_cpu_per_session_pct']} %"
        rss = "—" if r["rss_per_session_mb"] is None else f"{r['rss_per_session_mb']:.2f} MB"
        slope = "—" if r["rss_slope_mb"] is None else f"{r['rss_slope_mb']:.2f} MB"
        print(f"| {r['content']}, {r['size']} | {held} | {cpu} (at {r['measured_at']}) | {rss} | {slope} |")
    ones = [r for r in rows if r["one_session_cpu_pct"] is not None]
    for r in ones:
        print(f"one {r['content']} {r['size']} session: server {r['one_session_cpu_pct']} % of one core")
    return rows


_HEADER = (
    f"{'sessions':>8} {'live':>4} {'fps mean/min':>12} {'late%':>6} {'miss%':>6} {'worst':>6} "
    f"{'srv CPU%':>8} {'(loop)':>6} {'cli CPU%':>8} {'other%':>6} {'RSS MB':>6} {'MB/sess':>7} "
    f"{'cli lag':>7} {'srv lag':>7} {'held':>4}"
)


def _row(s: StepResult) -> str:
    return (
        f"{s.sessions:>8} {s.live:>4} {s.fps_mean:>6.2f}/{s.fps_min:<5.1f} {s.late_pct:>6.2f} "
        f"{s.missing_pct:>6.2f} {s.worst_lateness_ms:>4.0f}ms {s.server_cpu:>8.1f} {s.server_main_cpu:>6.1f} "
        f"{s.client_cpu:>8.1f} {s.other_cpu:>6.1f} {s.server_rss_mb:>6.0f} {s.rss_per_session_mb:>7.3f} "
        f"{s.client_lag_p99_ms:>5.0f}ms {s.server_probe_p99_ms:>5.0f}ms {'yes' if s.held else 'NO':>4}"
    )


_printed_header = False


def _print_step(step: StepResult) -> None:
    global _printed_header
    if not _printed_header:
        print(_HEADER, flush=True)
        _printed_header = True
    print(_row(step), flush=True)


def held_through(steps: list[StepResult]) -> int:
    """The largest step such that it and every smaller step held (0 if the first did not)."""
    best = 0
    for step in sorted(steps, key=lambda s: s.sessions):
        if not step.held:
            break
        best = step.sessions
    return best


def summary(variant: Variant) -> dict[str, Any]:
    ready = variant.connect_ms.get("all", {})
    wall = statistics.median(variant.chunks100_s) if variant.chunks100_s else None
    top = max(variant.steps, key=lambda s: s.sessions) if variant.steps else None
    held_any = [s.sessions for s in variant.steps if s.held]
    return {
        "sessions_held": variant.sessions_held,
        "largest_step_held": max(held_any) if held_any else 0,
        "ready_p50_ms": ready.get("p50"),
        "ready_sequential_p50_ms": variant.connect_ms.get("sequential", {}).get("p50"),
        "ready_concurrent_p50_ms": variant.connect_ms.get("concurrent", {}).get("p50"),
        "ready_p99_ms": ready.get("p99"),
        "chunks100_s": wall,
        "server_cpu_per_session_pct": round(top.server_cpu / top.live, 3) if top and top.live else None,
        "client_cpu_per_session_pct": round(top.client_cpu / top.live, 3) if top and top.live else None,
        "targets_met": {
            "sessions": variant.sessions_held >= TARGETS["sessions"],
            "ready_p50": ready.get("p50") is not None and ready["p50"] <= TARGETS["ready_p50_ms"],
            "chunks100": wall is not None and wall <= TARGETS["chunks100_s"],
        },
    }


def print_summary(variant: Variant, args: argparse.Namespace) -> None:
    if variant.error:
        print(f"\n{variant.label}: {variant.error}")
    s = summary(variant)
    print(
        f"\n{variant.label} — {output_label(variant)} ({variant.resolution} sr {variant.sr}), "
        f"{'distinct' if variant.distinct else 'identical'} content, wire {args.wire}, 24 fps:"
    )
    print(
        f"  sessions held at 24 fps with < {HELD_BAD_PCT:g} % late+missing: {s['sessions_held']} "
        f"(every step up to it held; largest step held: {s['largest_step_held']}; "
        f"target ≥ {TARGETS['sessions']})"
    )
    print(
        f"  connect→ready p50 {s['ready_p50_ms']} ms, p99 {s['ready_p99_ms']} ms "
        f"(sequential p50 {s['ready_sequential_p50_ms']} ms, "
        f"concurrent p50 {s['ready_concurrent_p50_ms']} ms; target p50 ≤ {TARGETS['ready_p50_ms']:g} ms)"
    )
    print(
        f"  {args.chunks} chunks at --speed 1000: {s['chunks100_s']} s "
        f"(target ≤ {TARGETS['chunks100_s']:g} s)"
    )
    if s["server_cpu_per_session_pct"] is not None:
        print(
            f"  CPU per session at the top step: server {s['server_cpu_per_session_pct']} %, "
            f"client {s['client_cpu_per_session_pct']} % of one core"
        )
    if variant.steps:
        print(_HEADER)
        for step in variant.steps:
            print(_row(step))


def plot(variants: list[Variant], path: Path) -> None:
    """Sessions vs received fps, late+missing %, CPU (server, client, rest of the machine) and server RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fps, ax_bad, ax_cpu) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ax_rss = ax_cpu.twinx()
    styles = ["-", "--", ":"]
    for variant, style in zip(variants, styles, strict=False):
        if not variant.steps:
            continue
        n = [s.sessions for s in variant.steps]
        tag = f" ({variant.label})" if len(variants) > 1 else ""

        def line(axis: Any, values: list[float], marker: str, colour: str, label: str) -> None:
            axis.plot(n, values, marker + style, color=colour, label=label + tag)  # noqa: B023

        line(ax_fps, [s.fps_mean for s in variant.steps], "o", "tab:blue", "mean")
        line(ax_fps, [s.fps_min for s in variant.steps], "v", "tab:cyan", "slowest session")
        line(ax_bad, [s.bad_pct for s in variant.steps], "s", "tab:red", "late + missing")
        line(ax_cpu, [s.server_cpu for s in variant.steps], "o", "tab:green", "server")
        line(ax_cpu, [s.client_cpu for s in variant.steps], "^", "tab:orange", "load client")
        line(ax_cpu, [s.other_cpu for s in variant.steps], "x", "tab:gray", "rest of the machine")
        line(ax_rss, [s.server_rss_mb for s in variant.steps], "d", "tab:purple", "server RSS (right)")
    ax_fps.axhline(24, color="black", lw=0.5)
    ax_fps.set_ylabel("received fps per session")
    ax_fps.set_ylim(0, 26)
    ax_bad.axhline(HELD_BAD_PCT, color="black", lw=0.5, ls="--")
    ax_bad.set_ylabel("late + missing frames (%)")
    top = max((s.bad_pct for v in variants for s in v.steps), default=0.0)
    ax_bad.set_ylim(0, max(5.0, min(100.0, top * 1.1)))
    ax_cpu.set_ylabel("CPU (% of one core; 2 cores = 200)")
    ax_cpu.set_ylim(0, 200)
    ax_rss.set_ylabel("server RSS (MB)")
    ax_rss.set_ylim(bottom=0)
    ax_cpu.set_xlabel("concurrent sessions (160x96 frames, 24 fps each)")
    for axis in (ax_fps, ax_bad):
        axis.legend(fontsize=7, loc="lower left" if axis is ax_fps else "upper left")
        axis.grid(alpha=0.3)
    lines, labels = ax_cpu.get_legend_handles_labels()
    lines2, labels2 = ax_rss.get_legend_handles_labels()
    ax_cpu.legend(lines + lines2, labels + labels2, fontsize=7, loc="upper left")
    ax_cpu.grid(alpha=0.3)
    fig.suptitle("helios-mock capacity (server and load client share one 2-core machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def print_comparison(shared: Variant, per_session: Variant) -> dict[str, Any]:
    """Ratios shared : per-session; server CPU is compared at equal session counts both variants held."""
    a, b = summary(shared), summary(per_session)
    by_n = {s.sessions: s for s in per_session.steps}
    common = [(s, by_n[s.sessions]) for s in shared.steps if s.sessions in by_n]
    both_held = [(s, o) for s, o in common if s.held and o.held]
    cpu_ratio = _ratio(both_held[-1][1].server_cpu, both_held[-1][0].server_cpu) if both_held else "n/a"
    out: dict[str, Any] = {
        "sessions_held": _ratio(a["sessions_held"], b["sessions_held"]),
        "server_cpu_at_largest_common_held_step": cpu_ratio,
        "largest_common_held_step": both_held[-1][0].sessions if both_held else None,
        "ready_p50": _ratio(a["ready_p50_ms"], b["ready_p50_ms"]),
        "chunks100": _ratio(a["chunks100_s"], b["chunks100_s"]),
        "per_step_server_cpu": {},
    }
    print("\nshared vs per-session media:")
    print(f"  sessions held: {a['sessions_held']} vs {b['sessions_held']} ({out['sessions_held']})")
    if both_held:
        print(
            f"  server CPU at {out['largest_common_held_step']} sessions: "
            f"per-session needs {cpu_ratio} of shared"
        )
    print(f"  connect→ready p50: {a['ready_p50_ms']} vs {b['ready_p50_ms']} ms")
    print(f"  100 chunks at --speed 1000: {a['chunks100_s']} vs {b['chunks100_s']} s")
    for step, other in common:
        ratio = _ratio(other.server_cpu, step.server_cpu)
        out["per_step_server_cpu"][step.sessions] = ratio
        print(
            f"  {step.sessions:>4} sessions: server CPU {step.server_cpu} % vs {other.server_cpu} % ({ratio})"
        )
    return out


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200, help="largest step (default 200)")
    parser.add_argument(
        "--steps",
        default="",
        help="comma-separated session counts (default 10,25,50,...,200 up to --sessions)",
    )
    parser.add_argument("--hold", type=float, default=10.0, help="seconds measured at each step")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds after adding sessions, not measured"
    )
    parser.add_argument("--resolution", default="160x96", help="the server's native size (--resolution)")
    parser.add_argument(
        "--sr", choices=["off", "2x", "4x"], default="off", help="sr_scale every client sets (default off)"
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="each session its own seed and prompt, a new prompt every --prompt-every chunks",
    )
    parser.add_argument(
        "--prompt-every", type=int, default=3, help="chunks between prompt changes (distinct)"
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="capacity table: identical and distinct content at each of --table-sizes (no connect or "
        "--speed 1000 phases)",
    )
    parser.add_argument(
        "--compare-tree",
        default="",
        metavar="DIR",
        help="A/B: run the ramp against this checkout's server, then one started from DIR (e.g. a "
        "`git worktree` of an older commit)",
    )
    parser.add_argument("--table-sizes", default="160x96,640x384,1280x768", help="sizes of --table")
    parser.add_argument("--wire", choices=["v0", "v1"], default="v0")
    parser.add_argument(
        "--connects", type=int, default=50, help="sequential connects (and as many concurrent)"
    )
    parser.add_argument("--burst", type=int, default=10, help="concurrent connects per burst")
    parser.add_argument(
        "--connect-concurrency", type=int, default=5, help="parallel session opens in the ramp"
    )
    parser.add_argument(
        "--decode-every", type=int, default=4, help="decode (and judge lateness of) every K-th session only"
    )
    parser.add_argument("--client-procs", type=int, default=2, help="client processes hosting the sessions")
    parser.add_argument("--shard", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunks", type=int, default=100, help="chunks of the --speed 1000 run")
    parser.add_argument("--chunk-runs", type=int, default=3, help="repetitions of the --speed 1000 run")
    parser.add_argument("--server-arg", action="append", default=[], help="extra server flag (repeatable)")
    parser.add_argument(
        "--compare-media",
        action="store_true",
        help="run twice, with --media shared and --media per-session, and print the ratios",
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="time budget of one ramp")
    parser.add_argument("--out", default="load/results", help="output directory for bench.json and bench.png")
    args = parser.parse_args(argv)
    if args.decode_every < 1:
        parser.error("--decode-every must be ≥ 1")
    if args.prompt_every < 1:
        parser.error("--prompt-every must be ≥ 1")
    unknown = [x for x in args.table_sizes.split(",") if x.strip() not in TABLE_SIZES]
    if unknown:
        parser.error(f"--table-sizes: unknown {unknown}; choose from {', '.join(TABLE_SIZES)}")
    if args.table:
        args.connects, args.chunk_runs = 0, 0
    return args


async def amain(args: argparse.Namespace) -> int:
    restrict_host_addresses(["127.0.0.1"])
    asyncio.get_running_loop().set_exception_handler(_quiet_exceptions)
    steps = [int(x) for x in args.steps.split(",") if x.strip()] if args.steps else list(DEFAULT_STEPS)
    steps = sorted({n for n in steps if n <= args.sessions} | {args.sessions})
    content = (args.resolution, args.sr, args.distinct)
    if args.table:
        variants = table_variants(args)
    elif args.compare_tree:
        variants = [
            Variant("this tree", list(args.server_arg), *content),
            Variant("other tree", list(args.server_arg), *content, server_tree=args.compare_tree),
        ]
    elif args.compare_media:
        variants = [
            Variant("shared", [*args.server_arg, "--media", "shared"], *content),
            Variant("per-session", [*args.server_arg, "--media", "per-session"], *content),
        ]
    else:
        variants = [Variant("default", list(args.server_arg), *content)]
    idle_check = await asyncio.to_thread(psutil.cpu_percent, 2.0) * (psutil.cpu_count() or 1)
    if idle_check > 20:
        print(
            f"warning: the machine was {idle_check:.0f} % busy (of one core) before the run; other "
            "processes compete with the server and the client (the 'other%' column shows how much)"
        )
    started = time.monotonic()
    for variant in variants:
        await run_variant(variant, args, steps)
    for variant in variants:
        print_summary(variant, args)
    comparison = print_comparison(variants[0], variants[1]) if args.compare_media else None
    table = print_table(variants) if args.table else None
    out = Path(args.out)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    report = {
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {**vars(args), "steps": steps, "server_base_args": BASE_SERVER_ARGS},
        "definitions": {
            "late": "arrival > slot + 1 frame interval on the session's own 24 fps timeline (load/video.py)",
            "held": f"all sessions live, mean fps ≥ {HELD_FPS}, late+missing < {HELD_BAD_PCT} % of due",
            "cpu": "% of one core over the hold window; other = whole machine minus server and client",
        },
        "targets": TARGETS,
        "variants": [{**asdict(v), "summary": summary(v)} for v in variants],
        "comparison": comparison,
        "table": table,
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine_busy_before_pct": round(idle_check, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(variants, out / "bench.png")
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench.png'} ({report['wall_seconds']} s)")
    return 0 if all(v.error is None for v in variants) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.shard:
        asyncio.run(shard_main())
        return 0
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
