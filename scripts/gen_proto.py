#!/usr/bin/env python3
"""Regenerate the reactor_wire.v1 Python bindings from schemas/reactor_wire/v1/*.proto.

Writes ``mock_server/wire/reactor_wire_pb/``: one ``<name>_pb2.py`` + ``.pyi`` per .proto file, with imports
rewritten to be relative (the package is a subpackage of ``mock_server.wire``), and an ``__init__.py`` that
re-exports every message and enum. The output depends only on the .proto files and the grpcio-tools version.

Usage: python scripts/gen_proto.py [OUT_DIR]
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
PROTO_DIR = SCHEMAS / "reactor_wire" / "v1"
OUT_DIR = ROOT / "mock_server" / "wire" / "reactor_wire_pb"
PACKAGE = "mock_server.wire.reactor_wire_pb"

_ABS_IMPORT = re.compile(r"^from reactor_wire\.v1 import ", re.MULTILINE)
_MODULE_NAME = re.compile(r"'reactor_wire\.v1\.(\w+_pb2)'")


def proto_files() -> list[Path]:
    """The .proto sources, in a stable order."""
    return sorted(PROTO_DIR.glob("*.proto"))


def _protoc(args: list[str]) -> None:
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    argv = ["grpc_tools.protoc", f"-I{SCHEMAS}", f"-I{well_known}", *args]
    argv += [str(p.relative_to(SCHEMAS)) for p in proto_files()]
    if protoc.main(argv) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(argv)}")


def _exports(descriptor_set: bytes) -> dict[str, list[str]]:
    """Module name -> top-level message and enum names, in declaration order."""
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    out: dict[str, list[str]] = {}
    for f in fds.file:
        if not f.name.startswith("reactor_wire/"):
            continue
        module = Path(f.name).stem + "_pb2"
        out[module] = [m.name for m in f.message_type] + [e.name for e in f.enum_type]
    return out


def _init_py(exports: dict[str, list[str]]) -> str:
    lines = [
        '"""Generated reactor_wire.v1 bindings (scripts/gen_proto.py). DO NOT EDIT."""',
        "",
    ]
    for module in sorted(exports):
        names = ", ".join(exports[module])
        lines.append(f"from .{module} import {names}  # noqa: F401")
    everything = sorted(name for names in exports.values() for name in names)
    lines.append("")
    lines.append("__all__ = [")
    lines.extend(f'    "{name}",' for name in everything)
    lines.append("]")
    return "\n".join(lines) + "\n"


def _fix(text: str) -> str:
    text = _ABS_IMPORT.sub("from . import ", text)
    return _MODULE_NAME.sub(lambda m: f"'{PACKAGE}.{m.group(1)}'", text)


def generate(out_dir: Path = OUT_DIR) -> list[Path]:
    """Regenerate the bindings into `out_dir` (replacing earlier output); return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        descriptor_set = tmp_path / "set.pb"
        _protoc([f"--python_out={tmp}", f"--pyi_out={tmp}", f"--descriptor_set_out={descriptor_set}"])
        exports = _exports(descriptor_set.read_bytes())
        generated = tmp_path / "reactor_wire" / "v1"
        for stale in [*out_dir.glob("*_pb2.py"), *out_dir.glob("*_pb2.pyi"), out_dir / "__init__.py"]:
            stale.unlink(missing_ok=True)
        shutil.rmtree(out_dir / "__pycache__", ignore_errors=True)
        written = []
        for src in sorted(generated.iterdir()):
            dst = out_dir / src.name
            dst.write_text(_fix(src.read_text(encoding="utf-8")), encoding="utf-8")
            written.append(dst)
    init = out_dir / "__init__.py"
    init.write_text(_init_py(exports), encoding="utf-8")
    written.append(init)
    return sorted(written)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else OUT_DIR
    for path in generate(out_dir):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
