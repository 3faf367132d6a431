// The timeline page (/inspector/sessions/{key}): chunks as columns on a time axis, and what happened in each.
"use strict";
(() => {
  const { json, send, picture, h, short, secs, header } = window.Insp;
  const POLL_MS = 1000;
  const LIVE_MS = 250;
  const key = decodeURIComponent(location.pathname.split("/").pop());
  const LANES = [
    ["command", "commands received"],
    ["effect", "took effect"],
    ["message", "messages sent"],
    ["message-in", "other frames in"],
    ["rejection", "rejections"],
    ["violation", "violations"],
    ["fault", "faults fired"],
    ["connection", "connections"],
  ];
  const thumbs = new Map(); // "chunk@t_begin" -> {url, markers} (a chunk's frame never changes)
  let closed = false;
  let sessionId = null; // the session's id once loaded (faults target it; `local` for a local session)
  document.getElementById("header").replaceWith(header(null));
  document.getElementById("title").textContent = key;

  function summary(s) {
    const rows = [
      ["session id", s.session_id],
      ["mode", s.mode],
      ["state", h("span", { class: `badge ${s.state}` }, s.state)],
      ["generation", s.generation],
      ["current chunk", `${s.chunk} (${s.chunks_generated} generated)`],
      ["prompt", s.prompt ? short(s.prompt, 70) : "—"],
      ["connections", s.connections.map((c) => `${c.connection_id} ${c.codec}${c.ready ? "" : " (gone)"}`).join(", ") || "—"],
      ["commands / rejections", `${s.commands_total} / ${s.rejections_total}`],
      ["violations", s.violations.map((v) => v.rule_id).join(", ") || "none"],
      ["closed", s.close_reason ? short(s.close_reason, 70) : "no"],
    ];
    document.getElementById("summary").replaceChildren(
      h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    );
  }

  function eventItem(ev) {
    const detail = ev.detail === null || ev.detail === undefined ? "" : short(ev.detail, 70);
    const conn = ev.connection_id ? ` · conn ${ev.connection_id}` : "";
    const title = `${secs(ev.t)}${conn}\n${JSON.stringify(ev.detail, null, 1) || ""}`;
    let text;
    if (ev.lane === "command") text = [h("b", {}, ev.label), ` ${detail}`, h("span", { class: "muted" }, ` · rx during chunk ${ev.received_chunk}`)];
    else if (ev.lane === "effect")
      text = [h("b", {}, ev.label), ` “${short(ev.detail.prompt, 40)}” from chunk ${ev.effective_chunk}`,
        h("span", { class: "muted" }, ` (received during chunk ${ev.received_chunk})`)];
    else if (ev.lane === "fault")
      text = [h("b", {}, ev.label), ` ${short(ev.detail.params, 50)}`, h("span", { class: "muted" }, ` · ${ev.detail.fault_id} on ${ev.detail.hook}`)];
    else text = [h("b", {}, ev.label), detail ? ` ${detail}` : ""];
    return h("div", { class: `ev ev-${ev.lane}${ev.pending ? " pending" : ""}`, title, dataset: { lane: ev.lane, t: ev.t } }, text);
  }

  function quietCounts(events) {
    const counts = new Map();
    for (const ev of events) counts.set(ev.label, (counts.get(ev.label) || 0) + 1);
    return [...counts.entries()].map(([label, n]) => h("div", { class: "ev ev-message muted" }, `${label} ×${n}`));
  }

  function chunkHead(col, index) {
    const cell = h("div", { class: "chunk-head", dataset: { column: index, chunk: col.chunk } },
      h("div", { class: "idx" }, `chunk ${col.chunk}`),
      h("div", { class: "muted" }, `${secs(col.t_begin)} → ${col.t_end === null ? "…" : secs(col.t_end)}`));
    const id = `${col.chunk}@${col.t_begin}`;
    const img = h("img", { alt: `first frame of chunk ${col.chunk}`, dataset: { chunk: col.chunk } });
    const markers = h("div", { class: "mono markers" }, "…");
    cell.append(img, markers);
    const show = (got) => {
      img.src = got.url;
      markers.textContent = got.markers.replace(/ /g, "\n").split("\n").filter((p) => !p.startsWith("frame=")).join(" ");
      markers.title = got.markers;
    };
    if (thumbs.has(id)) show(thumbs.get(id));
    else
      picture(`/inspector/sessions/${encodeURIComponent(key)}/chunks/${col.chunk}/thumbnail.png?t=${col.t_begin}`)
        .then((got) => { thumbs.set(id, got); show(got); })
        .catch((e) => { markers.textContent = String(e.message || e); });
    cell.append(h("div", {}, `“${short(col.prompt, 40)}”`), h("div", { class: "muted" }, `seed ${col.seed} · sr ${col.sr_scale} · image ${col.image_id}`));
    if (col.changes.length) cell.append(h("div", { class: "changes" }, col.changes.join("; ")));
    return cell;
  }

  function render(data) {
    const cols = data.columns;
    const pending = data.events.filter((e) => e.lane === "effect" && e.pending);
    const slots = [{ head: h("div", { class: "chunk-head" }, h("div", { class: "idx" }, "before"), h("div", { class: "muted" }, "before the first chunk shown")), index: null }];
    cols.forEach((col, i) => slots.push({ head: chunkHead(col, i), index: i, chunk: col.chunk }));
    if (pending.length) slots.push({ head: h("div", { class: "chunk-head" }, h("div", { class: "idx" }, "upcoming"), h("div", { class: "muted" }, "scheduled, not generated yet")), index: "pending" });
    const grid = document.getElementById("grid");
    grid.style.gridTemplateRows = `repeat(${LANES.length + 1}, auto)`;
    grid.style.gridTemplateColumns = `10em repeat(${slots.length}, 14em)`;
    const cells = [h("div", { class: "lane-name" }, "chunk")];
    for (const [, label] of LANES) cells.push(h("div", { class: "lane-name" }, label));
    const current = data.session.chunk;
    for (const slot of slots) {
      if (slot.chunk === current && slot.index === cols.length - 1) slot.head.classList.add("current");
      cells.push(slot.head);
      for (const [lane] of LANES) {
        const here = slot.index === "pending" ? pending.filter((e) => e.lane === lane)
          : data.events.filter((e) => e.lane === lane && (e.column ?? null) === slot.index && !(lane === "effect" && e.pending));
        const loud = here.filter((e) => !e.quiet);
        const quiet = here.filter((e) => e.quiet);
        cells.push(h("div", { class: "lane-cell", dataset: { lane, column: slot.index ?? "before", chunk: slot.chunk ?? "" } },
          loud.map(eventItem), quietCounts(quiet)));
      }
    }
    const box = grid.parentElement;
    const atEnd = box.scrollLeft + box.clientWidth >= box.scrollWidth - 20;
    grid.replaceChildren(...cells);
    if (atEnd) box.scrollLeft = box.scrollWidth;
  }

  async function refresh() {
    try {
      const data = await json(`/admin/inspector/sessions/${encodeURIComponent(key)}`);
      summary(data.session);
      sessionId = data.session.session_id;
      render(data);
      closed = data.session.state === "CLOSED";
      document.getElementById("error").textContent = "";
      document.body.dataset.loaded = "1";
    } catch (e) {
      document.getElementById("error").textContent = String(e.message || e);
    }
    if (!closed) setTimeout(refresh, POLL_MS);
  }

  let liveUrl = null;
  async function live() {
    try {
      const got = await picture(`/admin/inspector/sessions/${encodeURIComponent(key)}/frame.png`);
      document.getElementById("live").src = got.url;
      if (liveUrl) URL.revokeObjectURL(liveUrl);
      liveUrl = got.url;
      document.getElementById("live-markers").textContent = got.markers;
    } catch (e) {
      document.getElementById("live-markers").textContent = String(e.message || e).replace(/^\d+ \S+: /, "");
    }
    if (!closed) setTimeout(live, LIVE_MS);
  }
  // The Faults and Clip panels (panels.bundle.js): faults go to this session while it runs; clips are cut by
  // POST /admin/sessions/{key}/clips, on this page's own address.
  const panels = {
    faults: window.InspPanels.faults(document.getElementById("faults"), { sessionId: () => (closed ? null : sessionId) }),
    clip: window.InspPanels.clip(document.getElementById("clip"), {
      cut: (seconds) => send("POST", `/admin/sessions/${encodeURIComponent(key)}/clips`, { duration_seconds: seconds }),
    }),
  };
  window.timelinePanels = panels;
  refresh();
  live();
})();
