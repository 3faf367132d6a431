"""How to: a Hypothesis property test against the mock, with a fresh server state for every example.

Function-scoped fixtures (`helios`, `helios_client`) are set up once per *test*, not per example, and
Hypothesis flags them (`HealthCheck.function_scoped_fixture`). Use the session-scoped `helios_server`
instead: call `helios_server.reset()` at the start of each example and open clients with
`async with helios_server.client(...)`, which closes them when the example ends.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.helpers import expect_message
from conformance.server import HeliosServer

prompts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(max_examples=4, deadline=None)  # each example opens a real WebRTC connection
@given(prompt=prompts.filter(str.strip), seed=st.integers(min_value=0, max_value=2**31 - 1))
async def test_any_prompt_and_seed_are_accepted(helios_server: HeliosServer, prompt: str, seed: int) -> None:
    helios_server.reset()  # per example: no sessions, no records from earlier examples
    async with helios_server.client(wire="v1") as client:
        assert [s["session_id"] for s in helios_server.record()["sessions"]] == [client.session_id]
        assert (await client.command("set_seed", {"seed": seed})).type != "error"
        reply = await client.command("set_prompt", {"prompt": prompt})
        assert (reply.type, reply.data["chunk"]) == ("prompt_accepted", 0)
        await client.command("start")
        await expect_message(client, "state", lambda data: data["current_prompt"] == prompt)
    assert helios_server.rejections() == []
