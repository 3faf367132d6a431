"""Command parameter validation (docs/HELIOS.md §3.3, §5.1)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from mock_server.model.commands import (
    ADVERTISED,
    COMMANDS,
    DESCRIPTIONS,
    UPLOAD_PARAMS,
    CommandRejected,
    UploadReference,
    validate_command,
)
from mock_server.wire.common import UploadRef

UPLOAD = {
    "upload_id": "0b7e6f0c-1111-2222-3333-444455556666",
    "name": "a.png",
    "mime_type": "image/png",
    "size": 15,
}


def rejected(name: str, params: dict) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        validate_command(name, params)
    assert info.value.code == "invalid_command"
    assert info.value.message == str(info.value)
    return info.value


def test_command_table_order_and_exports() -> None:
    assert list(COMMANDS) == [
        "set_prompt",
        "schedule_prompt",
        "set_image",
        "set_conditioning",
        "set_image_strength",
        "set_sr_scale",
        "set_seed",
        "start",
        "pause",
        "resume",
        "reset",
        "rewind",
        "save_snapshot",
        "list_snapshots",
        "clear_image",
    ]
    assert ADVERTISED == tuple(name for name in COMMANDS if name != "clear_image")
    assert set(DESCRIPTIONS) == set(COMMANDS) and all(DESCRIPTIONS.values())
    assert UPLOAD_PARAMS["set_image"] == ("image",)
    assert UPLOAD_PARAMS["set_conditioning"] == ("image",)
    assert all(
        UPLOAD_PARAMS[name] == () for name in COMMANDS if name not in ("set_image", "set_conditioning")
    )
    assert all(issubclass(model, BaseModel) for model in COMMANDS.values())


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("set_prompt", {"prompt": "a fox"}, {"prompt": "a fox"}),
        ("schedule_prompt", {"prompt": "a fox", "chunk": 3}, {"prompt": "a fox", "chunk": 3}),
        ("set_image_strength", {"image_strength": 0.25}, {"image_strength": 0.25}),
        ("set_image_strength", {"image_strength": 1}, {"image_strength": 1.0}),
        ("set_image_strength", {"image_strength": 0}, {"image_strength": 0.0}),
        ("set_sr_scale", {"sr_scale": "off"}, {"sr_scale": "off"}),
        ("set_sr_scale", {"sr_scale": "4x"}, {"sr_scale": "4x"}),
        ("set_seed", {"seed": -1}, {"seed": -1}),
        ("set_seed", {"seed": 2**40}, {"seed": 2**40}),
        ("start", {}, {}),
        ("pause", {}, {}),
        ("resume", {}, {}),
        ("reset", {}, {}),
        ("rewind", {}, {"snapshot_index": -1}),
        ("rewind", {"snapshot_index": 2}, {"snapshot_index": 2}),
        ("save_snapshot", {}, {"label": ""}),
        ("save_snapshot", {"label": "x"}, {"label": "x"}),
        ("list_snapshots", {}, {}),
        ("clear_image", {}, {}),
    ],
)
def test_valid_params(name: str, params: dict, expected: dict) -> None:
    model = validate_command(name, params)
    assert isinstance(model, COMMANDS[name])
    assert model.model_dump() == expected


def test_none_params_mean_empty() -> None:
    assert validate_command("start", None).model_dump() == {}


def test_upload_params() -> None:
    model = validate_command("set_image", {"image": UPLOAD})
    assert model.image == UploadReference(**UPLOAD)
    both = validate_command("set_conditioning", {"prompt": "p", "image": dict(UPLOAD, size=15.0)})
    assert both.image.size == 15 and type(both.image.size) is int
    # a wire UploadRef dataclass is accepted too
    ref = UploadRef(upload_id="u", name="n", mime_type="image/png", size=3)
    assert validate_command("set_image", {"image": ref}).image.upload_id == "u"


def test_set_image_transition_is_ignored() -> None:
    assert validate_command("set_image", {"image": UPLOAD, "transition": "blend"}).model_dump() == {
        "image": UPLOAD
    }


def test_integral_float_is_coerced_to_int() -> None:
    model = validate_command("schedule_prompt", {"prompt": "p", "chunk": 3.0})
    assert model.chunk == 3 and type(model.chunk) is int
    seed = validate_command("set_seed", {"seed": -1.0}).seed
    assert seed == -1 and type(seed) is int
    assert validate_command("rewind", {"snapshot_index": -2.0}).snapshot_index == -2


@pytest.mark.parametrize("bad", [3.5, True, False, "3", None, [3], {"a": 1}, float("nan"), float("inf")])
def test_integer_rejections(bad: object) -> None:
    err = rejected("schedule_prompt", {"prompt": "p", "chunk": bad})
    assert err.message.startswith("schedule_prompt: chunk ")


@pytest.mark.parametrize("bad", [True, "0.5", None, [0.5]])
def test_number_rejections(bad: object) -> None:
    err = rejected("set_image_strength", {"image_strength": bad})
    assert "image_strength must be a number" in err.message


@pytest.mark.parametrize("bad", [3, 3.0, True, None, b"bytes", ["a"]])
def test_string_rejections(bad: object) -> None:
    err = rejected("set_prompt", {"prompt": bad})
    assert err.message.startswith("set_prompt: prompt must be a string")
    rejected("save_snapshot", {"label": bad})


def test_out_of_range_messages() -> None:
    assert (
        rejected("set_image_strength", {"image_strength": 1.5}).message
        == "set_image_strength: image_strength must be between 0 and 1 (got 1.5)"
    )
    assert "between 0 and 1 (got -0.1)" in rejected("set_image_strength", {"image_strength": -0.1}).message
    assert (
        rejected("set_seed", {"seed": -2}).message
        == "set_seed: seed must be between -1 and 9007199254740991 (got -2)"
    )
    assert (
        "chunk must be between 0 and 1000000 (got -1)"
        in rejected("schedule_prompt", {"prompt": "p", "chunk": -1}).message
    )


def test_bad_enum() -> None:
    msg = rejected("set_sr_scale", {"sr_scale": "8x"}).message
    assert msg.startswith("set_sr_scale: sr_scale must be one of") and "'8x'" in msg
    rejected("set_sr_scale", {"sr_scale": "2X"})
    rejected("set_sr_scale", {"sr_scale": 2})


@pytest.mark.parametrize(
    ("name", "params", "missing"),
    [
        ("set_prompt", {}, "prompt"),
        ("schedule_prompt", {"prompt": "p"}, "chunk"),
        ("schedule_prompt", {"chunk": 0}, "prompt"),
        ("set_image", {}, "image"),
        ("set_conditioning", {"prompt": "p"}, "image"),
        ("set_conditioning", {"image": UPLOAD}, "prompt"),
        ("set_image_strength", {}, "image_strength"),
        ("set_sr_scale", {}, "sr_scale"),
        ("set_seed", {}, "seed"),
    ],
)
def test_missing_required(name: str, params: dict, missing: str) -> None:
    msg = rejected(name, params).message
    assert msg.startswith(f"{name}: ")
    assert f"missing required parameter '{missing}'" in msg


def test_bad_upload_reference() -> None:
    assert "image must be an upload reference" in rejected("set_image", {"image": "up-1"}).message
    incomplete = {k: v for k, v in UPLOAD.items() if k != "mime_type"}
    assert "image.mime_type" in rejected("set_image", {"image": incomplete}).message
    assert (
        "image.size must be an integer" in rejected("set_image", {"image": dict(UPLOAD, size="15")}).message
    )


def test_unknown_command_lists_known_ones() -> None:
    msg = rejected("fly", {}).message
    assert "'fly'" in msg
    for name in COMMANDS:
        assert name in msg


def test_params_must_be_a_mapping() -> None:
    rejected("set_prompt", ["prompt"])  # type: ignore[arg-type]


def test_unexpected_keys_are_rejected_by_name() -> None:
    # reactor-runtime's contract rejects an unexpected argument (docs/DECISIONS.md)
    msg = rejected("set_prompt", {"prompt": "p", "extra": 1, "chunk": "nonsense"}).message
    assert msg == "set_prompt: unexpected parameter 'extra', 'chunk'; set_prompt takes prompt"
    assert "'anything'" in rejected("start", {"anything": [1, 2]}).message
    assert rejected("set_image", {"image": UPLOAD, "transition": "dissolve"}).code == "invalid_command"


def test_models_are_immutable() -> None:
    model = validate_command("set_prompt", {"prompt": "p"})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        model.prompt = "q"  # type: ignore[misc]


def test_messages_stay_short_for_huge_values() -> None:
    msg = rejected("set_image_strength", {"image_strength": 10**400}).message
    assert msg.startswith("set_image_strength: image_strength must be a number (got 1000")
    assert len(msg) < 120
    assert len(rejected("set_sr_scale", {"sr_scale": "x" * 10_000}).message) < 150
