"""A recognisable key, driven through every vendor, both chat routes and every error path with
DEBUG logging set up as `llm-service` sets it: it appears in no log line, no response and no
stored row. Two canaries: one in the usual `sk-` shape, one in no known key shape (only the held
loggers, the overlap scrub and the high-entropy rule can keep that one out)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text

from llm_service.app import create_app
from llm_service.providers.registry import provider_ids
from tests.conftest import Api, make_settings
from tests.fakes.vendor import FakeVendor
from tests.security.conftest import AppFactory

PROVIDERS = provider_ids()

CANARY = "sk-CANARY-7f3a9c2e-do-not-leak-4d1b"
SHAPELESS = "Wq7ZuT3mXp9LkR2vNc8BdHy4"  # no prefix, nothing a key-shape pattern knows
# Pieces long enough to identify the key, short enough to be what a careless mask would show.
FRAGMENTS = (CANARY, CANARY[3:-4], "7f3a9c2e", "do-not-leak", SHAPELESS, SHAPELESS[:12],
             SHAPELESS[-12:], SHAPELESS.upper(), base64.b64encode(SHAPELESS.encode()).decode())


def assert_no_canary(*texts: str) -> None:
    for blob in texts:
        for fragment in FRAGMENTS:
            assert fragment not in blob, f"key material {fragment!r} leaked: {blob[:300]!r}"


@pytest.fixture
def debug_logs(service_logging: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    return service_logging


def logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = [caplog.text]  # as formatted by a handler, exception text included
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


KEY_HEADERS = {"openai": "authorization", "huggingface": "authorization", "qwen": "authorization",
               "claude": "x-api-key", "gemini": "x-goog-api-key"}


def sent_key(fake_vendor: FakeVendor, provider: str) -> str:
    headers = fake_vendor.requests_for(provider)[0].headers
    value = headers.get(KEY_HEADERS[provider]) or headers.get("authorization", "")
    return value.removeprefix("Bearer ")


# Every outcome each route can have (stream_error and a cut stream only exist on the stream).
OUTCOMES = [("", mode) for mode in ("ok", "auth", "rate_limit", "server_error", "bad_request",
                                     "malformed", "echo_key")]
OUTCOMES += [("/stream", mode) for mode in ("ok", "auth", "malformed", "stream_error")]


@pytest.mark.parametrize(("route", "mode"), OUTCOMES, ids=lambda v: v or "chat")
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_no_vendor_route_or_outcome_logs_the_key(
    api: Api, fake_vendor: FakeVendor, debug_logs: pytest.LogCaptureFixture,
    provider: str, route: str, mode: str,
) -> None:
    key = SHAPELESS if provider != "openai" else CANARY
    saved = await api.client.post(f"/llm/config/{provider}", json={"apiKey": key},
                                  headers=api.auth(1))
    assert saved.status_code == 200
    fake_vendor.set_behaviour(mode, provider=provider)
    response = await api.client.post(f"/llm/chat/{provider}{route}",
                                     json={"message": "canary chat text"}, headers=api.auth(1))
    rows = await stored_rows(api)
    # The vendor got the key (so the SDK held it while logging), and nothing else did: not the
    # SDK's request-option log with its Authorization header, not an error, not a row.
    assert sent_key(fake_vendor, provider) == key
    assert_no_canary(response.text, str(response.headers), logged(debug_logs), rows)
    # The held loggers do not even make the records that would carry headers or bodies (the
    # SDK's request options, a driver's statement parameters): the chat text is not logged.
    assert "Request options" not in debug_logs.text
    assert "canary chat text" not in logged(debug_logs)


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
