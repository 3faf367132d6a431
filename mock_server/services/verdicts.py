"""Client-rule verdicts over HTTP: the conformance rule engine run on the server's own record.

The engine lives in ``conformance.client_rules`` (a pure function of the record's JSON). ``conformance``
imports ``mock_server``, so it is imported here inside the function, not at module level: importing
``mock_server`` never loads ``conformance`` and there is no import-time cycle (docs/DECISIONS.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from mock_server.errors import Invalid, NotFound
from mock_server.services.admin import session_view
from mock_server.services.registry import Registry

MAX_PING_TOLERANCE = 100.0  # beyond this, ping-missing could never fire on a session of any length
DEFAULT_PING_TOLERANCE = 1.5  # conformance.client_rules.DEFAULT_PING_TOLERANCE


def rule_texts() -> dict[str, str]:
    """Every client rule id and what it means."""
    from conformance.client_rules import RULES

    return dict(RULES)


def violations(
    registry: Registry,
    session_id: str | None = None,
    *,
    ignore: Iterable[str] = (),
    only: Iterable[str] = (),
    ping_tolerance: float = DEFAULT_PING_TOLERANCE,
) -> dict[str, Any]:
    """The violations in every session (or the latest session with `session_id`), in time order.

    `ignore` drops rule ids (the pytest plugin's ``helios_lenient(*ids)``); `only` keeps just these (empty:
    every rule, the plugin's strict mode); `ping_tolerance` scales the documented keep-alive intervals.
    """
    from conformance.client_rules import check_record

    rules = rule_texts()
    ignored, kept = _rule_ids(ignore, rules, "ignore"), _rule_ids(only, rules, "only")
    if not (math.isfinite(ping_tolerance) and 1.0 <= ping_tolerance <= MAX_PING_TOLERANCE):
        raise Invalid(f"ping_tolerance must be between 1 and {MAX_PING_TOLERANCE:g} (got {ping_tolerance:g})")
    sessions = registry.all_sessions()
    if session_id is not None:
        sessions = [s for s in sessions if s.id == session_id][-1:]
        if not sessions:
            raise NotFound(f"unknown session {session_id!r} (GET /admin/record lists the sessions)")
    record = {"sessions": [session_view(s) for s in sessions]}
    found = check_record(record, ping_tolerance=ping_tolerance, ignore=ignored)
    if kept:
        found = [v for v in found if v.rule_id in kept]
    return {
        "violations": [
            {
                "rule_id": v.rule_id,
                "rule": rules.get(v.rule_id, ""),
                "explanation": v.explanation,
                "session_id": v.session_id,
                "entry": dict(v.entry) if v.entry is not None else None,
                "text": str(v),
            }
            for v in found
        ],
        "checked_sessions": [s.id for s in sessions],
        "rules": sorted(kept or (set(rules) - set(ignored))),
        "ping_tolerance": ping_tolerance,
    }


def _rule_ids(values: Iterable[str], rules: dict[str, str], name: str) -> set[str]:
    """Rule ids from repeated and/or comma-separated query values; an unknown id is a 400."""
    ids = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(ids - set(rules))
    if unknown:
        raise Invalid(f"{name}: unknown rule id(s) {', '.join(unknown)}; known: {', '.join(sorted(rules))}")
    return ids
