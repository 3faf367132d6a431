"""``GET /metrics``: the server's Prometheus metrics (``app.state.metrics``) in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from mock_server.metrics import Metrics

router = APIRouter(tags=["observability"])


def metrics_of(request: Request) -> Metrics:
    """The `Metrics` of this app (set as ``app.state.metrics`` when the app is built)."""
    metrics = getattr(request.app.state, "metrics", None)
    if not isinstance(metrics, Metrics):
        raise HTTPException(503, "this server was built without metrics (app.state.metrics is not set)")
    return metrics


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}},
)
async def get_metrics(request: Request) -> Response:
    """Sessions, connections, chunks, frames, bytes, commands, rejections, faults, encode time, loop lag."""
    metrics = metrics_of(request)
    registry = getattr(request.app.state, "registry", None)
    if registry is not None:
        metrics.set_sessions(registry.state_counts())
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
