// The playground (/playground): drives the mock with the published @reactor-team/js-sdk 2.9.0, unmodified.
// This file is bundled with the SDK by scripts/build_playground.py into static/playground.bundle.js.
//
// window.playground (for tests): {status, sessionId, messages, runtimeMessages, errors, sent, connect(),
// sendCommand(name, params), disconnect(), grab(), faults, clip}; grab() returns the frame on the <video> as a
// PNG data URL; faults and clip are the panels of panels.bundle.js (loaded before this bundle).
// Clips go over the SDK's own runtime scope: sendCommand("requestClip", {duration_seconds}, "runtime"), answered
// by the runtime message clipReady or clipFailed (JS 2.9.0 has no clip API of its own; docs/PROTOCOL.md §1.9).
import "./zod_jitless.js";
import { Reactor } from "@reactor-team/js-sdk";

const { h, short, page, header } = window.Insp;
const $ = (id) => document.getElementById(id);
const video = $("video");
const LOG_MAX = 500;
const CLIP_REPLY_MS = 10000;

const playground = {
  status: "disconnected", sessionId: null, jwt: null, messages: [], runtimeMessages: [], errors: [], sent: [], reactor: null,
};
window.playground = playground;
$("header").replaceWith(header("playground"));

function log(cls, text, data) {
  const line = h("div", { class: cls, title: data === undefined ? "" : JSON.stringify(data, null, 1) },
    `${new Date().toLocaleTimeString()} ${text}`, data === undefined ? "" : ` ${short(data, 140)}`);
  const box = $("log");
  box.prepend(line);
  while (box.childElementCount > LOG_MAX) box.lastElementChild.remove();
}

function showError(text) {
  $("error").textContent = text;
  if (text) log("err", text);
}

function showState(state) {
  $("state").replaceChildren(
    ...Object.entries(state).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]),
  );
}

function setStatus(status) {
  playground.status = status;
  $("status").textContent = status;
  $("status").className = `badge ${status}`;
  $("connect").disabled = status !== "disconnected";
  $("disconnect").disabled = status === "disconnected";
}

function wire(reactor) {
  reactor.on("statusChanged", setStatus);
  reactor.on("sessionIdChanged", (id) => {
    playground.sessionId = id || null;
    $("session").textContent = id ? `session ${id}` : "";
    $("inspect").hidden = !id;
    if (id) $("inspect").href = page(`/inspector/sessions/${encodeURIComponent(id)}`);
  });
  reactor.on("message", (msg) => {
    playground.messages.push({ t: performance.now(), type: msg && msg.type, data: msg && msg.data });
    if (msg && msg.type === "state") showState(msg.data);
    if (msg && msg.type !== "state" && msg.type !== "chunk_complete") log("in", `← ${msg.type}`, msg.data);
    if (msg && msg.type === "chunk_complete") log("in muted", `← chunk_complete ${msg.data.chunk_index}`);
  });
  reactor.on("runtimeMessage", (msg) => {
    playground.runtimeMessages.push({ t: performance.now(), type: msg && msg.type, data: msg && msg.data });
    log("in", `← runtime ${msg && msg.type}`, msg && msg.data);
    for (const waiter of [...clipWaiters]) waiter(msg);
  });
  reactor.on("error", (err) => {
    playground.errors.push(err);
    showError(`SDK error ${err && err.code}: ${err && err.message}`);
  });
  reactor.on("trackReceived", (name, track) => {
    if (name !== "main_video" || !track || track.kind !== "video") return;
    video.srcObject = new MediaStream([track]);
    video.play().catch((e) => showError(`video.play(): ${e}`));
  });
}

