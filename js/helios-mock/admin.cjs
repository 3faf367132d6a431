"use strict";
// AdminClient: the mock's admin API over HTTP (fetch) — reset, record, transcripts, client-rule violations,
// fault injection — and the live transcript over WebSocket. Works in Node >= 18 and in browsers.

class HeliosAdminError extends Error {
  constructor(status, detail, url) {
    super(`${url}: HTTP ${status}: ${detail}`);
    this.name = "HeliosAdminError";
    this.status = status;
    this.detail = detail;
  }
}

class AdminClient {
  /** @param {string} url the mock's base URL; options.adminToken when it was started with --admin-token */
  constructor(url, options = {}) {
    this.url = String(url).replace(/\/+$/, "");
    this.adminToken = options.adminToken || undefined;
    this.fetch = options.fetch || globalThis.fetch;
    this.faults = {
      inject: (fault) => this.request("POST", "/admin/faults", fault),
      list: () => this.request("GET", "/admin/faults"),
      clear: (id) => this.request("DELETE", id === undefined ? "/admin/faults" : `/admin/faults/${encodeURIComponent(id)}`),
    };
  }

  get headers() {
    return this.adminToken ? { "X-Helios-Admin-Token": this.adminToken } : {};
  }

  async request(method, path, body) {
    const headers = { ...this.headers };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await this.fetch(this.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    if (!res.ok) {
      const detail = parsed && typeof parsed === "object" && "detail" in parsed ? parsed.detail : text;
      throw new HeliosAdminError(res.status, detail, `${method} ${path}`);
    }
    return parsed;
  }

  health() { return this.request("GET", "/health"); }
  reset() { return this.request("POST", "/admin/reset"); }
  record() { return this.request("GET", "/admin/record"); }
  rules() { return this.request("GET", "/admin/rules"); }
  transcript(sessionId = "local") {
    return this.request("GET", `/admin/sessions/${encodeURIComponent(sessionId)}/transcript`);
  }

  /** Client-rule violations: {violations: [{rule_id, rule, explanation, session_id, entry, text}], …}. */
  violations(options = {}) {
    const query = new URLSearchParams();
    for (const id of options.ignore || []) query.append("ignore", id);
    for (const id of options.only || []) query.append("only", id);
    if (options.pingTolerance !== undefined) query.set("ping_tolerance", String(options.pingTolerance));
    const where = options.sessionId ? `/admin/sessions/${encodeURIComponent(options.sessionId)}` : "/admin";
    const qs = query.toString();
    return this.request("GET", `${where}/violations${qs ? `?${qs}` : ""}`);
  }

  /** Throws an Error listing the violations, if any (options as for violations()). */
  async assertNoViolations(options = {}) {
    const { violations } = await this.violations(options);
    if (violations.length) {
      throw new Error(`client violated the Helios contract:\n${violations.map((v) => `  ${v.text}`).join("\n")}`);
    }
  }

  /**
   * Follow a session's transcript live: every entry so far, then each new one, until the session ends or
   * `options.signal` aborts. Calls onItem(item) for each; resolves when the stream ends.
   */
  async follow(sessionId, onItem, options = {}) {
    const wsUrl = `${this.url.replace(/^http/, "ws")}/admin/sessions/${encodeURIComponent(sessionId)}/live`;
    const parse = (text) => onItem(JSON.parse(text));
    if (typeof globalThis.WebSocket === "function") {
      const url = this.adminToken ? `${wsUrl}?admin_token=${encodeURIComponent(this.adminToken)}` : wsUrl;
      return followWithWebSocket(url, parse, options.signal);
    }
    const { readTextMessages } = require("./ws.cjs");
    return readTextMessages(wsUrl, this.headers, parse, options.signal);
  }
}

function followWithWebSocket(url, onText, signal) {
  return new Promise((resolve, reject) => {
    const ws = new globalThis.WebSocket(url);
    ws.onmessage = (event) => onText(String(event.data));
    ws.onerror = () => reject(new Error(`WebSocket ${url} failed`));
    ws.onclose = () => resolve();
    if (signal) signal.addEventListener("abort", () => ws.close(), { once: true });
  });
}

module.exports = { AdminClient, HeliosAdminError };
