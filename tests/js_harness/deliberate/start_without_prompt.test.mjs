// A deliberate client-rule violation: `start` before any prompt. The model refuses it; the test itself
// passes, but `helios-mock run --strict` reports [start-without-prompt] and fails the run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, startMock } from "../lib/sdk.mjs";

test("start without a prompt is refused (and recorded as a violation)", async () => {
  const mock = await startMock();
  const client = await connect(mock.url);
  try {
    await client.reactor.sendCommand("start", {});
    const refusal = await client.waitMessage("command_error", (d) => d.command === "start");
    assert.match(refusal.data.reason, /prompt/);
  } finally {
    await client.close();
  }
  const { violations } = await mock.admin.violations({ only: ["start-without-prompt"] });
  assert.equal(violations.length, 1);
  assert.equal(violations[0].entry.body.type, "start");
});
