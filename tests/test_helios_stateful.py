"""Stateful property tests: Helios against the independent reference model (conformance.reference_model).

(a) ``PureHeliosMachine`` drives the pure ``mock_server.model.helios.Helios`` in process: every command
    (valid and invalid) and explicit chunk begin/complete steps, each result compared with the reference.
(b) ``WireHeliosMachine`` drives the mock over the real wire (raw aiortc client, v1 protobuf, one fresh local
    session per example) and checks replies, broadcasts, ``state``, ``chunk_complete`` and the frames' marker
    band against the same reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conformance.reference_model import (
    PARAM_SPECS,
    ImageOK,
    ImageRefused,
    Msg,
    Plan,
    ReferenceHelios,
    RefRejected,
    check_params,
)
from conformance.server import HeliosServer
from conformance.server_suite.support import Stream, check_message, described, server_arg
from conformance.strategies import (
    INVALID_CATEGORIES,
    CommandCase,
    UploadPlaceholder,
    invalid_commands,
    prompts,
    valid_commands,
)
from conformance.wire_client import Received, WireClient
from mock_server.media.markers import prompt_id
from mock_server.model.commands import COMMANDS, CommandRejected, validate_command
from mock_server.model.helios import Helios
from mock_server.model.helios import Message as HeliosMessage
from mock_server.model.images import UploadedFile, image_id_of
from mock_server.wire import reactor_wire_pb as pb

T = TypeVar("T")
SR_FACTORS = {"off": 1, "2x": 2, "4x": 4}
PURE_INVALID = tuple(c for c in INVALID_CATEGORIES if c != "unresolved_upload")  # needs an upload store


def test_reference_knows_exactly_the_mock_commands() -> None:
    assert list(PARAM_SPECS) == list(COMMANDS)
    for name, model in COMMANDS.items():
        assert set(PARAM_SPECS[name]) == set(model.model_fields), name


def image_input(placeholder: UploadPlaceholder) -> ImageOK | ImageRefused:
    data, _, _ = placeholder.payload()
    if placeholder.decodable:
        return ImageOK(placeholder.width, placeholder.height, image_id_of(data))
    assert placeholder.refusal is not None
    return ImageRefused(placeholder.refusal)


def pairs(messages: tuple[HeliosMessage, ...] | tuple[Msg, ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(m.type, m.data) for m in messages]


# ======================================================================================== (a) in process


# Extra rules over command subsets make the rarer paths (pause/resume, snapshots, rewinds) frequent.
CONTROL = valid_commands(("pause", "resume", "start", "reset"), weights={"pause": 3, "resume": 3})
SNAPSHOTS = valid_commands(("save_snapshot", "rewind", "list_snapshots"))
PRELUDES = ("fresh", "prompted", "running", "running")
PRELUDE_COMMANDS = {
    "fresh": (),
    "prompted": (CommandCase("set_prompt", {"prompt": "a red fox"}),),
    "running": (CommandCase("set_prompt", {"prompt": "a red fox"}), CommandCase("start")),
}


class PureHeliosMachine(RuleBasedStateMachine):
    """The pure Helios and the reference, fed the same commands and chunk steps, must agree on everything."""

    def __init__(self) -> None:
        super().__init__()
        self.helios = Helios(draw_seed=functools.partial(next, itertools.count(70_000)))
        self.ref = ReferenceHelios(draw_seed=functools.partial(next, itertools.count(70_000)))
        self.uploads = itertools.count(1)
        # chunk -> prompt promised by a prompt_accepted answer; checked against the plan of that chunk
        self.promised: dict[int, str] = {}

    # -------------------------------------------------------------- helpers

    def _files(self, case: CommandCase) -> tuple[dict[str, dict[str, Any]], dict[str, UploadedFile], Any]:
        refs: dict[str, dict[str, Any]] = {}
        files: dict[str, UploadedFile] = {}
        image: ImageOK | ImageRefused | None = None
        for param, placeholder in case.uploads.items():
            data, name, mime = placeholder.payload()
            upload_id = f"u-{next(self.uploads)}"
            refs[param] = {"upload_id": upload_id, "name": name, "mime_type": mime, "size": len(data)}
            files[param] = UploadedFile(upload_id, name, mime, data)
            image = image_input(placeholder)
        return refs, files, image

    def _send(self, case: CommandCase) -> tuple[Any, Any]:
        refs, files, image = self._files(case)
        params = case.merged(refs)
        validated = validate_command(case.name, params)
        before = self.helios.state_message()
        in_progress, current = self.helios.chunk_in_progress, self.helios.current_chunk
        out = self.helios.handle(case.name, validated, files)
        exp = self.ref.apply(case.name, params, image)
        event(f"pure: {case.name} {'accepted' if exp.accepted else 'refused'}")

        for msg in (*out.broadcasts, out.answer, out.state):
            if msg is not None:
                check_message(msg.type, msg.data)
        assert out.accepted == exp.accepted, (case, out, exp)
        assert pairs(out.broadcasts) == pairs(exp.broadcasts)
        assert (out.answer and (out.answer.type, out.answer.data)) == (exp.answer and exp.answer.pair())
        assert (out.state and out.state.data) == (exp.state and exp.state.data)
        if not out.accepted:
            assert self.helios.state_message() == before, "a refusal changed the state"
            return out, exp
        for msg in (*out.broadcasts, out.answer):
            if msg is not None and msg.type == "prompt_accepted":
                chunk = msg.data["chunk"]
                self.promised[chunk] = msg.data["prompt"]
                if in_progress and chunk == current + 1:
                    event("pure: prompt scheduled mid-chunk for the next chunk")
        if case.name == "reset":
            self.promised.clear()
        elif case.name == "rewind":
            self.promised = {k: v for k, v in self.promised.items() if k >= self.ref.earliest}
        return out, exp

    # -------------------------------------------------------------- rules

    @initialize(prelude=st.sampled_from(PRELUDES))
    def prelude(self, prelude: str) -> None:
        """Most examples start from a prompted or generating model, so running paths get explored."""
        for case in PRELUDE_COMMANDS[prelude]:
            self._send(case)
        if prelude == "running":
            self.begin()

    @rule(case=valid_commands())
    def command(self, case: CommandCase) -> None:
        check_params(case.name, case.merged(self._files(case)[0]))  # the reference agrees it is valid
        self._send(case)

    @rule(case=CONTROL)
    def control(self, case: CommandCase) -> None:
        self._send(case)

    @precondition(lambda self: self.ref.started)
    @rule(case=SNAPSHOTS)
    def snapshots(self, case: CommandCase) -> None:
        self._send(case)

    @rule(case=invalid_commands(PURE_INVALID))
    def invalid(self, case: CommandCase) -> None:
        refs, files, _ = self._files(case)
        params = case.merged(refs)
        event(f"pure: invalid {case.invalid.category if case.invalid else '?'}")
        with pytest.raises(RefRejected):
            check_params(case.name, params)
        with pytest.raises(CommandRejected) as rejected:
            validate_command(case.name, params)
        assert rejected.value.code == "invalid_command" and rejected.value.message
        before = (self.helios.state_message(), self.helios.chunk_in_progress, self.helios.earliest_chunk)
        with pytest.raises(CommandRejected):
            self.helios.handle(case.name, params, files)  # handle validates plain dicts itself
        assert (
            self.helios.state_message(),
            self.helios.chunk_in_progress,
            self.helios.earliest_chunk,
        ) == before

    @precondition(lambda self: self.helios.chunk_in_progress)
    @rule(prompt=prompts(blank=False))
    def prompt_mid_chunk(self, prompt: str) -> None:
        """The documented rule: while chunk N is generated, set_prompt targets chunk N + 1 exactly."""
        n = self.helios.current_chunk
        out, _ = self._send(CommandCase("set_prompt", {"prompt": prompt}))
        assert out.answer is not None and out.answer.type == "prompt_accepted"
        if self.ref.pending_rewind is None:
            assert out.answer.data["chunk"] == n + 1

    @rule()
    def begin(self) -> None:
        plan = self.helios.begin_chunk()
        exp = self.ref.begin_chunk()
        assert (plan is None) == (exp is None)
        if plan is None or exp is None:
            return
        event("pure: chunk begun")
        got = Plan(
            plan.chunk_index, plan.prompt, plan.seed, plan.image_id, plan.image_strength, plan.sr_scale
        )
        assert got == exp
        k = plan.chunk_index
        assert not [c for c in self.promised if c < k], f"prompts promised for {self.promised} never applied"
        if k in self.promised:
            assert plan.prompt == self.promised.pop(k), "the promised prompt is not chunk k's prompt"
            event("pure: promised prompt applied at its chunk")

    @rule()
    def complete(self) -> None:
        done = self.helios.complete_chunk()
        exp = self.ref.complete_chunk()
        for msg in done:
            check_message(msg.type, msg.data)
        assert pairs(done) == pairs(exp)

    # -------------------------------------------------------------- invariants

    @invariant()
    def agrees_with_reference(self) -> None:
        h, ref = self.helios, self.ref
        state = h.state_message()
        check_message(state.type, state.data)
        assert state.data == ref.state().data
        assert state.data["running"] == (state.data["started"] and not state.data["paused"])
        assert state.data["current_frame"] == 33 * state.data["current_chunk"]
        assert (h.running, h.chunk_in_progress, h.current_chunk) == (
            ref.running,
            ref.in_progress,
            ref.current_chunk,
        )
        assert h.earliest_chunk == ref.earliest
        assert all(int(k) >= ref.earliest for k in state.data["scheduled_prompts"])
        assert (h.seed, h.effective_seed, h.sr_scale) == (ref.seed, ref.effective_seed, ref.sr_scale)
        assert (h.image.image_id if h.image else 0) == (ref.image.image_id if ref.image else 0)


PURE_SETTINGS = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


TestPureHeliosMatchesTheReference = PureHeliosMachine.TestCase
TestPureHeliosMatchesTheReference.settings = PURE_SETTINGS


# ======================================================================================== (b) over the wire

WIRE_STATS: Counter[str] = Counter()


def _tracked(method: Callable[..., T]) -> Callable[..., T]:
    """Remember that a step failed, so that teardown only cleans up (and does not mask the failure)."""

    @functools.wraps(method)
    def wrapper(self: WireHeliosMachine, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.failed = True
            raise

    return wrapper


class WireHeliosMachine(RuleBasedStateMachine):
    """The mock over the real wire (v1), one fresh local session per example, against the reference."""

    server: HeliosServer  # set by the test before running
    native: tuple[int, int] | None = None
    chunk_seconds = 33 / 24

    def __init__(self) -> None:
        super().__init__()
        self.failed = False
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.ref = ReferenceHelios()  # seed -1 draws on the server: unknown here
        self.client = WireClient(self.server.url, wire="v1", token=self.server.token)
        self.stream = Stream(self.client)  # only its plain ordered reader (next) is used
        self.ghosts = itertools.count(1)
        WIRE_STATS["examples"] += 1
        started = time.monotonic()
        self._run(self._open())
        WIRE_STATS["connect_seconds_x1000"] += round(1000 * (time.monotonic() - started))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def _open(self) -> None:
        await self.client.connect()  # POST /start_session, offer, greeting state
        self.client.notify_control("resume_track", pb.ResumeTrack(name="main_video"))
        greeting = await self._next()
        assert (greeting.scope, greeting.type) == ("application", "state"), greeting
        assert greeting.data == self.ref.state().data, "greeting state of a fresh session"

    # -------------------------------------------------------------- stream

    async def _next(self, timeout: float = 10.0) -> Received:
        return await self.stream.next(timeout)

    async def _chunk_event(self, item: Received) -> None:
        """A ``chunk_complete`` (and the ``state`` right behind it), compared with the reference."""
        exp = self.ref.complete_chunk()
        assert exp, f"chunk_complete {item.data} while no chunk is in progress"
        assert item.data == exp[0].data, "chunk_complete"
        state = await self._next()
        assert (state.scope, state.type) == ("application", "state"), f"after chunk_complete: {state}"
        assert state.data == exp[1].data, "state after chunk_complete"
        self.ref.begin_chunk()  # the clock starts the next chunk at once while running
        WIRE_STATS["chunks completed"] += 1

    async def _uploads(self, case: CommandCase) -> tuple[dict[str, dict[str, Any]], Any]:
        refs: dict[str, dict[str, Any]] = {}
        image: ImageOK | ImageRefused | None = None
        for param, placeholder in case.uploads.items():
            data, name, mime = placeholder.payload()
            if placeholder.kind == "unresolved":
                ghost = f"never-created-{next(self.ghosts)}"
                refs[param] = {"upload_id": ghost, "name": name, "mime_type": mime, "size": 1}
                continue
            refs[param] = await self.client.upload(data, name=name, mime_type=mime)
            image = image_input(placeholder)
        return refs, image

    async def _exchange(self, case: CommandCase) -> None:
        refs, image = await self._uploads(case)
        request_id = self.client.send_command(case.name, case.params, refs or None)
        await self.client.reply(request_id, timeout=15)
        block: list[Received] = []  # the command's broadcasts, before its reply
        while True:
            item = await self._next()
            if item.request_id == request_id:
                reply = item
                break
            assert item.scope == "application", f"unexpected frame {item}"
            if item.type == "chunk_complete":
                assert not block, f"chunk_complete inside the frames of {case.name}: {block}"
                await self._chunk_event(item)
                continue
            assert item.type != "state", "a state that follows neither an accepted command nor a chunk"
            block.append(item)

        if case.invalid is not None:
            WIRE_STATS[f"rejected ({case.invalid.code})"] += 1
            assert (reply.scope, reply.type) == ("error", case.invalid.code), (case, reply)
            assert reply.data, "an Error needs a message a person can act on"
            assert not block, f"a runtime rejection broadcast {block}"
            if case.invalid.category != "unresolved_upload":
                with pytest.raises(RefRejected):
                    check_params(case.name, case.merged(refs))
            return

        exp = self.ref.apply(case.name, case.merged(refs), image)
        WIRE_STATS["accepted" if exp.accepted else "refused"] += 1
        event(f"wire: {case.name} {'accepted' if exp.accepted else 'refused'}")
        assert [(b.type, b.data) for b in block] == [m.pair() for m in exp.broadcasts], case
        if exp.answer is not None:
            assert (reply.scope, reply.type, reply.data) == ("reply", *exp.answer.pair()), case
        else:
            assert reply.scope == "ack", (case, reply)
        if exp.state is not None:
            state = await self._next()
            assert (state.scope, state.type) == ("application", "state"), f"after {case.name}: {state}"
            assert state.data == exp.state.data, f"state after {case.name}"
        self.ref.begin_chunk()  # start / resume: the chunk clock begins the next chunk at once

    async def _chunks(self, n: int) -> None:
        """Let ``n`` chunks complete (one if pausing), then check that an idle session stays quiet."""
        for _ in range(n):
            if not self.ref.in_progress:
                break
            item = await self._next(timeout=10)
            assert (item.scope, item.type) == ("application", "chunk_complete"), item
            await self._chunk_event(item)
        if not self.ref.running and not self.ref.in_progress:
            # What must stay silent is the chunk clock, which nothing the client sends triggers: the check
            # is a window of three chunk periods, closed by a round-trip barrier (list_snapshots, read-only)
            # so that whatever the server sent during the window has arrived and is judged.
            seen = len(self.client.received)
            await asyncio.sleep(3 * self.chunk_seconds)
            await self._exchange(CommandCase("list_snapshots"))  # fails on any chunk event or broadcast
            extra = [r for r in self.client.received[seen:] if r.type not in ("snapshot_list", "state")]
            assert not extra and self.stream.cursor == len(self.client.received), (
                f"a paused/stopped session sent {described(self.client.received[seen:])} "
                "(pause must finish only the current chunk)"
            )
            WIRE_STATS["idle checks"] += 1

    # -------------------------------------------------------------- rules

    @initialize(prelude=st.sampled_from(("fresh", "prompted", "running", "running", "running")))
    @_tracked
    def prelude(self, prelude: str) -> None:
        for case in PRELUDE_COMMANDS[prelude]:
            self._run(self._exchange(case))

    @rule(case=valid_commands())
    @_tracked
    def command(self, case: CommandCase) -> None:
        self._run(self._exchange(case))

    @rule(case=CONTROL)
    @_tracked
    def control(self, case: CommandCase) -> None:
        self._run(self._exchange(case))

    @precondition(lambda self: self.ref.started)
    @rule(case=SNAPSHOTS)
    @_tracked
    def snapshots(self, case: CommandCase) -> None:
        self._run(self._exchange(case))

    @precondition(lambda self: not self.ref.running and not self.ref.in_progress)
    @rule()
    @_tracked
    def stays_quiet(self) -> None:
        """Not running and no chunk in progress (fresh, paused after its chunk, reset): nothing arrives."""
        self._run(self._chunks(0))

    @rule(case=invalid_commands())
    @_tracked
    def invalid(self, case: CommandCase) -> None:
        event(f"wire: invalid {case.invalid.category if case.invalid else '?'}")
        self._run(self._exchange(case))

    @precondition(lambda self: self.ref.in_progress)
    @rule(n=st.integers(1, 3))
    @_tracked
    def wait_chunks(self, n: int) -> None:
        self._run(self._chunks(n))

    # -------------------------------------------------------------- frames

    def _check_frames(self) -> None:
        """Every decoded frame is explained by a chunk the reference planned: same chunk index, prompt id,
        image id, seed (when known) and output size (when the native size is known)."""
        plans = self.ref.plans
        for frame in self.client.frames:
            m = frame.markers
            if m is None:
                WIRE_STATS["frames without markers"] += 1
                continue
            candidates = [
                p
                for p in plans
                if p.chunk_index == m.chunk and (p.seed is None or p.seed & 0xFFFFFFFF == m.seed)
            ]
            matching = [p for p in candidates if self._explains(p, m, frame.width, frame.height)]
            assert matching, (
                f"frame {m} ({frame.width}x{frame.height}) matches no planned chunk of {candidates}"
            )
            WIRE_STATS["frames checked" if len(candidates) == 1 else "frames checked (ambiguous chunk)"] += 1

    def _explains(self, plan: Plan, m: Any, width: int, height: int) -> bool:
        if prompt_id(plan.prompt) != m.prompt_id or plan.image_id != m.image_id:
            return False
        if self.native is not None:
            f = SR_FACTORS[plan.sr_scale]
            return (width, height) == (self.native[0] * f, self.native[1] * f)
        return True

    async def _finish(self) -> None:
        await self._exchange(CommandCase("reset"))  # drains every chunk event still in flight
        await asyncio.sleep(0.15)  # frames of a dropped chunk may still be on their way
        self._check_frames()

    def teardown(self) -> None:
        try:
            if not self.failed:
                self._run(self._finish())
        finally:
            with contextlib.suppress(Exception):
                self._run(self.client.close())
            self._run(_cancel_pending())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            asyncio.set_event_loop(None)


async def _cancel_pending() -> None:
    """Cancel what aiortc left running on this loop (it is closed right after)."""
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


WIRE_SETTINGS = settings(
    max_examples=20,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # "explain" replays far too long
)


def _native_size(server: HeliosServer) -> tuple[int, int] | None:
    resolution = server_arg(server, "--resolution")
    if resolution is None:
        return None
    width, height = resolution.split("x")
    return int(width), int(height)


def _speed(server: HeliosServer) -> float:
    return float(server_arg(server, "--speed") or 1.0)


class TestWireHeliosMatchesTheReference(WireHeliosMachine.TestCase):  # type: ignore[name-defined,misc,valid-type]
    """(b): the plugin's mock server (fast clock, loopback ICE); a fresh local session per example."""

    settings = WIRE_SETTINGS

    @pytest.fixture(autouse=True)
    def _server(self, helios_server: HeliosServer) -> Iterator[None]:
        helios_server.reset()
        WireHeliosMachine.server = helios_server
        WireHeliosMachine.native = _native_size(helios_server)
        WireHeliosMachine.chunk_seconds = 33 / (24 * _speed(helios_server))
        WIRE_STATS.clear()
        started = time.monotonic()
        yield
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(WIRE_STATS.items()))
        print(f"\nwire state machine: {time.monotonic() - started:.1f} s; {summary}")
        assert WIRE_STATS["chunks completed"] > 0 and WIRE_STATS["frames checked"] > 0, WIRE_STATS
