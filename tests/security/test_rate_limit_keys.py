"""The chat and the default rate limit count separately, also when their values are equal (they
once shared one counter key: `LIMITER/<user>/3/1/minute` for both)."""

from __future__ import annotations

import pytest

from llm_service.security.rate_limit import RateLimiter
from llm_service.settings import Settings
from tests.conftest import Api
from tests.security.conftest import AppFactory

KEY = "sk-rate-limit-keys-0001"


def test_equal_limits_have_different_counter_keys() -> None:
    limiter = RateLimiter(Settings(RATE_LIMIT_CHAT="3/minute", RATE_LIMIT_DEFAULT="3/minute"))
    assert limiter.chat.key_for("1") != limiter.default.key_for("1")
    assert (limiter.chat.amount, limiter.default.amount) == (3, 3)


async def _spend_default_then_chat(api: Api) -> None:
    headers = api.auth(1)
    saved = await api.client.post("/llm/config/openai", json={"apiKey": KEY}, headers=headers)
    assert saved.status_code == 200, saved.text
    for _ in range(2):
        assert (await api.client.get("/llm/configs", headers=headers)).status_code == 200
    # The default limit (3) is spent; the chat limit, equal in value, is untouched.
    assert (await api.client.get("/llm/configs", headers=headers)).status_code == 429
    chat = await api.client.post("/llm/chat/openai", json={"message": "hi", "history": []},
                                 headers=headers)
    assert chat.status_code == 200, chat.text
    assert chat.headers["X-RateLimit-Remaining"] == "2"


async def test_equal_limits_count_separately_in_process(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_CHAT="3/minute", RATE_LIMIT_DEFAULT="3/minute") as api:
        assert not api.runtime.limiter.uses_redis
        await _spend_default_then_chat(api)


@pytest.mark.redis
async def test_equal_limits_count_separately_in_redis(
    make_api: AppFactory, redis_url: str
) -> None:
    async with make_api(REDIS_URL=redis_url, RATE_LIMIT_CHAT="3/minute",
                        RATE_LIMIT_DEFAULT="3/minute") as api:
        assert api.runtime.limiter.uses_redis
        await _spend_default_then_chat(api)
