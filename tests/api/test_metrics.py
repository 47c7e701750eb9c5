"""Prometheus metrics at /metrics: off by default, optional bearer token, the figures counted."""

from __future__ import annotations

from tests.conftest import Api, AppFactory
from tests.fakes.vendor import FakeVendor


async def test_metrics_are_off_by_default(api: Api) -> None:
    response = await api.client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_metrics_count_requests_vendors_usage_and_rejections(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    async with make_api(LLM_METRICS_ENABLED=True, RATE_LIMIT_CHAT="2/minute") as api:
        await api.client.post("/llm/config/openai", json={"apiKey": "sk-metrics-key-1",
                                                          "model": "gpt-4o"},
                              headers=api.auth(1))
        assert (await api.client.post("/llm/chat/openai", json={"message": "one two"},
                                      headers=api.auth(1))).status_code == 200
        fake_vendor.set_behaviour("auth", provider="openai")
        assert (await api.client.post("/llm/chat/openai", json={"message": "x"},
                                      headers=api.auth(1))).status_code == 400
        assert (await api.client.post("/llm/chat/openai", json={"message": "x"},
                                      headers=api.auth(1))).status_code == 429
        text = (await api.client.get("/metrics")).text
    assert 'llm_http_requests_total{method="POST",route="/llm/chat/{provider}",status="200"} 1.0' \
        in text
    assert 'llm_http_requests_total{method="POST",route="/llm/chat/{provider}",status="429"} 1.0' \
        in text
    assert 'llm_vendor_errors_total{kind="auth",provider="openai"} 1.0' in text
    assert 'llm_vendor_call_duration_seconds_count{provider="openai"} 2.0' in text
    assert 'llm_tokens_total{direction="input",model="gpt-4o",provider="openai"} 2.0' in text
    assert 'llm_cost_usd_total{model="gpt-4o",provider="openai"}' in text
    assert 'llm_rejections_total{reason="rate_limited"} 1.0' in text
    assert "sk-metrics-key-1" not in text


async def test_metrics_token_is_required_when_set(make_api: AppFactory) -> None:
    async with make_api(LLM_METRICS_ENABLED=True, LLM_METRICS_TOKEN="scrape-secret-123") as api:
        without = await api.client.get("/metrics")
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await api.client.get("/metrics",
                                     headers={"Authorization": "Bearer scrape-secret-123"})
    assert (without.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert right.headers["content-type"].startswith("text/plain")
