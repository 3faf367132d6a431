"""``GET /docs``: Swagger UI served from this server (assets from the swagger-ui-bundle-v2 package), so the
API docs work with no internet access. The app is built with ``docs_url=None, redoc_url=None``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

ASSETS_DIR = Path(swagger_ui_path)
ASSETS = {  # the only files served: name -> media type
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
ASSET_PREFIX = "/docs/assets/"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + (request.app.openapi_url or "/openapi.json"),
        title=f"{request.app.title} — API docs",
        swagger_js_url=root + ASSET_PREFIX + "swagger-ui-bundle.js",
        swagger_css_url=root + ASSET_PREFIX + "swagger-ui.css",
        swagger_favicon_url=root + ASSET_PREFIX + "favicon-32x32.png",
        oauth2_redirect_url=root + "/docs/oauth2-redirect",
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/docs/assets/{name}")
async def swagger_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"no docs asset {name!r}; the assets are: {', '.join(sorted(ASSETS))}")
    return FileResponse(
        ASSETS_DIR / name, media_type=ASSETS[name], headers={"Cache-Control": "max-age=86400"}
    )
