#!/usr/bin/env node
// Where the published JS SDK's connect() -> "ready" time goes, measured with the unmodified
// @reactor-team/js-sdk 2.9.0 under Node 20 + @roamhq/wrtc, against a mock in local mode.
//
// Usage: node connect_timings.cjs --out FILE [--runs N] [--api-url URL] [--stats-event]
//   --runs N        connects, one after the other (default 10, 1..50); run 1 is the first of this Node process
//                   (and, under a fresh mock, the first the mock sees)
//   --api-url URL   the mock (default $HELIOS_MOCK_URL, then $HELIOS_E2E_API_URL)
//   --stats-event   also wait for the first public "statsUpdate" event of run 1 and check its
//                   connectionTimings equal the ones read at "ready" (costs the SDK's 2 s stats interval)
//
// Per connect it keeps (all ms, client clock, 0 = the connect() call):
//   sdk.connection  the SDK's ConnectionTimings {sessionCreationMs, transportConnectingMs, totalMs}
//   sdk.transport   the SDK's WebRTCTransportTimings {sdpPollingMs, sdpPollingAttempts, iceNegotiationMs,
//                   dataChannelMs} (WebRTCTransportClient.getTransportTimings(); not public API, read as is)
//   fetches         every HTTP request the SDK made: method, path, status, start, end
//   marks           the peer connection's own moments: offer_created, local_description_set,
//                   gathering_complete, remote_description_set, ice_connected, peer_connected, ready
// The SDK itself is not touched: fetch and RTCPeerConnection are wrapped from outside, before it loads.
// At the end it reads GET /admin/record (the server's side of every session) into the same FILE.
"use strict";

const fs = require("fs");
const { performance } = require("perf_hooks");

const MAX_RUNS = 50;
const READY_TIMEOUT_MS = 20000;

function parseArgs(argv) {
  const args = { runs: 10, out: null, apiUrl: process.env.HELIOS_MOCK_URL || process.env.HELIOS_E2E_API_URL, statsEvent: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--runs") args.runs = Number(argv[++i]);
    else if (a === "--out") args.out = argv[++i];
    else if (a === "--api-url") args.apiUrl = argv[++i];
    else if (a === "--stats-event") args.statsEvent = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(args.runs) || args.runs < 1 || args.runs > MAX_RUNS) {
    throw new Error(`--runs must be an integer from 1 to ${MAX_RUNS}`);
  }
  if (!args.out) throw new Error("--out FILE is required");
  if (!args.apiUrl) throw new Error("no mock: pass --api-url or set HELIOS_MOCK_URL");
  args.apiUrl = args.apiUrl.replace(/\/+$/, "");
  return args;
}

const args = parseArgs(process.argv.slice(2));
const sdkLog = [];
for (const level of ["debug", "log", "info"]) console[level] = (...a) => sdkLog.push(a.map(String).join(" ").slice(0, 300));

// ── instruments, installed before the SDK loads ──────────────────────────────────────────────────────
let current = null; // {t0, fetches, marks} of the connect being measured
const rel = () => (current ? Math.round((performance.now() - current.t0) * 1000) / 1000 : null);
const mark = (name) => {
  if (current && current.marks[name] === undefined) current.marks[name] = rel();
};

const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init = {}) => {
  const entry = { method: (init.method || "GET").toUpperCase(), path: new URL(String(url)).pathname, start: rel() };
  if (current) current.fetches.push(entry);
  const response = await realFetch(url, init);
  entry.status = response.status;
  entry.end = rel(); // headers received: what the SDK's await fetch() waits for
  return response;
};

