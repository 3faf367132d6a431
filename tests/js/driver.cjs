#!/usr/bin/env node
// Scriptable driver for the published Reactor JS SDK (@reactor-team/js-sdk 2.9.0, unmodified) under Node 20
// with @roamhq/wrtc. Usage: node driver.cjs scenario.json
//
// Scenario: {mode: "local"|"production", api_url?, token?, out_dir, timeout_ms?, steps: [...]}
// api_url defaults to $HELIOS_E2E_API_URL (set by tests/e2e/ns_scenario.py); token defaults to "mock-token".
//
// Steps (each may carry an "id" used in the log; every step is logged with step_start / step_end):
//   {op:"connect", timeout_ms?}                 connect() (+ token in production), then wait for "ready";
//                                               logs a "timing" event connect_to_ready_ms
//   {op:"wait_status", status, timeout_ms?}     resolves at once if the status is already current
//   {op:"command", name, params?, mark?}        sendCommand; fails unless status is "ready". A param value
//                                               {"$upload": alias} becomes the FileRef of an earlier upload.
//                                               mark:true sets the message cursor (see below) before sending.
//   {op:"upload", path, mime_type, name?, alias}
//   {op:"wait_message", type, where?, timeout_ms?, save_as?, from?, after?}
//   {op:"expect_no_message", type, where?, for_ms}
//   {op:"sleep", ms}
//   {op:"disconnect", recoverable?}
//   {op:"reconnect", timeout_ms?}               reconnect() then wait for "ready" (timing reconnect_to_ready_ms)
//   {op:"mark"}                                 sets the message cursor to "now"
//
// Message matching: wait_message / expect_no_message only consider model messages received after the
// cursor. The cursor starts at the beginning of the run and moves only with "mark" (or command mark:true),
// so two waits for the same type without a mark in between can match the same message. from:"start"
// searches the whole run instead; after:alias searches from the message following the one saved as alias.
// A match also records the message under save_as (if given).
// "where" maps a field of the message's data to an expected value: a literal (deep equality), an operator
// object {"$gte"|"$gt"|"$lte"|"$lt"|"$ne": v} or {"$in": [..]}, or a reference.
// References (usable as param values, in where, and as operator operands):
//   {"$saved": alias, field?, add?}   data[field] of the message saved under alias (+ add)
//   {"$last": type, field?, add?}     data[field] of the latest message of that type (+ add)
//   {"$upload": alias}                 the FileRef of an upload (params only)
//
// Output in out_dir: events.jsonl (one JSON object per line, t = ms since driver start, monotonic),
// frames.bin (records [u32 LE width][u32 LE height][f64 LE t_ms][width*height luma bytes] for every frame
// of main_video), sdk.log (the SDK's console output). Exit code 0 when every step passed, 1 otherwise.
"use strict";

const fs = require("fs");
const path = require("path");
const { performance } = require("perf_hooks");

const T0 = performance.now();
const now = () => Math.round((performance.now() - T0) * 1000) / 1000;

function fail(message) {
  process.stderr.write(`DRIVER FAILED: ${message}\n`);
  process.exit(1);
}

if (process.argv.length < 3) fail("usage: node driver.cjs scenario.json");
let scenario;
try {
  scenario = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
} catch (e) {
  fail(`cannot read scenario ${process.argv[2]}: ${e.message}`);
}
if (!["local", "production"].includes(scenario.mode)) fail(`scenario.mode must be local|production`);
const apiUrl = String(scenario.api_url || process.env.HELIOS_E2E_API_URL || "").replace(/\/+$/, "");
if (!apiUrl || !scenario.out_dir || !Array.isArray(scenario.steps)) {
  fail("scenario needs api_url (or HELIOS_E2E_API_URL in the environment), out_dir and steps");
}
fs.mkdirSync(scenario.out_dir, { recursive: true });

// ── logging ────────────────────────────────────────────────────────────────────────────────────────────
const eventsFd = fs.openSync(path.join(scenario.out_dir, "events.jsonl"), "w");
const sdkLogFd = fs.openSync(path.join(scenario.out_dir, "sdk.log"), "w");
const framesFd = fs.openSync(path.join(scenario.out_dir, "frames.bin"), "w");

