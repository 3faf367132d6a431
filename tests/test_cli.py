"""`helios-mock` command line: every bad flag or HELIOS_MOCK_* variable gives one line that names it and
says what is accepted (exit status 2, no traceback); the start-up banner lists the URLs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mock_server.cli import banner, build_parser, settings_from
from mock_server.config import SettingError, Settings

BAD_FLAGS = [
    (["--resolution", "100x100"], "--resolution 100x100: width ≥ 64 and height ≥ 32, both multiples of 16"),
    (["--resolution", "big"], "--resolution big: WxH, e.g. 640x384"),
    (["--speed", "abc"], "--speed abc: not a number (a number > 0)"),
    (["--speed", "0"], "--speed 0: a number > 0"),
    (["--fps", "nan"], "--fps nan: a finite number > 0"),
    (["--port", "99999"], "--port 99999: an integer 0–65535"),
    (["--max-sessions-per-account", "-1"], "--max-sessions-per-account -1: an integer ≥ 0"),
    (["--mode", "cloud"], "--mode cloud: one of both, local, production"),
    (["--media", "gpu"], "--media gpu: one of shared, per-session"),
    (["--log-format", "xml"], "--log-format xml: one of text, json"),
    (["--ice-addresses", "127.0.0.1,eth0"], "--ice-addresses 127.0.0.1,eth0: 'eth0' is not an IP address"),
    (["--port"], "--port: expected one argument"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
]

BAD_ENV = [
    ("HELIOS_MOCK_SPEED", "abc", "HELIOS_MOCK_SPEED=abc: not a number"),
    ("HELIOS_MOCK_RESOLUTION", "100x100", "HELIOS_MOCK_RESOLUTION=100x100: width ≥ 64 and height ≥ 32"),
    ("HELIOS_MOCK_PORT", "http", "HELIOS_MOCK_PORT=http: not an integer"),
    ("HELIOS_MOCK_MODE", "cloud", "HELIOS_MOCK_MODE=cloud: one of both, local, production"),
    (
        "HELIOS_MOCK_ICE_ADDRESSES",
        "localhost",
        "HELIOS_MOCK_ICE_ADDRESSES=localhost: 'localhost' is not an IP",
    ),
]


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HELIOS_MOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "mock_server", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("args", "expected"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_naming_it(
    args: list[str], expected: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("helios-mock: error: " + expected), err


@pytest.mark.parametrize(("name", "value", "expected"), BAD_ENV, ids=[n for n, _, _ in BAD_ENV])
def test_bad_env_var_names_it(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingError, match="^" + expected):
        Settings().with_env({name: value})


def test_bad_flag_and_env_through_the_real_command() -> None:
    """As a user sees it: one line on stderr, exit 2, nothing on stdout, no traceback."""
    for args, env, expected in [
        (["serve", "--resolution", "100x100"], None, BAD_FLAGS[0][1]),
        (["serve"], {"HELIOS_MOCK_SPEED": "abc"}, "HELIOS_MOCK_SPEED=abc: not a number (a number > 0)"),
    ]:
        proc = _run(args, env)
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == f"helios-mock: error: {expected}\n"


def test_flags_override_env_and_parse_like_it() -> None:
    args = build_parser().parse_args(
        ["serve", "--speed", "20", "--resolution", "160x96", "--log-format", "json"]
    )
    settings = settings_from(args, {"HELIOS_MOCK_SPEED": "5", "HELIOS_MOCK_MEDIA": "per-session"})
    assert (settings.speed, settings.native_size, settings.media) == (20.0, (160, 96), "per-session")
    assert settings.log_format == "json" and settings.mode == "both"


def test_banner_lists_the_urls() -> None:
    line = banner(Settings(host="127.0.0.1", port=0), 8123)
    for url in ("http://127.0.0.1:8123 ", "http://127.0.0.1:8123/docs", "http://127.0.0.1:8123/metrics"):
        assert url in line + " "
    assert "\n" not in line


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import mock_server

    proc = _run(["--version"])
    assert proc.stdout.strip() == f"helios-mock {mock_server.__version__}"
    assert mock_server.__version__ == version("helios-mock")


async def test_served_connections_get_tcp_nodelay() -> None:
    """`serve` listens on a socket whose accepted connections asyncio marks TCP_NODELAY (else Nagle and the
    client's delayed ACK add ~40 ms to every answer written in two parts)."""
    import asyncio
    import socket

    import uvicorn

    from mock_server.cli import _tcp

    config = uvicorn.Config(app=None, host="127.0.0.1", port=0)  # type: ignore[arg-type]
    listening = _tcp(config.bind_socket())
    assert listening.proto == socket.IPPROTO_TCP
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
    try:
        port = listening.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(accepted, 5) != 0
        writer.close()
    finally:
        server.close()
