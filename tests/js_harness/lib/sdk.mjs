// The client tests share the mock's one local session, so they run one file at a time (--test-concurrency=1).
// Shared setup for the suites: the published Reactor JS SDK under Node (libwebrtc from @roamhq/wrtc) against
// the mock that `helios-mock run` started (HELIOS_MOCK_URL), and a frame collector on main_video.
import wrtc from "@roamhq/wrtc";
import { Reactor } from "@reactor-team/js-sdk";
import { startMock, decodeMarkers } from "@helios-mock/harness";

Object.assign(globalThis, {
  RTCPeerConnection: wrtc.RTCPeerConnection,
  RTCSessionDescription: wrtc.RTCSessionDescription,
  RTCIceCandidate: wrtc.RTCIceCandidate,
  MediaStream: wrtc.MediaStream,
  MediaStreamTrack: wrtc.MediaStreamTrack,
});

// libwebrtc's native threads crash Node's normal teardown (SIGSEGV after the tests passed); once the event
// loop is empty every result has been reported, so leave through process.exit as tests/js/driver.cjs does.
process.once("beforeExit", (code) => process.exit(process.exitCode ?? code));

export { startMock, decodeMarkers };

/** A connected local-mode Reactor with its messages and the markers of every frame it received. */
export async function connect(url, { timeoutMs = 30000 } = {}) {
  const reactor = new Reactor({ modelName: "helios", local: true, apiUrl: url });
  const messages = [];
  const markers = []; // decodeMarkers of each I420 frame from the wrtc sink (null frames skipped)
  let sink = null;
  reactor.on("message", (msg) => messages.push(msg));
  reactor.on("trackReceived", (name, track) => {
    if (name !== "main_video" || !track || track.kind !== "video") return;
    sink = new wrtc.nonstandard.RTCVideoSink(track);
    sink.onframe = ({ frame }) => {
      const found = decodeMarkers(frame); // {width, height, data: Uint8Array I420}
      if (found) markers.push(found);
    };
  });
  await reactor.connect();
  await waitFor(() => reactor.getStatus() === "ready", timeoutMs, () => `status ready (now ${reactor.getStatus()})`);
  const waitMessage = (type, where = () => true, ms = timeoutMs) =>
    waitFor(() => messages.find((m) => m && m.type === type && where(m.data || {})), ms, () => `a ${type} message`);
  const close = async () => {
    if (sink) sink.stop();
    await reactor.disconnect();
  };
  return { reactor, messages, markers, waitMessage, close };
}

export async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
