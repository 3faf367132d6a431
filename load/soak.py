"""Soak: minutes of session churn against a mock this script starts, watching the server process grow.

A few workers at a time each loop: create a session (one worker in local mode, the others in production
mode), connect a real aiortc client over loopback (v0 and v1 in turn), ``set_prompt``, ``start``, wait for
a completed chunk, send a few more commands, and leave — mostly cleanly (stop/DELETE), sometimes by just
dropping the peer (the server has to reclaim the session after its ping watchdog and reconnect grace).

Every 10 sessions the server's RSS, open file descriptors and threads are sampled (psutil); every 100
sessions a line is printed. After the warm-up the growth per 100 sessions is estimated with the Theil–Sen
slope (median of pairwise slopes, robust to one-off allocator jumps) and the run fails when it is above
``--max-rss-growth`` MB (default 2), ``--max-fd-growth`` or ``--max-thread-growth``. At the end, every
session must be reclaimed (no live session in ``GET /admin/record``, ``GET /health`` says available).

    python load/soak.py --minutes 10            # by hand
    python load/soak.py --seconds 60 --json out.json   # what tests/reliability/test_soak.py runs

Bounded in time and count (``--max-sessions``), loopback only. Exit status 0 = within every threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # `python load/soak.py`: import from the checkout
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import httpx  # noqa: E402
import psutil  # noqa: E402

from conformance.helpers import resume_video  # noqa: E402
from conformance.server import HeliosServer  # noqa: E402
from conformance.wire_client import WireClient  # noqa: E402
from mock_server.transport.ice import restrict_host_addresses  # noqa: E402

SAMPLE_EVERY = 10  # sessions between two samples of the server process
PRINT_EVERY = 100  # sessions between two printed lines
STEP_TIMEOUT = 20.0


@dataclass
class Sample:
    sessions: int
    seconds: float
    rss_mb: float
    fds: int
    threads: int


@dataclass
class SoakResult:
    """Everything the run measured; `ok` is the verdict against the thresholds."""

    sessions: int = 0
    local_sessions: int = 0
    production_sessions: int = 0
    dropped_peers: int = 0  # sessions left by dropping the peer instead of stopping
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    warmup_sessions: int = 0
    rss_growth_mb_per_100: float | None = None
    fd_growth_per_100: float | None = None
    thread_growth_per_100: float | None = None
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    live_sessions_after: int | None = None
    health_after: str | None = None
    verdicts: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.verdicts

    def line(self) -> str:
        def fmt(value: float | None, unit: str = "") -> str:
            return "n/a" if value is None else f"{value:+.2f}{unit}"

        return (
            f"soak: {self.sessions} sessions in {self.seconds:.0f} s ({self.local_sessions} local, "
            f"{self.production_sessions} production, {self.dropped_peers} left by dropping the peer, "
            f"{len(self.failures)} failed); after {self.warmup_sessions} warm-up sessions, per 100 sessions: "
            f"RSS {fmt(self.rss_growth_mb_per_100, ' MB')}, fds {fmt(self.fd_growth_per_100)}, threads "
            f"{fmt(self.thread_growth_per_100)}; RSS {self.rss_start_mb:.1f} -> {self.rss_end_mb:.1f} MB; "
            f"live sessions after {self.live_sessions_after}, health {self.health_after}"
        )


def theil_sen(points: list[tuple[float, float]]) -> float | None:
    """Median of the pairwise slopes dy/dx: a trend that one-off jumps do not move."""
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in itertools.combinations(points, 2) if x2 != x1]
    return statistics.median(slopes) if slopes else None


class Soak:
    def __init__(self, server: HeliosServer, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.process = psutil.Process(server.process.pid) if server.process else None
        self.result = SoakResult(warmup_sessions=args.warmup)
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.seconds
        self._counter = itertools.count()

    def sample(self) -> Sample:
        assert self.process is not None
        with self.process.oneshot():
            sample = Sample(
                sessions=self.result.sessions,
                seconds=round(time.monotonic() - self.t0, 2),
                rss_mb=round(self.process.memory_info().rss / 2**20, 2),
                fds=self.process.num_fds(),
                threads=self.process.num_threads(),
            )
        self.result.samples.append(sample)
        return sample

    def _more(self) -> bool:
        return time.monotonic() < self.deadline and self.result.sessions < self.args.max_sessions

    async def worker(self, index: int) -> None:
        mode = "local" if index == 0 and self.args.local else "production"
        while self._more():
            number = next(self._counter)
            wire = ("v0", "v1")[number % 2]
            # the local session is a singleton a new client would adopt: only production sessions are dropped
            every = self.args.drop_every
            drop = mode == "production" and every > 0 and number % every == every - 1
            try:
                await asyncio.wait_for(self.one_session(mode, wire, drop, number), STEP_TIMEOUT * 3)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the churn goes on
                self.result.failures.append(f"session {number} ({mode}, {wire}): {type(exc).__name__}: {exc}")
                if len(self.result.failures) > self.args.max_failures:
                    return
            self._count(mode, drop)

    def _count(self, mode: str, drop: bool) -> None:
        result = self.result
        result.sessions += 1
        result.local_sessions += mode == "local"
        result.production_sessions += mode == "production"
        result.dropped_peers += drop
        if result.sessions % SAMPLE_EVERY == 0:
            sample = self.sample()
            if result.sessions % PRINT_EVERY == 0:
                print(
                    f"sessions {sample.sessions:5d} at {sample.seconds:6.0f} s: RSS {sample.rss_mb:7.1f} MB, "
                    f"fds {sample.fds:4d}, threads {sample.threads:3d}",
                    flush=True,
                )

    async def one_session(self, mode: str, wire: str, drop: bool, number: int) -> None:
        client = WireClient(self.server.url, wire=wire, mode=mode, token=f"soak-{number % 7}")
        try:
            await client.connect(timeout=STEP_TIMEOUT)
            resume_video(client)
            client.send_command("set_prompt", {"prompt": f"soak session {number}: a harbour at dawn"})
            client.send_command("start")
            await client.wait_message("chunk_complete", timeout=STEP_TIMEOUT)
            mark = client.now()
            client.send_command("schedule_prompt", {"prompt": "gulls overhead", "chunk": 40})
            client.send_command("set_seed", {"seed": number})
            client.send_command("pause")
            await client.wait_message("generation_paused", since=mark, timeout=STEP_TIMEOUT)
            client.send_command("resume")
            await client.wait_message("generation_resumed", since=mark, timeout=STEP_TIMEOUT)
        finally:
            if drop:  # leave without a word: the server must reclaim the session on its own
                await client.close(stop_session=False)
            else:
                await client.close()

    async def settle(self) -> None:
        """Wait for the server to reclaim every session (watchdog + grace), then read its verdicts."""
        grace = self.args.ping_timeout + self.args.reconnect_grace + 5
        deadline = time.monotonic() + grace
        async with httpx.AsyncClient(base_url=self.server.url, timeout=30) as http:
            live: int | None = None
            health: str | None = None
            while time.monotonic() < deadline:
                live, health = await self._server_view(http)
                if live == 0 and health == "available":
                    break
                await asyncio.sleep(0.5)
            self.result.live_sessions_after = live
            self.result.health_after = health

    @staticmethod
    async def _server_view(http: httpx.AsyncClient) -> tuple[int | None, str | None]:
        """(live sessions in GET /admin/record, state of GET /health); None where a call failed."""
        live = health = None
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            record = (await http.get("/admin/record")).json()
            live = sum(not s["closed"] for s in record["sessions"])
        with contextlib.suppress(httpx.HTTPError, ValueError, AttributeError):
            health = (await http.get("/health")).json().get("state")
        return live, health

    async def run(self) -> SoakResult:
        start = self.sample()
        self.result.rss_start_mb = start.rss_mb
        await asyncio.gather(*(self.worker(i) for i in range(self.args.concurrency)))
        self.result.seconds = time.monotonic() - self.t0
        await self.settle()
        self.result.rss_end_mb = self.sample().rss_mb
        self.judge()
        return self.result

    def judge(self) -> None:
        result, args = self.result, self.args
        after = [s for s in result.samples if s.sessions >= args.warmup]
        if len(after) >= 3 and after[-1].sessions - after[0].sessions >= 2 * SAMPLE_EVERY:
            result.rss_growth_mb_per_100 = 100 * (theil_sen([(s.sessions, s.rss_mb) for s in after]) or 0.0)
            result.fd_growth_per_100 = 100 * (theil_sen([(s.sessions, s.fds) for s in after]) or 0.0)
            result.thread_growth_per_100 = 100 * (theil_sen([(s.sessions, s.threads) for s in after]) or 0.0)
        else:
            result.verdicts.append(
                f"too few sessions after the warm-up of {args.warmup} to measure growth "
                f"({result.sessions} in all)"
            )
        limits = (
            ("RSS", result.rss_growth_mb_per_100, args.max_rss_growth, " MB"),
            ("fds", result.fd_growth_per_100, args.max_fd_growth, ""),
            ("threads", result.thread_growth_per_100, args.max_thread_growth, ""),
        )
        for name, value, limit, unit in limits:
            if value is not None and value > limit:
                result.verdicts.append(
                    f"{name} grow {value:.2f}{unit} per 100 sessions (limit {limit:g}{unit})"
                )
        if result.failures and len(result.failures) > args.max_failures:
            result.verdicts.append(f"{len(result.failures)} sessions failed (limit {args.max_failures})")
        if result.live_sessions_after != 0:
            result.verdicts.append(f"{result.live_sessions_after} sessions still live after the churn")
        if result.health_after != "available":
            result.verdicts.append(
                f"GET /health says {result.health_after!r} after the churn, not 'available'"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--minutes", type=float, help="how long to churn (default 1)")
    when.add_argument("--seconds", type=float, help="how long to churn, in seconds")
    parser.add_argument("--max-sessions", type=int, default=100_000, help="stop after this many sessions")
    parser.add_argument("--concurrency", type=int, default=3, help="sessions at a time (default 3)")
    parser.add_argument("--no-local", dest="local", action="store_false", help="production mode only")
    parser.add_argument(
        "--drop-every", type=int, default=5, help="every Nth session drops its peer (0: never)"
    )
    parser.add_argument("--warmup", type=int, default=50, help="sessions before growth is measured (50)")
    parser.add_argument("--max-rss-growth", type=float, default=2.0, help="MB per 100 sessions (2)")
    parser.add_argument("--max-fd-growth", type=float, default=10.0, help="fds per 100 sessions (10)")
    parser.add_argument("--max-thread-growth", type=float, default=2.0, help="threads per 100 sessions (2)")
    parser.add_argument("--max-failures", type=int, default=5, help="failed sessions tolerated (5)")
    parser.add_argument("--speed", type=float, default=10.0, help="server chunk clock speed (10)")
    parser.add_argument("--resolution", default="160x96", help="server native frame size (160x96)")
    parser.add_argument("--ping-timeout", type=float, default=3.0, help="server ping watchdog, s (3)")
    parser.add_argument("--reconnect-grace", type=float, default=2.0, help="server reconnect grace, s (2)")
    parser.add_argument("--log", type=Path, help="server log file (default: a temporary file)")
    parser.add_argument("--json", type=Path, help="also write the result (with every sample) here")
    return parser


async def soak(args: argparse.Namespace) -> SoakResult:
    restrict_host_addresses(["127.0.0.1"])  # clients and server meet on loopback only
    server = HeliosServer.start(
        speed=args.speed,
        resolution=args.resolution,
        log_path=args.log,
        extra=[
            "--max-creations-per-minute", "0", "--max-sessions-per-account", "0", "--log-level", "warning",
            "--ping-timeout", str(args.ping_timeout), "--reconnect-grace", str(args.reconnect_grace),
        ],
    )  # fmt: skip
    try:
        return await Soak(server, args).run()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else 60.0 * (args.minutes or 1.0)
    result = asyncio.run(soak(args))
    print(result.line(), flush=True)
    for failure in result.failures[:10]:
        print(f"  failed: {failure}")
    for verdict in result.verdicts:
        print(f"  FAIL: {verdict}")
    if args.json:
        args.json.write_text(json.dumps({**asdict(result), "ok": result.ok, "line": result.line()}, indent=1))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
