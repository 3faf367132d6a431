"""Figures a module prints after its tests (past pytest's output capture): measurements, never assertions."""

from __future__ import annotations

import pytest


def print_past_capture(request: pytest.FixtureRequest, line: str) -> None:
    """Print `line` on the terminal even while pytest captures output."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(f"\n{line}")
        return
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")
