"""Bounds on client-controlled text: clipping for log lines and messages, and bounded JSON parsing.

Used by every layer that handles text a client chose (wire codecs, command validation, HTTP bodies), so it
sits below all of them and imports nothing from the server.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "LOG_CLIP_CHARS",
    "JsonRejected",
    "clip",
    "nesting_depth",
    "parse_json_bounded",
]

LOG_CLIP_CHARS = 200  # default length of client text quoted in a log line or an error message

# A \uD800-\uDFFF escape in JSON text, or a surrogate code point in an already decoded string.
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|[\ud800-\udfff]")


def clip(text: str, limit: int = LOG_CLIP_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis and the original length when it was longer.

    The result is always encodable as UTF-8 (lone surrogates become ``\\udXXX`` escapes), so it is safe in a
    log line, a JSON reply and a protobuf string.
    """
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    if _SURROGATE_HINT.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class JsonRejected(ValueError):
    """JSON text refused by :func:`parse_json_bounded`.

    ``reason`` is a predicate in plain words ("is not valid JSON (...)", "is nested more than 32 levels
    deep"), so a caller writes ``f"frame {reason}"`` or ``f"request body {reason}"``.

    ``too_large`` is True when the text is over the byte limit (an HTTP route answers 413 for that, 400 or 422
    for the rest).
    """

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _refuse_constant(name: str) -> Any:
    raise JsonRejected(f"holds {name}, which is not a JSON value (JSON has no NaN or Infinity)")


def nesting_depth(value: Any, stop_at: int) -> int:
    """Depth of nested lists/dicts in ``value`` (a scalar is 0, ``[]`` is 1), counted without recursion.

    Stops counting as soon as the depth exceeds ``stop_at`` and returns that depth, so a hostile value
    costs no more than the walk up to the limit.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > stop_at:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def _lone_surrogate(value: Any) -> str | None:
    """The first string (key or value) in ``value`` that holds a lone UTF-16 surrogate, or None."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            strings: Any = (node,)
        elif isinstance(node, dict):
            strings = node.keys()
            stack.extend(node.values())
        elif isinstance(node, list):
            strings = ()
            stack.extend(node)
        else:
            continue
        for text in strings:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return text
    return None


def _load(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise JsonRejected(f"is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        raise JsonRejected("is not valid JSON (nested too deeply to read)") from None
    except JsonRejected:
        raise
    except ValueError as exc:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise JsonRejected(f"is not valid JSON ({clip(str(exc), 120)})") from None


def parse_json_bounded(raw: str | bytes, *, max_depth: int, max_bytes: int) -> Any:
    """Parse JSON text from a client, refusing what the server should not hold or echo.

    Refused with :class:`JsonRejected`: text over ``max_bytes`` bytes (UTF-8), bytes that are not UTF-8,
    malformed JSON, ``NaN``/``Infinity``, arrays/objects nested deeper than ``max_depth``, and strings
    (keys included) holding a lone UTF-16 surrogate such as ``"\\ud800"`` (valid JSON syntax, but not text:
    it cannot be encoded again, RFC 8259 §8.2 / RFC 7493 §2.1).
    """
    size = len(raw) if isinstance(raw, bytes | bytearray) else _utf8_size(raw)
    if size > max_bytes:
        raise JsonRejected(f"is {size} bytes; the limit is {max_bytes} bytes", too_large=True)
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonRejected("is not UTF-8 text") from None
    else:
        text = raw
    value = _load(text)
    if text.count("[") + text.count("{") > max_depth:  # only then can the nesting be too deep
        depth = nesting_depth(value, max_depth)
        if depth > max_depth:
            raise JsonRejected(f"is nested more than {max_depth} levels deep")
    if _SURROGATE_HINT.search(text):
        bad = _lone_surrogate(value)
        if bad is not None:
            raise JsonRejected(
                f"holds a lone UTF-16 surrogate in the string '{clip(bad, 60)}' (a \\ud800-\\udfff escape "
                "that is not part of a pair is not text)"
            )
    return value
