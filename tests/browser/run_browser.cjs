#!/usr/bin/env node
// Real-browser client for the end-to-end test: bundles page.js (the published JS SDK) with esbuild, serves the
// page from its own origin, opens it in Debian's headless Chromium through playwright-core and drives:
// ready; set_prompt A + start (by the page); first chunk_complete; set_prompt B (note prompt_accepted.chunk);
// chunk_complete of the chunk after it; disconnect. Frames on the <video> are grabbed all along as PNG files.
//
// Usage: node run_browser.cjs --out-dir DIR --api-url URL --prompt-a TEXT --prompt-b TEXT [--timeout-ms N]
//        [--deadline-ms N]   (timeout-ms: one wait for a chunk; deadline-ms: the whole run, browser closed after)
// Output in DIR: results.json (everything observed), frames/NNNN-t<page ms>.png (+ results.frames[] with times),
// www/ (the served page), browser.log (console, page errors, HTTP requests). Exit 0 when the scenario ran.
"use strict";

const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");
const { createRequire } = require("module");

const JS_DIR = path.resolve(__dirname, "..", "js");
const jsRequire = createRequire(path.join(JS_DIR, "package.json"));
const esbuild = jsRequire("esbuild");
const { chromium } = jsRequire("playwright-core");

const CHROMIUM = process.env.HELIOS_CHROMIUM || "/usr/bin/chromium";
const T0 = Date.now();
const elapsed = () => Date.now() - T0;

function parseArgs(argv) {
  const args = { "timeout-ms": "20000", "deadline-ms": "50000" };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ["out-dir", "api-url", "prompt-a", "prompt-b"]) {
    if (!args[name]) throw new Error(`--${name} is required`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const outDir = path.resolve(args["out-dir"]);
const apiUrl = args["api-url"].replace(/\/+$/, "");
const apiOrigin = new URL(apiUrl).origin;
const wwwDir = path.join(outDir, "www");
const framesDir = path.join(outDir, "frames");
fs.mkdirSync(wwwDir, { recursive: true });
fs.mkdirSync(framesDir, { recursive: true });
const logFd = fs.openSync(path.join(outDir, "browser.log"), "w");
const log = (text) => fs.writeSync(logFd, `${(elapsed() / 1000).toFixed(3)} ${text}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const results = {
  api_url: apiUrl,
  chromium: CHROMIUM,
  page_url: null,
  page_origin: null,
  steps: {},
  http: [], // requests the browser made to the mock: {t, method, url, status, acao, failure}
  static_requests: [],
  console: [],
  frames: [],
  current_time: [],
  error: null,
};

async function bundle() {
  await esbuild.build({
    entryPoints: [path.join(__dirname, "page.js")],
    outfile: path.join(wwwDir, "page.bundle.js"),
    bundle: true,
    format: "iife",
    platform: "browser",
    define: { "process.env.NODE_ENV": '"production"' },
    nodePaths: [path.join(JS_DIR, "node_modules")],
    logLevel: "warning",
  });
  fs.copyFileSync(path.join(__dirname, "page.html"), path.join(wwwDir, "page.html"));
}

// The page's own origin: 127.0.0.1 on another port than the mock, so every SDK request is cross-origin.
function serveStatic() {
  const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };
  const server = http.createServer((req, res) => {
    const name = path.basename(new URL(req.url, "http://x").pathname);
    const file = path.join(wwwDir, name);
    results.static_requests.push({ t: elapsed(), method: req.method, url: req.url });
    if (name === "favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    if (!name || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": types[path.extname(name)] || "application/octet-stream" });
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const evalHelios = (page, fn, arg) => page.evaluate(fn, arg);

async function waitHelios(page, fn, arg, timeoutMs, what) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 20 });
    return await handle.jsonValue();
  } catch (e) {
    throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}: ${e.message.split("\n")[0]}`);
  }
}

// Grab the <video> frame repeatedly; save each new picture as a PNG with its time.
function startGrabbing(page) {
  const state = { stop: false, count: 0, last: null, errors: 0 };
  state.done = (async () => {
    while (!state.stop) {
      let grab = null;
      try {
        grab = await page.evaluate(() => window.helios && window.helios.grab());
      } catch (e) {
        state.errors += 1;
        if (state.errors === 1) log(`grab failed: ${e.message}`);
      }
      if (grab && grab.png !== state.last) {
        state.last = grab.png;
        state.count += 1;
        const file = `${String(state.count).padStart(4, "0")}-t${Math.round(grab.t)}ms.png`;
        fs.writeFileSync(path.join(framesDir, file), Buffer.from(grab.png.split(",", 2)[1], "base64"));
        const { png, ...meta } = grab;
        results.frames.push({ file, t_node: elapsed(), ...meta });
      }
      await sleep(15);
    }
  })();
  return state;
}

