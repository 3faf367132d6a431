"""A session's upload slots: created by POST /sessions/{id}/uploads, filled by the presigned PUT, resolved
for commands that name them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mock_server.config import Settings
from mock_server.errors import Conflict, Forbidden, Invalid
from mock_server.model.commands import UPLOAD_PARAMS, CommandRejected
from mock_server.model.images import UploadedFile
from mock_server.session.record import SessionRecord

log = logging.getLogger("helios_mock.session")


@dataclass
class Upload:
    """An upload slot created by POST /sessions/{id}/uploads and filled by the presigned PUT."""

    presigned_id: str
    name: str
    mime_type: str
    size: int
    created_at: float = field(default_factory=time.monotonic)
    data: bytes | None = None
    announced: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class UploadStore:
    """The upload slots of one session (freed when it ends)."""

    def __init__(self, session_id: str, settings: Settings, record: SessionRecord) -> None:
        self._session_id = session_id
        self._settings = settings
        self._record = record
        self._slots: dict[str, Upload] = {}

    def __contains__(self, presigned_id: object) -> bool:
        return presigned_id in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, presigned_id: str) -> Upload | None:
        return self._slots.get(presigned_id)

    def create(self, name: str, mime_type: str, size: int) -> Upload:
        """A new empty slot; refuses an empty name or mime type and a size that is not positive."""
        if not name.strip() or not mime_type.strip() or size <= 0:
            raise Invalid("an upload needs a non-empty name and mime_type and a size > 0 (in bytes)")
        owner = self._settings.instance_id  # behind a router the presigned PUT must find this instance
        presigned_id = f"{owner}_{secrets.token_hex(12)}" if owner else secrets.token_hex(12)
        upload = Upload(presigned_id=presigned_id, name=name, mime_type=mime_type, size=size)
        self._slots[upload.presigned_id] = upload
        return upload

    async def fill(self, presigned_id: str, read_body: Callable[[], Awaitable[bytes]]) -> Upload:
        """The presigned PUT: check the URL is fresh and unused, read the bytes, check their count."""
        upload = self._slots[presigned_id]
        if time.monotonic() - upload.created_at > self._settings.upload_url_ttl:
            raise Forbidden("upload URL expired")
        if upload.data is not None:
            raise Conflict(f"upload {presigned_id!r} was already uploaded")
        data = await read_body()
        if len(data) != upload.size:
            raise Invalid(f"upload {presigned_id!r} declared {upload.size} bytes but {len(data)} arrived")
        upload.data = data
        upload.arrived.set()
        self._record.add("http", f"PUT /uploads/{presigned_id}", body={"status": 200, "size": len(data)})
        return upload

    def announce(self, presigned_id: str) -> None:
        """A client's fileUploaded notice; one naming no slot of this session is logged and ignored."""
        upload = self._slots.get(presigned_id)
        if upload is None:
            log.warning(
                "session %s: fileUploaded names %r, which no upload slot of this session has",
                self._session_id,
                presigned_id,
            )
            return
        upload.announced = True

    async def resolve(self, command: str, params: Any) -> dict[str, UploadedFile]:
        """The uploaded files a validated command names, waiting a while for bytes not yet PUT."""
        resolved: dict[str, UploadedFile] = {}
        for name in UPLOAD_PARAMS.get(command, ()):
            ref = getattr(params, name, None)
            if ref is not None:
                resolved[name] = await self._resolve_one(command, ref.upload_id)
        return resolved

    async def _resolve_one(self, command: str, upload_id: str) -> UploadedFile:
        upload = self._slots.get(upload_id)
        if upload is None:
            raise CommandRejected(
                "unresolved_upload",
                f"{command}: upload {upload_id!r} is unknown to this session; create it with "
                f"POST /sessions/{self._session_id}/uploads and PUT its bytes before referencing it",
            )
        if upload.data is None:
            wait = self._settings.upload_wait
            try:
                await asyncio.wait_for(upload.arrived.wait(), timeout=wait)
            except TimeoutError:
                raise CommandRejected(
                    "unresolved_upload",
                    f"{command}: the bytes of upload {upload_id!r} did not arrive within "
                    f"{wait:g} s; PUT them to its presigned_url first",
                ) from None
        assert upload.data is not None
        return UploadedFile(upload.presigned_id, upload.name, upload.mime_type, upload.data)

    def clear(self) -> None:
        self._slots.clear()
