"""The wheel is the product: build it, install it (not editable) into a fresh venv with only the `pytest`
extra, and use it from an empty directory outside the repository, as a client team would.

From the install: `helios-mock schemas --out` writes the same JSON and .proto files as `schemas/`; the
server conformance suite runs with `pytest --pyargs conformance.server_suite` against a mock it starts; a
tiny client project uses the plugin in pytest-asyncio's strict mode; and, with the `load` extra added, a
10-second headless Locust run uses only installed files (`locust -f "$(helios-mock locustfile)"`).

pip resolves the dependencies from its cache (or the package index); the first run on a machine with an
empty cache takes longest. Deselect with `-m "not packaging"` when iterating on something else.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conformance.server import free_port

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "mock_server", "conformance", "schemas", "load")
TIMINGS: dict[str, float] = {}

pytestmark = pytest.mark.packaging


def test_every_package_directory_is_listed_in_pyproject() -> None:
    """The explicit package list (needed to install schemas/ and load/ under namespaced names) is complete."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("mock_server", "conformance")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert not found - listed, (
        f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    )
    assert setuptools["package-dir"] == {"helios_mock_schemas": "schemas", "helios_mock_load": "load"}


@dataclass
class Install:
    """A fresh venv with the built wheel installed, and an empty working directory outside the repo."""

    venv: Path
    wheel: Path
    work: Path

    @property
    def env(self) -> dict[str, str]:
        drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_", "HELIOS_MOCK_", "HELIOS_SUITE_", "LOCUST_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def run(
        self, *args: str, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        exe = args[0] if "/" in args[0] else str(self.venv / "bin" / args[0])
        return subprocess.run(
            [exe, *args[1:]],
            cwd=cwd or self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def check(self, *args: str, timeout: float = 300, cwd: Path | None = None) -> str:
        proc = self.run(*args, timeout=timeout, cwd=cwd)
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def pip_install(self, requirement: str) -> None:
        started = time.monotonic()
        self.check(
            "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement, timeout=900
        )
        TIMINGS[f"pip install {requirement.rsplit('[', 1)[-1].rstrip(']')}"] = time.monotonic() - started


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results", "*.egg-info", "build", "dist")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
         "-w", str(base / "dist"), str(src)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    TIMINGS["build wheel"] = time.monotonic() - started
    (wheel,) = (base / "dist").glob("helios_mock-*.whl")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=300)
    TIMINGS["create venv"] = time.monotonic() - started
    work = base / "work"
    work.mkdir()
    install = Install(venv=base / "venv", wheel=wheel, work=work)
    install.pip_install(f"{wheel}[pytest]")
    yield install
    print("\npackaging timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def test_wheel_ships_schemas_protos_load_kit_and_type_markers(installed: Install) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for required in (
        "mock_server/py.typed",
        "conformance/py.typed",
        "helios_mock_schemas/model_schema.json",
        "helios_mock_schemas/commands/set_prompt.json",
        "helios_mock_schemas/http/openapi.json",
        "helios_mock_schemas/reactor_wire/v1/envelope.proto",
        "helios_mock_load/locustfile.py",
        "helios_mock_load/agent.py",
        "helios_mock_load/bench.py",
        "conformance/server_suite/test_commands.py",
        "mock_server/wire/reactor_wire_pb/envelope_pb2.pyi",
    ):
        assert required in names, required
    tops = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"mock_server", "conformance", "helios_mock_schemas", "helios_mock_load"}


def test_installed_package_reads_its_data_and_version(installed: Install) -> None:
    script = (
        "import importlib.metadata, importlib.resources, json, mock_server\n"
        "files = importlib.resources.files('helios_mock_schemas')\n"
        "schema = json.loads((files / 'commands' / 'set_prompt.json').read_text())\n"
        "print(schema['title'], mock_server.__version__, importlib.metadata.version('helios-mock'))\n"
        "print(mock_server.__file__)\n"
    )
    title, version, metadata_version, location = installed.check("python", "-c", script).split()
    assert title == "set_prompt" and version == metadata_version
    assert str(installed.venv) in location  # the installed copy, not the repository's
    assert installed.check("helios-mock", "--version").strip() == f"helios-mock {version}"


