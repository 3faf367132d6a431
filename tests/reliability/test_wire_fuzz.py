"""Wire fuzz over real data channels (v0 JSON and v1 protobuf): no crash, no state change, no silent drop.

1,000 frames per encoding in CI; ``--fuzz-frames 10000`` (or ``HELIOS_FUZZ_FRAMES``) for the long run. The
frames, their verdicts and the counting are described in ``fuzz_frames.py`` and ``wire_fuzzer.py``.
"""

from __future__ import annotations

import httpx
import pytest
from fuzz_frames import fuzz_items
from suite_options import setting
from wire_fuzzer import WireFuzzer

from conformance.server import HeliosServer

SHOWN = 12  # findings listed per kind in a failure message


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_wire_fuzz(
    fuzz_server: HeliosServer, wire: str, request: pytest.FixtureRequest, figures: list[str]
) -> None:
    frames = int(setting(request.config, "--fuzz-frames", "HELIOS_FUZZ_FRAMES", 1000))
    seed = int(setting(request.config, "--fuzz-seed", "HELIOS_FUZZ_SEED", 12))
    items = list(fuzz_items(wire, frames, seed))
    tally = await WireFuzzer(fuzz_server.url, wire).run(items)
    for path in ("/admin/record", "/health"):
        async with httpx.AsyncClient(base_url=fuzz_server.url, timeout=30) as http:
            try:
                status = (await http.get(path)).status_code
            except httpx.HTTPError as exc:
                tally.crashes.append(f"GET {path} failed after the fuzz: {type(exc).__name__}: {exc}")
                continue
        if status != 200:
            tally.crashes.append(f"GET {path} answered {status} after the fuzz")
    if fuzz_server.process is not None and fuzz_server.process.poll() is not None:
        tally.crashes.append(f"the server exited with {fuzz_server.process.returncode}")
    log = fuzz_server.log_path.read_text(errors="replace") if fuzz_server.log_path else ""
    unhandled = log.count("failed to handle an inbound frame") + log.count("Exception in ASGI application")
    line = tally.line() + f"; server log: {unhandled} unhandled exceptions (seed {seed})"
    figures.append(line)
    print(line)
    findings = [
        ("crashes", tally.crashes),
        ("state changes", tally.state_changes),
        ("unrecorded", tally.unrecorded),
    ]
    report = "\n".join(
        f"{name} ({len(found)}):\n" + "\n".join(f"  - {f[:400]}" for f in found[:SHOWN])
        for name, found in findings
        if found
    )
    assert tally.frames == frames, f"only {tally.frames} of {frames} frames were sent\n{report}"
    assert not report, f"{line}\n{report}"
