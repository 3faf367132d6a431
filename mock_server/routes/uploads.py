"""Upload routes: create a slot on a session (POST) and fill it through its presigned URL (PUT)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request

from mock_server.routes.bodies import UploadRequest
from mock_server.routes.deps import RegistryDep
from mock_server.routes.errors import errors

router = APIRouter(tags=["uploads"])


@router.post(
    "/sessions/{session_id}/uploads",
    status_code=201,
    responses=errors(400, 401, 403, 404, 408, 409, 413, 422),
)
async def create_upload(
    session_id: str,
    body: UploadRequest,
    request: Request,
    registry: RegistryDep,
    authorization: str | None = Header(default=None),
) -> dict[str, Any]:
    session = registry.running(session_id, authorization)
    upload = session.uploads.create(body.name, body.mime_type, body.size)
    url = f"{str(request.base_url).rstrip('/')}/uploads/{upload.presigned_id}"
    return {
        "presigned_id": upload.presigned_id,
        "presigned_url": url,
        "path": f"uploads/{upload.presigned_id}",
    }


@router.put("/uploads/{presigned_id}", responses=errors(400, 403, 404, 408, 409, 413))
async def put_upload(presigned_id: str, request: Request, registry: RegistryDep) -> dict[str, Any]:
    session = registry.upload_owner(presigned_id)
    declared = request.headers.get("content-length")
    size = int(declared) if declared and declared.isdigit() else None
    await session.uploads.fill(presigned_id, request.stream(), size)
    return {}
