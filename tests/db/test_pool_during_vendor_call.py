"""No pooled database connection is held while a vendor answers (issue 11, item 6): the chat
path reads, lets go of its connection, calls the vendor, then writes. Held in a hang by the fake
vendor, the pool has nothing checked out, on both chat routes, with and without a budget (whose
reservation is one more write before the call)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import AppFactory
from tests.fakes.vendor import FakeVendor

USER = 7301
SAMPLES = 20


@pytest.mark.parametrize("route", ["/llm/chat/openai", "/llm/chat/openai/stream"])
@pytest.mark.parametrize("budget", [{}, {"LLM_BUDGET_TOKENS_CLIENT": 100000}],
                         ids=["no-budget", "budget"])
async def test_the_pool_is_free_while_the_vendor_hangs(
    make_api: AppFactory, fake_vendor: FakeVendor, route: str, budget: dict[str, Any]
) -> None:
    async with make_api(**budget) as api:
        headers = api.auth(USER)
        saved = await api.client.post("/llm/config/openai", headers=headers,
                                      json={"apiKey": "sk-pool-test-123456"})
        assert saved.status_code == 200
        fake_vendor.set_behaviour("hang", provider="openai")
        pool = api.runtime.engine.pool
        chat = asyncio.create_task(
            api.client.post(route, headers=headers, json={"message": "hello"})
        )
        for _ in range(500):  # until the vendor has the request (at most 5 s)
            if fake_vendor.requests_for("openai"):
                break
            await asyncio.sleep(0.01)
        assert fake_vendor.requests_for("openai"), "the vendor never got the request"
        checked_out = []
        for _ in range(SAMPLES):
            checked_out.append(pool.checkedout())  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)
        assert not chat.done()  # every sample was taken while the vendor still hung
        assert checked_out == [0] * SAMPLES
        answer = await chat
        assert answer.status_code == 504
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
