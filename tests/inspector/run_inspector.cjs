#!/usr/bin/env node
// Drives the mock's own inspector pages in Debian's headless Chromium (playwright-core, executablePath):
// 1. a production session is created over HTTP (it stays ACTIVE, no connection);
// 2. /playground: connect (local), set_prompt A, start, schedule_prompt B at --switch-chunk, by the page's own
//    buttons; wait until chunk switch+1 completes; grab frames from the <video>; then, with the page's panels,
//    inject a `stall` fault (trigger now) and cut a clip (the SDK's runtime requestClip) played to its end by
//    the bundled hls.js (its last frame saved as clip-playground.png); screenshot;
// 3. /: the sessions table (rows with their states); screenshot;
// 4. the local session's timeline: the effect lane at the switch chunk, the thumbnail of that chunk (saved as
//    PNG for the test to decode) and its markers; with its panels, a `slow_chunks` fault at a later chunk
//    (waited for on the fault lane) and a clip (POST /admin/sessions/{key}/clips) played to its end
//    (clip-timeline.png); the fault lane's entries; screenshot.
// Every request the browser makes is logged (results.requests) to prove nothing leaves the mock's origin.
//
// Usage: node run_inspector.cjs --out-dir DIR --api-url URL --prompt-a TEXT --prompt-b TEXT --switch-chunk N
// Output in DIR: results.json, frames/*.png, thumbnail.png, clip-{playground,timeline}.png,
// inspector-{playground,sessions,timeline}.png.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { createRequire } = require("module");

