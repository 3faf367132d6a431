// helios-mock inspector: helpers shared by the pages (admin token, JSON fetches, element building, header).
"use strict";
(() => {
  const TOKEN_KEY = "heliosAdminToken";
  // With --admin-token the pages are opened as /?admin_token=...; keep the token for this tab only and take it
  // out of the address bar. It then goes as a header on every data request and on links between the pages.
  const query = new URLSearchParams(location.search);
  if (query.get("admin_token")) {
    sessionStorage.setItem(TOKEN_KEY, query.get("admin_token"));
    query.delete("admin_token");
    const rest = query.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  // A request to the mock; a non-2xx answer throws an Error naming the status, the path and the {detail}.
  async function request(path, { method = "GET", body } = {}) {
    const headers = token() ? { "X-Helios-Admin-Token": token() } : {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
    if (!res.ok) {
      let detail = res.statusText;
      try {
        detail = (await res.json()).detail;
      } catch (_) {}
      if (Array.isArray(detail)) detail = detail.map((d) => (d && d.msg ? d.msg : JSON.stringify(d))).join("; ");
      throw new Error(`${res.status} ${method} ${path}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    }
    return res;
  }

  const json = async (path) => (await request(path)).json();
  const send = async (method, path, body) => (await request(path, { method, body })).json();

  // A PNG with its decoded markers (X-Helios-Markers) as {url, markers}.
  async function picture(path) {
    const res = await request(path);
    return { url: URL.createObjectURL(await res.blob()), markers: res.headers.get("X-Helios-Markers") };
  }

  const page = (path) => (token() ? `${path}?admin_token=${encodeURIComponent(token())}` : path);

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : value);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }

  const short = (value, n = 60) => {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text === undefined ? "" : text.length > n ? `${text.slice(0, n - 1)}…` : text;
  };
  const secs = (t) => (t === null || t === undefined ? "—" : `${Number(t).toFixed(2)} s`);

  function header(here) {
    const links = [
      ["sessions", "/", "Sessions"],
      ["playground", "/playground", "Playground"],
    ];
    return h(
      "header",
      { class: "top" },
      h("b", {}, "helios-mock"),
      links.map(([name, path, label]) => h("a", { href: page(path), class: name === here ? "here" : null }, label)),
      h("span", { class: "spacer" }),
      h("a", { href: "/docs" }, "API docs"),
      h("a", { href: "/metrics" }, "metrics"),
    );
  }

  window.Insp = { json, send, picture, page, h, short, secs, header, token };
})();
