"""Render and encode chunks in worker processes, so encoding never holds the server's GIL.

Encoder threads in the server process made the event loop wait: rendering small frames is mostly Python
(numpy call overhead, which holds the GIL), and every time the loop released the GIL for a socket call it
waited up to the interpreter's switch interval to get it back (py-spy: the loop stalled in ``sendto``).
Here each worker process runs its own :class:`EncodeScheduler` (one thread, deadline-ordered jobs, reused
encoder contexts); the server sends it a job per chunk over a socket pair and a reader thread hands the
packets to the event loop as they arrive. A job goes to the worker with the fewest frames still to encode.

Messages, server → worker: ``("job", id, plan, image_key, native, mime, t0, interval, start)``,
``("cancel", id)`` and ``("stop",)``; worker → server: a list of ``(id, index, packet | None, error |
None, encode_seconds)`` (batched, see :class:`_Outbox`).
A reference image crosses the socket once per worker: both sides keep the same LRU of image keys, updated
in the same message order, and a job whose image the worker holds carries ``None`` in its place.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encode_scheduler import URGENT_FRAMES, Deliver, EncodeJob, EncodeScheduler
from mock_server.media.encoder import EncoderPool
from mock_server.model.plan import ReferenceImage

log = logging.getLogger("helios_mock.media")

WORKER_NICE = 5
# glibc: frame-sized buffers (a 1280x768 frame is 1.5-3 MB) always come from mmap and go back to the system
# when freed; by default the threshold rises after the first free and freed frames stay in the heap, which
# grew a worker's RSS with every distinct chunk in flight.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "262144", "MALLOC_TRIM_THRESHOLD_": "1048576"}
SEND_AHEAD_FRAMES = 3  # a packet due within this many frame intervals is sent at once, not batched
BATCH_PACKETS = 16  # packets sent together at most
IMAGES_PER_WORKER = 32  # reference images a worker keeps (and the server remembers it keeps)


def _remember(images: OrderedDict[bytes, Any], key: bytes, value: Any) -> None:
    """LRU update shared by both ends (same order of calls, same evictions)."""
    images[key] = value
    images.move_to_end(key)
    while len(images) > IMAGES_PER_WORKER:
        images.popitem(last=False)


# ---------------------------------------------------------------------------------------- worker side


class _Outbox:
    """Packets on their way to the server, sent in batches (one pickle and one socket write for many).

    A packet goes at once when it is due within SEND_AHEAD_FRAMES, with the chunk's last packet or an
    error; otherwise it waits for up to BATCH_PACKETS others, or until the scheduler leaves its job
    (`EncodeScheduler.on_pause`), so no packet waits behind a job the worker is not encoding."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._items: list[tuple[int, int, bytes | None, str | None, float]] = []
        self._lock = threading.Lock()

    def add(self, item: tuple[int, int, bytes | None, str | None, float], urgent: bool) -> None:
        with self._lock:
            self._items.append(item)
            if urgent or len(self._items) >= BATCH_PACKETS:
                self._send()

    def flush(self) -> None:
        with self._lock:
            self._send()

    def _send(self) -> None:
        if self._items:
            self._conn.send(self._items)
            self._items = []


def worker_main(conn: Connection, bitrate: int) -> None:
    """A worker process: encode the jobs it receives, send each packet back as soon as it exists.

    It runs at a lower priority (nice +WORKER_NICE): on a saturated machine the server's event loop, which
    sends every frame and answers every request, gets the CPU first."""
    try:
        os.nice(WORKER_NICE)
    except OSError:  # not permitted here: run at the server's priority
        pass
    scheduler = EncodeScheduler(EncoderPool(bitrate), workers=1)
    outbox = _Outbox(conn)
    scheduler.on_pause = outbox.flush
    cancelled: set[int] = set()
    images: OrderedDict[bytes, ReferenceImage] = OrderedDict()
    last_seconds = [0.0]
    scheduler.on_encoded = lambda seconds: last_seconds.__setitem__(0, seconds)

    def deliverer(job_id: int, t0: float, interval: float, start: int) -> Deliver:
        def deliver(index: int, data: bytes | None, error: str | None) -> None:
            last = index == CHUNK_FRAMES - 1 or error is not None
            due = t0 + (index - start) * interval
            urgent = last or due < time.monotonic() + SEND_AHEAD_FRAMES * interval
            outbox.add((job_id, index, data, error, last_seconds[0]), urgent)
            if last:
                cancelled.discard(job_id)

        return deliver

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server closed the pipe (or exited)
        if message[0] == "stop":
            return
        if message[0] == "cancel":
            cancelled.add(message[1])
            continue
        _, job_id, plan, image_key, native, mime, t0, interval, start = message
        if image_key:
            image = plan.image if plan.image is not None else images[image_key]
            _remember(images, image_key, image)
            plan = dataclasses.replace(plan, image=image)
        wanted = lambda job_id=job_id: job_id not in cancelled  # noqa: E731
        deliver = deliverer(job_id, t0, interval, start)
        scheduler.submit(EncodeJob(plan, native, mime, deliver, t0, interval, start, wanted))


# ---------------------------------------------------------------------------------------- server side


Packet = tuple[int, "bytes | None", "str | None", float]  # (index, data, error, encode seconds)


def _by_job(batch: list[tuple[int, int, bytes | None, str | None, float]]) -> dict[int, list[Packet]]:
    grouped: dict[int, list[Packet]] = {}
    for job_id, index, data, error, seconds in batch:
        grouped.setdefault(job_id, []).append((index, data, error, seconds))
    return grouped


