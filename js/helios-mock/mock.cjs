"use strict";
// startMock: a helios-mock server for a test suite. Under `helios-mock run` (HELIOS_MOCK_URL set) it returns
// that server; otherwise it spawns `helios-mock serve --port 0 …`, reads the port from the start-up banner
// and waits for GET /health.

const { spawn } = require("node:child_process");
const { AdminClient } = require("./admin.cjs");

const BANNER_PORT = / API http:\/\/(?:\[[^\]]*\]|[^\s/:]+):(\d+)/;
const OUTPUT_KEPT = 200; // lines of server output kept for error messages

/**
 * @param {object} [options]
 * @param {string[]} [options.args]     extra `serve` flags, e.g. ["--speed", "4", "--resolution", "160x96"]
 * @param {string[]} [options.command]  how to run the CLI (default ["helios-mock"]; env HELIOS_MOCK_COMMAND,
 *                                      space-separated, e.g. "python -m mock_server")
 * @param {boolean} [options.reuse]     use HELIOS_MOCK_URL when set (default true)
 * @param {number} [options.timeoutMs]  start-up limit (default 30000)
 * @param {string} [options.adminToken] started with --admin-token (or HELIOS_MOCK_ADMIN_TOKEN)
 * @param {"pipe"|"inherit"} [options.output] the server's output: kept for errors (pipe, default) or shown
 */
async function startMock(options = {}) {
  const env = options.env || process.env;
  const adminToken = options.adminToken || env.HELIOS_MOCK_ADMIN_TOKEN || undefined;
  if (options.reuse !== false && env.HELIOS_MOCK_URL) {
    const url = env.HELIOS_MOCK_URL.replace(/\/+$/, "");
    const admin = new AdminClient(url, { adminToken });
    return { url, adminToken, admin, external: true, stop: async () => {} };
  }
  const command = options.command || (env.HELIOS_MOCK_COMMAND || "helios-mock").split(" ").filter(Boolean);
  const args = [...command.slice(1), "serve", "--host", "127.0.0.1", "--port", "0", ...(options.args || [])];
  if (adminToken && !args.includes("--admin-token")) args.push("--admin-token", adminToken);
  const child = spawn(command[0], args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const output = [];
  const port = await waitForPort(child, output, options);
  const url = `http://127.0.0.1:${port}`;
  const admin = new AdminClient(url, { adminToken });
  try {
    await waitForHealth(admin, child, options.timeoutMs || 30000);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${err.message}\n${output.slice(-20).join("\n")}`);
  }
  return { url, adminToken, admin, external: false, process: child, output, stop: () => stopChild(child) };
}

function waitForPort(child, output, options) {
  const timeoutMs = options.timeoutMs || 30000;
  return new Promise((resolve, reject) => {
    let found = false;
    const timer = setTimeout(() => fail(`no start-up banner within ${timeoutMs} ms`), timeoutMs);
    function fail(why) {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`helios-mock did not start: ${why}\n${output.slice(-20).join("\n")}`));
    }
    const onLine = (line) => {
      output.push(line);
      if (output.length > OUTPUT_KEPT) output.shift();
      if (options.output === "inherit") process.stderr.write(`${line}\n`);
      const match = BANNER_PORT.exec(line);
      if (match && !found) {
        found = true;
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let rest = "";
      stream.setEncoding("utf8");
      stream.on("data", (text) => {
        const lines = (rest + text).split("\n");
        rest = lines.pop();
        lines.forEach(onLine);
      });
    }
    child.on("error", (err) => fail(`${err.message} (is helios-mock installed? pip install helios-mock)`));
    child.on("exit", (code, signal) => { if (!found) fail(`it exited with ${signal || code}`); });
  });
}

async function waitForHealth(admin, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`helios-mock exited with ${child.exitCode}`);
    try {
      await admin.health();
      return;
    } catch (err) {
      last = err.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`GET /health did not answer within ${timeoutMs} ms (${last})`);
}

/** SIGINT (the mock closes its sessions), then SIGKILL after 10 s. */
function stopChild(child, graceMs = 10000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGINT");
  });
}

module.exports = { startMock };
