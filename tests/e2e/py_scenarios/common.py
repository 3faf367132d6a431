"""Shared tools for the Python SDK client programs (run inside the namespace by ns_scenario.py).

``Recorder`` hooks every event of a real ``reactor_sdk.Reactor`` and writes, to the program's out dir:

* ``events.jsonl`` — one JSON object per line in the format of tests/js/driver.cjs (``t`` = ms since the
  program started, monotonic; kinds ``status``, ``session_id``, ``message`` {index, type, data}, ``error``,
  ``runtime_message``, ``track``, ``timing`` {name, value}, ``step_start`` / ``step_end`` {id, ok, result |
  error}, ``check`` {ok, text}, ``done``), so jsclient.RunResult can read both clients' runs;
* ``frames.jsonl`` — one line per ``main_video`` frame: ``[t_ms, width, height, markers]`` where markers is
  ``[chunk, frame, prompt_id, seed, image_id]`` decoded with mock_server.media.markers, or null;
* ``probes.npz`` — the RGB pixels of frame ``PROBE_FRAME`` of every (chunk, prompt_id) seen first, keyed
  ``c<chunk>_p<prompt_id>``, for pixel-level comparisons with mock_server.media.frames;
* ``results.json`` — summary at exit: ok, failures, replies per step, timings, counts.

Hard expectations (``require``/waits) raise ``ScenarioFailed`` and end the program; soft ones (``check``) are
collected and make it exit 1 at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from reactor_sdk import Reactor, ReactorError

from mock_server.media.markers import decode_markers

PROBE_FRAME = 16  # frame-in-chunk whose pixels are kept (the middle of the chunk)

Where = Mapping[str, Any] | Callable[[dict[str, Any]], bool] | None


class ScenarioFailed(AssertionError):
    """A hard expectation of the scenario did not hold."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, ReactorError):
        return {"class": type(value).__name__, "code": value.code, "message": value.message}
    if isinstance(value, BaseException):
        return {"class": type(value).__name__, "message": str(value)}
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def matches(data: Any, where: Where) -> bool:
    """``where``: None (anything), a predicate, or field -> expected value (numbers compare numerically)."""
    if where is None:
        return True
    if callable(where):
        try:
            return bool(where(data))
        except (KeyError, TypeError, ValueError):
            return False
    return isinstance(data, dict) and all(k in data and data[k] == v for k, v in where.items())