const jsRequire = createRequire(path.resolve(__dirname, "..", "js", "package.json"));
const { chromium } = jsRequire("playwright-core");
const CHROMIUM = process.env.HELIOS_CHROMIUM || "/usr/bin/chromium";
const T0 = Date.now();
const elapsed = () => Date.now() - T0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
  const args = { "deadline-ms": "150000" };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ["out-dir", "api-url", "prompt-a", "prompt-b", "switch-chunk"]) {
    if (!args[name]) throw new Error(`--${name} is required`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const outDir = path.resolve(args["out-dir"]);
const api = args["api-url"].replace(/\/+$/, "");
const switchChunk = Number(args["switch-chunk"]);
fs.mkdirSync(path.join(outDir, "frames"), { recursive: true });
const results = { api_url: api, steps: {}, requests: [], failed_requests: [], console: [], frames: [], error: null };
const note = (step, value = elapsed()) => (results.steps[step] = value);

async function productionSession() {
  const tok = await fetch(`${api}/tokens`, { method: "POST", headers: { "Reactor-API-Key": "inspector-test" } });
  const { jwt } = await tok.json();
  const res = await fetch(`${api}/sessions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${jwt}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: { name: "helios" } }),
  });
  const body = await res.json();
  if (res.status !== 201) throw new Error(`POST /sessions -> ${res.status}: ${JSON.stringify(body)}`);
  return body.session_id;
}

async function waitFor(page, fn, arg, timeoutMs, what) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 50 });
    return await handle.jsonValue();
  } catch (e) {
    throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}: ${e.message.split("\n")[0]}`);
  }
}

function watch(page, name) {
  page.on("console", (m) => results.console.push({ t: elapsed(), page: name, type: m.type(), text: m.text().slice(0, 500) }));
  page.on("pageerror", (e) => results.console.push({ t: elapsed(), page: name, type: "pageerror", text: String(e) }));
}

async function grabFrames(page, count) {
  for (let i = 0; results.frames.length < count && i < count * 20; i += 1) {
    const grab = await page.evaluate(() => window.playground.grab());
    if (grab && !results.frames.some((f) => f.png === grab.png)) {
      const file = `${String(results.frames.length + 1).padStart(3, "0")}.png`;
      fs.writeFileSync(path.join(outDir, "frames", file), Buffer.from(grab.png.split(",", 2)[1], "base64"));
      results.frames.push({ file, width: grab.width, height: grab.height, png: grab.png });
    }
    await sleep(40);
  }
  for (const f of results.frames) delete f.png;
}

function savePng(name, dataUrl) {
  if (dataUrl) fs.writeFileSync(path.join(outDir, name), Buffer.from(dataUrl.split(",", 2)[1], "base64"));
}

// Fill the Faults panel (`panel`: the page's expression for the panel object) and press Inject.
async function injectFault(page, panel, kind, params, trigger, value) {
  await waitFor(page, () => document.getElementById("faults").dataset.ready === "1", null, 10000, "the fault kinds");
  await page.selectOption("#fault-kind", kind);
  for (const [name, v] of Object.entries(params)) await page.fill(`#fault-param-${name}`, String(v));
  await page.check(`input[name=fault-trigger][value=${trigger}]`);
  if (trigger !== "now") await page.fill(`#fault-${trigger}`, String(value));
  await page.click("#fault-inject");
  return { panel, kind };
}

// The page has listed a fault of this kind that fired (arg: {panel, kind}).
const faultFired = (arg) => arg.panel.split(".").reduce((o, k) => o[k], window).armed.some((f) => f.kind === arg.kind && f.fired_count > 0);

// Press "Cut a clip (last N s)" and wait until the clip <video> played to its end; keep its last frame.
async function cutClip(page, panel, seconds, png) {
  await page.fill("#clip-seconds", String(seconds));
  await page.click("#clip-cut");
  await waitFor(page, (p) => ["ended", "failed"].includes(p.split(".").reduce((o, k) => o[k], window).status), panel, 40000, "the clip to play to its end");
  const clip = await page.evaluate((p) => {
    const state = p.split(".").reduce((o, k) => o[k], window); // the page's CSP refuses eval
    const grab = state.grab();
    const video = document.getElementById("clip-video");
    return { status: state.status, reply: state.reply, playlist_status: state.playlist_status, errors: state.errors,
      duration: video.duration, status_text: document.getElementById("clip-status").textContent,
      link: document.getElementById("clip-link").getAttribute("href"), button: document.getElementById("clip-cut").textContent,
      grab: grab && { width: grab.width, height: grab.height, time: grab.time, png: grab.png } };
  }, panel);
  if (clip.grab) {
    savePng(png, clip.grab.png);
    delete clip.grab.png;
  }
  return clip;
}

async function playground(context) {
  const page = await context.newPage();
  watch(page, "playground");
  await page.goto(`${api}/playground`, { waitUntil: "load" });
  await waitFor(page, () => window.playground && window.playground.status === "disconnected", null, 10000, "the playground");
  await page.click("#connect");
  await waitFor(page, () => window.playground.status === "ready", null, 20000, "status ready");
  note("ready");
  await page.fill("#prompt", args["prompt-a"]);
  await page.click("button[data-command=set_prompt]");
  await page.click("button[data-command=start]");
  await page.fill("#scheduled-prompt", args["prompt-b"]);
  await page.fill("#scheduled-chunk", String(switchChunk));
  await page.click("button[data-command=schedule_prompt]");
  const done = (chunk) => window.playground.messages.find((m) => m.type === "chunk_complete" && m.data.chunk_index >= chunk);
  await waitFor(page, done, 0, 20000, "the first chunk_complete");
  await grabFrames(page, 6);
  await waitFor(page, done, switchChunk + 1, 30000, `chunk_complete of chunk ${switchChunk + 1}`);
  note("switch_done");
  const stall = await injectFault(page, "playground.faults", "stall", { seconds: 1 }, "now");
  await waitFor(page, faultFired, stall, 15000, "the stall to fire");
  note("stall_fired");
  const clip = await cutClip(page, "playground.clip", 3, "clip-playground.png");
  note("playground_clip");
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(outDir, "inspector-playground.png"), fullPage: true });
  results.playground = await page.evaluate(() => ({
    sent: window.playground.sent,
    messages: window.playground.messages.filter((m) => m.type !== "state"),
    runtime_messages: window.playground.runtimeMessages,
    errors: window.playground.errors,
    status: window.playground.status,
    error_text: document.getElementById("error").textContent,
    faults: window.playground.faults.armed,
    fault_result: document.getElementById("fault-result").textContent,
  }));
  results.playground.clip = clip;
  return page;
}

async function sessionsPage(context) {
  const page = await context.newPage();
  watch(page, "sessions");
  await page.goto(`${api}/`, { waitUntil: "load" });
  await waitFor(page, () => document.querySelectorAll("tr[data-key]").length >= 2, null, 10000, "two session rows");
  await sleep(1200); // one more refresh: counters settle
  results.sessions = await page.evaluate(() =>
    [...document.querySelectorAll("tr[data-key]")].map((tr) => ({
      key: tr.dataset.key,
      session_id: tr.dataset.sessionId,
      state: tr.dataset.state,
      text: tr.innerText,
      href: tr.querySelector("a").getAttribute("href"),
    })),
  );
  results.server_panel = await page.evaluate(() => document.getElementById("server").innerText);
  await page.screenshot({ path: path.join(outDir, "inspector-sessions.png"), fullPage: true });
  await page.close();
}

