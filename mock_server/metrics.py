"""Prometheus metrics of one server instance, on its own registry (exposed as ``GET /metrics``).

The session code calls the methods of `Metrics` at its increment points; ``mock_server.routes.metrics``
renders the registry in the text exposition format. Each `Metrics` has its own ``CollectorRegistry``, so
several apps in one process (tests) never clash. Label values that a client can influence (command names,
rejection codes) are bounded: at most ``MAX_LABEL_VALUES`` distinct values per label, later ones are counted
as ``other``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

NAMESPACE = "helios_mock"
MAX_LABEL_VALUES = 64
OTHER = "other"
ENCODE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_INTERVAL = 0.25  # seconds between two event-loop lag probes


class _BoundedLabel:
    """Keeps a label's distinct values under a limit; unknown values beyond it become ``other``."""

    def __init__(self, known: Iterable[str] = (), limit: int = MAX_LABEL_VALUES) -> None:
        self.seen: set[str] = set(known)
        self.limit = max(limit, len(self.seen))

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


class Metrics:
    """The server's metrics and the calls that update them."""

    def __init__(self, version: str = "", command_names: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.info = self._gauge("build_info", "Version of the running helios-mock", "version")
        self.info.labels(version=version or "unknown").set(1)
        self.sessions = self._gauge("sessions", "Sessions by state", "state")
        self.connections = self._gauge("connections", "Open connections by data-channel encoding", "encoding")
        self.chunks = self._counter("chunks_generated", "Chunks generated (all sessions)")
        self.frames = self._counter("frames_sent", "Video frames sent to clients")
        self.bytes = self._counter("bytes_sent", "Encoded video bytes sent to clients")
        self.commands = self._counter("commands", "Model commands by name and outcome", "command", "outcome")
        self.rejections = self._counter("rejections", "Rejections by code", "code")
        self.faults = self._counter("faults_fired", "Injected faults fired by kind", "kind")
        self.encode_seconds = Histogram(
            "encode_seconds", "Time to encode one video frame",
            namespace=NAMESPACE, registry=self.registry, buckets=ENCODE_BUCKETS,
        )  # fmt: skip
        self.loop_lag = self._gauge("event_loop_lag_latest_seconds", "Lateness of the latest loop wake-up")
        self.loop_lag_histogram = Histogram(
            "event_loop_lag_seconds", "Lateness of timed wake-ups on the event loop",
            namespace=NAMESPACE, registry=self.registry, buckets=LAG_BUCKETS,
        )  # fmt: skip
        self._command_label = _BoundedLabel(command_names)
        self._code_label = _BoundedLabel()
        self._fault_label = _BoundedLabel()
        self._encoding_label = _BoundedLabel(("v0", "v1"), limit=8)
        self._state_label = _BoundedLabel(limit=16)

    def _gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

    # ------------------------------------------------------------------ increment points

    def set_sessions(self, counts: dict[str, int]) -> None:
        """Current number of sessions in each state (states absent from `counts` are set to 0)."""
        labelled = {self._state_label(state): 0 for state in self._state_label.seen}
        for state, count in counts.items():
            label = self._state_label(state)
            labelled[label] = labelled.get(label, 0) + count
        for label, count in labelled.items():
            self.sessions.labels(state=label).set(count)

    def connection_opened(self, encoding: str) -> None:
        self.connections.labels(encoding=self._encoding_label(encoding)).inc()

    def connection_closed(self, encoding: str) -> None:
        self.connections.labels(encoding=self._encoding_label(encoding)).dec()

    def chunk_generated(self) -> None:
        self.chunks.inc()

    def frame_sent(self, size: int) -> None:
        self.frames.inc()
        self.bytes.inc(size)

    def command(self, name: str, outcome: str) -> None:
        """`outcome`: accepted | refused | rejected (or another word the session uses)."""
        self.commands.labels(command=self._command_label(name), outcome=outcome).inc()

    def rejection(self, code: str) -> None:
        self.rejections.labels(code=self._code_label(code)).inc()

    def fault(self, kind: str) -> None:
        self.faults.labels(kind=self._fault_label(kind)).inc()

    def encoded(self, seconds: float) -> None:
        self.encode_seconds.observe(seconds)

    def loop_lagged(self, seconds: float) -> None:
        lag = max(seconds, 0.0)
        self.loop_lag.set(lag)
        self.loop_lag_histogram.observe(lag)

    # ------------------------------------------------------------------ event-loop lag and output

    async def watch_event_loop(self, interval: float = LAG_INTERVAL) -> None:
        """Run until cancelled: sleep `interval`, record how late the wake-up was."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lagged(loop.time() - start - interval)

    def start_loop_watch(self, interval: float = LAG_INTERVAL) -> asyncio.Task[None]:
        """Start `watch_event_loop` on the running loop; end it with `stop_loop_watch` at shutdown."""
        return asyncio.get_running_loop().create_task(self.watch_event_loop(interval), name="loop-lag")

    @staticmethod
    async def stop_loop_watch(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def render(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text exposition format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