function safeJson(value) {
  const seen = new WeakSet();
  return JSON.stringify(value, (key, v) => {
    if (typeof v === "bigint") return Number(v);
    if (v instanceof Error) return { name: v.name, message: v.message };
    if (v && typeof v === "object") {
      if (seen.has(v)) return "[circular]";
      seen.add(v);
    }
    return v;
  });
}

function logEvent(kind, fields) {
  fs.writeSync(eventsFd, safeJson({ t: now(), kind, ...fields }) + "\n");
}

function formatArg(a) {
  if (typeof a === "string") return a;
  if (a instanceof Error) return `${a.name}: ${a.message}`;
  try {
    return safeJson(a);
  } catch {
    return String(a);
  }
}

for (const level of ["debug", "log", "info", "warn", "error"]) {
  console[level] = (...args) => {
    const text = args.map(formatArg).join(" ");
    fs.writeSync(sdkLogFd, `${now().toFixed(1)} ${level} ${text}\n`);
    if (level === "warn" || level === "error") logEvent("console", { level, text: text.slice(0, 2000) });
  };
}

// ── SDK under Node ─────────────────────────────────────────────────────────────────────────────────────
const wrtc = require("@roamhq/wrtc");
Object.assign(globalThis, {
  RTCPeerConnection: wrtc.RTCPeerConnection,
  RTCSessionDescription: wrtc.RTCSessionDescription,
  RTCIceCandidate: wrtc.RTCIceCandidate,
  MediaStream: wrtc.MediaStream,
  MediaStreamTrack: wrtc.MediaStreamTrack,
});
const { Reactor } = require("@reactor-team/js-sdk");

const reactor =
  scenario.mode === "local"
    ? new Reactor({ modelName: "helios", local: true, apiUrl })
    : new Reactor({ modelName: "helios", apiUrl });

// ── state observed from the SDK ────────────────────────────────────────────────────────────────────────
const messages = []; // {t, type, data, raw}
let cursor = 0; // index into messages: wait_message looks at messages[cursor..]
const saved = new Map(); // alias -> index into messages
const uploads = new Map();
const waiters = new Set(); // functions called on every new message / status
let sink = null;
let frameCount = 0;

function notify() {
  for (const w of Array.from(waiters)) w();
}

reactor.on("statusChanged", (status) => {
  logEvent("status", { status });
  notify();
});
reactor.on("sessionIdChanged", (sessionId) => logEvent("session_id", { session_id: sessionId ?? null }));
reactor.on("capabilitiesReceived", (caps) => logEvent("capabilities", { capabilities: caps }));
reactor.on("error", (err) => logEvent("error", { error: err }));
reactor.on("runtimeMessage", (msg) => logEvent("runtime_message", { message: msg }));
reactor.on("message", (msg) => {
  const isObj = msg && typeof msg === "object" && !Array.isArray(msg);
  const entry = {
    t: now(),
    type: isObj && typeof msg.type === "string" ? msg.type : null,
    data: isObj && msg.data !== undefined ? msg.data : {},
  };
  messages.push(entry);
  logEvent("message", { index: messages.length - 1, type: entry.type, data: entry.data, raw: isObj ? undefined : msg });
  notify();
});
reactor.on("trackReceived", (name, track) => {
  logEvent("track", { name, track_kind: track && track.kind, id: track && track.id });
  if (name !== "main_video" || !track || track.kind !== "video") return;
  if (sink) {
    try {
      sink.stop();
    } catch {
      /* already stopped */
    }
  }
  const header = Buffer.alloc(16);
  sink = new wrtc.nonstandard.RTCVideoSink(track);
  sink.onframe = ({ frame }) => {
    const { width, height, data } = frame;
    const lumaBytes = width * height;
    header.writeUInt32LE(width, 0);
    header.writeUInt32LE(height, 4);
    header.writeDoubleLE(now(), 8);
    fs.writeSync(framesFd, header);
    fs.writeSync(framesFd, Buffer.from(data.buffer, data.byteOffset, lumaBytes));
    if (frameCount === 0) logEvent("first_frame", { width, height });
    frameCount += 1;
  };
});

// ── references and matching ────────────────────────────────────────────────────────────────────────────
const isPlainObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function pick(data, field, add) {
  let value = field === undefined ? data : data == null ? undefined : data[field];
  if (add !== undefined) {
    if (typeof value !== "number") throw new Error(`cannot add ${add} to non-number ${safeJson(value)}`);
    value += add;
  }
  return value;
}

