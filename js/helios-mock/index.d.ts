import type { ChildProcess } from "node:child_process";

export { decodeMarkers, promptId, bandHeight, Markers, FrameLike, FrameFormat } from "./markers";

export interface Violation {
  rule_id: string;
  /** what the rule says (GET /admin/rules) */
  rule: string;
  explanation: string;
  session_id: string | null;
  /** the offending transcript entry (or rejection) */
  entry: Record<string, unknown> | null;
  /** one line: "[rule-id] explanation (session …, connection …, t=…s)" */
  text: string;
}

export interface ViolationsReport {
  violations: Violation[];
  checked_sessions: string[];
  rules: string[];
  ping_tolerance: number;
}

export interface ViolationsOptions {
  sessionId?: string;
  /** rule ids not to report (lenient) */
  ignore?: string[];
  /** report only these rule ids */
  only?: string[];
  pingTolerance?: number;
}

export class HeliosAdminError extends Error {
  status: number;
  detail: unknown;
}

export class AdminClient {
  constructor(url: string, options?: { adminToken?: string; fetch?: typeof fetch });
  readonly url: string;
  readonly adminToken: string | undefined;
  request(method: string, path: string, body?: unknown): Promise<any>;
  health(): Promise<Record<string, unknown>>;
  reset(): Promise<Record<string, unknown>>;
  record(): Promise<{ sessions: Record<string, any>[]; http: Record<string, any>[] }>;
  rules(): Promise<Record<string, string>>;
  transcript(sessionId?: string): Promise<{ session_id: string; entries: Record<string, any>[]; [k: string]: any }>;
  violations(options?: ViolationsOptions): Promise<ViolationsReport>;
  assertNoViolations(options?: ViolationsOptions): Promise<void>;
  follow(
    sessionId: string,
    onItem: (item: Record<string, any>) => void,
    options?: { signal?: AbortSignal },
  ): Promise<void>;
  faults: {
    inject(fault: Record<string, unknown>): Promise<Record<string, unknown>>;
    list(): Promise<any>;
    clear(id?: string): Promise<any>;
  };
}

export interface StartMockOptions {
  /** extra `helios-mock serve` flags */
  args?: string[];
  /** how to run the CLI (default ["helios-mock"], or $HELIOS_MOCK_COMMAND split on spaces) */
  command?: string[];
  /** use $HELIOS_MOCK_URL when set (default true) */
  reuse?: boolean;
  timeoutMs?: number;
  adminToken?: string;
  output?: "pipe" | "inherit";
  env?: NodeJS.ProcessEnv;
}

export interface Mock {
  url: string;
  adminToken: string | undefined;
  admin: AdminClient;
  /** true when the mock was started by someone else (helios-mock run) */
  external: boolean;
  process?: ChildProcess;
  output?: string[];
  stop(): Promise<void>;
}

export function startMock(options?: StartMockOptions): Promise<Mock>;
