"""The OpenAPI document served as the model schema (docs/HELIOS.md §7) and the v0 capabilities view."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mock_server.model.commands import ADVERTISED, COMMANDS, DESCRIPTIONS, CommandRejected, validate_command
from mock_server.model.helios import Helios
from mock_server.model.images import UploadedFile
from mock_server.model.messages import MESSAGES
from mock_server.model.model_schema import ANSWERS, build_model_schema, capabilities_commands

jsonschema = pytest.importorskip("jsonschema")

DOC = build_model_schema("9.9.9")
SCHEMAS = DOC["components"]["schemas"]
UPLOAD = {
    "upload_id": "0b7e6f0c-1111-2222-3333-444455556666",
    "name": "a.png",
    "mime_type": "image/png",
    "size": 15,
}


def body(command: str) -> dict[str, Any]:
    return DOC["paths"][f"/events/{command}"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def validator(schema: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator whose ``#/components/...`` refs resolve against the document."""
    root = {**schema, "components": DOC["components"]}
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


def walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


# ----------------------------------------------------------------------------------------- document shape


def test_top_level() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["title"] == "helios"
    assert DOC["info"]["version"] == "9.9.9"
    assert isinstance(DOC["info"]["description"], str) and DOC["info"]["description"]
    assert DOC["x-reactor"] == {"tracks": [{"name": "main_video", "kind": "video", "direction": "out"}]}
    json.dumps(DOC)  # plain JSON


def test_every_advertised_command_has_a_path() -> None:
    assert list(DOC["paths"]) == [f"/events/{name}" for name in ADVERTISED]
    assert "/events/clear_image" not in DOC["paths"]
    for name in ADVERTISED:
        item = DOC["paths"][f"/events/{name}"]
        assert list(item) == ["post"]
        op = item["post"]
        assert op["operationId"] == name
        assert op["summary"] == DESCRIPTIONS[name]
        schema = body(name)
        assert schema["type"] == "object"
        model = COMMANDS[name]
        assert list(schema["properties"]) == list(model.model_fields)
        expected_required = [f for f, info in model.model_fields.items() if info.is_required()]
        assert schema["required"] == expected_required
        assert schema["required"] == [p for p, s in schema["properties"].items() if "default" not in s]


def test_responses() -> None:
    answered = {name for name in ADVERTISED if name in ANSWERS}
    assert answered == {
        "set_prompt",
        "schedule_prompt",
        "set_image",
        "set_conditioning",
        "pause",
        "resume",
        "rewind",
        "save_snapshot",
        "list_snapshots",
    }
    for name in ADVERTISED:
        responses = DOC["paths"][f"/events/{name}"]["post"]["responses"]
        if name in ANSWERS:
            component = MESSAGES[ANSWERS[name]].__name__
            assert list(responses) == ["200"]
            content = responses["200"]["content"]["application/json"]["schema"]
            assert content == {"$ref": f"#/components/schemas/{component}"}
        else:
            assert responses == {"202": {"description": "Command accepted"}}
    ref = DOC["paths"]["/events/set_conditioning"]["post"]["responses"]["200"]["content"]
    assert ref["application/json"]["schema"]["$ref"] == "#/components/schemas/ConditionsReady"


def test_constraints() -> None:
    assert body("set_image_strength")["properties"]["image_strength"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": body("set_image_strength")["properties"]["image_strength"]["description"],
    }
    assert body("set_seed")["properties"]["seed"]["minimum"] == -1
    assert body("set_seed")["properties"]["seed"]["type"] == "integer"
    assert body("schedule_prompt")["properties"]["chunk"]["minimum"] == 0
    assert body("set_sr_scale")["properties"]["sr_scale"]["enum"] == ["off", "2x", "4x"]
    assert body("rewind")["properties"]["snapshot_index"]["default"] == -1
    assert body("rewind")["required"] == []
    assert body("save_snapshot")["properties"]["label"] == {
        "type": "string",
        "default": "",
        "maxLength": 200,
        "pattern": r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*$",
        "description": body("save_snapshot")["properties"]["label"]["description"],
    }
    # the limits of docs/LIMITS.md are part of the schema; an unexpected parameter is rejected
    assert body("set_prompt")["properties"]["prompt"]["maxLength"] == 2000
    assert body("set_seed")["properties"]["seed"]["maximum"] == 2**53 - 1
    assert body("schedule_prompt")["properties"]["chunk"]["maximum"] == 1_000_000
    assert all(body(name)["additionalProperties"] is False for name in ADVERTISED)
    for name in ("start", "pause", "resume", "reset", "list_snapshots"):
        assert body(name) == {
            "type": "object",
            "properties": {},
            "required": [],
            "additionalProperties": False,
        }
    for name in ADVERTISED:
        for prop in body(name)["properties"].values():
            assert prop.get("description")


