"""How to: use the plugin with pytest-asyncio in strict mode (its default: no ``asyncio_mode`` setting).

In strict mode every async test needs ``@pytest.mark.asyncio`` (or a module ``pytestmark``); the plugin's
async fixture is a ``pytest_asyncio.fixture``, so ``helios_client`` works in both modes. The tiny client
project below is written to a temporary directory and run in a subprocess, so its ``asyncio_mode = "strict"``
applies and only the installed package and its ``helios`` plugin are available.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PYPROJECT = """\
[tool.pytest.ini_options]
asyncio_mode = "strict"
asyncio_default_fixture_loop_scope = "function"
"""

CLIENT_TEST = """\
import pytest

from conformance.helpers import expect_message, wait_for_chunk
from mock_server.transport.ice import is_patched


@pytest.mark.asyncio  # strict mode: mark every async test (or set a module-level pytestmark)
async def test_start_and_first_chunk(helios, helios_client):
    client = await helios_client(wire="v1")
    assert not is_patched()  # the client's loopback-only ICE choice ended with its connect
    await client.command("set_prompt", {"prompt": "a kite over the dunes"})
    await client.command("start")
    await wait_for_chunk(client, 0)
    assert helios.rejections() == []


@pytest.mark.asyncio
async def test_v0_client(helios_client):
    client = await helios_client(wire="v0")
    client.send_command("set_prompt", {"prompt": "rain on a tin roof"})
    await expect_message(client, "prompt_accepted", {"chunk": 0})


def test_sync_tests_still_work(helios):
    assert helios.record()["sessions"] == []
"""


def test_plugin_in_strict_mode(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_client.py").write_text(CLIENT_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELIOS_MOCK_", "PYTEST_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    assert (
        "3 passed" in proc.stdout
        and "warning" not in proc.stdout
        and "asyncio: mode=Mode.STRICT" in proc.stdout
    ), output