function resolveRef(value) {
  if (!isPlainObject(value)) return value;
  if ("$saved" in value) {
    if (!saved.has(value.$saved)) throw new Error(`no message saved as ${value.$saved}`);
    return pick(messages[saved.get(value.$saved)].data, value.field, value.add);
  }
  if ("$last" in value) {
    const found = [...messages].reverse().find((m) => m.type === value.$last);
    if (!found) throw new Error(`no ${value.$last} message received yet`);
    return pick(found.data, value.field, value.add);
  }
  if ("$upload" in value) {
    if (!uploads.has(value.$upload)) throw new Error(`no upload with alias ${value.$upload}`);
    return uploads.get(value.$upload);
  }
  return value;
}

function resolveParams(params) {
  const out = {};
  for (const [k, v] of Object.entries(params || {})) out[k] = resolveRef(v);
  return out;
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a === "number" && typeof b === "number") return a === b;
  if (!a || !b || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
}

const OPERATORS = {
  $gte: (x, y) => x >= y,
  $gt: (x, y) => x > y,
  $lte: (x, y) => x <= y,
  $lt: (x, y) => x < y,
  $ne: (x, y) => !deepEqual(x, y),
  $in: (x, y) => Array.isArray(y) && y.some((v) => deepEqual(x, v)),
};

// Resolve references once per wait so a later message cannot move the target.
function compileWhere(where) {
  const checks = [];
  for (const [field, spec] of Object.entries(where || {})) {
    const opKeys = isPlainObject(spec) ? Object.keys(spec).filter((k) => k in OPERATORS) : [];
    if (opKeys.length > 0) {
      for (const op of opKeys) {
        const operand = Array.isArray(spec[op]) ? spec[op].map(resolveRef) : resolveRef(spec[op]);
        checks.push({ field, op, operand, test: (v) => v !== undefined && OPERATORS[op](v, operand) });
      }
    } else {
      const expected = resolveRef(spec);
      checks.push({ field, op: "$eq", operand: expected, test: (v) => deepEqual(v, expected) });
    }
  }
  const describe = () => safeJson(checks.map(({ field, op, operand }) => [field, op, operand]));
  return { match: (data) => checks.every((c) => c.test(isPlainObject(data) ? data[c.field] : undefined)), describe };
}

function findMessage(type, matcher, fromIndex) {
  for (let i = fromIndex; i < messages.length; i++) {
    if (messages[i].type === type && matcher.match(messages[i].data)) return i;
  }
  return -1;
}

