"""`helios-mock` command line: `serve` runs the mock; `run` runs a command against a fresh one; `schemas`
writes the contract files; `locustfile` and `bench` find the installed load kit."""

from __future__ import annotations

import argparse
import gc
import logging
import logging.config
import runpy
import socket
import sys
from dataclasses import replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, NoReturn

from mock_server.config import VERSION, SettingError, Settings, parse_setting
from mock_server.logging_setup import logging_config
from mock_server.services.tokens import MIN_SECRET_CHARS

log = logging.getLogger("mock_server.cli")
CHECKOUT = Path(__file__).resolve().parent.parent  # the repository root when running from a source checkout
_VALUE = "\x00"  # marks a flag-value error so `error` can print "--flag VALUE: what is accepted"


class Parser(argparse.ArgumentParser):
    """argparse, but every error is one line on stderr (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        message = message.replace(": " + _VALUE, " ").removeprefix("argument ")
        self.exit(2, f"helios-mock: error: {message}\n")


def _flag(field: str) -> Any:
    """argparse `type=` for a setting: the same parser as its HELIOS_MOCK_* variable."""

    def parse(text: str) -> Any:
        try:
            return parse_setting(field, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{_VALUE}{text}: {exc}") from None

    parse.__name__ = field
    return parse


# ---------------------------------------------------------------------- serve


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then HELIOS_MOCK_* variables, then flags (SettingError names a bad variable)."""
    settings = Settings().with_env(environ)
    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, _, _ in SERVE_FLAGS}
    if overrides["api_keys"] is not None:  # --api-key a --api-key b,c -> ("a", "b", "c")
        overrides["api_keys"] = tuple(key for keys in overrides["api_keys"] for key in keys)
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if settings.jwt_secret and len(settings.jwt_secret) < MIN_SECRET_CHARS:
        raise SettingError(
            f"--jwt-secret (HELIOS_MOCK_JWT_SECRET) must be at least {MIN_SECRET_CHARS} characters; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return settings


def banner(settings: Settings, port: int) -> str:
    """The start-up line: version, mode and every URL the server answers on."""
    base = f"http://{settings.host if ':' not in settings.host else f'[{settings.host}]'}:{port}"
    width, height = settings.native_size
    return (
        f"helios-mock {VERSION} serving {settings.mode} mode (speed {settings.speed:g}, {width}x{height}, "
        f"media {settings.media}): API {base}  inspector {base}/  docs {base}/docs  metrics {base}/metrics"
    )


GC_THRESHOLDS = (50_000, 20, 10)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mock_server.app import create_app

    try:
        settings = settings_from(args)
    except SettingError as exc:
        return _fail(str(exc))
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)
    problem = _fault_problem(settings)
    if problem:
        return _fail(problem)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=log_config,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=3,
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    try:
        sock = _tcp(config.bind_socket())
    except (OSError, SystemExit) as exc:  # uvicorn exits on a bind error after logging it
        return _fail(f"--host {settings.host} --port {settings.port}: cannot listen there ({exc})", status=1)
    log.info("%s", banner(settings, sock.getsockname()[1]))
    # Many sessions make many long-lived objects; default GC thresholds then stall the event loop with
    # frequent full collections. Freeze what startup made (never garbage) and collect the young generation
    # less often, but keep full collections reachable (every 50k x 20 x 10 allocations, and the registry
    # runs one shortly after sessions close) so the cycles of closed sessions are always freed.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        uvicorn.Server(config).run(sockets=[sock])  # Ctrl-C: stop accepting; the lifespan closes sessions
    except KeyboardInterrupt:
        pass
    return 0


def _tcp(sock: socket.socket) -> socket.socket:
    """The same listening socket with its protocol read from the kernel (IPPROTO_TCP, not 0).

    uvicorn's `bind_socket` creates it with proto 0, and asyncio sets TCP_NODELAY only on accepted sockets
    whose proto is IPPROTO_TCP: without it, Nagle's algorithm and the client's delayed ACK add ~40 ms to
    every HTTP answer written in two parts (measured: connect→ready 41 ms → 178 ms).
    """
    return socket.socket(fileno=sock.detach())


def _fail(message: str, status: int = 2) -> int:
    print(f"helios-mock: error: {message}", file=sys.stderr)
    return status


# ---------------------------------------------------------------------- shipped files


def shipped(package: str, checkout_dir: str) -> Traversable:
    """A directory shipped as package data: the source checkout's own copy, else the installed package."""
    local = CHECKOUT / checkout_dir
    if (CHECKOUT / "pyproject.toml").is_file() and local.is_dir():
        return local
    return resources.files(package)


def _copy_protos(out: Path) -> list[Path]:
    """Copy the reactor_wire .proto files into `out` (unchanged files are left alone)."""
    source = shipped("helios_mock_schemas", "schemas") / "reactor_wire" / "v1"
    changed = []
    for item in sorted(source.iterdir(), key=lambda t: t.name):
        if not item.name.endswith(".proto"):
            continue
        target = out / "reactor_wire" / "v1" / item.name
        text = item.read_text(encoding="utf-8")
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(target)
    return changed


