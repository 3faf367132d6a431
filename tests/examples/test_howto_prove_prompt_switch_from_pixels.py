"""How to: prove from the decoded video which prompt was in effect in which chunk.

Every mock frame carries a marker band (chunk, frame, prompt id, seed, image id) that survives VP8; the raw
client decodes it for each received frame (`client.frames[i].markers`). `prompt_id(text)` is the id a prompt
text gets in the band.
"""

from __future__ import annotations

from conformance.helpers import (
    chunks_with_prompt,
    expect_message,
    markers_by_chunk,
    prompt_ids_by_chunk,
    resume_video,
    wait_for_chunk,
)
from conformance.wire_client import WireClient
from mock_server.media.markers import prompt_id


async def test_prompt_switch_lands_on_the_announced_chunk(helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    resume_video(client)  # v1 connections get video after ResumeTrack (the Python SDK sends it at connect)
    await client.command("set_prompt", {"prompt": "first"})
    await client.command("start")
    await wait_for_chunk(client, 0)
    switch = (await client.command("set_prompt", {"prompt": "second"})).data["chunk"]
    await wait_for_chunk(client, int(switch), frames=True)  # + a frame of a later chunk has been decoded

    # A receiver that falls behind skips frames (even whole fast chunks), so judge every decoded frame:
    by_chunk = prompt_ids_by_chunk(client)
    assert all(ids == {prompt_id("first")} for chunk, ids in by_chunk.items() if chunk < switch)
    assert all(ids == {prompt_id("second")} for chunk, ids in by_chunk.items() if chunk >= switch)
    assert min(chunks_with_prompt(client, "second")) >= switch
    assert all(0 <= m.frame < 33 for marks in markers_by_chunk(client).values() for m in marks)


async def test_scheduled_prompt_from_pixels_v0(helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_command("set_prompt", {"prompt": "calm sea"})
    client.send_command("schedule_prompt", {"prompt": "storm", "chunk": 2})
    await expect_message(client, "prompt_accepted", {"prompt": "storm", "chunk": 2})
    client.send_command("start")
    await wait_for_chunk(client, 2, frames=True)
    for chunk, ids in prompt_ids_by_chunk(client).items():
        assert ids == {prompt_id("storm" if chunk >= 2 else "calm sea")}, chunk