function waitFor(predicate, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      let result;
      try {
        result = predicate();
      } catch (e) {
        cleanup();
        reject(e);
        return;
      }
      if (result !== undefined && result !== false) {
        cleanup();
        resolve(result);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timeout after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      waiters.delete(check);
    };
    waiters.add(check);
    check();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function waitStatus(status, timeoutMs) {
  return waitFor(() => reactor.getStatus() === status, timeoutMs, `status "${status}" (now ${reactor.getStatus()})`);
}

// ── steps ──────────────────────────────────────────────────────────────────────────────────────────────
const handlers = {
  async connect(step) {
    const t = performance.now();
    if (scenario.mode === "local") await reactor.connect();
    else await reactor.connect(scenario.token || "mock-token");
    await waitStatus("ready", step.timeout_ms ?? 20000);
    const ms = Math.round((performance.now() - t) * 10) / 10;
    logEvent("timing", { name: "connect_to_ready_ms", value: ms });
    return { connect_to_ready_ms: ms, session_id: reactor.getSessionId() ?? null };
  },
  async wait_status(step) {
    await waitStatus(step.status, step.timeout_ms ?? 10000);
    return {};
  },
  async command(step) {
    if (reactor.getStatus() !== "ready") throw new Error(`cannot send ${step.name}: status is ${reactor.getStatus()}`);
    const params = resolveParams(step.params);
    if (step.mark) cursor = messages.length;
    const shown = {};
    for (const [k, v] of Object.entries(params)) shown[k] = v && v.__isFileRef ? { file_ref: v.uploadId } : v;
    logEvent("command_sent", { name: step.name, params: shown });
    await reactor.sendCommand(step.name, params);
    return { params: shown };
  },
  async upload(step) {
    const bytes = fs.readFileSync(step.path);
    const blob = new Blob([bytes], { type: step.mime_type || "" });
    const ref = await reactor.uploadFile(blob, { name: step.name || path.basename(step.path) });
    if (!ref || !ref.uploadId) throw new Error("uploadFile returned no FileRef");
    uploads.set(step.alias || "upload", ref);
    return { upload_id: ref.uploadId, name: ref.name, mime_type: ref.mimeType, size: ref.size };
  },
  async wait_message(step) {
    const matcher = compileWhere(step.where);
    let from = step.from === "start" ? 0 : cursor;
    if (step.after !== undefined) {
      if (!saved.has(step.after)) throw new Error(`no message saved as ${step.after}`);
      from = saved.get(step.after) + 1;
    }
    const index = await waitFor(
      () => {
        const i = findMessage(step.type, matcher, from);
        return i >= 0 ? { i } : undefined;
      },
      step.timeout_ms ?? 10000,
      `message ${step.type} where ${matcher.describe()} (from index ${from})`,
    );
    const msg = messages[index.i];
    if (step.save_as) saved.set(step.save_as, index.i);
    return { index: index.i, type: msg.type, data: msg.data };
  },
  async expect_no_message(step) {
    const matcher = compileWhere(step.where);
    const from = messages.length;
    await sleep(step.for_ms);
    const i = findMessage(step.type, matcher, from);
    if (i >= 0) throw new Error(`unexpected ${step.type} ${safeJson(messages[i].data)} at index ${i}`);
    return {};
  },
  async sleep(step) {
    await sleep(step.ms);
    return {};
  },
  async disconnect(step) {
    await reactor.disconnect(Boolean(step.recoverable));
    return { status: reactor.getStatus() };
  },
  async reconnect(step) {
    const t = performance.now();
    await reactor.reconnect();
    await waitStatus("ready", step.timeout_ms ?? 20000);
    const ms = Math.round((performance.now() - t) * 10) / 10;
    logEvent("timing", { name: "reconnect_to_ready_ms", value: ms });
    return { reconnect_to_ready_ms: ms };
  },
  async mark() {
    cursor = messages.length;
    return { cursor };
  },
};

async function run() {
  for (let i = 0; i < scenario.steps.length; i++) {
    const step = scenario.steps[i];
    const id = step.id ?? `${i}:${step.op}`;
    const handler = handlers[step.op];
    if (!handler) throw new Error(`step ${id}: unknown op ${step.op}`);
    const started = performance.now();
    logEvent("step_start", { step: i, id, op: step.op });
    let result;
    try {
      result = await handler(step);
    } catch (e) {
      const duration = Math.round((performance.now() - started) * 10) / 10;
      logEvent("step_end", { step: i, id, op: step.op, ok: false, duration_ms: duration, error: String(e && e.message ? e.message : e) });
      throw new Error(`step ${id} (${step.op}) failed: ${e && e.message ? e.message : e}`);
    }
    const duration = Math.round((performance.now() - started) * 10) / 10;
    logEvent("step_end", { step: i, id, op: step.op, ok: true, duration_ms: duration, result });
  }
}

function finish(code, message) {
  try {
    if (sink) sink.stop();
  } catch {
    /* ignore */
  }
  logEvent("done", { ok: code === 0, frames: frameCount, messages: messages.length, error: message ?? null });
  fs.closeSync(framesFd);
  fs.closeSync(eventsFd);
  fs.closeSync(sdkLogFd);
  if (code !== 0) process.stderr.write(`DRIVER FAILED: ${message}\n`);
  else process.stdout.write(`driver ok: ${scenario.steps.length} steps, ${messages.length} messages, ${frameCount} frames\n`);
  process.exit(code); // wrtc keeps native handles alive
}

const globalTimeout = setTimeout(
  () => finish(1, `global timeout after ${scenario.timeout_ms ?? 120000} ms`),
  scenario.timeout_ms ?? 120000,
);
process.on("unhandledRejection", (e) => logEvent("unhandled_rejection", { error: String(e && e.stack ? e.stack : e) }));

run().then(
  () => {
    clearTimeout(globalTimeout);
    finish(0);
  },
  (e) => {
    clearTimeout(globalTimeout);
    finish(1, e && e.message ? e.message : String(e));
  },
);
