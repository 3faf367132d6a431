"""The mock in this test's process (uvicorn on a free loopback port), so a test can read its logs (caplog)
and its in-process state while raw clients talk to it over real WebRTC on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from conformance.server import free_port
from mock_server.app import create_app
from mock_server.config import Settings
from mock_server.transport.ice import restrict_host_addresses

BOUND = 20.0  # seconds: generous bound for a loaded machine


@contextlib.asynccontextmanager
async def mock_on_loopback(**settings: Any) -> AsyncIterator[str]:
    """The mock on a free loopback port (fast clock, small frames, `settings` on top); yields its URL."""
    restrict_host_addresses(["127.0.0.1"])
    port = free_port()
    options: dict[str, Any] = {"speed": 20.0, "native_size": (160, 96), **settings}
    config = Settings(port=port, ice_addresses=("127.0.0.1",), **options)
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        async with asyncio.timeout(BOUND):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for "started"
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, BOUND)
