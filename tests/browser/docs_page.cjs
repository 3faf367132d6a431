#!/usr/bin/env node
// Opens the mock's `/docs` (Swagger UI served from local assets) in Debian's headless Chromium through
// playwright-core and records every request the page makes, to show the API docs need no internet access.
//
// Usage: node docs_page.cjs --url http://127.0.0.1:PORT --out-dir DIR --screenshot FILE [--timeout-ms N]
// Output: DIR/results.json with
//   requests[]  every request of the browser context {method, url, resource_type}, logged before it is sent;
//   finished[]  {url, status} of the requests that got a response;  failed[] {url, failure};
//   blocked[]   requests to another origin, aborted here (nothing leaves the machine even when the page is
//               wrong; the test fails on them all the same);
//   operations[] [method, path] of every rendered `.opblock`; console[], page_errors[], error.
// Exit 0 when the page rendered its operations (the Python test judges the request log).
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const JS_DIR = path.resolve(__dirname, "..", "js");
const { chromium } = createRequire(path.join(JS_DIR, "package.json"))("playwright-core");
const CHROMIUM = process.env.HELIOS_CHROMIUM || "/usr/bin/chromium";

function parseArgs(argv) {
  const args = { "timeout-ms": "30000" };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ["url", "out-dir", "screenshot"]) if (!args[name]) throw new Error(`--${name} is required`);
  return args;
}

const args = parseArgs(process.argv.slice(2));
const origin = new URL(args.url).origin;
const results = {
  page_url: `${origin}/docs`,
  origin,
  chromium: CHROMIUM,
  browser_version: null,
  requests: [],
  finished: [],
  failed: [],
  blocked: [],
  console: [],
  page_errors: [],
  operations: [],
  title: null,
  screenshot: null,
  error: null,
};

function isLocal(url) {
  return url.startsWith("data:") || url.startsWith("blob:") || new URL(url).origin === origin;
}

function watch(context, page) {
  context.on("request", (req) =>
    results.requests.push({ method: req.method(), url: req.url(), resource_type: req.resourceType() }),
  );
  context.on("requestfinished", async (req) => {
    const resp = await req.response().catch(() => null);
    results.finished.push({ url: req.url(), status: resp ? resp.status() : null });
  });
  context.on("requestfailed", (req) =>
    results.failed.push({ url: req.url(), failure: req.failure() ? req.failure().errorText : "unknown" }),
  );
  page.on("console", (msg) => results.console.push({ type: msg.type(), text: msg.text() }));
  page.on("pageerror", (err) => results.page_errors.push(String(err)));
}

async function render(page, timeoutMs) {
  await page.goto(results.page_url, { waitUntil: "load", timeout: timeoutMs });
  // Swagger UI fetched /openapi.json and drew the operations; POST /sessions is one the docs must show
  await page.waitForSelector(".opblock", { timeout: timeoutMs });
  await page.waitForSelector('.opblock-post .opblock-summary-path[data-path="/sessions"]', {
    state: "visible",
    timeout: timeoutMs,
  });
  await page.waitForLoadState("networkidle", { timeout: timeoutMs });
  results.title = await page.title();
  results.operations = await page.$$eval(".opblock", (blocks) =>
    blocks.map((b) => [
      (b.querySelector(".opblock-summary-method") || {}).textContent || "",
      (b.querySelector(".opblock-summary-path") || { dataset: {} }).dataset.path || "",
    ]),
  );
  fs.mkdirSync(path.dirname(args.screenshot), { recursive: true });
  await page.screenshot({ path: args.screenshot, fullPage: true });
  results.screenshot = args.screenshot;
}

async function main() {
  const timeoutMs = Number(args["timeout-ms"]);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
      "--disable-background-networking", "--disable-component-update", "--disable-quic",
      "--disable-default-apps", "--disable-domain-reliability", "--no-pings",
    ],
    timeout: timeoutMs,
  });
  results.browser_version = browser.version();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (isLocal(url)) return route.continue();
      results.blocked.push(url);
      return route.abort("blockedbyclient");
    });
    const page = await context.newPage();
    watch(context, page);
    await render(page, timeoutMs);
  } finally {
    await browser.close().catch(() => {});
  }
}

function finish(code) {
  fs.mkdirSync(args["out-dir"], { recursive: true });
  fs.writeFileSync(path.join(args["out-dir"], "results.json"), JSON.stringify(results, null, 1));
  if (code === 0) process.stdout.write(`docs ok: ${results.operations.length} operations, ${results.requests.length} requests\n`);
  else process.stderr.write(`DOCS PAGE FAILED: ${results.error}\n`);
  process.exit(code);
}

main().then(
  () => finish(0),
  (e) => {
    results.error = String(e && e.stack ? e.stack : e);
    finish(1);
  },
);
