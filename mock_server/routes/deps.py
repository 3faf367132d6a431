"""Dependencies of the HTTP routes: the registry from the app state, mode gating and the admin guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, WebSocket

from mock_server.errors import NotFound
from mock_server.services.admin_guard import check_admin_http, check_admin_ws, own_origin
from mock_server.services.registry import Registry


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def registry_of_socket(websocket: WebSocket) -> Registry:
    registry: Registry = websocket.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(registry_of)]
SocketRegistryDep = Annotated[Registry, Depends(registry_of_socket)]


def _require(registry: Registry, modes: tuple[str, ...], what: str) -> None:
    mode = registry.settings.mode
    if mode not in modes:
        raise NotFound(f"{what} routes are off (server started with --mode {mode})")


def require_local(registry: RegistryDep) -> None:
    """Local runtime routes answer only with --mode local or both."""
    _require(registry, ("local", "both"), "local-mode")


def require_production(registry: RegistryDep) -> None:
    """Coordinator routes answer only with --mode production or both."""
    _require(registry, ("production", "both"), "production-mode")


LOCAL_ONLY = Depends(require_local)
PRODUCTION_ONLY = Depends(require_production)


def require_admin(request: Request, registry: RegistryDep) -> None:
    """Admin routes: the admin token when one is set, else only non-browser and same-origin callers."""
    own = own_origin(request.url.scheme, request.headers.get("host"))
    check_admin_http(request.headers, own, registry.settings)


def admin_socket_allowed(websocket: WebSocket, registry: Registry) -> None:
    """The live WebSocket's admin check (raise before `accept()`): same rules, plus `?admin_token=`."""
    own = own_origin(websocket.url.scheme, websocket.headers.get("host"))
    check_admin_ws(websocket.headers, websocket.query_params, own, registry.settings)


ADMIN_ONLY = Depends(require_admin)
