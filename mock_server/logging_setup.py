"""One log format for the app and uvicorn (text or JSON lines), and session/connection fields on records.

``logging_config(level, fmt)`` is a ``logging.config.dictConfig`` document; the CLI applies it and passes it
to uvicorn (``log_config=``) so uvicorn's lines look like the app's. Session-scoped fields come from either

* ``log_context(session="s1", connection=2)``: a context manager setting them for this task (and the tasks
  it creates), read from a contextvar by every handler;
* ``SessionLogger(log, session="s1", connection=2)``: a ``LoggerAdapter`` that puts them on each record.

Text lines end with ``[session=s1 connection=2]`` when present; JSON lines carry ``session`` / ``connection``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("session", "connection")
_context: ContextVar[dict[str, Any] | None] = ContextVar("helios_log_context", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
QUIET_LOGGERS = ("aiortc", "aioice")  # chatty below WARNING; shown at debug level only


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` (session=..., connection=...) to every record logged in this context."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class SessionLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry a session id (and optionally a connection id)."""

    def __init__(self, logger: logging.Logger, session: str | None = None, connection: Any = None) -> None:
        super().__init__(logger, {"session": session, "connection": connection})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = {k: v for k, v in (self.extra or {}).items() if v is not None}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return msg, kwargs


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The session/connection fields of a record: its own (adapter, extra=) over the context's."""
    fields = dict(_context.get() or {})
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return {name: fields[name] for name in CONTEXT_FIELDS if fields.get(name) is not None}


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO    mock_server.session: message [session=s1 connection=2]``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context_fields(record)
        if not fields:
            return line
        first, newline, rest = line.partition("\n")
        suffix = " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return first + suffix + newline + rest


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, session, connection, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **context_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """dictConfig for the root logger and uvicorn's loggers: one handler on stderr, one format."""
    if fmt not in FORMATTERS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATTERS)}")
    level_name = level.upper()
    quiet = "DEBUG" if level_name == "DEBUG" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": FORMATTERS[fmt]}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level_name, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's loggers propagate to the root handler instead of their own colored ones
            "uvicorn": {"level": level_name, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level_name, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level_name, "handlers": [], "propagate": True},
            **{name: {"level": quiet} for name in QUIET_LOGGERS},
        },
    }
