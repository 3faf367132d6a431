"""Clip serving: the HLS playlist of a clip window (202 until its last chunk is recorded) and its segments.

A clip URL (session.clip_links) names a recording, a window of whole chunks and an expiry. The playlist is
HLS version 7 over fragmented MP4: an `#EXT-X-MAP` init segment, then one `.m4s` fragment per chunk; where
the frame size changes inside the window (`sr_scale`), `#EXT-X-DISCONTINUITY` and a new `#EXT-X-MAP` start
the next run. Fragments come from the process-wide fragment cache (media.fmp4), one encode per distinct chunk.

Authorization is the session's: production clips need a bearer allowed on that session (the registry's
401 → 404 → 403 checks), local clips are open. A closed session's clips keep working until they expire.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from mock_server.config import Settings
from mock_server.constants import CHUNK_FRAMES
from mock_server.errors import ApiError, NotFound
from mock_server.media.fmp4 import TICKS_PER_FRAME, ChunkFragment, FragmentCache, place_fragment
from mock_server.model.plan import ChunkPlan, output_size
from mock_server.services.registry import AnySession, Registry
from mock_server.session import clip_links
from mock_server.session.clip_links import ClipLink
from mock_server.session.recording import Recording

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
log = logging.getLogger("helios_mock.clips")


def _log_failure(task: asyncio.Future[ChunkFragment]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("encoding a clip fragment failed: %s", task.exception())


@dataclass(frozen=True)
class PlaylistAnswer:
    """200 with the playlist, or 202 (the window's last chunk is still generating) with `Retry-After`."""

    status: int
    text: str
    retry_after: str = ""


@dataclass(frozen=True)
class _Clip:
    link: ClipLink
    recording: Recording
    first_seq: int
    last_seq: int


class ClipService:
    """Answers the /clips routes for every session of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        settings: Settings = registry.settings
        self.settings = settings
        self.fragments = FragmentCache(settings.native_size, settings.fps)

    def _session(self, link: ClipLink) -> tuple[AnySession, Recording]:
        for session in self.registry.all_sessions():
            recording = session.recording
            if recording is not None and recording.id == link.recording_id and session.id == link.session_id:
                return session, recording
        raise NotFound(
            f"the recording of session {link.session_id!r} is gone (the server forgot the session); "
            "request a new clip"
        )

    def _open(self, params: Mapping[str, str], authorization: str | None) -> _Clip:
        link = clip_links.verify(params)
        session, recording = self._session(link)
        if session.mode == "production":
            self.registry.production_session(session.id, authorization)  # 401, 404, 403
        first, last = link.seqs(recording.fps)
        return _Clip(link, recording, first, last)

    def playlist(self, params: Mapping[str, str], authorization: str | None) -> PlaylistAnswer:
        clip = self._open(params, authorization)
        recording = clip.recording
        if recording.next_seq <= clip.last_seq and not recording.released:
            wall_chunk = CHUNK_FRAMES / (self.settings.fps * self.settings.speed)
            text = (
                f"the chunk holding the end of this {clip.link.kind} has not completed yet "
                "(media time moves only while the session generates); retry after Retry-After seconds\n"
            )
            return PlaylistAnswer(202, text, str(max(0, round(wall_chunk))))
        plans = [self._plan(clip, seq) for seq in range(clip.first_seq, clip.last_seq + 1)]
        self._prefetch(plans)
        return PlaylistAnswer(200, self._m3u8(clip, plans))

    def _prefetch(self, plans: list[ChunkPlan]) -> None:
        """Start encoding every fragment of the clip now: the segment requests that follow find them ready."""
        for plan in plans:
            task = asyncio.ensure_future(self.fragments.fragment(plan))
            task.add_done_callback(_log_failure)

    def _plan(self, clip: _Clip, seq: int) -> ChunkPlan:
        if not clip.first_seq <= seq <= clip.last_seq:
            raise NotFound(f"chunk {seq} is not part of this clip (chunks {clip.first_seq}-{clip.last_seq})")
        plan = clip.recording.plan(seq)
        if plan is not None:
            return plan
        if seq >= clip.recording.next_seq and not clip.recording.released:
            raise NotFound(f"chunk {seq} is not recorded yet; fetch the playlist until it answers 200")
        raise ApiError(
            410,
            f"the recording no longer holds chunk {seq} (it keeps the last --recording-retention seconds "
            "of a running session, and a closed one only while its clip links are valid)",
        )

    def _m3u8(self, clip: _Clip, plans: list[ChunkPlan]) -> str:
        query = clip.link.query
        duration = CHUNK_FRAMES / self.settings.fps
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{math.ceil(duration)}",
            f"#EXT-X-MEDIA-SEQUENCE:{clip.first_seq}",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        size: tuple[int, int] | None = None
        for seq, plan in enumerate(plans, start=clip.first_seq):
            plan_size = output_size(plan.sr_scale, self.settings.native_size)
            if plan_size != size:
                if size is not None:
                    lines.append("#EXT-X-DISCONTINUITY")
                lines.append(f'#EXT-X-MAP:URI="{clip_links.PLAYLIST_PATH}/init/{seq}.mp4?{query}"')
                size = plan_size
            lines += [f"#EXTINF:{duration:.5f},", f"{clip_links.PLAYLIST_PATH}/chunks/{seq}.m4s?{query}"]
        lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    async def init_segment(self, params: Mapping[str, str], seq: int, authorization: str | None) -> bytes:
        """The init segment (ftyp + moov) of the frame size of chunk `seq` of the clip."""
        clip = self._open(params, authorization)
        return (await self.fragments.fragment(self._plan(clip, seq))).init

    async def media_segment(self, params: Mapping[str, str], seq: int, authorization: str | None) -> bytes:
        """Chunk `seq` of the clip as one fMP4 fragment, stamped with its place in the recording."""
        clip = self._open(params, authorization)
        fragment = await self.fragments.fragment(self._plan(clip, seq))
        return place_fragment(fragment.media, seq + 1, seq * CHUNK_FRAMES * TICKS_PER_FRAME)
