// Browser page for the end-to-end test: the published @reactor-team/js-sdk 2.9.0 (unmodified, bundled by
// esbuild) drives the mock from a page served on another origin. Query string: api (the mock's base URL),
// prompt (optional: sent with set_prompt, then start, as soon as the session is ready).
//
// window.helios: {status, statuses, messages, runtimeMessages, errors, stats, offers, answers, ready (promise),
//   grab(), sendCommand(name, params), disconnect(), inboundVideoStats()}. Times are performance.now() ms.
import { Reactor } from "@reactor-team/js-sdk";
// The JS harness's browser-safe decoder reads each grab in the page (RGBA ImageData), for comparison with
// Python's decode_markers of the same grab's PNG (tests/e2e/test_browser.py).
import { decodeMarkers } from "../../js/helios-mock/markers.mjs";

const query = new URLSearchParams(location.search);
const apiUrl = (query.get("api") || "").replace(/\/+$/, "");
const video = document.getElementById("video");
const canvas = document.createElement("canvas");
const now = () => Math.round(performance.now() * 1000) / 1000;

// Keep every RTCPeerConnection the SDK creates (for getStats and the negotiated SDP); the SDK itself is as
// published, only the browser API is observed.
const peerConnections = [];
const NativePeerConnection = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativePeerConnection {
  constructor(...args) {
    super(...args);
    peerConnections.push(this);
    this.addEventListener("icegatheringstatechange", () =>
      helios.ice.push({ t: now(), gathering: this.iceGatheringState }),
    );
    this.addEventListener("icecandidate", (e) => helios.ice.push({ t: now(), candidate: e.candidate && e.candidate.candidate }));
  }
  createDataChannel(...args) {
    const channel = super.createDataChannel(...args);
    channel.addEventListener("error", (e) =>
      helios.channelErrors.push({ t: now(), label: channel.label, message: e.error && e.error.message, detail: e.error && e.error.errorDetail, sctpCauseCode: e.error && e.error.sctpCauseCode }),
    );
    channel.addEventListener("close", () => helios.channelErrors.push({ t: now(), label: channel.label, closed: true }));
    return channel;
  }
};

const helios = {
  apiUrl,
  origin: location.origin,
  status: "disconnected",
  statuses: [],
  messages: [],
  runtimeMessages: [],
  errors: [],
  stats: [],
  tracks: [],
  commands: [],
  presentedFrames: 0,
  pageErrors: [],
  ice: [],
  channelErrors: [],
};
window.helios = helios;
window.addEventListener("error", (e) => helios.pageErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => helios.pageErrors.push(String(e.reason)));

const reactor = new Reactor({ modelName: "helios", local: true, apiUrl });
let resolveReady;
helios.ready = new Promise((resolve) => (resolveReady = resolve));

reactor.on("statusChanged", (status) => {
  helios.status = status;
  helios.statuses.push({ t: now(), status });
  if (status === "ready") resolveReady();
});
reactor.on("message", (msg) => helios.messages.push({ t: now(), type: msg && msg.type, data: msg && msg.data }));
reactor.on("runtimeMessage", (msg) => helios.runtimeMessages.push({ t: now(), message: msg }));
reactor.on("error", (err) => helios.errors.push({ t: now(), code: err && err.code, message: err && err.message }));
reactor.on("statsUpdate", (stats) => helios.stats.push({ t: now(), stats }));
reactor.on("trackReceived", (name, track) => {
  helios.tracks.push({ t: now(), name, kind: track && track.kind });
  if (name !== "main_video" || !track || track.kind !== "video") return;
  video.srcObject = new MediaStream([track]);
  video.play().catch((e) => helios.pageErrors.push(`play(): ${e}`));
});

// Count the frames the compositor actually presents.
function countFrames() {
  video.requestVideoFrameCallback((_, meta) => {
    helios.presentedFrames = meta.presentedFrames;
    countFrames();
  });
}
countFrames();

// The frame on screen now, as a PNG data URL (lossless), or null before the first frame.
helios.grab = () => {
  const { videoWidth: width, videoHeight: height } = video;
  if (!width || !height) return null;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0, width, height);
  return {
    jsMarkers: decodeMarkers(context.getImageData(0, 0, width, height)),
    t: now(),
    width,
    height,
    currentTime: video.currentTime,
    presentedFrames: helios.presentedFrames,
    png: canvas.toDataURL("image/png"),
  };
};

helios.sendCommand = async (name, params = {}) => {
  helios.commands.push({ t: now(), name, params });
  await reactor.sendCommand(name, params);
};

helios.disconnect = async () => {
  await reactor.disconnect();
  return reactor.getStatus();
};

// ICE candidates and the selected pair, as getStats reports them.
helios.iceStats = async () => {
  const out = [];
  for (const pc of peerConnections) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "local-candidate" || s.type === "remote-candidate") {
        out.push({ type: s.type, id: s.id, address: s.address, port: s.port, candidateType: s.candidateType, protocol: s.protocol });
      } else if (s.type === "candidate-pair" && s.nominated) {
        out.push({ type: s.type, state: s.state, local: s.localCandidateId, remote: s.remoteCandidateId });
      }
    });
  }
  return out;
};

// inbound-rtp video stats and the negotiated codec of every peer connection the SDK made.
helios.inboundVideoStats = async () => {
  const out = [];
  for (const pc of peerConnections) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      const codec = s.codecId ? report.get(s.codecId) : undefined;
      out.push({
        framesDecoded: s.framesDecoded,
        framesReceived: s.framesReceived,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        mid: s.mid,
        codec: codec ? codec.mimeType : null,
        decoderImplementation: s.decoderImplementation,
      });
    });
  }
  return out;
};

helios.sdp = () =>
  peerConnections.map((pc) => ({
    offer: pc.localDescription && pc.localDescription.sdp,
    answer: pc.remoteDescription && pc.remoteDescription.sdp,
    transceivers: pc.getTransceivers().map((t) => ({ mid: t.mid, direction: t.direction, kind: t.receiver.track.kind })),
  }));

helios.resources = () =>
  performance.getEntriesByType("resource").map((e) => ({ name: e.name, responseStatus: e.responseStatus }));

(async () => {
  try {
    await reactor.connect();
    await helios.ready;
    const prompt = query.get("prompt");
    if (prompt) {
      await helios.sendCommand("set_prompt", { prompt });
      await helios.sendCommand("start", {});
    }
  } catch (e) {
    helios.pageErrors.push(`connect: ${e && e.message ? e.message : e}`);
  }
})();
