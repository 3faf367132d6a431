"""A Python team's test with the published reactor-sdk (libwebrtc, like the browsers): connect, switch the
prompt, see the switch in the received frames' marker band, read the verdict over HTTP. Run it with
`helios-mock run --netns -- pytest`: on a loopback-only runner libwebrtc gathers no candidate otherwise."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import httpx
from reactor_sdk import Reactor

from mock_server.media.markers import Markers, decode_markers, prompt_id

PROMPT_A = "A red fox trotting through snow"
PROMPT_B = "A lighthouse on a cliff at dawn"


async def wait_for(find: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while (found := find()) is None or found is False:
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return found


async def test_prompt_switch_in_frames_and_no_violation() -> None:
    url = os.environ["HELIOS_MOCK_URL"]  # set by helios-mock run
    reactor = Reactor("helios", local=True, api_url=url)
    messages: list[dict[str, Any]] = []
    markers: list[Markers] = []
    reactor.on("message", lambda msg: messages.append(msg) if isinstance(msg, dict) else None)
    reactor.track("main_video").on_frame(
        lambda frame: markers.append(m) if (m := decode_markers(frame)) else None
    )

    def message(kind: str, **want: Any) -> dict[str, Any] | None:
        return next(
            (m["data"] for m in messages if m.get("type") == kind and want.items() <= m["data"].items()), None
        )

    await reactor.connect()
    try:
        await reactor.send_command("set_prompt", {"prompt": PROMPT_A})
        await reactor.send_command("start", {})
        await wait_for(lambda: message("chunk_complete", chunk_index=0), "chunk 0")
        await reactor.send_command("set_prompt", {"prompt": PROMPT_B})
        cut = (await wait_for(lambda: message("prompt_accepted", prompt=PROMPT_B), "prompt B accepted"))[
            "chunk"
        ]
        await wait_for(lambda: message("chunk_complete", chunk_index=cut), f"chunk {cut}")
    finally:
        await reactor.disconnect()

    assert markers, "no frame with a readable marker band arrived"
    wrong = [m for m in markers if m.prompt_id != prompt_id(PROMPT_B if m.chunk >= cut else PROMPT_A)]
    assert not wrong, f"frames with the wrong prompt (switch at chunk {cut}): {wrong[:5]}"
    assert {cut - 1, cut} <= {m.chunk for m in markers}
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        verdict = (await http.get("/admin/violations")).json()
    assert [v["text"] for v in verdict["violations"]] == []
