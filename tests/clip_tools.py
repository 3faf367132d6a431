"""Test helpers for clips: fetch a clip's HLS playlist (honouring 202/Retry-After) and its segments, decode
the fMP4 with PyAV and read the marker band of every frame."""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import av
import httpx

from mock_server.media.markers import decode_markers

_MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


@dataclass
class FetchedClip:
    playlist: str
    polls_202: int
    retry_after: list[str]
    seconds_to_200: float
    runs: list[tuple[str, list[str]]]  # (init URL, fragment URLs) per run of one frame size
    data: bytes  # what reactor-sdk's download_clip assembles: the last init segment, then every fragment


def parse_runs(playlist: str, base: str) -> list[tuple[str, list[str]]]:
    runs: list[tuple[str, list[str]]] = []
    for line in playlist.splitlines():
        found = _MAP.match(line)
        if found:
            runs.append((urljoin(base, found.group(1)), []))
        elif line and not line.startswith("#"):
            assert runs, f"fragment before any #EXT-X-MAP:\n{playlist}"
            runs[-1][1].append(urljoin(base, line))
    return runs


def fetch_clip(url: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> FetchedClip:
    """GET the playlist until it is 200, then every segment (like reactor-sdk 1.13.0's download_clip)."""
    started = time.monotonic()
    polls, retry_after = 0, []
    with httpx.Client(headers=headers or {}, timeout=10) as http:
        while True:
            answer = http.get(url)
            if answer.status_code != 202:
                break
            polls += 1
            retry_after.append(answer.headers.get("Retry-After", ""))
            assert time.monotonic() - started < timeout, "playlist still 202 after the timeout"
            time.sleep(min(max(float(answer.headers.get("Retry-After") or 2), 0.2), 2.0))
        assert answer.status_code == 200, (answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        seconds = time.monotonic() - started
        runs = parse_runs(answer.text, url)
        blobs: dict[str, bytes] = {}
        for init, fragments in runs:
            for part in (init, *fragments):
                got = http.get(part)
                assert got.status_code == 200, (part, got.status_code, got.text)
                blobs[part] = got.content
    data = blobs[runs[-1][0]] + b"".join(blobs[f] for _, frags in runs for f in frags)
    return FetchedClip(answer.text, polls, retry_after, seconds, runs, data)


def decode_clip(data: bytes) -> list[tuple[int, int, tuple[int, int] | None]]:
    """(width, height, (chunk, frame) from the marker band or None) of every frame PyAV decodes."""
    out = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            markers = decode_markers(frame.to_ndarray(format="rgb24"))
            out.append(
                (frame.width, frame.height, None if markers is None else (markers.chunk, markers.frame))
            )
    return out


def expected_frames(first_chunk: int, last_chunk: int) -> list[tuple[int, int]]:
    return [(chunk, frame) for chunk in range(first_chunk, last_chunk + 1) for frame in range(33)]