async function scenario(page) {
  const timeoutMs = Number(args["timeout-ms"]);
  await waitHelios(page, () => window.helios && window.helios.status === "ready", null, 20000, "status ready");
  results.steps.ready = elapsed();
  // the page sends set_prompt A and start on ready; wait for generation and the first completed chunk
  const cc = await waitHelios(
    page,
    () => window.helios.messages.find((m) => m.type === "chunk_complete"),
    null,
    timeoutMs,
    "the first chunk_complete",
  );
  results.steps.first_chunk_complete = cc;
  const mark = await evalHelios(page, () => window.helios.messages.length);
  await evalHelios(page, (prompt) => window.helios.sendCommand("set_prompt", { prompt }), args["prompt-b"]);
  results.steps.set_prompt_b_sent = elapsed();
  const accepted = await waitHelios(
    page,
    ([from, prompt]) =>
      window.helios.messages.slice(from).find((m) => m.type === "prompt_accepted" && m.data.prompt === prompt),
    [mark, args["prompt-b"]],
    10000,
    "prompt_accepted for prompt B",
  );
  results.steps.prompt_accepted_b = accepted;
  const last = await waitHelios(
    page,
    (chunk) => window.helios.messages.find((m) => m.type === "chunk_complete" && m.data.chunk_index >= chunk),
    accepted.data.chunk + 1,
    timeoutMs,
    `chunk_complete of chunk ${accepted.data.chunk + 1}`,
  );
  results.steps.last_chunk_complete = last;
}

async function main() {
  await bundle();
  log("bundled page.js");
  const server = await serveStatic();
  const pageOrigin = `http://127.0.0.1:${server.address().port}`;
  results.page_origin = pageOrigin;
  results.page_url = `${pageOrigin}/page.html?${new URLSearchParams({ api: apiUrl, prompt: args["prompt-a"] })}`;

  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "helios-chromium-"));
  const browserArgs = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
  ];
  results.browser_args = [...browserArgs, `--user-data-dir=${userDataDir}`];
  // launchPersistentContext passes --user-data-dir itself (playwright refuses it in args)
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: browserArgs,
    timeout: 30000,
  });
  // Never leave a browser behind: past the deadline, close it and fail (before the harness kills us).
  setTimeout(() => {
    results.error = `deadline of ${args["deadline-ms"]} ms passed`;
    const done = () => finish(1);
    context.close().then(done, done);
    setTimeout(done, 5000);
  }, Math.max(0, Number(args["deadline-ms"]) - elapsed())).unref();
  results.browser_version = context.browser() ? context.browser().version() : null;
  let grabber = null;
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => {
      const text = m.text();
      if (m.type() === "debug") return log(`console.debug ${text}`);
      results.console.push({ t: elapsed(), type: m.type(), text: text.slice(0, 2000) });
      log(`console.${m.type()} ${text}`);
    });
    page.on("pageerror", (e) => {
      results.console.push({ t: elapsed(), type: "pageerror", text: String(e) });
      log(`pageerror ${e}`);
    });
    page.on("requestfailed", (req) => {
      if (!req.url().startsWith(apiOrigin)) return;
      const failure = req.failure() ? req.failure().errorText : "failed";
      results.http.push({ t: elapsed(), method: req.method(), url: req.url(), status: null, failure });
      log(`request failed ${req.method()} ${req.url()}: ${failure}`);
    });
    page.on("response", async (res) => {
      const req = res.request();
      if (!req.url().startsWith(apiOrigin)) return;
      const headers = await res.allHeaders().catch(() => ({}));
      const entry = {
        t: elapsed(),
        method: req.method(),
        url: req.url(),
        status: res.status(),
        acao: headers["access-control-allow-origin"] ?? null,
        request_headers: Object.keys(await req.allHeaders().catch(() => ({}))),
      };
      results.http.push(entry);
      log(`${entry.method} ${entry.url} -> ${entry.status} (ACAO ${entry.acao})`);
    });

    await page.goto(results.page_url, { waitUntil: "load" });
    results.steps.loaded = elapsed();
    grabber = startGrabbing(page);
    const sampleTimes = setInterval(() => {
      page
        .evaluate(() => ({ currentTime: document.getElementById("video").currentTime, presented: window.helios.presentedFrames }))
        .then((v) => results.current_time.push({ t: elapsed(), ...v }))
        .catch(() => {});
    }, 250);
    try {
      await scenario(page);
      await sleep(300); // let the last frames reach the screen
    } finally {
      clearInterval(sampleTimes);
      grabber.stop = true;
      await grabber.done;
      Object.assign(
        results,
        await page.evaluate(async () => {
          const h = window.helios;
          return {
            statuses: h.statuses,
            messages: h.messages,
            runtime_messages: h.runtimeMessages,
            errors: h.errors,
            page_errors: h.pageErrors,
            tracks: h.tracks,
            commands: h.commands,
            sdk_stats: h.stats,
            inbound_video: await h.inboundVideoStats(),
            ice_stats: await h.iceStats(),
            ice_events: h.ice,
            sdp: h.sdp(),
            resources: h.resources(),
            page_origin_seen: h.origin,
          };
        }).catch((e) => ({ collect_error: String(e) })), // keep the scenario's own error, if any
      );
    }
    results.steps.disconnect_sent = elapsed();
    results.final_status = await page.evaluate(() => window.helios.disconnect());
    results.steps.disconnected = elapsed();
    await sleep(200);
    Object.assign(
      results,
      await page.evaluate(() => ({ statuses: window.helios.statuses, channel_events: window.helios.channelErrors })),
    );
  } finally {
    await context.close().catch(() => {});
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

function finish(code) {
  fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 1));
  if (code === 0) process.stdout.write(`browser ok: ${results.frames.length} frames grabbed in ${elapsed()} ms\n`);
  else process.stderr.write(`BROWSER RUN FAILED: ${results.error}\n`);
  process.exit(code);
}

main().then(
  () => finish(0),
  (e) => {
    results.error = results.error || String(e && e.stack ? e.stack : e);
    finish(1);
  },
);
