// Decode raw frame files with the harness's decodeMarkers (tests/test_js_markers.py compares the results with
// Python's mock_server.media.markers.decode_markers). Usage: node decode_frames.cjs manifest.json
// manifest: [{name, path, width, height, format?}]; prints {name: markers | null} as JSON.
"use strict";
const fs = require("node:fs");
const { decodeMarkers } = require("../../js/helios-mock/markers.cjs");

const manifest = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = {};
for (const item of manifest) {
  const data = new Uint8Array(fs.readFileSync(item.path));
  out[item.name] = decodeMarkers({ width: item.width, height: item.height, data }, { format: item.format });
}
process.stdout.write(JSON.stringify(out));
