#!/usr/bin/env python3
"""Where the published JS SDK's connect() -> "ready" time goes: its own timings, the server's side, medians.

    python scripts/js_connect_timings.py                    # 10 rounds, each a fresh mock and 3 connects
    python scripts/js_connect_timings.py --rounds 3 --connects 2 --json out.json
    python scripts/js_connect_timings.py --compare ../other-checkout    # A/B: rounds alternate A, B, A, B…

Each round runs ``helios-mock run --netns -- node tests/js/connect_timings.cjs`` (docs/CLIENTS.md §1: the
mock and @reactor-team/js-sdk 2.9.0 under Node in a private network namespace). Connect 1 of a round is the
first the fresh mock sees; the others are "later" connects. Per connect it takes the SDK's ConnectionTimings
and WebRTCTransportTimings, every HTTP request as the SDK saw it (start, end) and as the server recorded it
(``GET /admin/record``: the moment of the answer and ``ms``, the server's time for it), and the server's
"answered offer" / "peer connected" / "connection ready" events. Server times are put on the client's clock
by the one offset that fits every request's server interval inside its client interval.

The timeline parts add up to the connect (``ready``); so does the attribution: HTTP round trips (= server
handler time + network and client HTTP overhead), the client's ICE gathering, the SDK's poll waits, ICE +
DTLS + SCTP (both ends) and the remaining client/SDK work. ``--compare DIR`` runs the mock from another
checkout (PYTHONPATH=DIR) in every other round, the JS side staying the same. Needs node,
tests/js/node_modules, ``unshare`` and ``ip`` (as the end-to-end tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CJS = REPO / "tests" / "js" / "connect_timings.cjs"
MAX_ROUNDS = 50
MAX_CONNECTS = 20

SDK_FIELDS = ("sessionCreationMs", "transportConnectingMs", "totalMs")
TRANSPORT_FIELDS = ("sdpPollingMs", "sdpPollingAttempts", "iceNegotiationMs", "dataChannelMs")
TIMELINE = (  # consecutive parts of one connect, client clock: they add up to "ready"
    ("session", "connect() -> GET ice_servers sent (POST /start_session, SDK set-up)"),
    ("ice_servers", "GET ice_servers round trip"),
    ("offer", "peer connection, createOffer, client ICE gathering"),
    ("offer_post", "POST sdp_params round trip (the server answers inside it)"),
    ("answer_polls", "202 -> answer in hand (GET sdp_params polls and waits)"),
    ("ice_dtls", "answer -> peer connected (ICE + DTLS)"),
    ("to_ready", "peer connected -> ready (SCTP, data channel)"),
)
ATTRIBUTION = (
    ("http_round_trips", "HTTP round trips, the SDK's view (= the next two)"),
    ("server_handlers", "server: handling the HTTP requests (incl. building the answer)"),
    ("http_overhead", "network + client side of those requests"),
    ("client_gathering", "client: ICE gathering the SDK waits for"),
    ("poll_waits", "SDK: sleeps between answer polls"),
    ("ice_dtls_sctp", "ICE + DTLS + SCTP, both ends"),
    ("client_other", "client/SDK: the rest (createOffer, set-up, JSON)"),
)
SERVER_MS = {  # the server's own time per request kind
    ("POST", "/start_session"): "srv_ms_start_session",
    ("GET", "/ice_servers"): "srv_ms_ice_servers",
    ("POST", "/sdp_params"): "srv_ms_offer",
    ("GET", "/sdp_params"): "srv_ms_polls",
}
SERVER_EVENTS = (("answered offer", "srv_answer_ready"), ("peer connected", "srv_peer_connected"))


def align(fetches: list[dict[str, Any]], http: list[dict[str, Any]]) -> tuple[float, float]:
    """(offset, uncertainty) in ms: client time = server session time (ms) + offset."""
    low, high = -1e9, 1e9
    for fetch, entry in zip(fetches, http, strict=True):
        done = entry["t"] * 1000
        low = max(low, fetch["start"] - (done - entry.get("ms", 0.0)))  # without ms: a weaker bound
        high = min(high, fetch["end"] - done)
    if low > high:  # clock noise of a few µs: take the middle anyway
        low, high = high, low
    return (low + high) / 2, (high - low) / 2


def breakdown(run: dict[str, Any], session: dict[str, Any]) -> dict[str, float]:
    """Every SDK field, the timeline parts, the attribution and the server's moments of one connect."""
    fetches = [f for f in run["fetches"] if not f["path"].endswith("/stop_session")]
    http = [h for h in session["http"] if h["path"] != "/stop_session"]
    if [(f["method"], f["path"], f["status"]) for f in fetches] != [
        (h["method"], h["path"], h["status"]) for h in http
    ]:
        raise ValueError(f"client and server saw different requests: {fetches} vs {http}")
    marks = run["marks"]
    by_kind = {(f["method"], f["path"].rsplit("/", 1)[-1]): f for f in fetches}
    ice, post = by_kind[("GET", "ice_servers")], by_kind[("POST", "sdp_params")]
    polls = [f for f in fetches if f["method"] == "GET" and f["path"].endswith("/sdp_params")]
    out: dict[str, float] = {k: float(run["sdk"]["connection"][k]) for k in SDK_FIELDS}
    out |= {k: float(run["sdk"]["transport"][k]) for k in TRANSPORT_FIELDS}
    edges = [0.0, ice["start"], ice["end"], post["start"], post["end"], marks["answer_received"]]
    edges += [marks["peer_connected"], marks["ready"]]
    out |= {name: edges[i + 1] - edges[i] for i, (name, _) in enumerate(TIMELINE)}
    out["ready"] = marks["ready"]
    out["gathering_wait"] = marks["gathering_complete"] - marks["local_description_set"]
    out["poll_waits"] = sum(b["start"] - a["end"] for a, b in zip(polls, polls[1:], strict=False))
    round_trips = out["http_round_trips"] = sum(f["end"] - f["start"] for f in fetches)
    if all("ms" in h for h in http):  # a mock that records its time per request (not older checkouts)
        out["server_handlers"] = sum(h["ms"] for h in http)
        out["http_overhead"] = round_trips - out["server_handlers"]
        for (method, path), key in SERVER_MS.items():
            out[key] = sum(h["ms"] for h in http if h["method"] == method and h["path"].endswith(path))
    out["client_gathering"] = out["gathering_wait"]
    out["ice_dtls_sctp"] = out["ice_dtls"] + out["to_ready"]
    accounted = round_trips + out["client_gathering"] + out["poll_waits"] + out["ice_dtls_sctp"]
    out["client_other"] = out["ready"] - accounted
    offset, out["align_uncertainty"] = align(fetches, http)
    for event, key in SERVER_EVENTS:
        t = next((e["t"] for e in session["entries"] if e.get("kind") == event), None)
        if t is not None:
            out[key] = t * 1000 + offset
    if "srv_peer_connected" in out:  # the server's DTLS done, counted from the answer in the client's hand
        out["srv_dtls_done_after_answer"] = out["srv_peer_connected"] - marks["answer_received"]
    return out


