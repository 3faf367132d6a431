"""The committed contract files under schemas/ (mock_server/schema_files.py): no drift from the models, valid
JSON Schema, and every message the mock really sends validates against its file."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from conformance.helpers import expect_message
from conformance.server import HeliosServer
from conformance.wire_client import WireClient
from mock_server.model.commands import COMMANDS, CommandRejected, validate_command
from mock_server.model.messages import MESSAGES
from mock_server.schema_files import dumps, render_schema_files, stale_files, write_schema_files

jsonschema = pytest.importorskip("jsonschema")

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
FIX = "run `helios-mock schemas` (from the repository root) and commit the result"


def _load(rel: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / rel).read_text(encoding="utf-8"))


def _validator(rel: str) -> Any:
    return jsonschema.Draft202012Validator(_load(rel))


def test_committed_schema_files_match_the_models() -> None:
    expected = render_schema_files()
    missing = [rel for rel in expected if not (SCHEMAS / rel).exists()]
    drifted = [
        rel
        for rel, text in expected.items()
        if (SCHEMAS / rel).exists() and (SCHEMAS / rel).read_text(encoding="utf-8") != text
    ]
    stale = [p.relative_to(SCHEMAS).as_posix() for p in stale_files(SCHEMAS, expected)]
    problems = [f"missing {m}" for m in missing] + [f"out of date {d}" for d in drifted]
    problems += [f"no longer generated {s}" for s in stale]
    assert not problems, f"schemas/ drifted from the models ({'; '.join(problems)}): {FIX}"


def test_write_schema_files_reports_only_changes(tmp_path: Path) -> None:
    written = write_schema_files(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == set(render_schema_files())
    assert write_schema_files(tmp_path) == []
    edited = tmp_path / "commands" / "start.json"
    edited.write_text("{}\n")
    stale = tmp_path / "messages" / "event.json"
    stale.write_text("{}\n")
    (tmp_path / "reactor_wire").mkdir()
    (tmp_path / "reactor_wire" / "keep.json").write_text("{}")  # outside the generated directories
    assert sorted(write_schema_files(tmp_path)) == sorted([edited, stale])
    assert not stale.exists() and (tmp_path / "reactor_wire" / "keep.json").exists()


def test_files_are_deterministic_json() -> None:
    for rel, text in render_schema_files().items():
        assert text.endswith("}\n") and text == dumps(json.loads(text)), rel
    assert {p.stem for p in (SCHEMAS / "commands").glob("*.json")} == set(COMMANDS)
    assert {p.stem for p in (SCHEMAS / "messages").glob("*.json")} == set(MESSAGES)
    assert _load("http/openapi.json")["paths"]["/start_session"]["post"]
    assert set(_load("model_schema.json")["webhooks"]) == set(MESSAGES)


@pytest.mark.parametrize(
    "rel", sorted(r for r in render_schema_files() if r.startswith(("commands", "messages")))
)
def test_each_file_is_a_valid_json_schema(rel: str) -> None:
    jsonschema.Draft202012Validator.check_schema(_load(rel))


UPLOAD = {"upload_id": "u1", "name": "a.png", "mime_type": "image/png", "size": 15}
PARAMS = [
    ("set_prompt", {"prompt": "a fox"}, True),
    ("set_prompt", {"prompt": "a fox", "extra": 1}, False),
    ("set_prompt", {}, False),
    ("set_prompt", {"prompt": 3}, False),
    ("schedule_prompt", {"prompt": "x", "chunk": 2.0}, True),
    ("schedule_prompt", {"prompt": "x", "chunk": -1}, False),
    ("schedule_prompt", {"prompt": "x", "chunk": 2.5}, False),
    ("set_seed", {"seed": -1}, True),
    ("set_seed", {"seed": True}, False),
    ("set_image_strength", {"image_strength": 0.5}, True),
    ("set_image_strength", {"image_strength": 1.5}, False),
    ("set_sr_scale", {"sr_scale": "4x"}, True),
    ("set_sr_scale", {"sr_scale": "8x"}, False),
    ("set_image", {"image": UPLOAD}, True),
    ("set_image", {"image": {"upload_id": "u1"}}, False),
    ("set_conditioning", {"prompt": "x", "image": UPLOAD}, True),
    ("rewind", {}, True),
    ("rewind", {"snapshot_index": "last"}, False),
    ("start", {}, True),
]


@pytest.mark.parametrize(("command", "params", "valid"), PARAMS)
def test_command_files_agree_with_the_server_validation(command: str, params: dict, valid: bool) -> None:
    by_schema = _validator(f"commands/{command}.json").is_valid(params)
    try:
        validate_command(command, params)
        by_server = True
    except CommandRejected:
        by_server = False
    assert by_schema == by_server == valid


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (60, 36), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


async def _step(client: WireClient, name: str, params: dict | None, expect: str, **kwargs: Any) -> None:
    """Send a command and wait for the message it must produce."""
    mark = client.now()
    client.send_command(name, params, kwargs.get("uploads"))
    await expect_message(client, expect, kwargs.get("where"), since=mark)


@pytest.mark.helios_lenient  # refusals are provoked on purpose
@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_every_message_the_mock_sends_validates(helios: HeliosServer, helios_client, wire: str) -> None:
    client: WireClient = await helios_client(wire=wire)
    ref = await client.upload(_png())
    await _step(client, "start", None, "command_error")
    await _step(client, "save_snapshot", None, "rewind_failed")
    await _step(client, "set_prompt", {"prompt": "a harbour at dawn"}, "prompt_accepted")
    await _step(client, "set_image", {}, "image_accepted", uploads={"image": ref})
    await _step(
        client,
        "set_conditioning",
        {"prompt": "a harbour at dusk"},
        "conditions_ready",
        uploads={"image": ref},
    )
    await _step(client, "start", None, "generation_started")
    await expect_message(client, "chunk_complete", {"chunk_index": 0})
    await _step(client, "save_snapshot", {"label": "first"}, "snapshot_saved")
    await _step(client, "list_snapshots", None, "snapshot_list")
    await _step(client, "pause", None, "generation_paused")
    await _step(client, "resume", None, "generation_resumed")
    await _step(client, "rewind", None, "rewind_complete")
    await _step(client, "reset", None, "generation_reset")
    await expect_message(client, "state", {"started": False, "current_chunk": 0})

    validators = {type_: _validator(f"messages/{type_}.json") for type_ in MESSAGES}
    received = client.messages()
    assert {r.type for r in received} == set(MESSAGES)
    for message in received:
        errors = [e.message for e in validators[message.type].iter_errors(message.data)]
        assert not errors, (message.type, message.data, errors)


async def test_served_model_schema_is_the_committed_file(helios: HeliosServer) -> None:
    async with httpx.AsyncClient(base_url=helios.url) as http:
        served = (await http.get("/schema")).json()
    assert served == _load("model_schema.json")
