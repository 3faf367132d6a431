"""Prometheus metrics (mock_server/metrics.py) and ``GET /metrics`` (mock_server/routes/metrics.py); the
offline Swagger UI (mock_server/routes/docs.py). Tiny FastAPI apps that include only these routers."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from mock_server.metrics import MAX_LABEL_VALUES, OTHER, Metrics
from mock_server.routes import docs as docs_routes
from mock_server.routes import metrics as metrics_routes


def _app(metrics: Metrics | None) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)
    app.include_router(metrics_routes.router)
    app.include_router(docs_routes.router)
    if metrics is not None:
        app.state.metrics = metrics
    return app


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        return await client.get(path)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_endpoint_parses_as_prometheus_text() -> None:
    metrics = Metrics(version="9.9.9", command_names=["set_prompt", "start"])
    metrics.set_sessions({"ACTIVE": 2, "PENDING": 1})
    metrics.connection_opened("v1")
    metrics.connection_opened("v0")
    metrics.connection_opened("v1")
    metrics.connection_closed("v0")
    for _ in range(3):
        metrics.chunk_generated()
    metrics.frame_sent(1200)
    metrics.frame_sent(800)
    metrics.command("set_prompt", "accepted")
    metrics.command("start", "refused")
    metrics.rejection("invalid_command")
    metrics.fault("drop_connection")
    metrics.encoded(0.003)
    metrics.loop_lagged(0.02)

    resp = await _get(_app(metrics), "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = _samples(resp.text)
    expect = {
        ("helios_mock_build_info", (("version", "9.9.9"),)): 1,
        ("helios_mock_sessions", (("state", "ACTIVE"),)): 2,
        ("helios_mock_sessions", (("state", "PENDING"),)): 1,
        ("helios_mock_connections", (("encoding", "v1"),)): 2,
        ("helios_mock_connections", (("encoding", "v0"),)): 0,
        ("helios_mock_chunks_generated_total", ()): 3,
        ("helios_mock_frames_sent_total", ()): 2,
        ("helios_mock_bytes_sent_total", ()): 2000,
        ("helios_mock_commands_total", (("command", "set_prompt"), ("outcome", "accepted"))): 1,
        ("helios_mock_commands_total", (("command", "start"), ("outcome", "refused"))): 1,
        ("helios_mock_rejections_total", (("code", "invalid_command"),)): 1,
        ("helios_mock_faults_fired_total", (("kind", "drop_connection"),)): 1,
        ("helios_mock_encode_seconds_count", ()): 1,
        ("helios_mock_event_loop_lag_latest_seconds", ()): 0.02,
        ("helios_mock_event_loop_lag_seconds_count", ()): 1,
    }
    assert {key: samples.get(key) for key in expect} == expect
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)

    metrics.set_sessions({"ACTIVE": 1})  # a state that emptied reads 0, not its old value
    samples = _samples((await _get(_app(metrics), "/metrics")).text)
    assert samples[("helios_mock_sessions", (("state", "PENDING"),))] == 0


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()  # the default global registry would raise "Duplicated timeseries"
    first.chunk_generated()
    text = second.render()[0].decode()
    assert _samples(text)[("helios_mock_chunks_generated_total", ())] == 0


def test_client_chosen_label_values_are_bounded() -> None:
    metrics = Metrics(command_names=["start"])
    for i in range(MAX_LABEL_VALUES + 10):
        metrics.command(f"made_up_{i}", "rejected")
    commands = {
        labels[0][1]
        for (name, labels), _ in _samples(metrics.render()[0].decode()).items()
        if name == "helios_mock_commands_total"
    }
    # "start" (known) holds one of the MAX_LABEL_VALUES places; past the limit, names count as "other"
    assert OTHER in commands and len(commands - {OTHER}) == MAX_LABEL_VALUES - 1


async def test_event_loop_lag_is_measured() -> None:
    metrics = Metrics()
    task = metrics.start_loop_watch(interval=0.01)
    await asyncio.sleep(0.05)
    await Metrics.stop_loop_watch(task)
    count = _samples(metrics.render()[0].decode())[("helios_mock_event_loop_lag_seconds_count", ())]
    assert count >= 1 and task.cancelled()


async def test_metrics_endpoint_without_metrics_says_why() -> None:
    resp = await _get(_app(None), "/metrics")
    assert resp.status_code == 503 and "app.state.metrics" in resp.json()["detail"]


async def test_docs_are_served_without_a_cdn() -> None:
    app = _app(Metrics())
    page = await _get(app, "/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "https://" not in page.text
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        assert asset in page.text
        resp = await _get(app, asset)
        assert resp.status_code == 200 and len(resp.content) > 10_000
    assert "SwaggerUIBundle" in (await _get(app, "/docs/assets/swagger-ui-bundle.js")).text
    missing = await _get(app, "/docs/assets/..%2Fpyproject.toml")
    assert missing.status_code == 404
    assert (await _get(app, "/openapi.json")).json()["openapi"].startswith("3.1")  # needs Swagger UI 5


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_log_format_for_app_and_uvicorn(fmt: str) -> None:
    import io
    import json
    import logging
    import logging.config

    from mock_server.logging_setup import SessionLogger, log_context, logging_config

    config = logging_config("info", fmt)
    stream = io.StringIO()
    config["handlers"]["stderr"] = {"class": "logging.StreamHandler", "formatter": "main", "stream": stream}
    logging.config.dictConfig(config)
    try:
        logging.getLogger("uvicorn.error").info("Started server process")
        with log_context(session="s1"):
            SessionLogger(logging.getLogger("mock_server.session"), connection=2).info("chunk %d begins", 3)
        logging.getLogger("aiortc").info("chatty")  # below WARNING for the noisy libraries: dropped
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, "root": {"handlers": []}})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    if fmt == "text":
        assert lines[0].split(" ", 1)[1].startswith("INFO    uvicorn.error: Started server process")
        assert lines[1].endswith("mock_server.session: chunk 3 begins [session=s1 connection=2]")
    else:
        first, second = (json.loads(line) for line in lines)
        assert set(first) == {"time", "level", "logger", "message"} and first["logger"] == "uvicorn.error"
        assert second["message"] == "chunk 3 begins"
        assert (second["session"], second["connection"], second["level"]) == ("s1", 2, "info")