def _fault_problem(settings: Settings) -> str:
    """Check the start-up faults (--faults, --chaos) before serving: the problems in plain words, or ''."""
    from mock_server.faults import FaultInvalid, chaos_preset, load_faults

    try:
        if settings.faults_file:
            load_faults(settings.faults_file)
        if settings.chaos:
            chaos_preset(settings.chaos)
    except FaultInvalid as exc:
        return "\n".join(exc.problems)
    return ""


def _schemas(args: argparse.Namespace) -> int:
    from mock_server.schema_files import write_schema_files

    out = Path(args.out)
    changed = write_schema_files(out) + _copy_protos(out)
    print(f"wrote {len(changed)} changed file(s) under {out}")
    return 0


def _locustfile(args: argparse.Namespace) -> int:
    print(shipped("helios_mock_load", "load") / "locustfile.py")
    return 0


def _bench(args: argparse.Namespace) -> int:
    path = shipped("helios_mock_load", "load") / "bench.py"
    sys.argv = [str(path), *args.bench_args]
    with resources.as_file(path) as file:
        runpy.run_path(str(file), run_name="__main__")
    return 0


# ---------------------------------------------------------------------- parser


SERVE_FLAGS: list[tuple[str, str, str | None, str]] = [  # flag, Settings field, metavar, help
    ("--host", "host", None, "bind address (default 127.0.0.1; 0.0.0.0 inside a test namespace)"),
    ("--port", "port", None, "port (default 8080; 0 = any free port)"),
    ("--mode", "mode", "{both,local,production}", "coordinator routes to serve (default both: local and "
     "production on one port)"),
    ("--fps", "fps", None, "nominal frames per second (default 24)"),
    ("--speed", "speed", None, "chunk clock speed factor; 20 = chunks 20x faster (default 1)"),
    ("--resolution", "native_size", "WxH", "native frame size at sr_scale off (default 640x384; width ≥ 64, "
     "height ≥ 32, multiples of 16); 2x/4x scale from it"),
    ("--pending-delay", "pending_delay", None, "production: seconds a new session stays PENDING"),
    ("--ping-timeout", "ping_timeout", None, "seconds without a client frame before disconnect"),
    ("--reconnect-grace", "reconnect_grace", None, "seconds a session waits for a reconnect"),
    ("--max-session-duration", "max_session_duration", None, "seconds before a session expires"),
    ("--upload-wait", "upload_wait", None, "seconds a command waits for announced upload bytes"),
    ("--max-sessions-per-account", "max_sessions_per_account", None, "production concurrency limit "
     "(0 = none)"),
    ("--max-creations-per-minute", "max_creations_per_minute", None, "production creation rate limit "
     "(0 = none)"),
    ("--ice-addresses", "ice_addresses", "ADDR[,ADDR…]", "local addresses to gather ICE host candidates on "
     "(e.g. 127.0.0.1 for loopback-only runs; default: all non-loopback addresses)"),
    ("--media", "media", "{shared,per-session}", "shared (default): encode each distinct chunk once for all "
     "sessions; per-session: encode per connection"),
    ("--max-request-bytes", "max_request_bytes", None, "limit: bytes of a non-upload request body (1 MiB)"),
    ("--body-read-timeout", "body_read_timeout", None, "limit: seconds one body read may wait (30)"),
    ("--keep-alive-timeout", "keep_alive_timeout", None, "limit: seconds an idle connection is kept (5)"),
    ("--max-upload-bytes", "max_upload_bytes", None, "limit: declared size of one upload (64 MiB)"),
    ("--max-upload-slots", "max_upload_slots", None, "limit: upload slots per session (32)"),
    ("--max-connections-per-session", "max_connections_per_session", None, "limit: registered "
     "connections/offers per session (16)"),
    ("--max-candidates-per-connection", "max_candidates_per_connection", None, "limit: trickled ICE "
     "candidates per connection (256)"),
    ("--max-record-bytes", "max_record_bytes", None, "limit: JSON bytes of one session's record (8 MiB)"),
    ("--faults", "faults_file", "FILE", "YAML or JSON fault file armed at start-up (docs/FAULTS.md)"),
    ("--chaos", "chaos", "{light,heavy}", "arm a chaos preset of probability faults (load runs)"),
    ("--fault-seed", "fault_seed", None, "seed of the fault registry's random draws (default 0)"),
    ("--log-level", "log_level", "{debug,info,warning,error}", "default info"),
    ("--api-key", "api_keys", "KEY[,KEY…]", "API keys /tokens accepts (comma-separated, or repeat the flag); "
     "default: any non-empty key"),
    ("--jwt-secret", "jwt_secret", "SECRET", "HS256 key (≥ 32 characters) minted tokens are signed with; "
     "instances sharing it accept each other's tokens (default: random per process)"),
    ("--admin-token", "admin_token", "TOKEN", "token every /admin request and the live WebSocket must carry "
     "(X-Helios-Admin-Token header); default: admin routes refuse browsers of other origins"),
    ("--log-format", "log_format", "{text,json}", "text (default) or json: one object per line (time, level, "
     "logger, message, session, connection)"),
    ("--recording", "recording", "{on,off}", "record each session's main_video for clips (default on); off: "
     "clip and recording requests get clipFailed \"recorder disabled\""),
    ("--recording-retention", "recording_retention", "SECONDS", "media seconds each session's recording "
     "keeps (default 600; older chunks are dropped)"),
    ("--clip-url-ttl", "clip_url_ttl", "SECONDS", "seconds a clip's playlist and segment URLs stay valid "
     "(default 600; then 403)"),
    ("--instance-id", "instance_id", "ID", "name of this instance (1-16 of a-z, 0-9): session ids become "
     "sess_<ID>_<hex>, so a router (deploy/nginx) sends each session's calls to the instance that holds it"),
]  # fmt: skip


