import markers from "./markers.cjs";

export const { decodeMarkers, promptId, bandHeight, COLUMNS, ROWS, CELL_H_FRACTION } = markers;
