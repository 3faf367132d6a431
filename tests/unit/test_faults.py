"""Fault injection, pure part (mock_server/faults): catalogue validation, registry triggers, files, schema."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_server.errors import NotFound, TooMany, Unprocessable
from mock_server.faults import (
    CHAOS_PRESETS,
    KINDS,
    PARAMS,
    FaultInvalid,
    FaultRegistry,
    FaultSpec,
    chaos_preset,
    fault_schema,
    load_faults,
    parse_fault,
)
from mock_server.faults import registry as registry_module
from mock_server.faults.catalogue import COMMAND_KINDS, CREATION_KINDS, TIMED_KINDS, ModerationParams
from mock_server.schema_files import dumps

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "faults" / "fault.json"


def problems_of(body: Any) -> list[str]:
    with pytest.raises(FaultInvalid) as info:
        parse_fault(body)
    assert info.value.status == 422 and isinstance(info.value, Unprocessable)
    assert info.value.detail == "; ".join(info.value.problems)
    return info.value.problems


def one_problem(body: Any) -> str:
    problems = problems_of(body)
    assert len(problems) == 1, problems
    return problems[0]


# ------------------------------------------------------------------------------------------- catalogue


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_validates_with_default_params(kind: str) -> None:
    spec = parse_fault({"kind": kind})
    assert spec.kind == kind
    assert isinstance(spec.kind_params, PARAMS[kind])
    assert spec.params == PARAMS[kind]().model_dump()  # defaults are filled in


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("queue_wait", {"state": "ACTIVE"}, "params.state (queue_wait)"),
        ("queue_wait", {"seconds": 0}, "params.seconds (queue_wait): Input should be greater than 0"),
        ("queue_wait", {"seconds": 601}, "less than or equal to 600"),
        ("session_refused", {"status": 404}, "params.status (session_refused)"),
        ("session_refused", {"retry_after": 0}, "params.retry_after (session_refused)"),
        (
            "session_refused",
            {"status": 500, "retry_after": 3},
            "retry_after only applies to status 429 or 503",
        ),
        ("session_closed", {"seconds": -1}, "params.seconds (session_closed)"),
        ("session_closed", {"reason": ""}, "params.reason (session_closed): String should have at least 1"),
        ("sdp_timeout", {"seconds": 3}, "params.seconds (sdp_timeout): unknown field; sdp_timeout takes: no"),
        ("sdp_slow", {"seconds": 61}, "params.seconds (sdp_slow)"),
        ("ice_failure", {"candidates": 0}, "ice_failure takes: no parameters"),
        ("gpu_failure", {"reason": "x" * 501}, "params.reason (gpu_failure): String should have at most 500"),
        ("command_error", {"reason": 5}, "params.reason (command_error): Input should be a valid string"),
        ("command_error", {"match": {str(i): i for i in range(11)}}, "params.match (command_error)"),
        (
            "internal_error",
            {"code": "x"},
            "params.code (internal_error): unknown field; internal_error takes",
        ),
        ("slow_chunks", {"factor": 1}, "params.factor (slow_chunks): Input should be greater than 1"),
        ("slow_chunks", {"count": 0}, "params.count (slow_chunks)"),
        ("stall", {"seconds": "long"}, "params.seconds (stall): Input should be a valid number"),
        ("media_loss", {"percent": 101}, "params.percent (media_loss)"),
        ("media_loss", {"seconds": 0}, "params.seconds (media_loss)"),
        ("transport_drop", {"grace": 1}, "transport_drop takes: no parameters"),
        ("moderation", {"action": "ban"}, "params.action (moderation)"),
        ("moderation", {"categories": [""]}, "params.categories.0 (moderation)"),
        ("moderation", {"categories": ["c"] * 11}, "params.categories (moderation)"),
        ("moderation", {"prompt_pattern": "(unclosed"}, "not a valid regular expression"),
        ("moderation", {"prompt_pattern": "(a+)+$"}, "nested quantifiers"),
        ("session_expiry", {"reason": "x"}, "session_expiry takes: no parameters"),
        ("upload_failure", {"status": 404}, "params.status (upload_failure)"),
    ],
)
def test_bad_params_get_one_readable_problem(kind: str, params: dict[str, Any], expected: str) -> None:
    assert expected in one_problem({"kind": kind, "params": params})


def test_unknown_kind_lists_the_kinds() -> None:
    problem = one_problem({"kind": "meteor"})
    assert problem.startswith("kind: unknown kind 'meteor'; choose one of queue_wait,")
    assert all(kind in problem for kind in KINDS)


def test_body_shape_problems() -> None:
    assert one_problem([{"kind": "stall"}]) == "a fault must be a JSON object, got list"
    assert one_problem({}) == "kind: required"
    assert "a fault takes: kind, session_id" in one_problem({"kind": "stall", "when": 3})
    assert one_problem({"kind": "stall", "params": 3}).startswith(
        "params: Input should be a valid dictionary"
    )


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        {"kind": "stall", "count": 0, "probability": 1.5, "session_id": "a b", "on_command": "set prompt"}
    )
    assert len(problems) == 4
    assert any(p.startswith("count: Input should be greater than or equal to 1") for p in problems)
    assert any(p.startswith("probability: Input should be less than or equal to 1") for p in problems)
    assert any(p.startswith("session_id: must be a session id") for p in problems)
    assert any(p.startswith("on_command: must be a command name") for p in problems)


def test_long_values_are_shortened_in_messages() -> None:
    problem = one_problem({"kind": "gpu_failure", "params": {"reason": "y" * 900}})
    assert len(problem) < 250 and problem.endswith("…)")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"kind": "stall", "at_chunk": 2, "after_seconds": 1}, "at most one of at_chunk, after_seconds"),
        ({"kind": "moderation", "on_command": "start", "at_chunk": 1}, "got at_chunk and on_command"),
        ({"kind": "queue_wait", "session_id": "sess_1"}, "queue_wait acts when a session is created"),
        ({"kind": "session_refused", "session_id": "sess_1"}, "drop session_id"),
        ({"kind": "stall", "session_id": "s", "probability": 0.5}, "either session_id or probability"),
        ({"kind": "ice_failure", "at_chunk": 1}, "at_chunk only applies to kinds that act during generation"),
        ({"kind": "upload_failure", "after_seconds": 1}, "after_seconds only applies to kinds"),
        ({"kind": "session_closed", "at_chunk": 0}, "at_chunk only applies"),
        ({"kind": "stall", "on_command": "start"}, "on_command only applies to command kinds"),
        ({"kind": "gpu_failure", "on_command": "start"}, "(command_error, internal_error, moderation)"),
        (
            {"kind": "moderation", "at_chunk": 3, "params": {"prompt_pattern": "cat"}},
            "prompt_pattern fires on commands: drop at_chunk/after_seconds",
        ),
    ],
)
def test_triggers_must_fit_the_kind(body: dict[str, Any], expected: str) -> None:
    assert expected in one_problem(body)


def test_trigger_kind_groups_accept_their_triggers() -> None:
    for kind in TIMED_KINDS:
        parse_fault({"kind": kind, "at_chunk": 3})
        parse_fault({"kind": kind, "after_seconds": 2.5, "session_id": "sess_1"})
    for kind in COMMAND_KINDS:
        parse_fault({"kind": kind, "on_command": "set_prompt", "session_id": "local"})
    for kind in CREATION_KINDS:
        parse_fault({"kind": kind, "count": 3})
        parse_fault({"kind": kind, "probability": 0.5})
    parse_fault({"kind": "moderation", "on_command": "set_prompt", "params": {"prompt_pattern": "^war"}})


def test_spec_is_frozen_and_round_trips() -> None:
    spec = parse_fault({"kind": "slow_chunks", "at_chunk": 4, "params": {"factor": 3}})
    assert spec.params == {"count": 3, "factor": 3.0}
    assert parse_fault(spec.model_dump()) == spec
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is private
        spec.kind = "stall"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ schema


def test_committed_schema_file_matches_the_model() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == dumps(fault_schema()), (
        "schemas/faults/fault.json drifted from mock_server/faults: regenerate it from fault_schema()"
    )


jsonschema = pytest.importorskip("jsonschema")
VALIDATOR = jsonschema.Draft202012Validator(fault_schema())


def test_schema_is_valid_and_ties_params_to_kind() -> None:
    jsonschema.Draft202012Validator.check_schema(fault_schema())
    assert VALIDATOR.is_valid({"kind": "slow_chunks", "params": {"factor": 2}})
    assert not VALIDATOR.is_valid({"kind": "stall", "params": {"factor": 2}})
    assert not VALIDATOR.is_valid({"kind": "stall", "params": {"seconds": 0}})
    assert not VALIDATOR.is_valid({"kind": "nope"})
    assert not VALIDATOR.is_valid({"kind": "stall", "extra": 1})


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2000), st.floats(-5, 1000, allow_nan=False), st.text(max_size=8)
)
_params = st.dictionaries(
    st.sampled_from(["seconds", "status", "count", "factor", "percent", "action", "reason", "state", "zz"]),
    _values,
    max_size=3,
)
_bodies = st.fixed_dictionaries(
    {"kind": st.sampled_from([*KINDS, "nope"])},
    optional={
        "session_id": st.sampled_from([None, "local", "sess_ab", "bad id"]),
        "at_chunk": st.one_of(st.none(), st.integers(-1, 10)),
        "after_seconds": st.one_of(st.none(), st.floats(-1, 100, allow_nan=False)),
        "on_command": st.sampled_from([None, "start", "set_prompt", "9x"]),
        "count": st.one_of(st.none(), st.integers(-1, 20_000)),
        "probability": st.one_of(st.none(), st.floats(-0.5, 1.5, allow_nan=False)),
        "params": _params,
    },
)


@settings(max_examples=300, deadline=None)
@given(_bodies)
def test_schema_is_never_stricter_than_the_model(body: dict[str, Any]) -> None:
    """Whatever the server accepts validates against the committed schema; schema-invalid means 422."""
    try:
        spec = parse_fault(body)
    except FaultInvalid as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    assert VALIDATOR.is_valid(body), list(VALIDATOR.iter_errors(body))
    assert VALIDATOR.is_valid(spec.model_dump())


# ---------------------------------------------------------------------------------------------- registry


def arm(reg: FaultRegistry, **body: Any) -> str:
    return reg.arm(body).id


def test_ids_listing_removal_and_clear() -> None:
    reg = FaultRegistry()
    ids = [arm(reg, kind="stall", session_id="s1") for _ in range(3)]
    assert ids == ["flt_1", "flt_2", "flt_3"]
    assert [f.id for f in reg.list()] == ids
    assert reg.remove("flt_2").id == "flt_2"
    with pytest.raises(NotFound, match="no fault with id 'flt_2'"):
        reg.remove("flt_2")
    assert reg.clear() == 2 and reg.list() == []
    assert arm(reg, kind="stall", session_id="s1") == "flt_4"  # ids are never reused
    listed = reg.list()[0].to_dict()
    assert listed["status"] == "armed" and listed["params"] == {"seconds": 5.0}
    json.dumps(listed)


def test_arm_accepts_a_raw_body_and_rejects_bad_ones() -> None:
    reg = FaultRegistry()
    with pytest.raises(FaultInvalid):
        reg.arm({"kind": "stall", "params": {"seconds": -1}})
    assert reg.list() == []


def test_session_refused_fires_count_times_then_expires() -> None:
    reg = FaultRegistry()
    fid = arm(reg, kind="session_refused", count=2, params={"status": 429})
    first = reg.on_create_request()
    assert first is not None and first.id == fid and first.params.status == 429
    error = first.params.error()
    assert (error.status, error.detail, error.headers) == (
        429,
        "too many sessions; retry later",
        {"Retry-After": "5"},
    )
    assert reg.on_create_request() is not None
    assert reg.on_create_request() is None
    fault = reg.get(fid)
    assert fault.status == "expired" and fault.fired_count == 2
    assert [(f.hook, f.session_id) for f in fault.firings] == [("create_request", None)] * 2


@pytest.mark.parametrize(
    ("params", "status", "headers"),
    [
        ({}, 503, {}),
        ({"status": 503, "retry_after": 30, "detail": "busy"}, 503, {"Retry-After": "30"}),
        ({"status": 429, "retry_after": 2}, 429, {"Retry-After": "2"}),
        ({"status": 500}, 500, {}),
    ],
)
def test_session_refused_error(params: dict[str, Any], status: int, headers: dict[str, str]) -> None:
    error = parse_fault({"kind": "session_refused", "params": params}).kind_params.error()
    assert (error.status, error.headers) == (status, headers) and error.detail


def test_creation_faults_apply_to_next_sessions_one_per_session() -> None:
    reg = FaultRegistry()
    queued = arm(reg, kind="queue_wait", count=2, params={"state": "SUSPENDED", "seconds": 3})
    closed = arm(reg, kind="session_closed")
    hits = [reg.on_session_created(sid) for sid in ("s1", "s2", "s3", "s4")]
    assert [f.id if f else None for f in hits] == [queued, queued, closed, None]
    assert hits[0] is not None and hits[0].params.state == "SUSPENDED"
    assert reg.on_create_request() is None  # queue_wait is not a refusal


def test_at_chunk_fires_at_the_first_chunk_at_or_after_n_in_its_session_only() -> None:
    reg = FaultRegistry()
    fid = arm(reg, kind="gpu_failure", session_id="s1", at_chunk=3)
    assert reg.on_chunk_begin("s1", 2, 2.7) == []
    assert reg.on_tick("s1", 5.0, 3) == []  # at_chunk only fires when a chunk begins
    assert reg.on_chunk_begin("s2", 3, 4.1) == []
    fired = reg.on_chunk_begin("s1", 4, 5.5)  # armed late: chunk 3 was missed, 4 ≥ 3
    assert [f.id for f in fired] == [fid]
    firing = fired[0].firings[-1]
    assert (firing.hook, firing.session_id, firing.chunk, firing.elapsed) == ("chunk_begin", "s1", 4, 5.5)
    assert reg.get(fid).status == "expired"
    assert reg.on_chunk_begin("s1", 5, 6.9) == []


def test_after_seconds_counts_from_arming_for_a_session_id() -> None:
    reg = FaultRegistry()
    fid = reg.arm({"kind": "stall", "session_id": "s1", "after_seconds": 10}, session_age=100.0).id
    assert reg.on_tick("s1", 109.9) == []
    assert [f.id for f in reg.on_tick("s1", 110.0)] == [fid]


def test_after_seconds_without_age_counts_from_the_first_hook() -> None:
    reg = FaultRegistry()
    fid = arm(reg, kind="media_loss", session_id="s1", after_seconds=5)
    assert reg.on_tick("s1", 40.0) == []
    assert reg.on_chunk_begin("s1", 7, 44.0) == []
    assert [f.id for f in reg.on_tick("s1", 45.0)] == [fid]


def test_now_fires_at_the_next_hook_of_that_session() -> None:
    reg = FaultRegistry()
    fid = arm(reg, kind="transport_drop", session_id="s1", count=2)
    assert [f.id for f in reg.on_chunk_begin("s1", 0, 0.1)] == [fid]
    assert reg.get(fid).status == "fired"
    assert [f.id for f in reg.on_tick("s1", 0.5)] == [fid]
    assert reg.get(fid).status == "expired"
    assert reg.on_tick("s1", 1.0) == []


def test_next_n_sessions_binds_to_new_sessions_only_and_fires_once_in_each() -> None:
    reg = FaultRegistry()
    reg.on_session_created("old")
    fid = arm(reg, kind="session_expiry", at_chunk=2, count=2)
    for sid in ("a", "b", "c"):
        assert reg.on_session_created(sid) is None
    assert reg.get(fid).to_dict()["sessions"] == ["a", "b"]
    assert reg.on_chunk_begin("old", 2, 3.0) == []
    assert reg.on_chunk_begin("c", 2, 3.0) == []
    assert [f.id for f in reg.on_chunk_begin("a", 2, 3.0)] == [fid]
    assert reg.on_chunk_begin("a", 3, 4.0) == []  # once per bound session
    assert reg.get(fid).status == "fired"
    assert [f.id for f in reg.on_chunk_begin("b", 5, 8.0)] == [fid]
    fault = reg.get(fid)
    assert fault.status == "expired" and [f.session_id for f in fault.firings] == ["a", "b"]


def test_bound_after_seconds_counts_from_session_creation() -> None:
    reg = FaultRegistry()
    fid = arm(reg, kind="stall", after_seconds=30)
    reg.on_session_created("s")
    assert reg.on_tick("s", 29.0) == []
    assert [f.id for f in reg.on_tick("s", 30.5)] == [fid]


def test_closing_sessions_expires_faults_that_can_no_longer_fire() -> None:
    reg = FaultRegistry()
    pinned = arm(reg, kind="stall", session_id="s1", at_chunk=9)
    bound = arm(reg, kind="gpu_failure", at_chunk=9)
    reg.on_session_created("s1")
    reg.on_session_closed("s1")
    for fid in (pinned, bound):
        fault = reg.get(fid)
        assert fault.status == "expired" and fault.fired_count == 0 and fault.expired_reason
    assert "s1 closed" in str(reg.get(pinned).expired_reason)


def test_command_faults_match_name_and_parameters() -> None:
    reg = FaultRegistry()
    fid = arm(
        reg,
        kind="command_error",
        session_id="s1",
        on_command="schedule_prompt",
        count=2,
        params={"reason": "no", "match": {"chunk": 3, "loop": True}},
    )
    assert reg.on_command("s1", "set_prompt", {"chunk": 3, "loop": True}) is None
    assert reg.on_command("s1", "schedule_prompt", {"chunk": 4, "loop": True}) is None
    assert reg.on_command("s1", "schedule_prompt", {"chunk": 3, "loop": 1}) is None  # 1 is not True
    assert reg.on_command("s1", "schedule_prompt", {"chunk": 3}) is None
    assert reg.on_command("s2", "schedule_prompt", {"chunk": 3, "loop": True}) is None
    hit = reg.on_command("s1", "schedule_prompt", {"chunk": 3.0, "loop": True, "prompt": "x"}, 5, 7.5)
    assert hit is not None and hit.id == fid and hit.params.reason == "no"
    assert hit.firings[-1].chunk == 5 and hit.firings[-1].hook == "command"
    assert reg.on_command("s1", "schedule_prompt", {"chunk": 3, "loop": True}) is not None
    assert reg.on_command("s1", "schedule_prompt", {"chunk": 3, "loop": True}) is None


def test_command_fault_without_name_takes_the_next_command() -> None:
    reg = FaultRegistry()
    fid = arm(reg, kind="internal_error", session_id="s1")
    assert reg.on_chunk_begin("s1", 0, 0.0) == [] and reg.on_tick("s1", 1.0) == []
    hit = reg.on_command("s1", "pause", {})
    assert hit is not None and hit.id == fid
    assert hit.params.message == "the command handler raised an exception"


def test_moderation_by_prompt_pattern_and_by_chunk() -> None:
    reg = FaultRegistry()
    by_prompt = arm(
        reg, kind="moderation", session_id="s1", params={"action": "terminate", "prompt_pattern": r"\bwar\b"}
    )
    by_chunk = arm(reg, kind="moderation", session_id="s1", at_chunk=1)
    assert reg.on_command("s1", "set_prompt", {"prompt": "a warm day"}) is None
    assert reg.on_command("s1", "start", {}) is None
    assert reg.on_chunk_begin("s1", 0, 0.0) == []
    hit = reg.on_command("s1", "set_prompt", {"prompt": "Tanks at WAR"})
    assert hit is not None and hit.id == by_prompt and hit.params.action == "terminate"
    assert [f.id for f in reg.on_chunk_begin("s1", 1, 1.4)] == [by_chunk]
    assert isinstance(reg.get(by_chunk).params, ModerationParams)


def test_offer_and_upload_hooks() -> None:
    reg = FaultRegistry()
    slow = arm(reg, kind="sdp_slow", session_id="s1", params={"seconds": 8})
    ice = arm(reg, kind="ice_failure", session_id="s1")
    upload = arm(reg, kind="upload_failure", session_id="s1", count=2, params={"status": 500})
    assert reg.on_offer("s2") == []
    assert [f.id for f in reg.on_offer("s1", 3.0)] == [slow, ice]
    assert reg.on_offer("s1") == []
    assert reg.on_tick("s1", 9.0) == [] and reg.on_command("s1", "start", {}) is None
    hit = reg.on_upload_put("s1")
    assert hit is not None and hit.id == upload and hit.params.error().status == 500
    assert "upload" in hit.params.error().detail  # not a session-creation text
    assert parse_fault({"kind": "upload_failure"}).kind_params.error().detail == "upload URL expired"
    assert reg.on_upload_put("s1") is not None and reg.on_upload_put("s1") is None


def test_several_timed_faults_fire_in_arming_order() -> None:
    reg = FaultRegistry()
    ids = [arm(reg, kind=k, session_id="s") for k in ("slow_chunks", "stall", "media_loss")]
    assert [f.id for f in reg.on_tick("s", 0.0)] == ids


def test_history_and_expired_faults_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "MAX_EXPIRED_KEPT", 3)
    reg = FaultRegistry()
    for _ in range(5):
        arm(reg, kind="session_refused")
        assert reg.on_create_request() is not None
    assert [f.id for f in reg.list()] == ["flt_3", "flt_4", "flt_5"]
    assert [f.seq for f in reg.history] == [1, 2, 3, 4, 5]
    assert reg.history.maxlen == registry_module.MAX_FIRINGS_KEPT


def test_too_many_armed_faults_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "MAX_ARMED_FAULTS", 2)
    reg = FaultRegistry()
    arm(reg, kind="stall", session_id="a")
    arm(reg, kind="stall", session_id="b")
    with pytest.raises(TooMany, match="limit is 2"):
        arm(reg, kind="stall", session_id="c")
    reg.on_tick("a", 0.0)  # one expires, so there is room again
    arm(reg, kind="stall", session_id="c")


# -------------------------------------------------------------------------------------- probability


def chaos_run(seed: int, probability: float, sessions: int) -> list[str]:
    reg = FaultRegistry(seed=seed)
    reg.arm({"kind": "gpu_failure", "probability": probability, "at_chunk": 1})
    reg.arm({"kind": "session_refused", "probability": probability / 2})
    hit: list[str] = []
    for n in range(sessions):
        if reg.on_create_request() is not None:
            continue
        sid = f"s{n}"
        reg.on_session_created(sid)
        hit += [f"{sid}:{f.kind}" for f in reg.on_chunk_begin(sid, 1, 1.4)]
        reg.on_session_closed(sid)
    return hit


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), probability=st.floats(0, 1))
def test_same_seed_same_firings(seed: int, probability: float) -> None:
    assert chaos_run(seed, probability, 40) == chaos_run(seed, probability, 40)


def test_probability_is_roughly_p_and_seed_dependent() -> None:
    reg = FaultRegistry(seed=7)
    fid = arm(reg, kind="stall", probability=0.3)
    for n in range(4000):
        reg.on_session_created(f"s{n}")
        reg.on_tick(f"s{n}", 0.0)
        reg.on_session_closed(f"s{n}")
    fault = reg.get(fid)
    assert 0.27 < fault.fired_count / 4000 < 0.33
    assert fault.status == "fired" and fault.to_dict()["sessions"] == []  # never expires without count
    assert chaos_run(1, 0.5, 60) != chaos_run(2, 0.5, 60)


def test_probability_edges_and_count_cap() -> None:
    reg = FaultRegistry(seed=3)
    never = arm(reg, kind="stall", probability=0.0)
    capped = arm(reg, kind="stall", probability=1.0, count=2)
    for n in range(5):
        reg.on_session_created(f"s{n}")
        reg.on_tick(f"s{n}", 0.0)
    assert reg.get(never).fired_count == 0
    assert reg.get(capped).fired_count == 2 and reg.get(capped).status == "expired"


def test_registry_uses_no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = ROOT / "mock_server" / "faults"
    imported: set[str] = set()
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert not imported & {"time", "datetime", "asyncio", "socket", "threading"}
    import time

    def no_clock() -> float:
        raise AssertionError("the fault registry read the clock")

    monkeypatch.setattr(time, "time", no_clock)
    monkeypatch.setattr(time, "monotonic", no_clock)
    chaos_run(5, 0.5, 20)


# ----------------------------------------------------------------------------------------- files


def test_load_yaml_json_and_mapping_files(tmp_path: Path) -> None:
    yml = tmp_path / "faults.yaml"
    yml.write_text(
        "- kind: stall\n  after_seconds: 3\n  params: {seconds: 2}\n"
        "- {kind: session_refused, count: 2, params: {status: 429, retry_after: 4}}\n",
        encoding="utf-8",
    )
    specs = load_faults(yml)
    assert [s.kind for s in specs] == ["stall", "session_refused"] and specs[0].params == {"seconds": 2.0}
    js = tmp_path / "faults.json"
    js.write_text(json.dumps({"faults": [{"kind": "ice_failure"}]}), encoding="utf-8")
    assert [s.kind for s in load_faults(js)] == ["ice_failure"]
    empty = tmp_path / "empty.yml"
    empty.write_text("", encoding="utf-8")
    assert load_faults(empty) == []


def test_fault_file_errors_name_the_file_and_the_item(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- kind: stall\n- kind: stall\n  params: {seconds: 0}\n- kind: nope\n", encoding="utf-8")
    with pytest.raises(FaultInvalid) as info:
        load_faults(bad)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{bad}: item 1: params.seconds (stall)")
    assert problems[1].startswith(f"{bad}: item 2: kind: unknown kind 'nope'")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.yaml", "kind: stall\n", "expected a list of faults"),
        ("a.yaml", "- [unclosed\n", "not valid YAML"),
        ("a.json", "[{]", "not valid JSON"),
    ],
)
def test_fault_file_shape_errors(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FaultInvalid, match=expected):
        load_faults(path)


def test_fault_file_missing_or_too_big(tmp_path: Path) -> None:
    with pytest.raises(FaultInvalid, match="cannot read the fault file"):
        load_faults(tmp_path / "absent.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(FaultInvalid, match="at most 1048576"):
        load_faults(big)


def test_chaos_presets_are_probability_faults() -> None:
    assert set(CHAOS_PRESETS) == {"light", "heavy"}
    for name, specs in CHAOS_PRESETS.items():
        assert specs and all(isinstance(s, FaultSpec) and s.probability for s in specs), name
        assert chaos_preset(name) == list(specs)
    with pytest.raises(FaultInvalid, match="choose one of light, heavy"):
        chaos_preset("medium")
    reg = FaultRegistry(seed=1)
    for spec in chaos_preset("heavy"):
        reg.arm(spec)
    assert len(reg.list()) == len(CHAOS_PRESETS["heavy"])
