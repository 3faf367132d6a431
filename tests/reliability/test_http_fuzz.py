"""HTTP fuzz with schemathesis against the served OpenAPI document of a mock on loopback.

Every operation of ``GET /openapi.json`` gets ``--http-examples`` examples (default 12) of schema-valid and
schema-violating requests (schemathesis positive and negative generation, seeded), twice: with random path
parameters, and aimed at a live local and a live production session. On top come hand-made hostile bodies
for every operation that takes one (500-level nesting, a lone surrogate, invalid UTF-8, 2 MB of JSON, a JSON
array where an object belongs). The run is done once per module; the tests below judge it:

* no response is a 5xx;
* every status is one the operation documents (reported until the documented error statuses are in).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from suite_options import setting

from conformance.server import HeliosServer

HOSTILE_BODIES: dict[str, bytes] = {
    "nesting 500": b"[" * 500 + b"]" * 500,
    "nesting 990 in an object": b'{"model":' + b"[" * 990 + b"]" * 990 + b"}",
    "nesting 999 of objects": b'{"a":' * 999 + b"1" + b"}" * 999,
    "nesting 5000": b"[" * 5000 + b"]" * 5000,
    "lone surrogate": json.dumps({"name": "fox \ud800 snow", "reason": "\udfff", "size": 1}).encode(),
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "2 MB string": json.dumps({"name": "x" * 2_000_000, "sdp_offer": "y"}).encode(),
    "array for object": b"[1, 2, 3]",
    "truncated": b'{"model": {"name": "hel',
}

# the upload PUT takes raw bytes, not JSON; a reset would end the sessions the later requests aim at
SKIP_HOSTILE = ("/uploads/{presigned_id}", "/admin/reset")


@dataclass
class HttpRun:
    requests: int = 0
    operations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    undocumented: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        spread = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"http fuzz: {self.requests} requests over {self.operations} operations in {self.seconds:.1f} s: "
            f"5xx {len(self.server_errors)}, undocumented statuses {sum(self.undocumented.values())} "
            f"({len(self.undocumented)} distinct operation/status pairs); statuses {{{spread}}}"
        )

    def note(self, method: str, path: str, documented: set[str], status: int, text: str) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status >= 500:
            self.server_errors.append(f"{method} {path} -> {status}: {text[:200]}")
        if not _documented(documented, status):
            self.undocumented[f"{method} {path} -> {status}"] += 1


def _documented(documented: set[str], status: int) -> bool:
    return "default" in documented or str(status) in documented or f"{status // 100}XX" in documented


def _responses(operation: Any) -> set[str]:
    return {str(code).upper() for code in operation.definition.raw.get("responses", {})}


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz_operation(
    operation: Any,
    examples: int,
    run_seed: int,
    call: Callable[[Any], None],
    **overrides: Any,
) -> None:
    strategy = operation.as_strategy(GenerationMode.POSITIVE, **overrides) | operation.as_strategy(
        GenerationMode.NEGATIVE, **overrides
    )

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # nothing is raised, so nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        call(case)

    run()


def _live_sessions(url: str) -> dict[str, str]:
    """A local session and a production session to aim the second pass at."""
    with httpx.Client(base_url=url, timeout=10) as http:
        http.post("/start_session", json={}).raise_for_status()
        created = http.post(
            "/sessions", json={"model": {"name": "helios"}}, headers={"Authorization": "Bearer fuzz"}
        )
        created.raise_for_status()
        return {"local": "local", "production": created.json()["session_id"]}


def _hostile_bodies(url: str, operations: list[Any], run: HttpRun, sessions: dict[str, str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        for operation in operations:
            if operation.method.upper() not in ("POST", "PUT") or operation.path in SKIP_HOSTILE:
                continue
            targets = (
                {sessions[mode] for mode in ("local", "production")}
                if "{session_id}" in operation.path
                else {""}
            )
            for name, body, session_id in [
                (n, b, s) for n, b in HOSTILE_BODIES.items() for s in sorted(targets)
            ]:
                path = operation.path.replace("{session_id}", session_id).replace("{connection_id}", "2000")
                try:
                    resp = http.request(
                        operation.method.upper(),
                        path,
                        content=body,
                        headers={"Content-Type": "application/json", "Authorization": "Bearer fuzz"},
                    )
                except httpx.HTTPError as exc:  # a dropped connection is as bad as a 5xx
                    run.requests += 1
                    run.server_errors.append(f"{operation.method.upper()} {path} ({name}): {exc!r}")
                    continue
                run.note(
                    operation.method.upper(),
                    operation.path,
                    _responses(operation),
                    resp.status_code,
                    f"[{name}] {resp.text}",
                )


@pytest.fixture(scope="module")
def http_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpRun]:
    examples = int(setting(request.config, "--http-examples", "HELIOS_HTTP_EXAMPLES", 12))
    run_seed = int(setting(request.config, "--fuzz-seed", "HELIOS_FUZZ_SEED", 12))
    server = HeliosServer.start(
        speed=20, resolution="160x96", log_path=tmp_path_factory.mktemp("http") / "server.log"
    )
    run = HttpRun()
    t0 = time.monotonic()
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = _operations(schema)
        run.operations = len(operations)

        def call(case: Any) -> None:
            documented = _responses(case.operation)
            try:
                response = case.call(base_url=server.url, timeout=30)
            except Exception as exc:  # noqa: BLE001 - a dropped connection is as bad as a 5xx
                run.requests += 1
                run.server_errors.append(f"{case.method} {case.path}: the request failed: {exc!r}")
                return
            run.note(case.method, case.operation.path, documented, response.status_code, response.text)

        for operation in operations:
            _fuzz_operation(operation, examples, run_seed, call)
        sessions = _live_sessions(server.url)
        for operation in operations:
            params = {
                name: value
                for name, value in (("session_id", sessions["production"]), ("connection_id", 2000))
                if "{" + name + "}" in operation.path
            }
            if params:
                _fuzz_operation(
                    operation,
                    examples,
                    run_seed,
                    call,
                    path_parameters=params,
                    headers={"Authorization": "Bearer fuzz"},
                )
        _hostile_bodies(server.url, operations, run, sessions)
        run.seconds = time.monotonic() - t0
        yield run
    finally:
        server.stop()


def test_http_fuzz_has_no_server_errors(http_run: HttpRun, figures: list[str]) -> None:
    figures.append(http_run.line())
    print(http_run.line())
    assert http_run.requests > 0
    shown = "\n".join(f"  - {e}" for e in http_run.server_errors[:15])
    assert not http_run.server_errors, f"{http_run.line()}\n{shown}"


def test_http_statuses_are_documented(http_run: HttpRun) -> None:
    shown = "\n".join(f"  - {what} ({n}×)" for what, n in sorted(http_run.undocumented.items()))
    assert not http_run.undocumented, f"statuses the OpenAPI document does not list:\n{shown}"
