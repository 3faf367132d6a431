"""The model schema served on requestSchema / request_schema (docs/HELIOS.md §7), built from the pydantic
models.

Commands become ``paths["/events/<name>"].post``, messages ``webhooks["<type>"]``, tracks go in ``x-reactor``;
also the v0 ``modelCapabilities`` command list (docs/PROTOCOL.md §3.2).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from mock_server.model.commands import ADVERTISED, COMMANDS, DESCRIPTIONS, UploadReference
from mock_server.model.messages import MESSAGES

MODEL_NAME = "helios"
MODEL_DESCRIPTION = (
    "Helios: interactive real-time text/image-to-video model (CPU mock). Frames are generated in chunks "
    "of 33 at 24 fps; commands take effect at the start of the next chunk."
)
UPLOAD_COMPONENT = "ReactorUploadReference"
TRACKS = [{"name": "main_video", "kind": "video", "direction": "out"}]

# command -> wire type of its answer (docs/HELIOS.md §5.1); commands not listed have no answer
ANSWERS: dict[str, str] = {
    "set_prompt": "prompt_accepted",
    "schedule_prompt": "prompt_accepted",
    "set_image": "image_accepted",
    "set_conditioning": "conditions_ready",
    "pause": "generation_paused",
    "resume": "generation_resumed",
    "rewind": "rewind_complete",
    "save_snapshot": "snapshot_saved",
    "list_snapshots": "snapshot_list",
}

_UPLOAD_REFERENCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "format": "reactor-upload-reference",
    "description": "Reference to a file uploaded via the Reactor upload protocol.",
    "properties": {
        "upload_id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "mime_type": {"type": "string"},
        "size": {"type": "integer"},
    },
    "required": ["upload_id", "name", "mime_type", "size"],
}


def _ref(component: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{component}"}


def _component_name(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return UPLOAD_COMPONENT if name == UploadReference.__name__ else name


def _clean(node: Any) -> Any:
    """Strip pydantic noise from a JSON schema: titles, closed objects, ``anyOf [X, null]``, ``$defs``."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs") or (key == "additionalProperties" and value is False):
            continue
        if key == "properties":
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        elif key == "$ref":
            out[key] = _ref(_component_name(value))["$ref"]
        else:
            out[key] = _clean(value)
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(opt for opt in options if opt != {"type": "null"})
        if isinstance(other.get("type"), str):
            del out["anyOf"]
            out = {**other, **out, "type": [other["type"], "null"]}
    return out


def _object_schema(model: type[BaseModel], with_description: bool) -> dict[str, Any]:
    raw = model.model_json_schema(ref_template="#/components/schemas/{model}")
    body: dict[str, Any] = {"type": "object"}
    if with_description and raw.get("description"):
        body["description"] = raw["description"]
    body["properties"] = {name: _clean(sub) for name, sub in raw.get("properties", {}).items()}
    body["required"] = list(raw.get("required", []))
    return body


def _defs(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        name: _clean(sub) for name, sub in raw.get("$defs", {}).items() if name != UploadReference.__name__
    }


def _pascal(model: type[BaseModel]) -> str:
    return model.__name__


def request_body_schema(command: str) -> dict[str, Any]:
    """``{type: "object", properties, required, additionalProperties: false}`` of one command (refs point
    into ``components``); closed because an unexpected parameter is rejected (docs/DECISIONS.md)."""
    return {**_object_schema(COMMANDS[command], with_description=False), "additionalProperties": False}


def _responses(command: str) -> dict[str, Any]:
    answer = ANSWERS.get(command)
    if answer is None:
        return {"202": {"description": "Command accepted"}}
    component = _pascal(MESSAGES[answer])
    return {
        "200": {
            "description": component,
            "content": {"application/json": {"schema": _ref(component)}},
        }
    }


def build_model_schema(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of docs/HELIOS.md §7."""
    paths: dict[str, Any] = {}
    for name in ADVERTISED:
        paths[f"/events/{name}"] = {
            "post": {
                "operationId": name,
                "summary": DESCRIPTIONS[name],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": request_body_schema(name)}},
                },
                "responses": _responses(name),
            }
        }

    webhooks: dict[str, Any] = {}
    schemas: dict[str, Any] = {UPLOAD_COMPONENT: copy.deepcopy(_UPLOAD_REFERENCE_SCHEMA)}
    for wire_type, model in MESSAGES.items():
        component = _pascal(model)
        webhooks[wire_type] = {
            "post": {
                "operationId": wire_type,
                "summary": (model.__doc__ or "").strip(),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(component)}},
                },
            }
        }
        schemas[component] = _object_schema(model, with_description=True)
        for def_name, def_schema in _defs(model).items():
            schemas.setdefault(def_name, def_schema)

    return {
        "openapi": "3.1.0",
        "info": {"title": MODEL_NAME, "version": version, "description": MODEL_DESCRIPTION},
        "x-reactor": {"tracks": copy.deepcopy(TRACKS)},
        "paths": paths,
        "webhooks": webhooks,
        "components": {"schemas": schemas},
    }


def capabilities_commands() -> list[dict[str, Any]]:
    """The v0 ``modelCapabilities.commands`` view: ``[{name, description, schema}]`` with a flat schema
    ``param -> {type, minimum?, maximum?, description?, required?, enum?}`` per advertised command."""
    commands: list[dict[str, Any]] = []
    for name in ADVERTISED:
        body = request_body_schema(name)
        required = set(body["required"])
        flat: dict[str, Any] = {}
        for param, prop in body["properties"].items():
            entry: dict[str, Any] = {"type": prop.get("type", "object")}
            for key in ("minimum", "maximum", "description", "enum"):
                if key in prop:
                    entry[key] = prop[key]
            entry["required"] = param in required
            flat[param] = entry
        commands.append({"name": name, "description": DESCRIPTIONS[name], "schema": flat})
    return commands