const wrtc = require("@roamhq/wrtc");
function TimedPeerConnection(config) {
  const pc = new wrtc.RTCPeerConnection(config);
  const wrap = (method, before, after) => {
    const original = pc[method].bind(pc);
    pc[method] = async (...a) => {
      if (before) mark(before);
      const result = await original(...a);
      mark(after);
      return result;
    };
  };
  wrap("createOffer", null, "offer_created");
  wrap("setLocalDescription", null, "local_description_set");
  wrap("setRemoteDescription", "answer_received", "remote_description_set");
  pc.addEventListener("icegatheringstatechange", () => {
    if (pc.iceGatheringState === "complete") mark("gathering_complete");
  });
  pc.addEventListener("iceconnectionstatechange", () => {
    if (pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed") mark("ice_connected");
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") mark("peer_connected");
  });
  return pc;
}
Object.assign(globalThis, {
  RTCPeerConnection: TimedPeerConnection,
  RTCSessionDescription: wrtc.RTCSessionDescription,
  RTCIceCandidate: wrtc.RTCIceCandidate,
  MediaStream: wrtc.MediaStream,
  MediaStreamTrack: wrtc.MediaStreamTrack,
});
const { Reactor } = require("@reactor-team/js-sdk");

// ── one connect ──────────────────────────────────────────────────────────────────────────────────────
function waitStatus(reactor, status, timeoutMs) {
  return new Promise((resolve, reject) => {
    if (reactor.getStatus() === status) return resolve();
    const timer = setTimeout(() => reject(new Error(`no "${status}" within ${timeoutMs} ms (now ${reactor.getStatus()})`)), timeoutMs);
    const onStatus = (s) => {
      if (s !== status) return;
      clearTimeout(timer);
      reactor.off("statusChanged", onStatus);
      resolve();
    };
    reactor.on("statusChanged", onStatus);
  });
}

function firstStats(reactor, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no statsUpdate within ${timeoutMs} ms`)), timeoutMs);
    const onStats = (stats) => {
      clearTimeout(timer);
      reactor.off("statsUpdate", onStats);
      resolve(stats);
    };
    reactor.on("statsUpdate", onStats);
  });
}

async function connectOnce(index, checkStats) {
  const reactor = new Reactor({ modelName: "helios", local: true, apiUrl: args.apiUrl });
  current = { t0: performance.now(), fetches: [], marks: {} };
  const t0Epoch = performance.timeOrigin + current.t0;
  const run = current;
  const statsPromise = checkStats ? firstStats(reactor, 10000) : null;
  reactor.on("statusChanged", (s) => s === "ready" && mark("ready"));
  await reactor.connect();
  await waitStatus(reactor, "ready", READY_TIMEOUT_MS);
  // The SDK finalises totalMs just before it emits "ready"; its transport keeps its own timings.
  const connection = { ...reactor.connectionTimings };
  const transport = reactor.transportClient.getTransportTimings();
  if (!transport) throw new Error(`run ${index}: the SDK kept no transport timings`);
  const result = { index, t0_epoch_ms: t0Epoch, session_id: reactor.getSessionId(), sdk: { connection, transport }, fetches: run.fetches, marks: run.marks };
  current = null;
  if (statsPromise) {
    const stats = await statsPromise;
    result.stats_event_connection_timings = stats.connectionTimings ?? null;
  }
  await reactor.disconnect();
  return result;
}

function sdkVersion() {
  const dir = require("path").dirname(require.resolve("@reactor-team/js-sdk"));
  return JSON.parse(fs.readFileSync(require("path").join(dir, "..", "package.json"), "utf8")).version;
}

async function main() {
  const runs = [];
  for (let i = 1; i <= args.runs; i++) runs.push(await connectOnce(i, args.statsEvent && i === 1));
  const response = await realFetch(`${args.apiUrl}/admin/record`);
  if (!response.ok) throw new Error(`GET /admin/record: HTTP ${response.status}`);
  const record = await response.json();
  const out = { sdk_version: sdkVersion(), api_url: args.apiUrl, runs, record };
  fs.writeFileSync(args.out, JSON.stringify(out));
  process.stdout.write(`connect_timings: ${runs.length} connects measured -> ${args.out}\n`);
}

main().then(
  () => process.exit(0), // wrtc keeps native handles open
  (e) => {
    process.stderr.write(`connect_timings FAILED: ${e && e.stack ? e.stack : e}\n${sdkLog.slice(-30).join("\n")}\n`);
    process.exit(1);
  },
);