def test_upload_parameters_reference_the_shared_component() -> None:
    assert SCHEMAS["ReactorUploadReference"] == {
        "type": "object",
        "format": "reactor-upload-reference",
        "description": SCHEMAS["ReactorUploadReference"]["description"],
        "properties": {
            "upload_id": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "mime_type": {"type": "string"},
            "size": {"type": "integer"},
        },
        "required": ["upload_id", "name", "mime_type", "size"],
    }
    for name in ("set_image", "set_conditioning"):
        prop = body(name)["properties"]["image"]
        assert prop["$ref"] == "#/components/schemas/ReactorUploadReference"
        assert "image" in body(name)["required"]


def test_webhooks_cover_every_message() -> None:
    assert list(DOC["webhooks"]) == list(MESSAGES)
    for wire_type, model in MESSAGES.items():
        op = DOC["webhooks"][wire_type]["post"]
        assert op["operationId"] == wire_type
        assert op["summary"] == model.__doc__.strip()  # type: ignore[union-attr]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}
        component = SCHEMAS[model.__name__]
        assert component["type"] == "object"
        assert list(component["properties"]) == list(model.model_fields)
        assert component["required"] == list(model.model_fields)
    assert "PromptAccepted" in SCHEMAS and "SnapshotEntry" in SCHEMAS
    assert SCHEMAS["State"]["properties"]["current_prompt"]["type"] == ["string", "null"]
    assert SCHEMAS["State"]["properties"]["scheduled_prompts"]["additionalProperties"] == {"type": "string"}
    assert SCHEMAS["SnapshotList"]["properties"]["snapshots"]["items"] == {
        "$ref": "#/components/schemas/SnapshotEntry"
    }


def test_no_pydantic_noise_and_all_refs_resolve() -> None:
    for path, key, value in walk(DOC):
        if key == "$ref":
            assert value.startswith("#/components/schemas/")
            assert value.rsplit("/", 1)[1] in SCHEMAS, path
        if key == "title" and not path.endswith("/properties"):
            assert path == "/info", path
        assert key not in ("anyOf", "$defs", "allOf"), path


def test_all_schemas_are_valid_draft_2020_12() -> None:
    for name in ADVERTISED:
        validator(body(name))
    for component in SCHEMAS.values():
        validator(component)


# -------------------------------------------------------------------------------- validation agreement


