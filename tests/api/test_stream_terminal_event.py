"""Every stream that started ends with a terminal event (`done` or `error`), even when storing
its reply fails for a reason other than an outage (outages end with `done` and a warning:
tests/db/test_outage_mid_chat.py)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_service.services import history
from tests.conftest import Api, sse_events
from tests.fakes.vendor import FakeVendor


@pytest.mark.parametrize("vendor", ["ok", "stream_error"])
async def test_a_stream_whose_reply_cannot_be_stored_still_ends_with_an_error_event(
    api: Api, fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    response = await api.client.post("/llm/config/openai", json={"apiKey": "sk-terminal-key"},
                                     headers=api.auth(1))
    assert response.status_code == 200
    fake_vendor.set_behaviour(vendor, provider="openai")

    async def broken_store(*_: Any, **__: Any) -> list[int]:
        raise ValueError("a bug in storing")

    monkeypatch.setattr(history, "store_messages", broken_store)
    response = await api.client.post("/llm/chat/openai/stream", json={"message": "Hi"},
                                     headers=api.auth(1))
    events = sse_events(response.text)
    assert response.status_code == 200
    assert [name for name, _ in events].count("delta") >= 1
    assert events[-1][0] == "error"
    expected = "internal_error" if vendor == "ok" else "provider_error"
    assert events[-1][1]["code"] == expected
    assert events[-1][1]["requestId"] == response.headers["X-Request-ID"]
    assert "a bug in storing" not in response.text