def test_schemas_out_writes_the_json_and_proto_files(installed: Install) -> None:
    installed.check("helios-mock", "schemas", "--out", "contract")
    out = installed.work / "contract"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(ROOT / "schemas").as_posix()
        for p in (ROOT / "schemas").rglob("*")
        if p.is_file() and p.suffix in (".json", ".proto")
    }
    assert written == committed
    assert any(name.endswith(".proto") for name in written)
    assert all((out / rel).read_bytes() == (ROOT / "schemas" / rel).read_bytes() for rel in written)


def test_server_conformance_suite_runs_from_the_install(installed: Install) -> None:
    started = time.monotonic()
    out = installed.check(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "conformance.server_suite"
    )
    TIMINGS["server suite"] = time.monotonic() - started
    assert " passed" in out and " failed" not in out and " error" not in out, out[-3000:]


CLIENT_PYPROJECT = """\
[tool.pytest.ini_options]
asyncio_mode = "strict"
asyncio_default_fixture_loop_scope = "function"
addopts = "--helios-strict"
"""

CLIENT_TEST = """\
import pytest

from conformance.helpers import keepalive, wait_for_chunk


@pytest.mark.asyncio
async def test_play_one_chunk(helios, helios_client):
    client = await helios_client(wire="v0")
    async with keepalive(client):
        client.send_command("set_prompt", {"prompt": "a heron at dusk"})
        client.send_command("start")
        await wait_for_chunk(client, 0)
"""


def test_client_project_in_strict_mode(installed: Install) -> None:
    project = installed.work / "client_project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(CLIENT_PYPROJECT)
    (project / "tests" / "test_app.py").write_text(CLIENT_TEST)
    out = installed.check("python", "-m", "pytest", "-p", "no:cacheprovider", cwd=project)
    assert "mode=Mode.STRICT" in out and "1 passed" in out, out[-3000:]


def test_headless_locust_run_from_the_install(installed: Install) -> None:
    installed.pip_install(f"{installed.wheel}[load]")
    assert "--sessions" in installed.check("helios-mock", "bench", "--help")  # the benchmark imports too
    locustfile = installed.check("helios-mock", "locustfile").strip()
    assert locustfile.startswith(str(installed.venv)) and Path(locustfile).is_file()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(installed.work / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(installed.venv / "bin" / "helios-mock"), "serve", "--port", str(port), "--speed", "4",
         "--resolution", "160x96", "--ice-addresses", "127.0.0.1", "--max-sessions-per-account", "0",
         "--max-creations-per-minute", "0"],
        cwd=installed.work, env=installed.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_healthy(url, server)
        started = time.monotonic()
        installed.check(
            "locust", "-f", locustfile, "--headless", "-u", "2", "-r", "2", "-t", "10s", "--host", url,
            "--only-summary", "--csv", "run", "--helios-speed", "4", "--helios-wire", "v1",
            "--helios-summary", "summary.json", timeout=120,
        )  # fmt: skip
        TIMINGS["locust run"] = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()
    with open(installed.work / "run_stats.csv", newline="", encoding="utf-8") as fh:
        stats = {row["Name"]: row for row in csv.DictReader(fh)}
    assert {name: row["Failure Count"] for name, row in stats.items() if row["Failure Count"] != "0"} == {}
    assert int(stats["connect→ready"]["Request Count"]) >= 2
    summary = json.loads((installed.work / "summary.json").read_text())
    assert summary["sessions"] >= 2 and summary["received"] > 0 and summary["unreadable"] == 0


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "helios-mock exited before answering /health"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"helios-mock at {url} did not answer /health within {timeout:g} s")
