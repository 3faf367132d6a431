// The sessions page (/): server settings and URLs, and every session, refreshed every second.
"use strict";
(() => {
  const { json, page, h, short, secs, header } = window.Insp;
  const POLL_MS = 1000;
  document.getElementById("header").replaceWith(header("sessions"));

  function showServer(server) {
    const rows = [
      ["version", server.version],
      ["mode", server.mode],
      ["fps × speed", `${server.fps} × ${server.speed} (a chunk every ${server.chunk_seconds} s)`],
      ["native size", server.native_size],
      ["media", server.media],
      ["max session", `${server.max_session_duration} s`],
      ["API keys", server.api_keys_required ? "required (--api-key)" : "any non-empty key"],
      ["admin token", server.admin_token_required ? "required" : "not set (same-origin only)"],
    ];
    document.getElementById("server").replaceChildren(
      h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    );
    const base = location.origin;
    const urls = [
      ["API", base],
      ["local session", `${base}/start_session`],
      ["production", `${base}/tokens → ${base}/sessions`],
      ["playground", `${base}/playground`],
      ["API docs", `${base}/docs`],
      ["metrics", `${base}/metrics`],
      ["admin record", `${base}/admin/record`],
    ];
    document.getElementById("urls").replaceChildren(
      h("dl", { class: "kv" }, urls.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    );
  }

  const list = (items, render, empty = "—") =>
    items.length ? h("ul", {}, items.map((item) => h("li", {}, render(item)))) : h("span", { class: "muted" }, empty);

  function connections(s) {
    return list(s.connections, (c) => [
      h("code", {}, c.connection_id),
      ` ${c.codec} `,
      h("span", { class: `badge ${c.ready ? "ready" : "disconnected"}` }, c.ready ? "ready" : "not ready"),
      ` ${c.frames_sent} frames${c.video_paused ? " (video paused)" : ""}`,
    ]);
  }

  function violations(s) {
    const byRule = new Map();
    for (const v of s.violations) byRule.set(v.rule_id, [...(byRule.get(v.rule_id) || []), v]);
    return list([...byRule.entries()], ([rule, found]) =>
      h("span", { title: found[0].explanation }, h("code", { class: "count-bad" }, rule), found.length > 1 ? ` ×${found.length}` : ""),
    );
  }

  function row(s) {
    const count = (n, cls) => h("div", { class: n ? cls : "muted" }, `${n} total`);
    return h(
      "tr",
      { dataset: { key: s.key, state: s.state, sessionId: s.session_id } },
      h("td", {}, h("a", { href: page(`/inspector/sessions/${encodeURIComponent(s.key)}`) }, s.session_id),
        h("div", { class: "muted" }, `${secs(s.age)} old`)),
      h("td", {}, s.mode),
      h("td", {}, h("span", { class: `badge ${s.state}` }, s.state), s.close_reason ? h("div", { class: "muted" }, short(s.close_reason)) : null),
      h("td", {}, h("span", { class: `badge ${s.generation.replace(" ", "-")}` }, s.generation)),
      h("td", {}, h("code", {}, s.chunk), h("div", { class: "muted" }, `${s.chunks_generated} done`)),
      h("td", {}, s.prompt ? short(s.prompt, 50) : h("span", { class: "muted" }, "—")),
      h("td", {}, connections(s)),
      h("td", {}, count(s.commands_total, ""), list(s.commands.slice(-4), (c) => `${c.type} @${c.chunk}`, "")),
      h("td", {}, count(s.rejections_total, "count-bad"), list(s.rejections.slice(-3), (r) => h("span", { title: r.message }, r.code), "")),
      h("td", {}, violations(s)),
      h("td", {}, list(s.faults, (f) => h("span", { title: JSON.stringify(f.body) }, f.chunk === null ? f.kind : `${f.kind} @${f.chunk}`))),
    );
  }

  async function refresh() {
    try {
      const data = await json("/admin/inspector/overview");
      showServer(data.server);
      const rows = data.sessions.map(row);
      document.getElementById("sessions").replaceChildren(
        ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No session yet. Open the playground, or connect a client."))]),
      );
      document.getElementById("updated").textContent = `· updated ${new Date().toLocaleTimeString()}`;
      document.getElementById("error").textContent = "";
    } catch (e) {
      document.getElementById("error").textContent = String(e.message || e);
    }
    setTimeout(refresh, POLL_MS);
  }
  refresh();
})();
