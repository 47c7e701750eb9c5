"""One error shape for everything: unknown paths and methods, unexpected exceptions, request ids,
and CORS."""

from __future__ import annotations

import logging

import httpx2
import pytest
from fastapi import FastAPI

from llm_service.app import create_app
from tests.conftest import Api, make_settings


async def test_unknown_path_is_not_found_in_the_error_shape(api: Api) -> None:
    response = await api.client.get("/llm/nothing", headers=api.auth(1))
    assert response.status_code == 404
    body = response.json()
    assert body == {"success": False, "error": "Nothing here: check the URL.",
                    "code": "not_found", "requestId": response.headers["X-Request-ID"]}


async def test_wrong_method_is_method_not_allowed(api: Api) -> None:
    response = await api.client.put("/llm/configs", headers=api.auth(1))
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_a_sane_incoming_request_id_is_kept(api: Api) -> None:
    response = await api.client.get(
        "/llm/nothing", headers={"X-Request-ID": "trace-abc-123456"}
    )
    assert response.headers["X-Request-ID"] == "trace-abc-123456"
    assert response.json()["requestId"] == "trace-abc-123456"


async def test_an_insane_incoming_request_id_is_replaced(api: Api) -> None:
    response = await api.client.get("/llm/nothing", headers={"X-Request-ID": "x\" <script>"})
    assert response.headers["X-Request-ID"] != "x\" <script>"
    assert len(response.headers["X-Request-ID"]) == 32


async def test_success_responses_carry_a_request_id(api: Api) -> None:
    response = await api.client.get("/llm/configs", headers=api.auth(1))
    assert len(response.headers["X-Request-ID"]) == 32


@pytest.fixture
async def crashing_app(tmp_path) -> FastAPI:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}")
    app = create_app(settings)

    @app.get("/llm/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals: SELECT * FROM llm_configs")

    return app


async def test_unexpected_error_is_500_without_trace_and_logged_with_id(
    crashing_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx2.ASGITransport(app=crashing_app)
    with caplog.at_level(logging.ERROR, logger="llm_service.requests"):
        async with crashing_app.router.lifespan_context(crashing_app), httpx2.AsyncClient(
            transport=transport, base_url="http://test"
        ) as client:
            response = await client.get("/llm/crash")
    assert response.status_code == 500
    body = response.json()
    request_id = response.headers["X-Request-ID"]
    assert body["code"] == "internal_error"
    assert body["requestId"] == request_id
    assert request_id in body["error"]
    assert "secret internals" not in response.text and "Traceback" not in response.text
    record = next(r for r in caplog.records if request_id in r.getMessage())
    assert record.exc_info is not None and "secret internals" in str(record.exc_info[1])


async def test_cors_allows_only_configured_origins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'cors.db'}",
        CORS_ORIGINS="https://app.example.org, https://admin.example.org",
    )
    app = create_app(settings)
    transport = httpx2.ASGITransport(app=app)
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=transport, base_url="http://test"
    ) as client:
        allowed = await client.options(
            "/llm/configs", headers={"Origin": "https://admin.example.org", **preflight}
        )
        refused = await client.options(
            "/llm/configs", headers={"Origin": "https://evil.example.com", **preflight}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://admin.example.org"
    assert "access-control-allow-origin" not in refused.headers


async def test_no_cors_headers_by_default(api: Api) -> None:
    response = await api.client.get(
        "/llm/configs", headers={**api.auth(1), "Origin": "https://app.example.org"}
    )
    assert "access-control-allow-origin" not in response.headers