def run_round(tree: Path, connects: int, work: Path) -> list[dict[str, float]]:
    """A fresh mock from `tree` (in a namespace) and `connects` SDK connects; one breakdown per connect."""
    out = work / "timings.json"
    node = shutil.which("node") or "node"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]))
    env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
    cmd = [sys.executable, "-m", "mock_server", "run", "--netns", "--server-log", str(work / "server.log")]
    cmd += ["--", node, str(CJS), "--runs", str(connects), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"round failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    data = json.loads(out.read_text())
    sessions = [
        s for s in data["record"]["sessions"] if s["http"][:1] and s["http"][0]["path"] == "/start_session"
    ]
    if len(sessions) != len(data["runs"]):
        raise RuntimeError(f"{len(data['runs'])} connects but {len(sessions)} sessions in the server record")
    return [breakdown(run, s) for run, s in zip(data["runs"], sessions, strict=True)]


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for row in rows for k in row})
    return {k: statistics.median(row[k] for row in rows if k in row) for k in keys}


def table(columns: dict[str, list[dict[str, float]]]) -> str:
    """Medians of every field, one column per group of connects."""
    meds = {name: medians(rows) for name, rows in columns.items() if rows}
    head = f"{'median ms':<62}" + "".join(f"{name:>16}" for name in meds)
    lines = [head, f"{'connects':<62}" + "".join(f"{len(columns[n]):>16}" for n in meds)]

    def section(title: str, rows: list[tuple[str, str]]) -> None:
        lines.append(title)
        for key, label in rows:
            cells = "".join(f"{m[key]:>16.1f}" if key in m else f"{'-':>16}" for m in meds.values())
            lines.append(f"  {label[:60]:<60}{cells}")

    section("SDK ConnectionTimings / WebRTCTransportTimings", [(k, k) for k in SDK_FIELDS + TRANSPORT_FIELDS])
    section("timeline (client clock; adds up to ready)", [*TIMELINE, ("ready", "ready")])
    section("  inside it", [("gathering_wait", "client ICE gathering (offer: setLocal -> complete)")])
    section("attribution (adds up to ready)", list(ATTRIBUTION))
    section(
        "server time per request (arrival -> answer)",
        [
            ("srv_ms_start_session", "POST /start_session"),
            ("srv_ms_ice_servers", "GET ice_servers"),
            ("srv_ms_offer", "POST sdp_params (aiortc builds the answer)"),
            ("srv_ms_polls", "GET sdp_params (all polls)"),
        ],
    )
    section(
        "server moments (client clock)",
        [
            ("srv_answer_ready", "answer built"),
            ("srv_peer_connected", "server peer connected (its DTLS done)"),
            ("srv_dtls_done_after_answer", "  = answer in client's hand + this"),
            ("align_uncertainty", "clock alignment ± (ms)"),
        ],
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help=f"fresh mocks per tree (1-{MAX_ROUNDS})")
    parser.add_argument("--connects", type=int, default=3, help=f"connects per round (1-{MAX_CONNECTS})")
    parser.add_argument("--compare", type=Path, help="another checkout whose mock runs every other round")
    parser.add_argument("--json", type=Path, help="write every connect's breakdown here")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= MAX_ROUNDS or not 1 <= args.connects <= MAX_CONNECTS:
        parser.error(f"--rounds must be 1-{MAX_ROUNDS} and --connects 1-{MAX_CONNECTS}")
    trees = {"this": REPO} | ({"compare": args.compare.resolve()} if args.compare else {})
    results: dict[str, list[list[dict[str, float]]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="js-connect-") as tmp:
        for r in range(args.rounds):
            for name, tree in trees.items():  # interleaved: A, B, A, B…
                work = Path(tmp) / f"{name}-{r}"
                work.mkdir()
                results[name].append(run_round(tree, args.connects, work))
                ready = [round(c["ready"]) for c in results[name][-1]]
                print(f"round {r + 1}/{args.rounds} {name}: ready {ready} ms")
    columns: dict[str, list[dict[str, float]]] = {}
    for name, rounds in results.items():
        columns[f"{name}: first"] = [rnd[0] for rnd in rounds]
        columns[f"{name}: later"] = [c for rnd in rounds for c in rnd[1:]]
    print(table(columns))
    if args.json:
        args.json.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "rounds": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
