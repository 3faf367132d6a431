"""How to: connect a raw client, set a prompt, start, and wait for chunks and messages.

`helios_client` (from the `helios` pytest plugin) makes connected raw wire clients: wire="v0" speaks JSON
like the JS SDK (no replies to commands: read the broadcasts), wire="v1" speaks protobuf like the Python SDK
(every command gets one correlated reply).
"""

from __future__ import annotations

from conformance.helpers import expect_message, wait_for_chunk
from conformance.wire_client import WireClient


async def test_connect_and_start_v1(helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    reply = await client.command("set_prompt", {"prompt": "a red fox trotting through snow"})
    assert reply is not None and reply.type == "prompt_accepted" and reply.data["chunk"] == 0
    assert (await client.command("start")).type == "ack"  # start answers nothing: a bodyless ack
    await wait_for_chunk(client, 1)  # chunk_complete for chunk 1 (chunks count from 0)
    state = await expect_message(client, "state", {"current_chunk": 2})
    assert state.data["running"] and state.data["current_frame"] == 66


async def test_connect_and_start_v0(helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_command("set_prompt", {"prompt": "a red fox trotting through snow"})
    await expect_message(client, "prompt_accepted", {"chunk": 0})
    mark = client.now()
    client.send_command("start")
    started = await expect_message(client, "generation_started", since=mark)
    assert started.data == {"prompt": "a red fox trotting through snow", "chunk_index": 0}
    done = await wait_for_chunk(client, 0)
    assert done.data["frames_emitted"] == 33
    # expect_message's `where` also takes a predicate on the message data
    await expect_message(client, "state", lambda data: data["current_chunk"] >= 1)
