"""A recognisable key, driven through every error path with DEBUG logging: it appears in no log
line, no response and no stored row."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text

from llm_service.app import create_app
from tests.conftest import Api, make_settings
from tests.fakes.vendor import FakeVendor
from tests.security.conftest import AppFactory

CANARY = "sk-CANARY-7f3a9c2e-do-not-leak-4d1b"
# Pieces long enough to identify the key, short enough to be what a careless mask would show.
FRAGMENTS = (CANARY, CANARY[3:-4], "7f3a9c2e", "do-not-leak")


def assert_no_canary(*texts: str) -> None:
    for blob in texts:
        for fragment in FRAGMENTS:
            assert fragment not in blob, f"key material {fragment!r} leaked: {blob[:300]!r}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
        if record.exc_text:
            lines.append(record.exc_text)
    return "\n".join(lines)


async def stored_rows(api: Api) -> str:
    async with api.runtime.engine.connect() as conn:
        configs = (await conn.execute(text("SELECT * FROM llm_configs"))).all()
        messages = (await conn.execute(text("SELECT * FROM llm_chat_history"))).all()
    return repr(configs) + repr(messages)


@pytest.mark.parametrize("mode", ["auth", "rate_limit", "server_error", "bad_request",
                                  "malformed", "hang"])
async def test_vendor_failures_never_show_the_key(
    make_api: AppFactory, fake_vendor: FakeVendor, debug_logs: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    async with make_api(LOG_LEVEL="DEBUG") as api:
        saved = await api.client.post("/llm/config/openai", json={"apiKey": CANARY},
                                      headers=api.auth(1))
        assert saved.status_code == 200
        fake_vendor.set_behaviour(mode, provider="openai")
        response = await api.client.post("/llm/chat/openai", json={"message": "hi"},
                                         headers=api.auth(1))
        assert response.status_code >= 400
        rows = await stored_rows(api)
    # The vendor did receive it (the key works), and nothing else did.
    assert fake_vendor.requests_for("openai")[0].headers["authorization"] == f"Bearer {CANARY}"
    assert_no_canary(response.text, str(response.headers), logged(debug_logs), rows)


async def test_validation_errors_never_echo_the_key(
    make_api: AppFactory, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with make_api() as api:
        responses = [
            await api.client.post("/llm/config/openai", json={"apiKey": CANARY + " x"},
                                  headers=api.auth(1)),
            await api.client.post("/llm/config/openai",
                                  json={"apiKey": CANARY, "temperature": 9},
                                  headers=api.auth(1)),
            await api.client.post("/llm/config/openai", content=f'{{"apiKey": "{CANARY}"',
                                  headers=api.auth(1)),
            await api.client.post("/llm/config/nope", json={"apiKey": CANARY},
                                  headers=api.auth(1)),
            await api.client.post("/llm/config/openai", json={"apiKey": CANARY}),
        ]
        rows = await stored_rows(api)
    assert [r.status_code for r in responses] == [422, 422, 422, 404, 401]
    assert_no_canary(*(r.text for r in responses), logged(debug_logs), rows)


async def test_a_saved_key_is_only_ever_shown_masked(
    make_api: AppFactory, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with make_api() as api:
        await api.client.post("/llm/config/openai", json={"apiKey": CANARY}, headers=api.auth(1))
        listed = await api.client.get("/llm/configs", headers=api.auth(1))
        rows = await stored_rows(api)
    assert listed.json()["configs"]["openai"]["apiKey"] == "sk-***4d1b"
    assert_no_canary(listed.text, logged(debug_logs), rows)


async def test_database_down_never_shows_the_key(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/none",
                             LLM_MIGRATE_ON_START=False, DB_TIMEOUT_S=1, LOG_LEVEL="DEBUG")
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://test"
    ) as client:
        api = Api(app=app, client=client, settings=settings, backend="postgres")
        saved = await client.post("/llm/config/openai", json={"apiKey": CANARY},
                                  headers=api.auth(1))
        chat = await client.post("/llm/chat/openai", json={"message": CANARY},
                                 headers=api.auth(1))
    assert (saved.status_code, chat.status_code) == (503, 503)
    assert_no_canary(saved.text, chat.text, logged(debug_logs))
