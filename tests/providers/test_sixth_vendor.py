"""A sixth vendor from this module alone (issue 11, item 7): an OpenAI-compatible spec registered
here, served by a fake vendor made after it, and every route works for it with no file under
src/ changed: configs, chat, stream, history, usage, metrics, the OpenAPI enum and the
unknown-provider sentence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import delete

from llm_service.app import create_app
from llm_service.db.models import ChatMessage, LLMConfig
from llm_service.providers.base import VendorSpec
from llm_service.providers.openai_compat import OpenAICompatibleProvider
from llm_service.providers.registry import VENDORS, registered
from llm_service.security.jwt import issue_token
from tests.conftest import make_settings, vendor_settings
from tests.fakes.vendor import FakeVendor

ACME = VendorSpec(
    id="acme",
    display_name="Acme AI",
    default_base_url="https://api.acme.invalid/v1",  # never reached: the fake stands in
    default_model="acme-chat-1",
    adapter=OpenAICompatibleProvider,
    wire="openai",
)
USER = 6006


@pytest.fixture
async def acme(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx2.AsyncClient,
                                                                        FakeVendor]]:
    with registered(ACME), FakeVendor() as fake:
        settings = make_settings(tmp_path, database_url, LLM_METRICS_ENABLED=True,
                                 **vendor_settings(fake))
        app = create_app(settings)
        token = issue_token(settings, user_id=USER, role="CLIENT", ttl_s=600)
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://test",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            yield client, fake
            async with app.state.runtime.sessions() as session, session.begin():
                await session.execute(delete(ChatMessage).where(ChatMessage.user_id == USER))
                await session.execute(delete(LLMConfig).where(LLMConfig.user_id == USER))


async def test_a_registered_vendor_works_on_every_route(
    acme: tuple[httpx2.AsyncClient, FakeVendor],
) -> None:
    client, fake = acme
    saved = await client.post("/llm/config/acme", json={"apiKey": "acme-key-12345678"})
    assert saved.status_code == 200, saved.text
    configs = (await client.get("/llm/configs")).json()["configs"]
    assert configs["acme"]["model"] == "acme-chat-1"
    assert configs["acme"]["apiKey"] == "acm***5678"

    answer = await client.post("/llm/chat/acme", json={"message": "hello there"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == "Echo from acme acme-chat-1: hello there"
    sent = fake.requests_for("acme")[-1]
    assert sent.path == "/acme/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer acme-key-12345678"
    assert "max_tokens" in sent.body  # the spec's default token-limit field

    streamed = await client.post("/llm/chat/acme/stream", json={"message": "stream please"})
    assert streamed.status_code == 200
    assert "event: done" in streamed.text
    assert fake.requests_for("acme")[-1].stream is True

    history = (await client.get("/llm/history/acme")).json()
    assert [m["role"] for m in history["history"]] == ["user", "assistant"] * 2
    assert history["total"] == 4

    usage = (await client.get("/llm/usage?groupBy=provider")).json()
    assert [g["key"] for g in usage["groups"]] == ["acme"]
    assert usage["groups"][0]["requests"] == 2

    metrics = (await client.get("/metrics")).text
    assert 'provider="acme"' in metrics

    spec = (await client.get("/openapi.json")).json()
    parameters = spec["paths"]["/llm/chat/{provider}"]["post"]["parameters"]
    assert "acme" in next(p for p in parameters if p["name"] == "provider")["schema"]["enum"]

    unknown = await client.post("/llm/chat/nobody", json={"message": "hi"})
    assert unknown.status_code == 404
    assert "acme" in unknown.json()["error"]


def test_the_vendor_is_gone_once_unregistered() -> None:
    assert "acme" not in VENDORS
