"""Metrics labels come from bounded sets (a vendor's or a client's names never become a label), and
production refuses `/metrics` on the public port without a token."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_service import cli
from llm_service.metrics import model_label
from llm_service.settings import ConfigurationError, load_settings
from tests.conftest import Api
from tests.security.conftest import AppFactory

KEY = "sk-metrics-labels-0001"
PG = "postgresql://u:p@db:5432/llm"


def labels(text: str, family: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for metric in text_string_to_metric_families(text) if metric.name == family
        for sample in metric.samples if label in sample.labels
    }


async def chat_with_model(api: Api, model: str) -> None:
    saved = await api.client.post("/llm/config/openai", json={"apiKey": KEY, "model": model},
                                  headers=api.auth(1))
    assert saved.status_code == 200, saved.text
    chat = await api.client.post("/llm/chat/openai", json={"message": "hi", "history": []},
                                 headers=api.auth(1))
    assert chat.status_code == 200, chat.text
    assert chat.json()["model"] == model  # the fake vendor reports the model it was asked for


async def test_model_labels_are_known_ids_or_other(make_api: AppFactory) -> None:
    async with make_api(LLM_METRICS_ENABLED=True) as api:
        await chat_with_model(api, "gpt-4o-2099-01-01")  # a snapshot the catalogue does not list
        await chat_with_model(api, "vendor-chosen-name-7f3a")
        await chat_with_model(api, "vendor-chosen-name-9c1e")
        text = (await api.client.get("/metrics")).text
    assert labels(text, "llm_tokens", "model") == {"gpt-4o", "other"}
    assert labels(text, "llm_cost_usd", "model") == {"gpt-4o"}
    assert "vendor-chosen-name" not in text


async def test_unknown_methods_share_one_label(make_api: AppFactory) -> None:
    async with make_api(LLM_METRICS_ENABLED=True) as api:
        for method in ("PURGE", "X-ANYTHING-1", "X-ANYTHING-2"):
            response = await api.client.request(method, "/llm/configs", headers=api.auth(1))
            assert response.status_code == 405
        text = (await api.client.get("/metrics")).text
    assert labels(text, "llm_http_requests", "method") == {"other"}  # /metrics counts after
    assert "X-ANYTHING" not in text


def test_model_label_prefers_the_longest_known_prefix() -> None:
    known = {"gpt-4o", "gpt-4o-mini"}
    assert model_label(known, "gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert model_label(known, "gpt-4o") == "gpt-4o"
    assert model_label(known, "gpt-4") == "other"


def production(tmp_path: Path, **overrides: object) -> dict[str, object]:
    return {"LLM_ENV": "production", "LLM_DATA_DIR": str(tmp_path), "DATABASE_URL": PG,
            "JWT_SECRET": "s" * 32, "ENCRYPTION_KEY": "ab" * 32, **overrides}


@pytest.mark.parametrize("token", [None, "", "short-token"])
def test_production_refuses_metrics_without_a_token(tmp_path: Path, token: str | None) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(**production(tmp_path, LLM_METRICS_ENABLED=True, LLM_METRICS_TOKEN=token))
    assert str(refused.value).startswith("LLM_METRICS_TOKEN must be set")
    assert "\n" not in str(refused.value)


def test_production_serves_metrics_behind_a_token(tmp_path: Path) -> None:
    settings = load_settings(**production(tmp_path, LLM_METRICS_ENABLED=True,
                                          LLM_METRICS_TOKEN="t" * 16))
    assert settings.metrics_enabled
    assert not load_settings(**production(tmp_path)).metrics_enabled  # off needs no token


def test_serve_exits_with_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in production(tmp_path, LLM_METRICS_ENABLED="true").items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("LLM_METRICS_TOKEN", raising=False)
    assert cli.main(["serve"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "LLM_METRICS_TOKEN" in lines[0]


def test_development_serves_metrics_without_a_token(tmp_path: Path) -> None:
    assert load_settings(LLM_DATA_DIR=str(tmp_path), LLM_METRICS_ENABLED=True).metrics_enabled
