/** Values carried by the marker band of one helios-mock frame (Python: mock_server.media.markers.Markers). */
export interface Markers {
  chunk: number;
  frame: number;
  promptId: number;
  seed: number;
  imageId: number;
}

/** A frame as JavaScript sees it: ImageData (RGBA), an @roamhq/wrtc sink frame (I420), RGB or luma. */
export interface FrameLike {
  width: number;
  height: number;
  data: ArrayLike<number>;
}

export type FrameFormat = "rgba" | "rgb" | "i420" | "luma";

/** The markers of one frame, or null when the band is absent, too faint, ambiguous or fails its CRC. */
export function decodeMarkers(frame: FrameLike, options?: { format?: FrameFormat }): Markers | null;
/** 16-bit id of a prompt as the band carries it (sha256 of its UTF-8 bytes); 0 for "". */
export function promptId(prompt: string): Promise<number>;
/** Rows of a frame of this height covered by the band. */
export function bandHeight(height: number): number;
export const COLUMNS: number;
export const ROWS: number;
export const CELL_H_FRACTION: number;
