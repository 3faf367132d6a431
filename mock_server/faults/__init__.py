"""Fault injection (issue 9), pure part: the catalogue of fault kinds, the registry with its hook queries,
and fault files / chaos presets. No clock, no asyncio; the session, services and routes call the hooks."""

from __future__ import annotations

from mock_server.faults.catalogue import (
    KINDS,
    PARAMS,
    FaultInvalid,
    FaultSpec,
    fault_schema,
    parse_fault,
)
from mock_server.faults.loader import CHAOS_PRESETS, chaos_preset, load_faults
from mock_server.faults.registry import Fault, FaultRegistry, Firing

__all__ = [
    "CHAOS_PRESETS",
    "KINDS",
    "PARAMS",
    "Fault",
    "FaultInvalid",
    "FaultRegistry",
    "FaultSpec",
    "Firing",
    "chaos_preset",
    "fault_schema",
    "load_faults",
    "parse_fault",
]
