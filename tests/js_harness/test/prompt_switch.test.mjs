// A JS team's test: connect with the real SDK, switch the prompt, prove the switch in the received pixels
// (marker band, decoded from I420 frames) and read the server's verdict over HTTP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { promptId } from "@helios-mock/harness";
import { connect, startMock } from "../lib/sdk.mjs";

const PROMPT_A = "A red fox trotting through snow";
const PROMPT_B = "A lighthouse on a cliff at dawn";

test("prompt switch shows in the frames at the chunk the mock announced", async () => {
  const mock = await startMock(); // the server `helios-mock run` started (HELIOS_MOCK_URL)
  const client = await connect(mock.url);
  try {
    await client.reactor.sendCommand("set_prompt", { prompt: PROMPT_A });
    await client.reactor.sendCommand("start", {});
    await client.waitMessage("chunk_complete", (d) => d.chunk_index === 0);
    await client.reactor.sendCommand("set_prompt", { prompt: PROMPT_B });
    const accepted = await client.waitMessage("prompt_accepted", (d) => d.prompt === PROMPT_B);
    const cut = accepted.data.chunk;
    await client.waitMessage("chunk_complete", (d) => d.chunk_index === cut);

    const [idA, idB] = [await promptId(PROMPT_A), await promptId(PROMPT_B)];
    const seen = client.markers;
    assert.ok(seen.length > 0, "no frame with a readable marker band arrived");
    const wrong = seen.filter((m) => m.promptId !== (m.chunk >= cut ? idB : idA));
    assert.deepEqual(wrong, [], `frames with the wrong prompt (switch at chunk ${cut})`);
    const chunks = new Set(seen.map((m) => m.chunk));
    assert.ok(chunks.has(cut - 1) && chunks.has(cut), `chunks ${[...chunks]} miss one side of ${cut}`);
  } finally {
    await client.close();
  }
  const report = await mock.admin.violations();
  assert.deepEqual(report.violations.map((v) => v.text), []);
  await mock.stop();
});
