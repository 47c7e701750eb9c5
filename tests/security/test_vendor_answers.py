"""Hostile vendor answers, from the fake vendor through the official SDKs, for all five vendors:
an answer past LLM_MAX_VENDOR_RESPONSE_BYTES is a 502 with a sentence (read no further, not
retried), and a key the vendor echoes transformed (upper-cased, base64, split) is scrubbed."""

from __future__ import annotations

import base64
import json

import pytest

from llm_service.providers.registry import provider_ids
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor
from tests.security.conftest import AppFactory

PROVIDERS = provider_ids()

# In no known key shape (no sk-, hf_, AIza prefix): only the overlap scrub can catch its echoes.
KEY = "CanaryQ7f3a9c2eDoNotLeak4d1bZ"
CAP = 65_536


def key_material(key: str) -> list[str]:
    """Every 8-character window of the key, upper-cased, and of its base64 encoding."""
    encoded = base64.b64encode(key.encode()).decode()
    return [form[i : i + 8] for form in (key, key.upper(), encoded)
            for i in range(len(form) - 7)]


def assert_no_key_material(*texts: str) -> None:
    for blob in texts:
        for piece in key_material(KEY):
            assert piece.lower() not in blob.lower(), f"{piece!r} leaked: {blob[:300]!r}"


async def configure(api: Api, provider: str) -> None:
    saved = await api.client.post(f"/llm/config/{provider}", json={"apiKey": KEY},
                                  headers=api.auth(1))
    assert saved.status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_transformed_key_echo_is_scrubbed(
    api: Api, fake_vendor: FakeVendor, service_logging: pytest.LogCaptureFixture, provider: str
) -> None:
    await configure(api, provider)
    fake_vendor.set_behaviour("echo_key", provider=provider)
    response = await api.client.post(f"/llm/chat/{provider}", json={"message": "hi"},
                                     headers=api.auth(1))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "provider_bad_request"
    assert "[redacted]" in body["error"]  # the vendor's reason is shown, its echo is not
    assert_no_key_material(response.text, service_logging.text)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_over_the_cap_is_502_and_not_retried(
    make_api: AppFactory, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    async with make_api(LLM_MAX_VENDOR_RESPONSE_BYTES=CAP) as api:
        await configure(api, provider)
        # One piece: the first streamed event is already over the cap.
        fake_vendor.set_behaviour("oversized", provider=provider, oversize_bytes=4 * CAP,
                                  pieces=1)
        route = f"/llm/chat/{provider}" + ("/stream" if stream else "")
        response = await api.client.post(route, json={"message": "hi"}, headers=api.auth(1))
        history = await api.client.get(f"/llm/history/{provider}", headers=api.auth(1))
    sentence = f"its answer is larger than {CAP} bytes (LLM_MAX_VENDOR_RESPONSE_BYTES)"
    if stream and response.status_code == 200:
        # Claude's stream starts with a message_start event: the stream was open when the
        # oversized piece came, so it ends with an `error` event, and no `done`.
        events = [json.loads(line[5:]) for line in response.text.splitlines()
                  if line.startswith("data:")]
        assert "event: done" not in response.text
        assert events[-1]["code"] == "provider_error" and sentence in events[-1]["error"]
        # A cut stream keeps what was said, marked interrupted (here: nothing of the reply).
        assert history.json()["history"][-1]["interrupted"] is True
    else:
        assert response.status_code == 502
        body = response.json()
        assert body["code"] == "provider_error"
        assert sentence in body["error"]
        assert history.json()["total"] == 0
    assert len(fake_vendor.requests_for(provider)) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_answer_under_the_cap_is_read(
    make_api: AppFactory, fake_vendor: FakeVendor, provider: str
) -> None:
    async with make_api(LLM_MAX_VENDOR_RESPONSE_BYTES=CAP) as api:
        await configure(api, provider)
        fake_vendor.set_behaviour("oversized", provider=provider, oversize_bytes=CAP // 2)
        response = await api.client.post(f"/llm/chat/{provider}", json={"message": "hi"},
                                         headers=api.auth(1))
    assert response.status_code == 200
    assert response.json()["response"].endswith("x" * 1000)
