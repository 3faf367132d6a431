"""`helios-mock` command line: `serve` runs the mock; `schemas` regenerates the contract files."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from dataclasses import replace
from typing import Any

from mock_server.config import VERSION, Settings, parse_resolution


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None = not given)."""
    overrides: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "mode": args.mode,
        "fps": args.fps,
        "speed": args.speed,
        "native_size": parse_resolution(args.resolution) if args.resolution else None,
        "pending_delay": args.pending_delay,
        "ping_timeout": args.ping_timeout,
        "reconnect_grace": args.reconnect_grace,
        "max_session_duration": args.max_session_duration,
        "upload_wait": args.upload_wait,
        "max_sessions_per_account": args.max_sessions_per_account,
        "max_creations_per_minute": args.max_creations_per_minute,
        "log_level": args.log_level,
        "media": args.media,
        "fault_seed": args.fault_seed,
        "faults_file": args.faults,
        "chaos": args.chaos,
        "ice_addresses": tuple(a.strip() for a in args.ice_addresses.split(",") if a.strip())
        if args.ice_addresses is not None
        else None,
    }
    return {k: v for k, v in overrides.items() if v is not None}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mock_server.app import create_app

    settings = replace(Settings().with_env(), **_overrides(args))
    if settings.fps <= 0 or settings.speed <= 0:
        print("helios-mock: --fps and --speed must be positive", file=sys.stderr)
        return 2
    problem = _fault_problem(settings)
    if problem:
        print(f"helios-mock: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if settings.log_level.lower() != "debug":  # aiortc/aioice are chatty below WARNING
        for noisy in ("aiortc", "aioice"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level.lower() == "debug",
        timeout_graceful_shutdown=3,
    )
    # Many sessions make many long-lived objects; default GC thresholds then stall the event loop with full
    # collections (measured: 200 ms at 100 sessions). Freeze what startup made and collect less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)
    try:
        uvicorn.Server(config).run()  # Ctrl-C: stop accepting, the lifespan closes every session
    except KeyboardInterrupt:
        pass
    return 0


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

    changed = write_schema_files(args.out)
    print(f"wrote {len(changed)} changed file(s) under {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helios-mock", description="CPU-only mock of the Helios video model"
    )
    parser.add_argument("--version", action="version", version=f"helios-mock {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the mock server (env overrides: HELIOS_MOCK_<SETTING>)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1; 0.0.0.0 inside a test namespace)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument(
        "--mode",
        choices=["both", "local", "production"],
        help="coordinator routes to serve (default both: local and production on one port)",
    )
    serve.add_argument("--fps", type=float, help="nominal frames per second (default 24)")
    serve.add_argument(
        "--speed", type=float, help="chunk clock speed factor; 20 = chunks 20x faster (default 1)"
    )
    serve.add_argument(
        "--resolution", help="native frame size at sr_scale off, WxH (default 640x384); 2x/4x scale from it"
    )
    serve.add_argument("--pending-delay", type=float, help="production: seconds a new session stays PENDING")
    serve.add_argument("--ping-timeout", type=float, help="seconds without a client frame before disconnect")
    serve.add_argument("--reconnect-grace", type=float, help="seconds a session waits for a reconnect")
    serve.add_argument("--max-session-duration", type=float, help="seconds before a session expires")
    serve.add_argument("--upload-wait", type=float, help="seconds a command waits for announced upload bytes")
    serve.add_argument("--max-sessions-per-account", type=int, help="production concurrency limit (0 = none)")
    serve.add_argument(
        "--max-creations-per-minute", type=int, help="production creation rate limit (0 = none)"
    )
    serve.add_argument(
        "--ice-addresses",
        help="comma-separated local addresses to gather ICE host candidates "
        "on (e.g. 127.0.0.1 for loopback-only runs; default: all "
        "non-loopback addresses)",
    )
    serve.add_argument(
        "--media",
        choices=["shared", "per-session"],
        help="shared (default): encode each distinct chunk once for all sessions; "
        "per-session: encode per connection",
    )
    serve.add_argument(
        "--faults", metavar="FILE", help="YAML or JSON fault file armed at start-up (docs/FAULTS.md)"
    )
    serve.add_argument(
        "--chaos", choices=["light", "heavy"], help="arm a chaos preset of probability faults (load runs)"
    )
    serve.add_argument("--fault-seed", type=int, help="seed of the fault registry's random draws (default 0)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    serve.set_defaults(func=_serve)

    schemas = sub.add_parser("schemas", help="regenerate the JSON Schema / OpenAPI files under schemas/")
    schemas.add_argument("--out", default="schemas", help="output directory (default ./schemas)")
    schemas.set_defaults(func=_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
