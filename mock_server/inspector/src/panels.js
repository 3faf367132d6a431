// The Faults and Clip panels shared by the timeline page and the playground. Bundled with hls.js (light build,
// no worker: the pages' Content-Security-Policy allows scripts from this origin only) into
// static/panels.bundle.js by scripts/build_playground.py; needs common.js (window.Insp) loaded first.
//
// window.InspPanels = {faults(box, {sessionId}), clip(box, {cut, headers})}; each returns its panel object.
// Faults: kinds and their parameters come from /admin/inspector/fault-kinds (the server's catalogue); "Inject"
// arms the fault with POST /admin/faults for this session; the session's faults (GET /admin/faults) are listed.
// Clip: "Cut a clip (last N s)" asks `cut(seconds)` for a clipReady-like answer ({playlist_url, ...}), waits
// until the playlist answers 200 (202 + Retry-After while its last chunk is generating), then plays it.
import Hls from "hls.js/light";

const { json, send, h, short } = window.Insp;
const FAULT_POLL_MS = 1500;
const PLAYLIST_WAIT_MS = 60000; // a clip's last chunk completes within a few chunk durations
const TRIGGER_LABELS = { now: "now", at_chunk: "at chunk", after_seconds: "after (s)", on_command: "on command" };
const TRIGGER_DEFAULTS = { at_chunk: 3, after_seconds: 5, on_command: "set_prompt" };

// ------------------------------------------------------------------------------------------------ faults

function paramInput(param) {
  const attrs = { "data-param": param.name, title: param.description, id: `fault-param-${param.name}` };
  if (param.type === "enum")
    return h("select", attrs, param.enum.map((v) => h("option", { value: String(v), selected: v === param.default }, String(v))));
  if (param.type === "number" || param.type === "integer") {
    const min = param.minimum ?? param.exclusiveMinimum;
    return h("input", { ...attrs, type: "number", min, max: param.maximum, step: param.type === "integer" ? 1 : "any", value: param.default ?? "" });
  }
  if (param.type === "list") return h("input", { ...attrs, type: "text", value: (param.default || []).join(", "), placeholder: "a, b" });
  return h("input", { ...attrs, type: "text", value: param.default ?? "", maxlength: param.maxLength, placeholder: param.optional ? "(default)" : "" });
}

function paramValue(param, input) {
  const raw = input.value.trim();
  if (raw === "") return undefined; // the server's default
  if (param.type === "number" || param.type === "integer") return Number(raw);
  if (param.type === "enum") return param.enum.find((v) => String(v) === raw);
  if (param.type === "list") return raw.split(",").map((s) => s.trim()).filter(Boolean);
  return raw;
}

function triggerText(f) {
  if (f.at_chunk !== null) return `at chunk ${f.at_chunk}`;
  if (f.after_seconds !== null) return `after ${f.after_seconds} s`;
  if (f.on_command !== null) return `on ${f.on_command}`;
  return "now";
}