class _AuthLogSpy(logging.Handler):
    """Collects the SDK's own log lines about the API-key exchange (logger ``reactor_sdk._auth``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Recorder:
    """Event log, frame log and waiting helpers around one Reactor client."""

    def __init__(self, out_dir: Path, name: str) -> None:
        self.out_dir = out_dir
        self.name = name
        out_dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self._events = open(out_dir / "events.jsonl", "w")
        self._frames_file = open(out_dir / "frames.jsonl", "w")
        self._frames_lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.frames: list[tuple[float, int, int, tuple[int, ...] | None]] = []
        self.probes: dict[str, np.ndarray] = {}
        self.statuses: list[str] = []
        self.errors: list[Any] = []
        self.failures: list[str] = []
        self.replies: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self._changed = asyncio.Event()
        self.auth_log = _AuthLogSpy()
        auth_logger = logging.getLogger("reactor_sdk._auth")
        auth_logger.setLevel(logging.DEBUG)
        auth_logger.addHandler(self.auth_log)

    # ── logging ───────────────────────────────────────────────────────────────────────────────────────

    def now_ms(self) -> float:
        return round((time.monotonic() - self.t0) * 1000, 3)

    def event(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": self.now_ms(), "kind": kind, **_jsonable(fields)})
        self._events.write(line + "\n")
        self._events.flush()

    def note(self, text: str) -> None:
        print(f"[{self.name} {self.now_ms() / 1000:8.3f}] {text}", flush=True)

    def _pulse(self) -> None:
        self._changed.set()

    # ── wiring ────────────────────────────────────────────────────────────────────────────────────────

    def attach(self, reactor: Reactor, track: str = "main_video") -> None:
        """Register handlers for every client event and for the frames of ``track``."""

        def on_message(msg: Any) -> None:
            is_obj = isinstance(msg, dict)
            entry = {
                "t": self.now_ms(),
                "index": len(self.messages),
                "type": msg.get("type") if is_obj else None,
                "data": msg.get("data", {}) if is_obj else {},
            }
            self.messages.append(entry)
            self.event("message", index=entry["index"], type=entry["type"], data=entry["data"])
            self._pulse()

        def on_status(status: Any) -> None:
            value = getattr(status, "value", status)
            self.statuses.append(value)
            self.event("status", status=value)
            self._pulse()

        def on_error(err: Any) -> None:
            self.errors.append(err)
            self.event("error", error=err)
            self._pulse()

        reactor.on("message", on_message)
        reactor.on("status_changed", on_status)
        reactor.on("error", on_error)
        reactor.on("runtime_message", lambda m: self.event("runtime_message", message=m))
        reactor.on("session_id_changed", lambda sid: self.event("session_id", session_id=sid))
        reactor.on("capabilities_received", lambda caps: self.event("capabilities", capabilities=caps))
        reactor.on(
            "track_received",
            lambda t: self.event("track", name=t.name, track_kind=getattr(t.kind, "value", None)),
        )
        reactor.track(track).on_frame(self._on_frame)

    def _on_frame(self, frame: np.ndarray) -> None:
        """Runs on the SDK's media thread: decode the marker band, log the frame."""
        t = self.now_ms()
        height, width = int(frame.shape[0]), int(frame.shape[1])
        m = decode_markers(frame)
        markers = (m.chunk, m.frame, m.prompt_id, m.seed, m.image_id) if m is not None else None
        with self._frames_lock:
            self.frames.append((t, width, height, markers))
            self._frames_file.write(json.dumps([t, width, height, markers]) + "\n")
            if m is not None and m.frame == PROBE_FRAME:
                self.probes.setdefault(f"c{m.chunk}_p{m.prompt_id}", np.array(frame, copy=True))

    # ── expectations ──────────────────────────────────────────────────────────────────────────────────

    def check(self, ok: bool, text: str) -> bool:
        """Soft expectation: logged, and a failure makes the program exit 1 at the end."""
        self.event("check", ok=bool(ok), text=text)
        if not ok:
            self.failures.append(text)
            self.note(f"CHECK FAILED: {text}")
        return bool(ok)

    def require(self, ok: bool, text: str) -> None:
        """Hard expectation: ends the scenario."""
        if not self.check(ok, text):
            raise ScenarioFailed(text)

    def expect_equal(self, got: Any, want: Any, what: str) -> bool:
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")

    # ── steps ─────────────────────────────────────────────────────────────────────────────────────────

    async def step(self, step_id: str, action: Callable[[], Awaitable[Any]]) -> Any:
        """Run one step, logging step_start / step_end (result or error); exceptions propagate."""
        started = time.monotonic()
        self.event("step_start", id=step_id)
        try:
            result = await action()
        except BaseException as exc:
            duration = round((time.monotonic() - started) * 1000, 1)
            self.event("step_end", id=step_id, ok=False, duration_ms=duration, error=exc)
            raise
        duration = round((time.monotonic() - started) * 1000, 1)
        self.event("step_end", id=step_id, ok=True, duration_ms=duration, result=result)
        return result

    async def command(self, step_id: str, reactor: Reactor, name: str, params: dict[str, Any]) -> Any:
        """send_command as a step; the reply (dict or None) is the step result and kept in ``replies``."""
        shown = {
            k: (_jsonable(v) if not hasattr(v, "upload_id") else {"file_ref": v.upload_id})
            for k, v in params.items()
        }
        self.event("command_sent", name=name, params=shown, step=step_id)

        async def send() -> dict[str, Any]:
            reply = await reactor.send_command(name, params)
            return {"reply": reply}

        result = await self.step(step_id, send)
        self.replies[step_id] = result["reply"]
        return result["reply"]

    async def rejected(
        self, step_id: str, reactor: Reactor, name: str, params: dict[str, Any]
    ) -> ReactorError:
        """send_command that must raise ReactorError; the error is the step result."""
        self.event("command_sent", name=name, params=_jsonable(params), step=step_id)

        async def send() -> dict[str, Any]:
            try:
                reply = await reactor.send_command(name, params)
            except ReactorError as exc:
                return {"error": exc}
            raise ScenarioFailed(
                f"{step_id}: {name} {params} returned {reply!r} instead of raising ReactorError"
            )

        result = await self.step(step_id, send)
        self.replies[step_id] = _jsonable(result["error"])
        return result["error"]

    def timing(self, name: str, value_ms: float) -> None:
        self.timings[name] = round(value_ms, 1)
        self.event("timing", name=name, value=round(value_ms, 1))
        self.note(f"{name}: {value_ms:.1f} ms")

    # ── waiting ───────────────────────────────────────────────────────────────────────────────────────

    def mark(self) -> int:
        """Index of the next message: pass it as ``after`` to look only at later messages."""
        return len(self.messages)

    def find(self, msg_type: str, where: Where = None, after: int = 0) -> dict[str, Any] | None:
        for m in self.messages[after:]:
            if m["type"] == msg_type and matches(m["data"], where):
                return m
        return None

    def of_type(self, msg_type: str, after: int = 0) -> list[dict[str, Any]]:
        return [m for m in self.messages[after:] if m["type"] == msg_type]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every event and every 50 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ScenarioFailed(f"timeout after {timeout:.1f} s waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.05))
            except TimeoutError:
                pass

    async def wait_message(
        self,
        msg_type: str,
        where: Where = None,
        *,
        after: int = 0,
        timeout: float = 10.0,
        save_as: str | None = None,
    ) -> dict[str, Any]:
        """The first message of ``msg_type`` at index >= ``after`` matching ``where`` (waits for it)."""
        what = f"message {msg_type} {where if not callable(where) else '<predicate>'} after #{after}"
        msg = await self.wait_for(lambda: self.find(msg_type, where, after), timeout, what)
        if save_as:
            self.event("saved", name=save_as, index=msg["index"], type=msg_type, data=msg["data"])
        return msg

    async def no_message(self, msg_type: str, for_s: float, where: Where = None) -> None:
        after = self.mark()
        await asyncio.sleep(for_s)
        found = self.find(msg_type, where, after)
        self.require(found is None, f"no {msg_type} expected for {for_s:.2f} s, got {found}")

    async def settle_status(self, status: str, since: int, timeout: float = 3.0) -> bool:
        """Soft check that a status_changed event for ``status`` arrived after the first ``since`` ones.

        The SDK resolves connect()/disconnect() and dispatches status_changed independently, so the event can
        trail the awaited call; this keeps the loop running until it is in.
        """
        try:
            await self.wait_for(lambda: status in self.statuses[since:], timeout, f"status_changed({status})")
        except ScenarioFailed as exc:
            return self.check(False, str(exc))
        return True

    def frames_since(self, t_ms: float) -> list[tuple[float, int, int, tuple[int, ...] | None]]:
        with self._frames_lock:
            return [f for f in self.frames if f[0] >= t_ms]

    async def wait_frames(self, count: int, since_ms: float, timeout: float, what: str) -> None:
        await self.wait_for(
            lambda: len(self.frames_since(since_ms)) >= count, timeout, f"{count} frames {what}"
        )

    # ── end ───────────────────────────────────────────────────────────────────────────────────────────

    def finish(self, error: BaseException | None, extra: dict[str, Any] | None = None) -> int:
        """Write results.json, close the logs; returns the exit status (0 = every expectation held)."""
        if error is not None:
            text = f"{type(error).__name__}: {error}"
            if not isinstance(error, ScenarioFailed):
                text += "\n" + "".join(traceback.format_exception(error))
            self.failures.append(text)
        ok = not self.failures
        decodable = sum(1 for f in self.frames if f[3] is not None)
        summary = {
            "ok": ok,
            "failures": self.failures,
            "timings": self.timings,
            "replies": _jsonable(self.replies),
            "statuses": self.statuses,
            "messages": len(self.messages),
            "frames": len(self.frames),
            "decodable_frames": decodable,
            "errors": _jsonable(self.errors),
            "auth_log": self.auth_log.lines,
            **(_jsonable(extra) if extra else {}),
        }
        self.event(
            "done", ok=ok, frames=len(self.frames), messages=len(self.messages), error=self.failures[:1]
        )
        (self.out_dir / "results.json").write_text(json.dumps(summary, indent=1))
        with self._frames_lock:
            self._frames_file.close()
            if self.probes:
                np.savez_compressed(self.out_dir / "probes.npz", **self.probes)
        self._events.close()
        for line in self.failures:
            self.note(f"FAILED: {line}")
        self.note(f"{'ok' if ok else 'FAILED'}: {len(self.messages)} messages, {len(self.frames)} frames")
        return 0 if ok else 1


def api_url() -> str:
    """Where ns_scenario.py says the server is."""
    url = os.environ.get("HELIOS_E2E_API_URL")
    if not url:
        raise SystemExit("HELIOS_E2E_API_URL is not set (run this through tests/e2e/ns_scenario.py)")
    return url.rstrip("/")


def http_json(url: str, timeout: float = 5.0) -> Any:
    """GET a JSON document, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def png_bytes(size: tuple[int, int] = (50, 30)) -> bytes:
    """A small deterministic PNG made with Pillow (gradient + a yellow square)."""
    import io

    from PIL import Image

    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = (np.arange(width) * 5 % 256)[None, :]
    pixels[..., 1] = 80
    pixels[..., 2] = (255 - np.arange(height) * 8 % 256)[:, None]
    pixels[10:20, 10:20] = (255, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG")
    return buf.getvalue()
