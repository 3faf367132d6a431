"use strict";
// @helios-mock/harness: run JavaScript test suites against helios-mock (startMock, the admin client with
// client-rule verdicts, live transcripts and faults) and read the marker band of received frames.

const { startMock } = require("./mock.cjs");
const { AdminClient, HeliosAdminError } = require("./admin.cjs");
const { decodeMarkers, promptId, bandHeight } = require("./markers.cjs");

module.exports = { startMock, AdminClient, HeliosAdminError, decodeMarkers, promptId, bandHeight };
