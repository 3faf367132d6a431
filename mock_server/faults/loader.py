"""Fault files for ``helios-mock serve --faults FILE`` and the built-in chaos presets for load runs.

A fault file is YAML or JSON holding a list of fault bodies (the same objects as ``POST /admin/faults``),
or a mapping ``{"faults": [...]}``. Every problem names the file and the item's index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mock_server.faults.catalogue import FaultInvalid, FaultSpec, parse_fault
from mock_server.faults.registry import MAX_ARMED_FAULTS

MAX_FAULT_FILE_BYTES = 1 << 20  # 1 MiB


def _read(path: Path) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FaultInvalid([f"{path}: cannot read the fault file ({exc.strerror or exc})"]) from None
    if size > MAX_FAULT_FILE_BYTES:
        raise FaultInvalid([f"{path}: {size} bytes, a fault file may hold at most {MAX_FAULT_FILE_BYTES}"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FaultInvalid([f"{path}: cannot read the fault file as UTF-8 text ({exc})"]) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)  # YAML is a superset of JSON, so .yaml/.yml/other all parse here
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise FaultInvalid(
            [f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"]
        ) from None


def load_faults(path: str | Path) -> list[FaultSpec]:
    """Read and validate a fault file; raise `FaultInvalid` listing every bad item by index."""
    path = Path(path)
    data = _read(path)
    if isinstance(data, dict) and set(data) == {"faults"}:
        data = data["faults"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise FaultInvalid(
            [f"{path}: expected a list of faults (or {{faults: [...]}}), got {type(data).__name__}"]
        )
    if len(data) > MAX_ARMED_FAULTS:
        raise FaultInvalid([f"{path}: {len(data)} faults, at most {MAX_ARMED_FAULTS} can be armed"])
    specs: list[FaultSpec] = []
    problems: list[str] = []
    for index, item in enumerate(data):
        try:
            specs.append(parse_fault(item))
        except FaultInvalid as exc:
            problems += [f"{path}: item {index}: {p}" for p in exc.problems]
    if problems:
        raise FaultInvalid(problems)
    return specs


def _chaos(*bodies: dict[str, Any]) -> tuple[FaultSpec, ...]:
    return tuple(parse_fault(body) for body in bodies)


# Probability faults for load runs: each new session draws once per fault from the seeded generator.
CHAOS_PRESETS: dict[str, tuple[FaultSpec, ...]] = {
    "light": _chaos(
        {"kind": "session_refused", "probability": 0.02, "params": {"status": 503, "retry_after": 1}},
        {"kind": "queue_wait", "probability": 0.05, "params": {"seconds": 2}},
        {"kind": "command_error", "probability": 0.02, "on_command": "set_prompt"},
        {
            "kind": "slow_chunks",
            "probability": 0.05,
            "after_seconds": 10,
            "params": {"count": 2, "factor": 1.5},
        },
        {"kind": "stall", "probability": 0.02, "after_seconds": 20, "params": {"seconds": 2}},
        {
            "kind": "media_loss",
            "probability": 0.05,
            "after_seconds": 15,
            "params": {"percent": 5, "seconds": 5},
        },
    ),
    "heavy": _chaos(
        {"kind": "session_refused", "probability": 0.1, "params": {"status": 429, "retry_after": 2}},
        {"kind": "queue_wait", "probability": 0.2, "params": {"seconds": 5, "state": "WAITING"}},
        {"kind": "sdp_slow", "probability": 0.1, "params": {"seconds": 3}},
        {"kind": "command_error", "probability": 0.1, "on_command": "set_prompt"},
        {"kind": "internal_error", "probability": 0.05, "on_command": "schedule_prompt"},
        {"kind": "slow_chunks", "probability": 0.2, "after_seconds": 5, "params": {"count": 3, "factor": 3}},
        {"kind": "stall", "probability": 0.1, "after_seconds": 10, "params": {"seconds": 5}},
        {
            "kind": "media_loss",
            "probability": 0.2,
            "after_seconds": 5,
            "params": {"percent": 20, "seconds": 10},
        },
        {"kind": "moderation", "probability": 0.05, "at_chunk": 3, "params": {"action": "warn"}},
        {"kind": "transport_drop", "probability": 0.05, "after_seconds": 30},
        {"kind": "gpu_failure", "probability": 0.02, "after_seconds": 60},
    ),
}


def chaos_preset(name: str) -> list[FaultSpec]:
    """The specs of a chaos preset; FaultInvalid naming the presets if `name` is unknown."""
    if name not in CHAOS_PRESETS:
        raise FaultInvalid([f"unknown chaos preset {name!r}; choose one of {', '.join(CHAOS_PRESETS)}"])
    return list(CHAOS_PRESETS[name])