def _raw_flag(field: str) -> Any:
    """argparse `type=` for a serve flag of `run`: validated like `serve`'s, kept as typed for the child."""
    check = _flag(field)

    def keep(text: str) -> str:
        check(text)
        return text

    keep.__name__ = field
    return keep


RUN_EPILOG = """exit status: COMMAND's own when it failed; 3 with --strict and a violation; 4 the mock did not
come up; 5 the violations could not be fetched; 6 --netns cannot create a namespace; 127 COMMAND not found."""


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run COMMAND against a fresh mock (HELIOS_MOCK_URL set), then print the client-rule violations",
        usage="helios-mock run [serve options] [--netns] [--strict] [--ignore RULE] -- COMMAND [ARG…]",
        epilog=RUN_EPILOG,
    )
    for flag, field, metavar, help_text in SERVE_FLAGS:
        repeatable = {"action": "append"} if field == "api_keys" else {}
        run.add_argument(flag, type=_raw_flag(field), metavar=metavar, help=help_text, **repeatable)
    run.add_argument(
        "--netns",
        action="store_true",
        help="run the mock and COMMAND in a private network "
        "namespace (veth 198.18.0.1/24): what libwebrtc clients need on a loopback-only runner",
    )
    run.add_argument(
        "--strict", action="store_true", help="exit 3 when any client-rule violation was recorded"
    )
    run.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULE",
        help="a client rule not to report (repeat the flag); GET /admin/violations lists the ids",
    )
    run.add_argument(
        "--ping-tolerance",
        type=float,
        default=None,
        metavar="X",
        help="scale of the documented keep-alive intervals for ping-missing (default 1.5)",
    )
    run.add_argument(
        "--health-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the mock to answer /health (default 30)",
    )
    run.add_argument(
        "--server-log",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the mock's log here (default: a new temporary file, named on start)",
    )
    run.add_argument("--inside-netns", type=Path, default=None, help=argparse.SUPPRESS)
    run.add_argument("child", nargs=argparse.REMAINDER, metavar="COMMAND", help="-- COMMAND [ARG…]")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mock_server.run import RunOptions, run

    command = args.child[1:] if args.child[:1] == ["--"] else args.child
    if not command:
        return _fail("run: no command given (helios-mock run [options] -- COMMAND [ARG…])")
    serve_argv: list[str] = []
    for flag, _field, _, _ in SERVE_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        for text in value if isinstance(value, list) else [] if value is None else [value]:
            serve_argv += [flag, text]
    opts = RunOptions(
        command=command,
        serve_argv=serve_argv,
        netns=args.netns,
        inside_netns=args.inside_netns,
        strict=args.strict,
        ignore=tuple(args.ignore),
        ping_tolerance=args.ping_tolerance,
        health_timeout=args.health_timeout,
        server_log=args.server_log,
        admin_token=args.admin_token,
        host_given=args.host is not None,
        rerun_argv=args.raw_run_argv,
    )
    return run(opts)


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the mock server (env overrides: HELIOS_MOCK_<SETTING>)")
    for flag, field, metavar, help_text in SERVE_FLAGS:
        repeatable = {"action": "append"} if field == "api_keys" else {}
        serve.add_argument(flag, type=_flag(field), metavar=metavar, help=help_text, **repeatable)
    serve.set_defaults(func=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="helios-mock", description="CPU-only mock of the Helios video model")
    parser.add_argument("--version", action="version", version=f"helios-mock {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_serve(sub)
    _add_run(sub)
    schemas = sub.add_parser(
        "schemas", help="write the contract files (JSON Schema, OpenAPI, reactor_wire .proto) to a directory"
    )
    schemas.add_argument(
        "--out", default="schemas", help="output directory (default ./schemas: regenerate a checkout's files)"
    )
    schemas.set_defaults(func=_schemas)
    locust = sub.add_parser("locustfile", help='print the installed locustfile\'s path: locust -f "$(…)"')
    locust.set_defaults(func=_locustfile)
    bench = sub.add_parser(
        "bench", add_help=False, help="run the capacity benchmark (its options: helios-mock bench --help)"
    )
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if args.command == "run":  # the namespace re-run gets the same arguments
        args.raw_run_argv = [a for a in argv[argv.index("run") + 1 :] if not a.startswith("--inside-netns")]
    if args.command == "bench":  # everything after `bench` belongs to the benchmark
        args.bench_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