export function faults(box, { sessionId }) {
  const panel = { kinds: [], armed: [], error: null };
  const kindSelect = h("select", { id: "fault-kind" });
  const about = h("div", { class: "muted", id: "fault-about" });
  const params = h("div", { class: "fault-params", id: "fault-params" });
  const triggers = h("div", { class: "fault-triggers" });
  const inject = h("button", { id: "fault-inject" }, "Inject");
  const result = h("div", { class: "mono", id: "fault-result" });
  const list = h("div", { class: "fault-list", id: "fault-list" }, h("span", { class: "muted" }, "no fault armed for this session"));
  const inputs = {};
  for (const name of Object.keys(TRIGGER_LABELS)) {
    const radio = h("input", { type: "radio", name: "fault-trigger", value: name, checked: name === "now" });
    const value = name === "now" ? null
      : h("input", { type: name === "on_command" ? "text" : "number", id: `fault-${name}`, value: TRIGGER_DEFAULTS[name], min: 0, size: 10 });
    inputs[name] = { radio, value, label: h("label", {}, radio, ` ${TRIGGER_LABELS[name]} `, value) };
    triggers.append(inputs[name].label);
  }
  box.replaceChildren(
    h("div", {}, "kind ", kindSelect, " ", about), params, h("div", {}, "trigger ", triggers), h("div", {}, inject, " ", result), list,
  );

  const current = () => panel.kinds.find((k) => k.kind === kindSelect.value);
  function showKind() {
    const kind = current();
    if (!kind) return;
    about.textContent = kind.description;
    params.replaceChildren(...(kind.params.length ? kind.params.map((p) => h("label", { title: p.description }, `${p.name} `, paramInput(p)))
      : [h("span", { class: "muted" }, "no parameters")]));
    for (const [name, { radio, label }] of Object.entries(inputs)) {
      const allowed = kind.triggers.includes(name);
      radio.disabled = !allowed;
      label.classList.toggle("muted", !allowed);
      if (!allowed && radio.checked) inputs.now.radio.checked = true;
    }
  }
  kindSelect.addEventListener("change", showKind);

  // The body of POST /admin/faults from the form (docs/FAULTS.md).
  panel.body = () => {
    const kind = current();
    const body = { kind: kind.kind, session_id: sessionId(), params: {} };
    for (const p of kind.params) {
      const value = paramValue(p, params.querySelector(`[data-param="${p.name}"]`));
      if (value !== undefined) body.params[p.name] = value;
    }
    const trigger = Object.keys(inputs).find((name) => inputs[name].radio.checked);
    if (trigger !== "now") {
      const raw = inputs[trigger].value.value.trim();
      body[trigger] = trigger === "on_command" ? raw : Number(raw);
    }
    return body;
  };

  panel.inject = async () => {
    if (!sessionId()) throw new Error("no session yet: connect (playground) or open a running session");
    const armed = await send("POST", "/admin/faults", panel.body());
    result.textContent = `armed ${armed.id} (${armed.kind}, ${triggerText(armed)})`;
    result.className = "mono";
    await panel.refresh();
    return armed;
  };
  inject.addEventListener("click", () => panel.inject().catch((e) => {
    result.textContent = String(e.message || e);
    result.className = "mono error";
  }));

  panel.refresh = async () => {
    const id = sessionId();
    inject.disabled = !id;
    if (!id) return;
    const all = (await json("/admin/faults")).faults;
    panel.armed = all.filter((f) => f.session_id === id || f.sessions.includes(id));
    if (!panel.armed.length) return;
    list.replaceChildren(h("table", { class: "sessions" },
      h("tr", {}, ["fault", "kind", "trigger", "status", "fired", "where"].map((t) => h("th", {}, t))),
      panel.armed.map((f) => h("tr", { dataset: { faultId: f.id, kind: f.kind, status: f.status } },
        h("td", { class: "mono" }, f.id), h("td", {}, h("b", {}, f.kind), " ", h("span", { class: "muted" }, short(f.params, 40))),
        h("td", {}, triggerText(f)), h("td", {}, h("span", { class: `badge fault-${f.status}` }, f.status)),
        h("td", {}, String(f.fired_count)),
        h("td", { class: "muted" }, f.firings.map((x) => `${x.hook}${x.chunk === null ? "" : ` @ chunk ${x.chunk}`}`).join(", ") || "—")))));
  };

  async function poll() {
    try {
      await panel.refresh();
      panel.error = null;
    } catch (e) {
      panel.error = String(e.message || e);
      result.textContent = panel.error;
      result.className = "mono error";
    }
    setTimeout(poll, FAULT_POLL_MS);
  }

  json("/admin/inspector/fault-kinds").then((data) => {
    panel.kinds = data.kinds;
    kindSelect.replaceChildren(...data.kinds.map((k) => h("option", { value: k.kind, selected: k.kind === "stall" }, k.kind)));
    showKind();
    box.dataset.ready = "1";
    poll();
  }, (e) => { result.textContent = String(e.message || e); result.className = "mono error"; });
  return panel;
}

