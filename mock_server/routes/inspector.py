"""The inspector: `/` (sessions), `/inspector/sessions/{key}` (one session's timeline), `/playground` (the
JS SDK in the browser), their JSON and pictures. Pages and data are behind the admin guard; the static
assets (page code and the vendored SDK bundle) hold no data and are served to anyone.

Data the pages poll lives under `/admin/inspector/` (kept out of the HTTP record and of CORS, like the
rest of the admin API), with the fault kinds the Faults panel offers; `POST /admin/sessions/{key}/clips`
cuts a clip for an admin (the timeline page's "Cut a clip"), as a client's `requestClip` would. The pages
themselves also accept `?admin_token=` when the server has one: a browser cannot set a header on a
navigation; the page then sends the token as a header on its own requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from mock_server.errors import NotFound
from mock_server.routes.deps import ADMIN_ONLY, RegistryDep
from mock_server.services import inspector
from mock_server.services.admin_guard import check_admin_ws, own_origin

STATIC_DIR = Path(__file__).resolve().parent.parent / "inspector" / "static"
STATIC = {  # the only files served: name -> media type
    "inspector.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "sessions.js": "text/javascript; charset=utf-8",
    "timeline.js": "text/javascript; charset=utf-8",
    "playground.bundle.js": "text/javascript; charset=utf-8",
    "playground.licenses.json": "application/json",
    "panels.bundle.js": "text/javascript; charset=utf-8",
    "panels.licenses.json": "application/json",
}
PAGES = {"sessions": "index.html", "timeline": "session.html", "playground": "playground.html"}
PAGE_HEADERS = {
    # nothing leaves the machine: every script, style, picture and request stays on this origin
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = {"Cache-Control": "no-store"}
MAX_CLIP_SECONDS = 3600.0  # an admin clip asks for at most this much (the recording keeps less anyway)


def require_admin_page(request: Request, registry: RegistryDep) -> None:
    """The admin guard for the pages: the same rules as the admin API, plus `?admin_token=`."""
    own = own_origin(request.url.scheme, request.headers.get("host"))
    check_admin_ws(request.headers, request.query_params, own, registry.settings)


ADMIN_PAGE = Depends(require_admin_page)

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / PAGES[name], media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/", dependencies=[ADMIN_PAGE])
async def sessions_page() -> FileResponse:
    return _page("sessions")


@router.get("/inspector/sessions/{key}", dependencies=[ADMIN_PAGE])
async def timeline_page(key: str) -> FileResponse:
    return _page("timeline")


@router.get("/playground", dependencies=[ADMIN_PAGE])
async def playground_page() -> FileResponse:
    return _page("playground")


@router.get("/inspector/static/{name}")
async def static_asset(name: str) -> FileResponse:
    if name not in STATIC:
        raise NotFound(f"no inspector asset {name!r}; the assets are: {', '.join(sorted(STATIC))}")
    return FileResponse(STATIC_DIR / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


@router.get("/admin/inspector/overview", dependencies=[ADMIN_ONLY])
async def overview(registry: RegistryDep) -> Response:
    return _json(inspector.overview(registry))


@router.get("/admin/inspector/sessions/{key}", dependencies=[ADMIN_ONLY])
async def timeline(key: str, registry: RegistryDep) -> Response:
    return _json(inspector.timeline(registry, key))


@router.get("/admin/inspector/sessions/{key}/frame.png", dependencies=[ADMIN_ONLY])
async def live_frame(key: str, registry: RegistryDep) -> Response:
    png, markers = await inspector.live_frame_png(registry, key)
    return Response(png, media_type="image/png", headers={**NO_STORE, "X-Helios-Markers": markers})


@router.get("/inspector/sessions/{key}/chunks/{chunk}/thumbnail.png", dependencies=[ADMIN_ONLY])
async def thumbnail(key: str, chunk: int, registry: RegistryDep, t: str | None = None) -> Response:
    """First frame of chunk `chunk` (`t`: the chunk's begin time, to pick one run after a reset)."""
    t_begin = inspector.parse_query_float(t, "t")
    png, markers = await inspector.thumbnail_png(registry, key, chunk, t_begin)
    return Response(
        png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=600", "X-Helios-Markers": markers},
    )


@router.get("/admin/inspector/fault-kinds", dependencies=[ADMIN_ONLY])
async def fault_kinds() -> Response:
    """The fault kinds a session can be given from the inspector, their triggers and parameters."""
    return _json({"kinds": inspector.fault_kinds()})


class ClipRequest(BaseModel):
    """`POST /admin/sessions/{key}/clips`: the last `duration_seconds` of the session's recording."""

    model_config = ConfigDict(extra="forbid")
    duration_seconds: float = Field(gt=0, le=MAX_CLIP_SECONDS, allow_inf_nan=False)


@router.post("/admin/sessions/{key}/clips", dependencies=[ADMIN_ONLY], status_code=201)
async def cut_clip(key: str, body: ClipRequest, request: Request, registry: RegistryDep) -> Response:
    """A clip link (clipReady's fields) on the caller's own address; 404 unknown session, 409 no clip."""
    base = str(request.base_url).rstrip("/")
    return _json(inspector.cut_clip(registry, key, body.duration_seconds, base), status=201)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, headers=NO_STORE)