async function token(apiKey) {
  const res = await fetch("/tokens", { method: "POST", headers: { "Reactor-API-Key": apiKey, "Content-Type": "application/json" }, body: "{}" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`POST /tokens ${res.status}: ${body.detail || res.statusText}`);
  return body.jwt;
}

playground.connect = async (mode = document.querySelector("input[name=mode]:checked").value) => {
  showError("");
  const local = mode === "local";
  const reactor = new Reactor({ modelName: "helios", local, apiUrl: location.origin });
  playground.reactor = reactor;
  playground.jwt = null;
  wire(reactor);
  try {
    playground.jwt = local ? null : await token($("api-key").value);
    await reactor.connect(playground.jwt || undefined);
  } catch (e) {
    showError(`connect: ${e && e.message ? e.message : e}`);
  }
};

playground.sendCommand = async (name, params = {}) => {
  if (!playground.reactor) throw new Error("connect first");
  playground.sent.push({ t: performance.now(), name, params });
  log("out", `→ ${name}`, params);
  await playground.reactor.sendCommand(name, params);
};

playground.disconnect = async () => {
  if (playground.reactor) await playground.reactor.disconnect();
};

const canvas = document.createElement("canvas");
playground.grab = () => {
  const { videoWidth: width, videoHeight: height } = video;
  if (!width || !height) return null;
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(video, 0, 0, width, height);
  return { width, height, png: canvas.toDataURL("image/png") };
};

// The parameters of each command button, read from the form.
const PARAMS = {
  set_prompt: () => ({ prompt: $("prompt").value }),
  schedule_prompt: () => ({ prompt: $("scheduled-prompt").value, chunk: Number($("scheduled-chunk").value) }),
  set_seed: () => ({ seed: Number($("seed").value) }),
  set_sr_scale: () => ({ sr_scale: $("sr-scale").value }),
  set_image_strength: () => ({ image_strength: Number($("strength").value) }),
  save_snapshot: () => ({ label: $("snapshot-label").value }),
  rewind: () => ({ snapshot_index: Number($("snapshot-index").value) }),
  set_image: async () => {
    const file = $("image").files[0];
    if (!file) throw new Error("choose an image file first");
    log("out", `↑ uploading ${file.name} (${file.size} bytes)`);
    return { image: await playground.reactor.uploadFile(file, { name: file.name }) };
  },
};

for (const button of document.querySelectorAll("button[data-command]")) {
  button.addEventListener("click", async () => {
    const name = button.dataset.command;
    try {
      showError("");
      await playground.sendCommand(name, PARAMS[name] ? await PARAMS[name]() : {});
    } catch (e) {
      showError(`${name}: ${e && e.message ? e.message : e}`);
    }
  });
}
// ------------------------------------------------------------------------------------------ faults, clip

const clipWaiters = new Set();

// requestClip on the runtime scope; resolves with clipReady's data, rejects with clipFailed's reason.
async function requestClip(seconds) {
  if (!playground.reactor || playground.status !== "ready") throw new Error("connect first");
  const reply = new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(null), CLIP_REPLY_MS);
    function done(msg) {
      clearTimeout(timer);
      clipWaiters.delete(waiter);
      if (msg === null) reject(new Error(`no clipReady or clipFailed within ${CLIP_REPLY_MS / 1000} s`));
      else if (msg.type === "clipFailed") reject(new Error(`clipFailed: ${msg.data && msg.data.reason}`));
      else resolve(msg.data);
    }
    const waiter = (msg) => msg && (msg.type === "clipReady" || msg.type === "clipFailed") && done(msg);
    clipWaiters.add(waiter);
  });
  log("out", "→ runtime requestClip", { duration_seconds: seconds });
  await playground.reactor.sendCommand("requestClip", { duration_seconds: seconds }, "runtime");
  return reply;
}

playground.faults = window.InspPanels.faults($("faults"), {
  sessionId: () => (playground.status === "disconnected" ? null : playground.sessionId),
});
playground.clip = window.InspPanels.clip($("clip"), {
  cut: requestClip,
  headers: () => (playground.jwt ? { Authorization: `Bearer ${playground.jwt}` } : {}), // production clips
});

$("connect").addEventListener("click", () => playground.connect());
$("disconnect").addEventListener("click", () => playground.disconnect().catch((e) => showError(String(e))));
setStatus("disconnected");