def _launch(bitrate: int) -> tuple[Connection, subprocess.Popen[bytes]]:
    """Start a worker as a fresh interpreter running only this module (a multiprocessing child would
    first import the server's ``__main__``, e.g. the ``helios-mock`` script and with it the whole web
    stack: ~90 MB per worker), connected by a socket pair."""
    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno()), str(bitrate)],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env={**os.environ, **WORKER_MALLOC},
        )
    return Connection(ours.detach()), process


class _Worker:
    """One worker process, its pipe and the reader thread that receives its packets."""

    def __init__(self, bitrate: int, on_encoded: list[Callable[[float], None]]) -> None:
        self.conn, self.process = _launch(bitrate)
        self.pending: dict[int, EncodeJob] = {}  # jobs this worker holds; `next` follows its packets
        self.images: OrderedDict[bytes, None] = OrderedDict()
        self._on_encoded = on_encoded
        self._lock = threading.Lock()
        self.frames_encoded = 0
        self.alive = True
        self._reader = threading.Thread(target=self._read, name="helios-encoder-reader", daemon=True)
        self._reader.start()

    @property
    def load(self) -> int:
        """Frames still to encode."""
        return sum(CHUNK_FRAMES - p.next for p in list(self.pending.values()))

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self.conn.send(message)

    def _read(self) -> None:
        while True:
            try:
                batch = self.conn.recv()
            except (EOFError, OSError):
                break
            for job_id, items in _by_job(batch).items():
                pending = self.pending.get(job_id)
                if pending is not None:  # else cancelled meanwhile
                    self._take_packets(job_id, pending, items)
        self._fail_all()

    def _take_packets(self, job_id: int, pending: EncodeJob, items: list[Packet]) -> None:
        for index, data, error, seconds in items:
            pending.next = index + 1
            if data is not None:
                self.frames_encoded += 1
                self._on_encoded[0](seconds)
            if index == CHUNK_FRAMES - 1 or error is not None:
                self.pending.pop(job_id, None)
        pending.deliver_batch([(index, data, error) for index, data, error, _ in items])

    def _fail_all(self) -> None:
        """The worker is gone: every sender waiting on it gets an error instead of waiting forever."""
        if self.alive:
            log.error("encoder worker process %s exited (code %s)", self.process.pid, self.process.poll())
        self.alive = False
        for job_id in list(self.pending):
            pending = self.pending.pop(job_id)
            error = "the encoder worker process exited"
            pending.deliver_batch([(index, None, error) for index in range(pending.next, CHUNK_FRAMES)])

    def stop(self) -> None:
        """Ask the worker to exit (closing our end is not enough: the reader thread still holds it)."""
        self.alive = False
        try:
            self.send(("stop",))
        except OSError:  # already gone
            pass

    def close(self, deadline: float) -> None:
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait()
        self.conn.close()


def _close_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    deadline = time.monotonic() + 2.0
    for worker in workers:
        worker.close(deadline)


class ProcessEncoders:
    """Worker processes (one per core by default) that encode chunk jobs; the server-side handle."""

    def __init__(self, bitrate: int, workers: int | None = None) -> None:
        self.bitrate = bitrate
        self.size = max(1, workers or os.cpu_count() or 1)
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._on_encoded: list[Callable[[float], None]] = [lambda seconds: None]  # no reference to self
        self.abandoned = 0
        self._finalizer = weakref.finalize(self, _close_all, self._workers)

    @property
    def frames_encoded(self) -> int:
        return sum(w.frames_encoded for w in self._workers)

    @property
    def on_encoded(self) -> Callable[[float], None]:
        """Called (from a reader thread) with each frame's encode time in its worker (metrics)."""
        return self._on_encoded[0]

    @on_encoded.setter
    def on_encoded(self, hook: Callable[[float], None]) -> None:
        self._on_encoded[0] = hook

    def start(self) -> None:
        """Start the worker processes now (they are otherwise started by the first job)."""
        with self._lock:
            self._workers[:] = [w for w in self._workers if w.alive]
            while len(self._workers) < self.size:
                self._workers.append(_Worker(self.bitrate, self._on_encoded))

    def submit(self, job: EncodeJob, image_key: bytes = b"") -> Callable[[], None]:
        """Send `job` to the least loaded worker; returns a function that cancels it.

        `image_key`: a digest of the plan's reference image (empty without one)."""
        if len(self._workers) < self.size or not all(w.alive for w in self._workers):
            self.start()
        worker = min(self._workers, key=lambda w: w.load)
        job_id = next(self._ids)
        worker.pending[job_id] = job
        plan = job.plan
        if image_key:
            if image_key in worker.images:
                plan = dataclasses.replace(plan, image=None)
            _remember(worker.images, image_key, None)
        worker.send(
            ("job", job_id, plan, image_key, job.native_size, job.mime_type, job.t0, job.interval, job.start)
        )

        def cancel() -> None:
            if worker.pending.pop(job_id, None) is not None and worker.alive:
                self.abandoned += 1
                worker.send(("cancel", job_id))

        return cancel

    def behind(self) -> bool:
        """True when a job not started yet is overdue by more than URGENT_FRAMES intervals (as the threads'
        scheduler judges its queue)."""
        now = time.monotonic()
        for worker in self._workers:
            for pending in list(worker.pending.values()):
                if pending.next == pending.start and pending.due < now - URGENT_FRAMES * pending.interval:
                    return True
        return False

    def close(self) -> None:
        self._finalizer()


if __name__ == "__main__":  # a worker process started by `_launch`: python -m … FD BITRATE
    worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]))