@pytest.mark.parametrize(
    ("command", "params", "valid"),
    [
        ("set_prompt", {"prompt": "p"}, True),
        ("set_prompt", {}, False),
        ("set_prompt", {"prompt": 3}, False),
        ("set_prompt", {"prompt": "p", "extra": 1}, False),
        ("schedule_prompt", {"prompt": "p", "chunk": 3.0}, True),
        ("schedule_prompt", {"prompt": "p", "chunk": 3.5}, False),
        ("schedule_prompt", {"prompt": "p", "chunk": -1}, False),
        ("schedule_prompt", {"prompt": "p", "chunk": True}, False),
        ("set_image", {"image": UPLOAD}, True),
        ("set_image", {"image": {"upload_id": "x"}}, False),
        ("set_image", {}, False),
        ("set_image_strength", {"image_strength": 1}, True),
        ("set_image_strength", {"image_strength": 1.01}, False),
        ("set_image_strength", {"image_strength": "0.5"}, False),
        ("set_sr_scale", {"sr_scale": "4x"}, True),
        ("set_sr_scale", {"sr_scale": "3x"}, False),
        ("set_seed", {"seed": -1}, True),
        ("set_seed", {"seed": -2}, False),
        ("rewind", {}, True),
        ("rewind", {"snapshot_index": "1"}, False),
        ("save_snapshot", {"label": 1}, False),
        ("start", {}, True),
    ],
)
def test_json_schema_agrees_with_validate_command(command: str, params: dict[str, Any], valid: bool) -> None:
    assert validator(body(command)).is_valid(params) is valid
    try:
        validate_command(command, params)
        accepted = True
    except CommandRejected:
        accepted = False
    assert accepted is valid


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.floats(min_value=-3, max_value=3, allow_nan=False),
    st.sampled_from([0.0, 1.0, 0.5, -1.0, 2.0, 3.5]),
    st.sampled_from(["", "p", "3", "off", "2x", "4x", "8x"]),
)
json_values = st.one_of(
    json_scalars,
    st.just(UPLOAD),
    st.fixed_dictionaries({"upload_id": st.sampled_from(["u", 1]), "name": json_scalars}),
    st.lists(json_scalars, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(ADVERTISED),
    params=st.dictionaries(
        st.sampled_from(
            ["prompt", "chunk", "image", "image_strength", "sr_scale", "seed", "snapshot_index", "label", "x"]
        ),
        json_values,
        max_size=4,
    ),
)
def test_json_schema_and_validate_command_agree_on_random_params(
    command: str, params: dict[str, Any]
) -> None:
    schema_ok = validator(body(command)).is_valid(params)
    try:
        validate_command(command, params)
        model_ok = True
    except CommandRejected:
        model_ok = False
    assert schema_ok == model_ok, (command, params)


def test_emitted_messages_match_their_webhook_components() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(buf, format="PNG")
    png = UploadedFile("u", "a.png", "image/png", buf.getvalue())
    h = Helios(draw_seed=lambda: 5)
    emitted = [h.state_message()]

    def go(name: str, uploads: dict[str, Any] | None = None, **params: Any) -> None:
        out = h.handle(name, validate_command(name, params), uploads or {})
        emitted.extend(out.broadcasts)
        emitted.extend(m for m in (out.answer, out.state) if m is not None)

    go("start")
    go("rewind")
    go("save_snapshot")
    go("set_conditioning", {"image": png}, prompt="p", image=UPLOAD)
    go("start")
    h.begin_chunk()
    emitted.extend(h.complete_chunk())
    go("save_snapshot", label="s")
    go("list_snapshots")
    go("pause")
    go("resume")
    go("rewind")
    go("reset")
    seen = set()
    for msg in emitted:
        seen.add(msg.type)
        component = MESSAGES[msg.type].__name__
        errors = list(validator({"$ref": f"#/components/schemas/{component}"}).iter_errors(msg.data))
        assert not errors, (msg, errors)
        assert not any(isinstance(v, float) and math.isnan(v) for v in msg.data.values())
    assert seen == set(MESSAGES)  # every message type was exercised


# ----------------------------------------------------------------------------------------- v0 capabilities


def test_capabilities_commands() -> None:
    caps = capabilities_commands()
    assert [c["name"] for c in caps] == list(ADVERTISED)
    by_name = {c["name"]: c for c in caps}
    for c in caps:
        assert set(c) == {"name", "description", "schema"}
        assert c["description"] == DESCRIPTIONS[c["name"]]
        for entry in c["schema"].values():
            assert set(entry) <= {"type", "minimum", "maximum", "description", "required", "enum"}
            assert entry["type"] in {"string", "integer", "number", "boolean", "object"}
    assert by_name["set_image_strength"]["schema"]["image_strength"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": body("set_image_strength")["properties"]["image_strength"]["description"],
        "required": True,
    }
    assert by_name["set_sr_scale"]["schema"]["sr_scale"]["enum"] == ["off", "2x", "4x"]
    assert by_name["rewind"]["schema"]["snapshot_index"]["required"] is False
    assert by_name["set_image"]["schema"]["image"]["type"] == "object"
    assert by_name["start"]["schema"] == {}
    json.dumps(caps)
