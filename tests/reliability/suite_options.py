"""Options and figures shared by the reliability suites (registered in this directory's conftest.py)."""

from __future__ import annotations

import os

import pytest

FIGURES: list[str] = []  # one line per measured run, printed in the "reliability figures" summary section


def setting(config: pytest.Config, option: str, env: str, default: float) -> float:
    """An option of these suites: the command line, else the environment, else the CI default."""
    try:
        value = config.getoption(option)
    except ValueError:  # registered only when this directory's conftest is loaded at start-up
        value = None
    if value is None:
        value = os.environ.get(env)
    return float(value) if value is not None else default