// -------------------------------------------------------------------------------------------------- clip

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Fetch the playlist until it answers 200 (it answers 202 + Retry-After while the window's end is generating).
async function playlistReady(url, headers, state) {
  const deadline = performance.now() + PLAYLIST_WAIT_MS;
  for (;;) {
    const res = await fetch(url, { headers, cache: "no-store" });
    state.playlist_status = res.status;
    if (res.status === 200) return;
    if (res.status !== 202) {
      const text = await res.text();
      let detail = text;
      try { detail = JSON.parse(text).detail; } catch (_) {}
      throw new Error(`playlist answered ${res.status}: ${detail}`);
    }
    if (performance.now() > deadline) throw new Error(`playlist still not ready after ${PLAYLIST_WAIT_MS / 1000} s`);
    await sleep(Math.max(250, Math.min(2000, 1000 * Number(res.headers.get("Retry-After") || 1))));
  }
}

export function clip(box, { cut, headers = () => ({}) }) {
  const state = { status: "idle", reply: null, playlist_url: null, playlist_status: null, errors: [], ended: false };
  const seconds = h("input", { type: "number", id: "clip-seconds", value: 4, min: 1, max: 600, step: 1 });
  const button = h("button", { id: "clip-cut" }, "Cut a clip (last 4 s)");
  const status = h("div", { class: "mono", id: "clip-status" }, "no clip yet");
  const link = h("a", { id: "clip-link", hidden: true, target: "_blank", rel: "noreferrer" }, "playlist (HLS)");
  const video = h("video", { id: "clip-video", controls: true, muted: true, playsinline: true, hidden: true });
  let hls = null;
  box.replaceChildren(h("div", {}, "last ", seconds, " s ", button), status, h("div", {}, link), video);
  seconds.addEventListener("input", () => { button.textContent = `Cut a clip (last ${seconds.value || "?"} s)`; });

  const show = (text, bad = false) => {
    status.textContent = text;
    status.className = bad ? "mono error" : "mono";
  };
  const set = (name, text) => {
    state.status = name;
    box.dataset.status = name;
    show(text, name === "failed");
  };
  video.addEventListener("ended", () => {
    state.ended = true;
    set("ended", `played to the end (${video.duration.toFixed(2)} s)`);
  });

  function play(url) {
    if (hls) hls.destroy();
    hls = null;
    video.hidden = false;
    if (!Hls.isSupported()) {
      if (!video.canPlayType("application/vnd.apple.mpegurl")) throw new Error("this browser cannot play HLS; use the playlist link");
      video.src = url;
      return video.play();
    }
    const extra = headers();
    hls = new Hls({ enableWorker: false, xhrSetup: (xhr) => { for (const [k, v] of Object.entries(extra)) xhr.setRequestHeader(k, v); } });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => state.errors.push(`play(): ${e}`)));
    hls.on(Hls.Events.ERROR, (_, data) => {
      state.errors.push(`${data.type}/${data.details}${data.fatal ? " (fatal)" : ""}`);
      if (data.fatal) set("failed", `playback failed: ${data.type}/${data.details}`);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    return Promise.resolve();
  }

  state.cut = async (n = Number(seconds.value)) => {
    Object.assign(state, { reply: null, playlist_url: null, playlist_status: null, errors: [], ended: false });
    link.hidden = true;
    try {
      set("cutting", `asking for the last ${n} s…`);
      const reply = await cut(n);
      Object.assign(state, { reply, playlist_url: reply.playlist_url });
      link.href = reply.playlist_url;
      link.textContent = `playlist (HLS): media ${reply.start_marker.toFixed(2)}–${reply.end_marker.toFixed(2)} s`;
      link.hidden = false;
      set("waiting", "waiting for the window's last chunk…");
      await playlistReady(reply.playlist_url, headers(), state);
      set("playing", "playing");
      await play(reply.playlist_url);
    } catch (e) {
      set("failed", String(e.message || e));
    }
    return state;
  };
  button.addEventListener("click", () => state.cut());

  // The frame the clip <video> shows now, as a PNG data URL (for tests and screenshots).
  const canvas = document.createElement("canvas");
  state.grab = () => {
    if (!video.videoWidth) return null;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return { width: canvas.width, height: canvas.height, time: video.currentTime, png: canvas.toDataURL("image/png") };
  };
  return state;
}

window.InspPanels = { faults, clip };
