"""Reliability suites (issue 12): wire fuzz, HTTP fuzz, soak, killed clients.

Options (env in brackets) — CI runs the bounded defaults; the long runs are for a person at a terminal:
  --fuzz-frames N    [HELIOS_FUZZ_FRAMES]   frames per wire encoding (default 1000; ≥ 10000 by hand)
  --fuzz-seed N      [HELIOS_FUZZ_SEED]     seed of the wire and HTTP fuzzers (default 12)
  --http-examples N  [HELIOS_HTTP_EXAMPLES] schemathesis examples per API operation (default 12)
  --soak-seconds S   [HELIOS_SOAK_SECONDS]  soak duration (default 60)
Every suite adds its figures to the "reliability figures" section of the terminal summary.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.server import HeliosServer

sys.path.insert(0, str(Path(__file__).parent))  # the suites' helper modules (fuzz_frames, wire_fuzzer)

from suite_options import FIGURES  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability", "helios-mock reliability suites")
    group.addoption("--fuzz-frames", type=int, default=None, help="wire fuzz frames per encoding (1000)")
    group.addoption("--fuzz-seed", type=int, default=None, help="seed of the fuzzers (12)")
    group.addoption("--http-examples", type=int, default=None, help="schemathesis examples per operation")
    group.addoption("--soak-seconds", type=float, default=None, help="soak duration in seconds (60)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def figures() -> list[str]:
    """Append a line of figures; it is printed in the terminal summary (and to stdout at once)."""
    return FIGURES


@pytest.fixture
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeliosServer]:
    """A mock of its own for each fuzz run (one run's damage must not show in another's figures)."""
    from mock_server.transport.ice import restrict_host_addresses

    restrict_host_addresses(["127.0.0.1"])  # this process's raw clients and the server meet on loopback
    server = HeliosServer.start(
        speed=20,
        resolution="160x96",
        extra=["--max-creations-per-minute", "0", "--max-sessions-per-account", "0", "--log-level", "info"],
        log_path=tmp_path_factory.mktemp("fuzz") / "server.log",
    )
    try:
        yield server
    finally:
        server.stop()
