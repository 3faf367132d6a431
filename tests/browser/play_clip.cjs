#!/usr/bin/env node
// Plays a clip's HLS playlist in Debian's headless Chromium with hls.js (tests/js node_modules), from a page
// served on its own loopback origin (so every playlist and segment request is cross-origin), and saves the
// frames the page grabbed.
//
// Usage: node play_clip.cjs --out-dir DIR --playlist URL [--timeout-ms N]
// Output in DIR: results.json (page result without the PNGs, console, requests), grabs/NNN.png. Exit 0 when the
// page reported a result.
"use strict";

const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");
const { createRequire } = require("module");

const JS_DIR = path.resolve(__dirname, "..", "js");
const jsRequire = createRequire(path.join(JS_DIR, "package.json"));
const { chromium } = jsRequire("playwright-core");
const HLS_JS = jsRequire.resolve("hls.js/dist/hls.min.js");
const CHROMIUM = process.env.HELIOS_CHROMIUM || "/usr/bin/chromium";

function parseArgs(argv) {
  const args = { "timeout-ms": "30000" };
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const name of ["out-dir", "playlist"]) if (!args[name]) throw new Error(`--${name} is required`);
  return args;
}

function serve(files) {
  const server = http.createServer((req, res) => {
    const name = new URL(req.url, "http://x").pathname.slice(1);
    const file = files[name];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": file.type }).end(fs.readFileSync(file.path));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const outDir = path.resolve(args["out-dir"]);
  fs.mkdirSync(path.join(outDir, "grabs"), { recursive: true });
  const results = { console: [], requests: [], hls_js: HLS_JS };
  const server = await serve({
    "clip_page.html": { path: path.join(__dirname, "clip_page.html"), type: "text/html" },
    "hls.min.js": { path: HLS_JS, type: "text/javascript" },
  });
  const pageUrl = `http://127.0.0.1:${server.address().port}/clip_page.html?playlist=${encodeURIComponent(args.playlist)}`;
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "helios-clip-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
    timeout: 30000,
  });
  let code = 1;
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => results.console.push({ type: m.type(), text: m.text() }));
    page.on("pageerror", (e) => results.console.push({ type: "pageerror", text: String(e) }));
    page.on("response", (r) => results.requests.push({ url: r.url(), status: r.status(), acao: r.headers()["access-control-allow-origin"] || null }));
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.clipResult !== undefined, null, { timeout: Number(args["timeout-ms"]) });
    const result = await page.evaluate(() => window.clipResult);
    result.grabs = result.grabs.map((grab, i) => {
      const file = `${String(i).padStart(3, "0")}.png`;
      fs.writeFileSync(path.join(outDir, "grabs", file), Buffer.from(grab.png.split(",")[1], "base64"));
      return { file, media_time: grab.media_time, width: grab.width, height: grab.height };
    });
    results.page = result;
    code = 0;
  } catch (err) {
    results.error = String(err && err.stack ? err.stack : err);
  } finally {
    fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 1));
    await context.close().catch(() => {});
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  process.exit(code);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
