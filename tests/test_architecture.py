"""The layer order holds (import-linter contracts in pyproject.toml), the check would catch a violation,
and docs/ARCHITECTURE.md names every module of the server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def _copy_project(target: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "mock_server", target / "mock_server", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")


def test_the_layer_contracts_are_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """The check is not vacuous: the model layer importing the HTTP app is reported as broken."""
    _copy_project(tmp_path)
    plan = tmp_path / "mock_server" / "model" / "plan.py"
    plan.write_text(plan.read_text() + "\nimport mock_server.app  # noqa: E402,F401 - the violation\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "mock_server.model.plan -> mock_server.app" in result.stdout, result.stdout


def test_the_pure_model_may_not_use_the_clock(tmp_path: Path) -> None:
    _copy_project(tmp_path)
    helios = tmp_path / "mock_server" / "model" / "helios.py"
    helios.write_text(helios.read_text() + "\nimport time  # noqa: E402,F401 - the violation\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and "mock_server.model.helios -> time" in result.stdout, result.stdout


def test_architecture_doc_names_every_module() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    modules = [
        p.relative_to(ROOT).as_posix()
        for p in sorted((ROOT / "mock_server").rglob("*.py"))
        if "reactor_wire_pb" not in p.parts and p.name not in ("__init__.py", "__main__.py")
    ]
    missing = [m for m in modules if m.removeprefix("mock_server/") not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"
