"use strict";
// A minimal WebSocket reader for Node versions without a global WebSocket (Node 20 needs a flag): enough to
// follow the mock's live transcript (text frames from the server, ping -> pong, close). RFC 6455; client
// frames are masked. Browsers and Node >= 22 use their own WebSocket instead.

const crypto = require("node:crypto");

const OP_TEXT = 0x1;
const OP_CONT = 0x0;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const MAX_MESSAGE = 16 * 1024 * 1024; // bytes: a live item larger than this is refused, not buffered

function clientFrame(opcode, payload) {
  const mask = crypto.randomBytes(4);
  const length = payload.length;
  if (length > 125) throw new Error("control frame too long");
  const head = Buffer.from([0x80 | opcode, 0x80 | length]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, body]);
}

/** Parse complete frames from `buffer`; returns [frames, rest]. */
function parseFrames(buffer) {
  const frames = [];
  let pos = 0;
  while (buffer.length - pos >= 2) {
    const fin = (buffer[pos] & 0x80) !== 0;
    const opcode = buffer[pos] & 0x0f;
    let length = buffer[pos + 1] & 0x7f;
    let header = 2;
    if (length === 126) {
      if (buffer.length - pos < 4) break;
      length = buffer.readUInt16BE(pos + 2);
      header = 4;
    } else if (length === 127) {
      if (buffer.length - pos < 10) break;
      length = Number(buffer.readBigUInt64BE(pos + 2));
      header = 10;
    }
    if (length > MAX_MESSAGE) throw new Error(`live item of ${length} bytes exceeds ${MAX_MESSAGE}`);
    if (buffer.length - pos < header + length) break;
    frames.push({ fin, opcode, payload: buffer.subarray(pos + header, pos + header + length) });
    pos += header + length;
  }
  return [frames, buffer.subarray(pos)];
}

/**
 * Open `url` (ws:// or wss://) and call onText(string) for each text message; resolves when the server
 * closes. `signal` (AbortSignal) closes it early.
 */
function readTextMessages(url, headers, onText, signal) {
  const target = new URL(url);
  const lib = target.protocol === "wss:" ? require("node:https") : require("node:http");
  target.protocol = target.protocol === "wss:" ? "https:" : "http:";
  const key = crypto.randomBytes(16).toString("base64");
  return new Promise((resolve, reject) => {
    const req = lib.request(target, {
      headers: { ...headers, Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key },
    });
    req.on("response", (res) => reject(new Error(`WebSocket ${url}: HTTP ${res.statusCode} instead of an upgrade`)));
    req.on("error", reject);
    req.on("upgrade", (_res, socket, head) => {
      let pending = Buffer.from(head);
      let parts = [];
      const send = (frame) => { if (!socket.writableEnded && !socket.destroyed) socket.write(frame); };
      const close = (payload) => { send(clientFrame(OP_CLOSE, payload)); socket.end(); };
      const abort = () => close(Buffer.from([0x03, 0xe8]));
      if (signal) signal.addEventListener("abort", abort, { once: true });
      socket.on("data", (chunk) => {
        let frames;
        try {
          [frames, pending] = parseFrames(Buffer.concat([pending, chunk]));
        } catch (err) {
          socket.destroy();
          reject(err);
          return;
        }
        for (const frame of frames) {
          if (frame.opcode === OP_PING) send(clientFrame(0xa, frame.payload));
          else if (frame.opcode === OP_CLOSE) close(frame.payload.subarray(0, 2));
          else if (frame.opcode === OP_TEXT || frame.opcode === OP_CONT) {
            parts.push(frame.payload);
            if (frame.fin) {
              onText(Buffer.concat(parts).toString("utf8"));
              parts = [];
            }
          }
        }
      });
      socket.on("close", () => resolve());
      socket.on("error", reject);
    });
    req.end();
  });
}

module.exports = { readTextMessages };
