"""A client process to be killed: connect a WireClient, start generating, print READY, keep pinging.

    python killed_client.py URL WIRE MODE

Prints ``READY <session_id>`` once video is being generated, then pings as the real clients do until the
test sends SIGKILL (no goodbye, no stop: the server has to notice on its own).
"""

from __future__ import annotations

import asyncio
import sys

from conformance.helpers import keepalive, resume_video
from conformance.wire_client import WireClient
from mock_server.transport.ice import restrict_host_addresses


async def main(url: str, wire: str, mode: str) -> None:
    restrict_host_addresses(["127.0.0.1"])
    client = WireClient(url, wire=wire, mode=mode, token="killed-client")
    await client.connect()
    resume_video(client)
    async with keepalive(client, interval=0.5):
        client.send_command("set_prompt", {"prompt": "a client about to be killed"})
        client.send_command("start")
        await client.wait_message("chunk_complete", timeout=20)
        print(f"READY {client.session_id}", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
