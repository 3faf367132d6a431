"""The committed reactor_wire.v1 bindings must match schemas/reactor_wire/v1/*.proto."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "mock_server" / "wire" / "reactor_wire_pb"
FIX = "run python scripts/gen_proto.py"

# Lines stamped with the generator's own version; they change with grpcio-tools, not with the .proto files.
_VERSION_STAMP = re.compile(
    r"^# Protobuf Python Version: .*$|_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)",
    re.MULTILINE,
)


def _gen_proto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _normalized(path: Path) -> str:
    return _VERSION_STAMP.sub("<version>", path.read_text(encoding="utf-8"))


def _generated_files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_file() and p.suffix in (".py", ".pyi")}


def test_committed_bindings_match_proto(tmp_path: Path) -> None:
    _gen_proto().generate(tmp_path)
    fresh, committed = _generated_files(tmp_path), _generated_files(COMMITTED)
    assert fresh == committed, f"generated file set differs ({sorted(fresh ^ committed)}); {FIX}"
    stale = sorted(name for name in fresh if _normalized(tmp_path / name) != _normalized(COMMITTED / name))
    assert not stale, f"committed bindings are out of date with schemas/reactor_wire/v1: {stale}; {FIX}"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    gen = _gen_proto()
    first, second = tmp_path / "a", tmp_path / "b"
    gen.generate(first)
    gen.generate(second)
    names = _generated_files(first)
    assert names == _generated_files(second)
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
