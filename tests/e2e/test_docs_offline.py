"""`/docs` in a real browser with no request leaving the machine (issue 13): Debian's headless Chromium opens
the mock's Swagger UI (tests/browser/docs_page.cjs, playwright-core), waits until the operations are drawn
and logs every request of the browser context. Each one must go to the mock's own origin (or be a `data:` /
`blob:` URL) and succeed. A loopback server is enough here: the page needs no WebRTC, so no namespace.
The screenshot is kept as artifacts/docs/docs-page.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from jsclient import REPO, ensure_node_modules
from prereq import missing_prerequisite

from conformance.server import HeliosServer

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = REPO / "tests" / "browser" / "docs_page.cjs"
SCREENSHOT = REPO / "artifacts" / "docs" / "docs-page.png"
LOCAL_SCHEMES = ("data", "blob")
ASSETS = ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css")


@dataclass
class DocsRun:
    returncode: int
    out_dir: Path
    origin: str
    results: dict[str, Any]
    openapi: dict[str, Any]
    server_log: str
    stderr: str

    def context(self) -> str:
        return (
            f"\n--- exit {self.returncode}, artifacts in {self.out_dir}; error: {self.results.get('error')}"
            f"\n--- driver stderr:\n{self.stderr[-2000:]}"
            f"\n--- console: {self.results.get('console', [])[-10:]}"
            f"\n--- server:\n{self.server_log}"
        )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> DocsRun:
    if not CHROMIUM.exists():
        missing_prerequisite(f"{CHROMIUM} is missing (Debian package 'chromium') for the /docs browser test")
    ensure_node_modules()
    out_dir = tmp_path_factory.mktemp("docs")
    SCREENSHOT.unlink(missing_ok=True)
    server = HeliosServer.start(log_path=out_dir / "server.log")
    try:
        openapi = httpx.get(server.url + "/openapi.json", timeout=10).json()
        argv = [shutil.which("node") or "node", str(DRIVER), "--url", server.url, "--out-dir", str(out_dir)]
        argv += ["--screenshot", str(SCREENSHOT)]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    results_path = out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"error": "no results.json"}
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(server.url))
    return DocsRun(proc.returncode, out_dir, origin, results, openapi, server.log_tail(), proc.stderr)


def _operations(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(m.upper(), p) for p, ops in openapi["paths"].items() for m in ops if m in methods}


def test_docs_render_every_operation(run: DocsRun) -> None:
    assert run.returncode == 0, "the /docs page did not render its operations" + run.context()
    res = run.results
    assert res["title"] == "helios-mock — API docs", res["title"]
    rendered = [tuple(op) for op in res["operations"]]
    assert ("POST", "/sessions") in rendered, rendered
    assert len(rendered) == len(set(rendered)), f"operations drawn twice: {rendered}"
    assert set(rendered) == _operations(run.openapi), "Swagger UI drew other operations than /openapi.json"
    assert not res["page_errors"], res["page_errors"]
    errors = [c for c in res["console"] if c["type"] == "error"]
    assert not errors, f"browser console errors on /docs: {errors}"


def test_no_request_leaves_the_machine(run: DocsRun, capsys: pytest.CaptureFixture[str]) -> None:
    res = run.results
    urls = [r["url"] for r in res["requests"]]
    own = run.origin + "/"
    foreign = [u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES and not u.startswith(own)]
    assert not foreign and not res["blocked"], (
        f"/docs requested other origins than {run.origin}: {sorted(set(foreign + res['blocked']))}"
    )
    assert not res["failed"], f"requests of /docs failed: {res['failed']}"
    paths = {urlsplit(u).path for u in urls}
    for want in ("/docs", "/openapi.json", *ASSETS):
        assert want in paths, f"{want} not requested by the page (requests: {urls})" + run.context()
    bad = [f for f in res["finished"] if f["status"] is None or not 200 <= f["status"] < 400]
    assert not bad, f"requests of /docs answered with an error: {bad}"
    assert len(res["finished"]) == len(urls), (res["finished"], urls)
    with capsys.disabled():
        print(
            f"\n[docs] Chromium {res['browser_version']}: {len(res['operations'])} operations drawn, "
            f"{len(urls)} requests, all to {run.origin}: {sorted(paths)}"
        )


def test_screenshot_kept(run: DocsRun) -> None:
    assert run.returncode == 0, run.context()
    assert SCREENSHOT.exists(), f"no screenshot at {SCREENSHOT}"
    head = SCREENSHOT.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width = int.from_bytes(head[16:20], "big")
    height = int.from_bytes(head[20:24], "big")
    assert width == 1280 and height > 900, (width, height)  # full page: the operation list is longer
