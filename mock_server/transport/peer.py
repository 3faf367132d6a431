"""One WebRTC peer connection (aiortc): answer the client's offer, take trickled candidates, route channels.

The client is always the offerer and creates every data channel; this side never creates one. The answer
carries all server candidates (gathering completes before it is published), as neither client accepts
trickled server candidates.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import candidate_from_sdp

from mock_server.logging_setup import SessionLogger
from mock_server.transport.video_track import EncodedVideoTrack, RawVideoTrack, watch_keyframe_requests

log = logging.getLogger("helios_mock.transport")

PREFERRED_VIDEO_CODECS = ("video/VP8", "video/H264")
FLUSH_POLL = 0.005  # seconds between two looks at the send queues while flushing


class OfferError(Exception):
    """The offer cannot be answered (unparseable SDP, no m-line for a mapped track, ...)."""


@dataclass(frozen=True)
class TrickledCandidate:
    candidate: str  # "candidate:..." line as sent by the client
    sdp_mid: str | None
    sdp_mline_index: int | None

    @property
    def ufrag(self) -> str | None:
        """The ICE username fragment the candidate names, telling which offer it belongs to."""
        found = _CANDIDATE_UFRAG.search(self.candidate)
        return found.group(1) if found else None


def offer_ufrag(sdp: str) -> str | None:
    found = _OFFER_UFRAG.search(sdp)
    return found.group(1) if found else None


_CANDIDATE_UFRAG = re.compile(r"\bufrag (\S+)")
_OFFER_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


class PeerTransport:
    """Wraps RTCPeerConnection for one registered connection. Events go up through callbacks."""

    def __init__(
        self,
        *,
        on_channel: Callable[[RTCDataChannel], None],
        on_state: Callable[[str], None],
        session: str | None = None,
        connection: int | None = None,
    ) -> None:
        """`session`, `connection`: the ids this peer's log lines carry."""
        self.log = SessionLogger(log, session=session, connection=connection)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.remote_ufrag: str | None = None
        self.answered = False
        self.pc.on("datachannel", on_channel)

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            on_state(self.pc.connectionState)

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    async def answer(
        self,
        offer_sdp: str,
        video_mid: str | None,
        video: RawVideoTrack | EncodedVideoTrack,
        early_candidates: list[TrickledCandidate],
        early_final: bool,
    ) -> str:
        """Apply the offer and the candidates trickled before it; attach `video` to `video_mid`; answer."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError and friends for bad SDP
            raise OfferError(f"the SDP offer could not be applied: {exc}") from exc
        self.remote_ufrag = offer_ufrag(offer_sdp)
        transceiver = None
        for candidate in self.pc.getTransceivers():
            if candidate.kind == "video" and (video_mid is None or candidate.mid == video_mid):
                transceiver = candidate
                break
        if transceiver is None:
            where = f" with mid {video_mid!r}" if video_mid is not None else ""
            raise OfferError(f"the SDP offer has no video m-line{where} to carry main_video")
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        preferred = [c for name in PREFERRED_VIDEO_CODECS for c in capabilities if c.mimeType == name]
        preferred += [c for c in capabilities if c.mimeType == "video/rtx"]
        transceiver.setCodecPreferences(preferred)
        transceiver.direction = "sendonly"
        transceiver.sender.replaceTrack(video)
        if isinstance(video, EncodedVideoTrack):
            watch_keyframe_requests(transceiver.sender, video)
        for item in early_candidates:
            await self._add(item)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)  # completes ICE gathering: candidates are in the SDP
        negotiated = [c.mimeType for c in transceiver._codecs if c.mimeType in PREFERRED_VIDEO_CODECS]
        if not negotiated:
            raise OfferError("the offer has no video codec the mock can send (VP8 or H264)")
        video.mime_type = negotiated[0]
        if early_final:
            await self.pc.addIceCandidate(None)
        self.answered = True
        return self.pc.localDescription.sdp

    async def add_candidates(self, candidates: list[TrickledCandidate], is_final: bool) -> None:
        """Trickled client candidates for the offer this peer answered."""
        for item in candidates:
            await self._add(item)
        if is_final:
            await self.pc.addIceCandidate(None)

    async def _add(self, item: TrickledCandidate) -> None:
        line = item.candidate.strip()
        if line.startswith("a="):
            line = line[2:]
        if line.startswith("candidate:"):
            line = line[len("candidate:") :]
        if not line:
            return
        try:
            candidate = candidate_from_sdp(line)
        except Exception as exc:
            self.log.warning(
                "ignoring a trickled ICE candidate that does not parse (%s): %r", exc, item.candidate
            )
            return
        candidate.sdpMid = item.sdp_mid
        candidate.sdpMLineIndex = item.sdp_mline_index
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        await self.pc.addIceCandidate(candidate)

    async def flush(self, channels: list[RTCDataChannel], timeout: float) -> bool:
        """Wait until `channels` have sent what was queued on them; False if `timeout` s passed first.

        aiortc lowers a channel's `bufferedAmount` when it hands a message to SCTP, and SCTP keeps what the
        congestion window does not let out yet in its outbound queue; both must be empty, or closing the
        peer (an SCTP ABORT) drops the rest. Neither raises an event when it empties, hence the short poll.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._sent(channels):
            if loop.time() >= deadline:
                self.log.info(
                    "peer close: %.1f s passed before the data channels had sent everything", timeout
                )
                return False
            await asyncio.sleep(FLUSH_POLL)
        return True

    def _sent(self, channels: list[RTCDataChannel]) -> bool:
        if any(c.readyState == "open" and c.bufferedAmount > 0 for c in channels):
            return False
        sctp = self.pc.sctp
        return sctp is None or not getattr(sctp, "_outbound_queue", ())

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pc.close(), timeout=5)
        except (TimeoutError, Exception) as exc:  # closing must never take the session down
            self.log.debug("peer close: %r", exc)
