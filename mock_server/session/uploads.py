"""A session's upload slots: created by POST /sessions/{id}/uploads, filled by the presigned PUT, resolved
for commands that name them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from mock_server.config import Settings
from mock_server.errors import Conflict, Forbidden, Invalid, TooLarge
from mock_server.logging_setup import SessionLogger
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

    def __init__(
        self,
        session_id: str,
        settings: Settings,
        record: SessionRecord,
        on_put: Callable[[], None] | None = None,
    ) -> None:
        self._session_id = session_id
        self._log = SessionLogger(log, session=session_id)
        self._on_put = on_put  # fault hook: may raise the HTTP error an upload_failure fault asks for
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
        """A new empty slot; refuses an empty name or mime type, a bad size, and slots past the limit."""
        if not name.strip() or not mime_type.strip() or size <= 0:
            raise Invalid("an upload needs a non-empty name and mime_type and a size > 0 (in bytes)")
        limit = self._settings.max_upload_bytes
        if size > limit:
            raise TooLarge(f"an upload may declare at most {limit} bytes (max_upload_bytes); this one {size}")
        slots = self._settings.max_upload_slots
        if len(self._slots) >= slots:
            raise Conflict(
                f"this session already has {len(self._slots)} upload slots, the limit (max_upload_slots); "
                "reuse one of them or start a new session"
            )
        owner = self._settings.instance_id  # behind a router the presigned PUT must find this instance
        presigned_id = f"{owner}_{secrets.token_hex(12)}" if owner else secrets.token_hex(12)
        upload = Upload(presigned_id=presigned_id, name=name, mime_type=mime_type, size=size)
        self._slots[upload.presigned_id] = upload
        return upload

    async def fill(
        self, presigned_id: str, chunks: AsyncIterator[bytes], declared: int | None = None
    ) -> Upload:
        """The presigned PUT: check the URL is fresh and unused, stream the bytes, check their count.

        A body longer than the slot's size is refused (413) as soon as it is seen: by its Content-Length
        (`declared`) before any byte is read, else at the first chunk past the size.
        """
        upload = self._slots[presigned_id]
        if self._on_put is not None:
            self._on_put()
        if time.monotonic() - upload.created_at > self._settings.upload_url_ttl:
            raise Forbidden("upload URL expired")
        if upload.data is not None:
            raise Conflict(f"upload {presigned_id!r} was already uploaded")
        too_long = f"upload {presigned_id!r} was created for {upload.size} bytes"
        if declared is not None and declared > upload.size:
            raise TooLarge(f"{too_long}; this PUT declares {declared} (Content-Length)")
        data = bytearray()
        async for chunk in chunks:
            data += chunk
            if len(data) > upload.size:
                raise TooLarge(f"{too_long}; more arrived, the rest was not read")
        if len(data) != upload.size:
            raise Invalid(f"upload {presigned_id!r} declared {upload.size} bytes but {len(data)} arrived")
        upload.data = bytes(data)
        upload.arrived.set()
        self._log.info("upload %s filled (%d bytes)", presigned_id, len(data))
        return upload

    def announce(self, presigned_id: str) -> None:
        """A client's fileUploaded notice; one naming no slot of this session is logged and ignored."""
        upload = self._slots.get(presigned_id)
        if upload is None:
            self._log.warning("fileUploaded names %r, which no upload slot of this session has", presigned_id)
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
