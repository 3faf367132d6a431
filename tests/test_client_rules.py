"""Client conformance rules (conformance/client_rules.py): hand-made transcripts for every rule, both ways,
plus live runs of a misbehaving and a well-behaved raw client against the mock."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conformance.client_rules import RULES, Violation, check_record, check_transcript
from conformance.helpers import expect_message, keepalive, violations, wait_for_chunk
from conformance.reference_model import INITIAL_STATE
from conformance.server import HeliosServer
from conformance.server_suite.support import barrier, png, v1_command
from conformance.wire_client import WireClient
from mock_server.wire import reactor_wire_pb as pb

V0, V1 = 1001, 2000
IMAGE = {"upload_id": "up-1", "name": "ref.png", "mime_type": "image/png", "size": 15}


class T:
    """A transcript under construction: entries at increasing times, as GET …/transcript returns them."""

    def __init__(self) -> None:
        self.t = 0.0
        self.entries: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.model: dict[str, Any] = copy.deepcopy(INITIAL_STATE)

    def add(self, direction: str, kind: str, *, dt: float = 0.01, **fields: Any) -> T:
        self.t += dt
        self.entries.append({"t": round(self.t, 4), "direction": direction, "kind": kind, **fields})
        return self

    def wait(self, seconds: float) -> T:
        self.t += seconds
        return self

    def offer(self, cid: int = V0, codec: str = "v0") -> T:
        return self.add("event", "answered offer", connection_id=cid, body={"codec": codec})

    def ready(self, cid: int = V0, codec: str = "v0") -> T:
        self.offer(cid, codec).add("event", "connection ready", connection_id=cid)
        return self.state(cid)

    def state(self, cid: int = V0, **changes: Any) -> T:
        self.model = {**self.model, **changes}
        body = {"type": "state", "data": dict(self.model), "reply_to": ""}
        return self.add("out", "ModelMessageOut", connection_id=cid, body=body)

    def cmd(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        uploads: dict[str, Any] | None = None,
        cid: int = V0,
        rid: str = "",
        channel: str = "data",
    ) -> T:
        body = {"type": name, "data": data or {}, "uploads": uploads or {}, "request_id": rid}
        fields: dict[str, Any] = {"request_id": rid} if rid else {}
        chunk = self.model["current_chunk"]
        return self.add(
            "in", "CommandIn", connection_id=cid, channel=channel, chunk=chunk, body=body, **fields
        )

    def refusal(self, command: str, reason: str, type_: str = "command_error", cid: int = V0) -> T:
        body = {"type": type_, "data": {"command": command, "reason": reason}, "reply_to": ""}
        return self.add("out", "ModelMessageOut", connection_id=cid, body=body)

    def http(self, method: str, path: str, status: int) -> T:
        return self.add("http", f"{method} {path}", body={"status": status})

    def inbound(
        self, kind: str, body: dict[str, Any], cid: int = V0, channel: str = "data", rid: str = ""
    ) -> T:
        fields: dict[str, Any] = {"request_id": rid} if rid else {}
        return self.add("in", kind, connection_id=cid, channel=channel, chunk=0, body=body, **fields)

    def ping(self, cid: int = V0, channel: str = "data") -> T:
        return self.inbound("Ping", {}, cid, channel)

    def put(self, upload_id: str = "up-1") -> T:
        return self.http("PUT", f"/uploads/{upload_id}", 200)

    def announce(self, upload_id: str = "up-1", cid: int = V0) -> T:
        return self.inbound("FileUploaded", {**IMAGE, "upload_id": upload_id}, cid)

    def prompt(self, text: str = "a fox", cid: int = V0) -> T:
        self.cmd("set_prompt", {"prompt": text}, cid=cid)
        schedule = {**self.model["scheduled_prompts"], "0": text}
        return self.state(cid, scheduled_prompts=schedule)

    def started(self, cid: int = V0, chunk: int = 0) -> T:
        self.prompt(cid=cid).cmd("start", cid=cid)
        return self.state(cid, started=True, running=True, scheduled_prompts={}, current_chunk=chunk)

    def reject(self, code: str, message: str, command: str | None = None, cid: int = V0) -> T:
        self.t += 0.01
        self.rejections.append(
            {
                "t": round(self.t, 4),
                "connection_id": cid,
                "code": code,
                "message": message,
                "command": command,
            }
        )
        return self

    def transcript(self) -> dict[str, Any]:
        return {
            "session_id": "local",
            "mode": "local",
            "entries": self.entries,
            "rejections": self.rejections,
        }


def ids(t: T, **options: Any) -> list[str]:
    return [v.rule_id for v in check_transcript(t.transcript(), **options)]


Case = tuple[str, Callable[[], T], Callable[[], T]]

CASES: list[Case] = [
    ("command-unknown", lambda: T().ready().cmd("warp_speed"), lambda: T().ready().cmd("list_snapshots")),
    (
        "command-invalid",
        lambda: T().ready().cmd("set_seed", {"seed": 3.5}),
        lambda: T().ready().cmd("set_seed", {"seed": 3.0}),  # integral doubles are integers
    ),
    (
        "upload-in-data",
        lambda: T().ready().put().announce().cmd("set_image", {"image": IMAGE}),
        lambda: T().ready().put().announce().cmd("set_image", uploads={"image": IMAGE}),
    ),
    (
        "upload-not-put",
        lambda: T().ready().announce().cmd("set_image", uploads={"image": IMAGE}),
        lambda: T().ready().put().announce().cmd("set_image", uploads={"image": IMAGE}),
    ),
    (
        "upload-not-announced",
        lambda: T().ready().put().cmd("set_image", uploads={"image": IMAGE}),
        lambda: T().ready().put().announce().cmd("set_image", uploads={"image": IMAGE}),
    ),
    (
        "command-before-ready",
        lambda: (
            T().offer().cmd("set_prompt", {"prompt": "x"}).add("event", "connection ready", connection_id=V0)
        ),
        lambda: T().ready().cmd("set_prompt", {"prompt": "x"}),
    ),
    ("start-without-prompt", lambda: T().ready().cmd("start"), lambda: T().ready().prompt().cmd("start")),
    (
        "start-while-started",
        lambda: T().ready().started().cmd("start"),
        lambda: T().ready().started().cmd("reset").state(**T().model).prompt().cmd("start"),
    ),
    ("pause-not-running", lambda: T().ready().cmd("pause"), lambda: T().ready().started().cmd("pause")),
    (
        "resume-not-paused",
        lambda: T().ready().started().cmd("resume"),
        lambda: T().ready().started().cmd("pause").state(running=False, paused=True).cmd("resume"),
    ),
    (
        "snapshot-not-started",
        lambda: T().ready().cmd("save_snapshot", {"label": "a"}),
        lambda: T().ready().started().cmd("save_snapshot", {"label": "a"}),
    ),
    (
        "prompt-in-past",
        lambda: T().ready().started(chunk=5).cmd("schedule_prompt", {"prompt": "b", "chunk": 3}),
        lambda: T().ready().started(chunk=5).cmd("schedule_prompt", {"prompt": "b", "chunk": 6}),
    ),
    (  # the current chunk is in the past only while it is in progress: the server's refusal decides
        "prompt-in-past",
        lambda: (
            T()
            .ready()
            .started(chunk=5)
            .cmd("schedule_prompt", {"prompt": "b", "chunk": 5})
            .refusal("schedule_prompt", "chunk 5 is in the past (earliest is 6)")
        ),
        lambda: T().ready().started(chunk=5).cmd("schedule_prompt", {"prompt": "b", "chunk": 5}),
    ),
    (
        "prompt-empty",
        lambda: T().ready().cmd("set_prompt", {"prompt": "  "}),
        lambda: T().ready().cmd("set_prompt", {"prompt": "a calm lake"}),
    ),
    (
        "command-refused",
        lambda: T().ready().started().cmd("rewind").refusal("rewind", "no snapshots", "rewind_failed"),
        lambda: T().ready().started().cmd("save_snapshot").cmd("rewind"),
    ),
    (
        "request-id-missing",
        lambda: T().ready(V1, "v1").cmd("set_prompt", {"prompt": "x"}, cid=V1),
        lambda: T().ready(V1, "v1").cmd("set_prompt", {"prompt": "x"}, cid=V1, rid="data_1"),
    ),
    (
        "request-id-missing",
        lambda: (
            T()
            .ready(V1, "v1")
            .reject("malformed_frame", "DataClientMessage request has no request_id", cid=V1)
        ),
        lambda: T().ready().cmd("set_prompt", {"prompt": "x"}),  # v0 has no request ids at all
    ),
    (
        "request-id-reused",
        lambda: (
            T()
            .ready(V1, "v1")
            .cmd("list_snapshots", cid=V1, rid="data_1")
            .cmd("list_snapshots", cid=V1, rid="data_1")
        ),
        lambda: (
            T()
            .ready(V1, "v1")
            .cmd("list_snapshots", cid=V1, rid="data_1")
            .cmd("list_snapshots", cid=V1, rid="data_2")
            .inbound("RequestSchema", {"request_id": "data_1"}, V1, "control", rid="data_1")
        ),  # other channel
    ),
    (
        "frame-malformed",
        lambda: (
            T().ready().reject("malformed_frame", "frame is not valid JSON (Expecting value at position 0)")
        ),
        lambda: (
            T()  # a rejection of a decoded command is judged from its entry (here: a server crash)
            .ready()
            .cmd("list_snapshots")
            .reject("internal_error", "list_snapshots: the mock failed", command="list_snapshots")
        ),
    ),
    (
        "ping-missing",
        lambda: T().ready().ping().wait(4.0).ping().wait(9.0).ping().wait(1.0).ping(),
        lambda: T().ready().wait(4.9).ping().wait(5.0).ping().wait(5.0).ping().wait(3.0).ping(),
    ),
    (
        "ping-missing",  # v1 clients ping every 10 s
        lambda: (
            T().ready(V1, "v1").ping(V1, "control").wait(20.0).add("event", "peer closed", connection_id=V1)
        ),
        lambda: (
            T()
            .ready(V1, "v1")
            .ping(V1, "control")
            .wait(9.5)
            .ping(V1, "control")
            .wait(9.5)
            .ping(V1, "control")
            .wait(5.0)
            .add("event", "peer closed", connection_id=V1)
        ),
    ),
    (
        "after-stop",
        lambda: (
            T()
            .http("POST", "/sessions", 201)
            .http("DELETE", "/sessions/sess_1", 200)
            .http("GET", "/sessions/sess_1", 200)
        ),
        lambda: (
            T()
            .http("POST", "/sessions", 201)
            .http("GET", "/sessions/sess_1", 200)
            .http("DELETE", "/sessions/sess_1", 200)
        ),
    ),
    (
        "after-stop",
        lambda: T().ready().http("POST", "/stop_session", 200).cmd("list_snapshots"),
        lambda: T().ready().cmd("list_snapshots").add("event", "session_ended", body={"reason": "stop"}),
    ),
    (
        "track-unknown",
        lambda: T().ready(V1, "v1").inbound("TrackVerb", {"verb": "pause", "name": "webcam"}, V1, "control"),
        lambda: (
            T().ready(V1, "v1").inbound("TrackVerb", {"verb": "resume", "name": "main_video"}, V1, "control")
        ),
    ),
    (
        "track-publish",
        lambda: (
            T()
            .ready(V1, "v1")
            .inbound(
                "TrackVerb",
                {"verb": "publish", "name": "cam", "request_id": "ctrl_1"},
                V1,
                "control",
                "ctrl_1",
            )
        ),
        lambda: (
            T().ready(V1, "v1").inbound("TrackVerb", {"verb": "pause", "name": "main_video"}, V1, "control")
        ),
    ),
    (
        "step-request",
        lambda: T().ready(V1, "v1").inbound("RequestStep", {"request_id": "data_1"}, V1, rid="data_1"),
        lambda: T().ready(V1, "v1").cmd("list_snapshots", cid=V1, rid="data_1"),
    ),
    (
        "http-error",
        lambda: T().http("POST", "/start_session", 200).http("POST", "/sessions/local/uploads", 422),
        lambda: (
            T()
            .http("POST", "/start_session", 200)
            .http("POST", "/sessions/local/uploads", 201)
            .http("DELETE", "/sessions/sess_1", 404)
        ),  # JS deletes a session the server already ended: fine
    ),
    (
        "command-after-end",
        lambda: T().ready().add("event", "session_ended", body={"reason": "x"}).cmd("set_seed", {"seed": 1}),
        lambda: T().ready().cmd("set_seed", {"seed": 1}).add("event", "session_ended", body={"reason": "x"}),
    ),
    (
        "no-delete-after-end",
        lambda: (
            T()
            .http("POST", "/sessions", 201)
            .add("event", "session_ended", dt=0.3, body={"reason": "the GPU worker failed"})
        ),
        lambda: (
            T()
            .http("POST", "/sessions", 201)
            .add("event", "session_ended", dt=0.3, body={"reason": "the GPU worker failed"})
            .http("DELETE", "/sessions/sess_1", 404)
        ),
    ),
    (
        "poll-too-fast",
        lambda: (
            T()
            .http("POST", "/sessions", 201)
            .http("GET", "/sessions/sess_1", 200)
            .http("GET", "/sessions/sess_1", 200)
        ),
        lambda: (
            T()
            .http("POST", "/sessions", 201)
            .http("GET", "/sessions/sess_1", 200)
            .wait(0.2)
            .http("GET", "/sessions/sess_1", 200)
            .wait(0.4)
            .http("GET", "/sessions/sess_1", 200)
            .http("DELETE", "/sessions/sess_1", 200)
        ),
    ),
    (
        "reconnect-after-grace",
        lambda: (
            T()
            .http("POST", "/start_session", 200)
            .add("event", "session_ended", body={"reason": "no client reconnected within 30 s"})
            .http("PUT", "/sessions/local/transport/webrtc/sdp_params", 404)
        ),
        lambda: (
            T()
            .http("POST", "/start_session", 200)
            .http("PUT", "/sessions/local/transport/webrtc/sdp_params", 202)
            .add("event", "session_ended", body={"reason": "no client reconnected within 30 s"})
        ),
    ),
]


@pytest.mark.parametrize(("rule", "bad", "good"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fires_on_the_bad_transcript_and_nothing_fires_on_the_good_one(
    rule: str, bad: Callable[[], T], good: Callable[[], T]
) -> None:
    assert rule in ids(bad()), check_transcript(bad().transcript())
    assert check_transcript(good().transcript()) == []


def test_every_rule_has_cases() -> None:
    assert {c[0] for c in CASES} == set(RULES)
    assert all(len(text) < 110 and "\n" not in text for text in RULES.values())


def test_violation_names_rule_entry_and_place() -> None:
    (violation,) = check_transcript(T().ready().cmd("warp_speed").transcript())
    assert violation.rule_id == "command-unknown"
    assert violation.entry is not None and violation.entry["body"]["type"] == "warp_speed"
    assert str(violation).startswith(
        "[command-unknown] unknown command 'warp_speed' (session local, connection"
    )


def test_a_refusal_explained_by_a_specific_rule_is_not_reported_twice() -> None:
    t = T().ready().cmd("start").refusal("start", "no prompt scheduled at chunk 0")
    assert ids(t) == ["start-without-prompt"]
    t = T().ready().started().cmd("set_image", uploads={"image": IMAGE})
    t.refusal("set_image", "image could not be decoded")
    assert ids(t) == ["upload-not-put", "upload-not-announced"]


def test_refusal_of_another_command_is_not_attributed() -> None:
    t = T().ready().started().cmd("list_snapshots").refusal("rewind", "no snapshots", "rewind_failed")
    assert ids(t) == []


def test_ping_rule_waits_for_a_long_enough_connection_and_scales_with_tolerance() -> None:
    short = T().ready().wait(6.0).add("event", "peer closed", connection_id=V0)
    assert ids(short) == []  # 6 s < 5 s × 1.5
    assert ids(short, ping_tolerance=1.0) == ["ping-missing"]
    assert ids(short, ping_tolerance=1.0, ignore=["ping-missing"]) == []
    reconnect = T().ready().wait(6.0).ready().ping().wait(4.0).ping()  # each transport life is judged alone
    assert ids(reconnect) == []


def test_codec_comes_from_evidence_or_the_record() -> None:
    # provisional v0, but the connection acked a request id: v1 rules apply (10 s pings)
    t = T().ready(V1, "v0").cmd("list_snapshots", cid=V1, rid="data_1").add("out", "AckOut", connection_id=V1)
    t.wait(12.0).ping(V1, "control")
    assert ids(t) == []
    t = T().ready(V1, "v0").cmd("list_snapshots", cid=V1)
    assert ids(t) == []
    assert [v.rule_id for v in check_transcript(t.transcript(), codecs={V1: "v1"})] == ["request-id-missing"]


def test_check_record_reads_the_admin_record() -> None:
    t = T().ready(V1, "v0").cmd("warp", cid=V1)
    view = {
        "session_id": "sess_1",
        "connections": [{"connection_id": V1, "codec": "v1"}],
        "rejections": [],
        "entries": t.entries,
    }
    found = check_record({"sessions": [view, {**view, "session_id": "sess_2"}]})
    assert [(v.rule_id, v.session_id) for v in found] == [
        ("request-id-missing", "sess_1"),
        ("command-unknown", "sess_1"),
        ("request-id-missing", "sess_2"),
        ("command-unknown", "sess_2"),
    ]
    assert [v.rule_id for v in check_record(t.transcript())] == ["command-unknown"]  # a transcript works too


def test_check_record_without_entries_uses_the_summary() -> None:
    view = {
        "session_id": "local",
        "connections": [],
        "rejections": [],
        "http": [{"method": "POST", "path": "/sessions/local/uploads", "status": 400, "t": 0.1}],
        "commands": [{"connection_id": V0, "type": "pause", "chunk": 0, "t": 0.2}],
    }
    assert [v.rule_id for v in check_record({"sessions": [view]})] == ["http-error", "pause-not-running"]


def test_violation_is_a_value() -> None:
    v = Violation("after-stop", "x", {"t": 1.0})
    assert v == Violation("after-stop", "x", {"t": 1.0}) and str(v) == "[after-stop] x (t=1s)"


# ------------------------------------------------------------------------------------------ live


async def test_live_misbehaving_clients_are_caught(helios: HeliosServer, helios_client) -> None:
    """A raw v0 and v1 client break rules on purpose; the record shows exactly the expected rule ids."""
    js: WireClient = await helios_client(wire="v0")
    js.send_command("warp_speed")  # command-unknown
    js.send_command("set_seed", {"seed": 3.5})  # command-invalid
    js.send_command("start")  # start-without-prompt
    js.send_command("pause")  # pause-not-running
    js.send_command("save_snapshot")  # snapshot-not-started
    js.send_command("set_prompt", {"prompt": "   "})  # prompt-empty
    js.send_raw("data", "{not json")  # frame-malformed
    ghost = {**IMAGE, "upload_id": "never-created"}
    js.send_command("set_image", uploads={"image": ghost})  # upload-not-put + upload-not-announced
    js.send_command("set_prompt", {"prompt": "a red fox"})
    js.send_command("start")
    await wait_for_chunk(js, 1)
    js.send_command("resume")  # resume-not-paused
    js.send_command("start")  # start-while-started
    mark = js.now()
    js.send_command("schedule_prompt", {"prompt": "too late", "chunk": 0})  # prompt-in-past
    await expect_message(js, "command_error", {"command": "schedule_prompt"}, since=mark)

    py: WireClient = await helios_client(wire="v1")  # joins the same local session
    assert (await v1_command(py, "list_snapshots")).type == "snapshot_list"
    reused = pb.DataClientMessage(request_id="data_1", kind=pb.MessageKind.MESSAGE_KIND_REQUEST)
    reused.command.type = "list_snapshots"
    py.send_raw("data", reused.SerializeToString())  # request-id-reused
    notify = pb.DataClientMessage(kind=pb.MessageKind.MESSAGE_KIND_NOTIFICATION)
    notify.command.type = "list_snapshots"
    py.send_raw("data", notify.SerializeToString())  # request-id-missing (no reply can be correlated)
    anonymous = pb.DataClientMessage(kind=pb.MessageKind.MESSAGE_KIND_REQUEST)
    anonymous.command.type = "list_snapshots"
    py.send_raw("data", anonymous.SerializeToString())  # request-id-missing (rejected)
    py.request_control("publish_track", pb.PublishTrack(name="webcam"))  # track-publish
    py.notify_control("pause_track", pb.PauseTrack(name="webcam"))  # track-unknown
    step = pb.DataClientMessage(request_id="data_9", kind=pb.MessageKind.MESSAGE_KIND_REQUEST)
    step.request_step.SetInParent()
    py.send_raw("data", step.SerializeToString())  # step-request
    await py.reply("data_9")
    async with httpx.AsyncClient(base_url=helios.url) as http:  # http-error
        await http.post(
            "/sessions/local/uploads", json={"name": "x.png", "size": 0, "mime_type": "image/png"}
        )
    assert (await v1_command(py, "list_snapshots")).type == "snapshot_list"

    found = violations(helios, ping_tolerance=1000)  # keep-alives are judged below
    assert sorted({v.rule_id for v in found}) == sorted(
        {
            "command-unknown",
            "command-invalid",
            "start-without-prompt",
            "pause-not-running",
            "snapshot-not-started",
            "prompt-empty",
            "frame-malformed",
            "upload-not-put",
            "upload-not-announced",
            "resume-not-paused",
            "start-while-started",
            "prompt-in-past",
            "request-id-reused",
            "request-id-missing",
            "track-publish",
            "track-unknown",
            "step-request",
            "http-error",
        }
    ), "\n".join(map(str, found))
    assert sum(v.rule_id == "request-id-missing" for v in found) == 2
    # neither raw client pings: with a small tolerance (0.5 s for v0, 1 s for v1) both are caught
    await asyncio.sleep(1.2)
    missing = [v for v in violations(helios, ping_tolerance=0.1) if v.rule_id == "ping-missing"]
    assert {v.entry["connection_id"] for v in missing if v.entry} == {
        js.connection_id or 1001,
        py.connection_id,
    }


async def test_live_session_after_delete_is_caught(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1", mode="production")
    await client.command("set_prompt", {"prompt": "ok"})
    headers = {"Authorization": f"Bearer {helios.token}"}
    async with httpx.AsyncClient(base_url=helios.url, headers=headers) as http:
        assert (await http.delete(f"/sessions/{client.session_id}")).status_code == 200
        await http.get(f"/sessions/{client.session_id}")  # after-stop
    transcript = helios.transcript(str(client.session_id))
    assert [v.rule_id for v in check_transcript(transcript)] == ["after-stop"]


async def test_live_well_behaved_clients_have_no_violations(helios: HeliosServer, helios_client) -> None:
    js: WireClient = await helios_client(wire="v0")
    py: WireClient = await helios_client(wire="v1")
    async with keepalive(js), keepalive(py):
        ref = await py.upload(png((50, 30), (200, 40, 40)))
        assert (await v1_command(py, "set_prompt", {"prompt": "a calm lake"})).type == "prompt_accepted"
        assert (await v1_command(py, "set_image", uploads={"image": ref})).type == "image_accepted"
        await py.command("start")
        await wait_for_chunk(js, 1)
        js.send_command("pause")
        await expect_message(js, "state", {"paused": True})
        js.send_command("save_snapshot", {"label": "here"})
        await expect_message(js, "snapshot_saved")
        js.send_command("resume")
        await expect_message(js, "generation_resumed")
        assert (await v1_command(py, "rewind")).type == "rewind_complete"
        for client in (js, py):  # the server has handled (and recorded) everything both clients sent
            await barrier(client)
    assert violations(helios) == [], json.dumps(helios.record(), indent=1)[:4000]