async function timelinePage(context) {
  const local = results.sessions.find((s) => s.session_id === "local");
  if (!local) throw new Error("no local session row on /");
  const page = await context.newPage();
  watch(page, "timeline");
  await page.goto(`${api}${local.href}`, { waitUntil: "load" });
  const img = `img[data-chunk="${switchChunk}"]`;
  await waitFor(page, (sel) => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0; }, img, 15000, "the thumbnail");
  await waitFor(page, () => document.getElementById("live").naturalWidth > 0, null, 10000, "the live frame");
  results.timeline = await page.evaluate((chunk) => {
    const cell = (lane) => [...document.querySelectorAll(`.lane-cell[data-lane="${lane}"][data-chunk="${chunk}"]`)].map((c) => c.innerText);
    const head = document.querySelector(`.chunk-head[data-chunk="${chunk}"]`);
    return {
      effect: cell("effect"),
      command_cells: [...document.querySelectorAll('.lane-cell[data-lane="command"]')].map((c) => ({ chunk: c.dataset.chunk, text: c.innerText })),
      head: head ? head.innerText : null,
      markers: head ? head.querySelector(".markers").title : null,
      thumbnail_src: document.querySelector(`img[data-chunk="${chunk}"]`).src.slice(0, 5),
      live_markers: document.getElementById("live-markers").textContent,
    };
  }, switchChunk);
  const png = await page.evaluate(async (url) => {
    const res = await fetch(url);
    const bytes = new Uint8Array(await res.arrayBuffer());
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
  }, `/inspector/sessions/${encodeURIComponent(local.key)}/chunks/${switchChunk}/thumbnail.png`);
  fs.writeFileSync(path.join(outDir, "thumbnail.png"), Buffer.from(png, "base64"));
  const at = (await page.evaluate(() => Number(document.querySelector(".chunk-head.current").dataset.chunk))) + 3; // margin: armed well before that chunk begins
  const slow = await injectFault(page, "timelinePanels.faults", "slow_chunks", { count: 1, factor: 1.5 }, "at_chunk", at);
  await waitFor(page, faultFired, slow, 20000, `slow_chunks to fire at chunk ${at}`);
  await waitFor(page, (c) => [...document.querySelectorAll(`.lane-cell[data-lane="fault"][data-chunk="${c}"]`)]
    .some((cell) => cell.innerText.includes("slow_chunks")), at, 10000, `slow_chunks on the fault lane at chunk ${at}`);
  note("slow_chunks_shown");
  const clip = await cutClip(page, "timelinePanels.clip", 4, "clip-timeline.png");
  note("timeline_clip");
  results.timeline.slow_chunks_at = at;
  results.timeline.clip = clip;
  results.timeline.faults = await page.evaluate(() => window.timelinePanels.faults.armed);
  results.timeline.fault_lane = await page.evaluate(() =>
    [...document.querySelectorAll('.lane-cell[data-lane="fault"]')].filter((c) => c.innerText.trim())
      .map((c) => ({ chunk: c.dataset.chunk, text: c.innerText })));
  await page.setViewportSize({ width: 1500, height: 1100 });
  await page.evaluate(() => { const box = document.querySelector(".timeline"); box.scrollLeft = 0; });
  await sleep(300);
  await page.screenshot({ path: path.join(outDir, "inspector-timeline.png"), fullPage: true });
  await page.close();
}

async function main() {
  results.production_session = await productionSession();
  note("production_session");
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "helios-inspector-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
      "--disable-background-networking", "--disable-component-update", "--disable-quic",
      "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
    ],
    timeout: 30000,
  });
  setTimeout(() => {
    results.error = `deadline of ${args["deadline-ms"]} ms passed`;
    const done = () => finish(1);
    context.close().then(done, done);
    setTimeout(done, 5000);
  }, Number(args["deadline-ms"])).unref();
  context.on("request", (req) => results.requests.push({ method: req.method(), url: req.url() }));
  context.on("requestfailed", (req) => results.failed_requests.push({ url: req.url(), failure: req.failure() && req.failure().errorText }));
  try {
    const pg = await playground(context);
    await sessionsPage(context);
    await timelinePage(context);
    note("disconnect_sent");
    await pg.evaluate(() => window.playground.disconnect());
    note("disconnected");
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

function finish(code) {
  fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 1));
  if (code !== 0) process.stderr.write(`INSPECTOR RUN FAILED: ${results.error}\n`);
  process.exit(code);
}

main().then(() => finish(0), (e) => { results.error = results.error || String(e && e.stack ? e.stack : e); finish(1); });
