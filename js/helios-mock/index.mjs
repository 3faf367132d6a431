import harness from "./index.cjs";

export const { startMock, AdminClient, HeliosAdminError, decodeMarkers, promptId, bandHeight } = harness;
