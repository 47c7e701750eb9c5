"""GET /llm/configs, POST and DELETE /llm/config/{provider}: shapes, defaults, bounds, masking."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from llm_service.db.models import LLMConfig
from llm_service.providers.registry import catalog_of
from llm_service.settings import ConfigurationError, Settings
from tests.conftest import Api, make_settings


def load_settings_for(tmp_path: Path, catalogue: Path) -> Settings:
    return make_settings(tmp_path, "sqlite+aiosqlite:///:memory:",
                         LLM_MODEL_CATALOG_FILE=str(catalogue))

KEY = "sk-proj-abcdefghijklmnop1234"


async def save(api: Api, body: dict[str, Any], user: int = 1, provider: str = "openai") -> Any:
    return await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(user))


async def configs_of(api: Api, user: int = 1) -> dict[str, Any]:
    response = await api.client.get("/llm/configs", headers=api.auth(user))
    assert response.status_code == 200
    return response.json()["configs"]  # type: ignore[no-any-return]


async def stored_rows(api: Api) -> list[LLMConfig]:
    async with api.runtime.sessions() as session:
        return list(await session.scalars(select(LLMConfig).order_by(LLMConfig.id)))


async def test_no_configs_is_an_empty_object(api: Api) -> None:
    response = await api.client.get("/llm/configs", headers=api.auth(1))
    assert response.status_code == 200
    assert response.json() == {"configs": {}}


async def test_save_answers_the_contract_message(api: Api) -> None:
    response = await save(api, {"apiKey": KEY, "model": "gpt-4o", "temperature": 0.5,
                                "maxTokens": 100})
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Configuration saved"}


async def test_saved_config_is_listed_with_masked_key(api: Api) -> None:
    await save(api, {"apiKey": KEY, "model": "gpt-4o-mini", "temperature": 1.25,
                     "maxTokens": 300})
    listed = await configs_of(api)
    assert set(listed) == {"openai"}
    view = listed["openai"]
    assert {k: view[k] for k in ("model", "temperature", "maxTokens", "apiKey")} == {
        "model": "gpt-4o-mini", "temperature": 1.25, "maxTokens": 300, "apiKey": "sk-***1234"
    }
    assert view["createdAt"].endswith("Z") and view["updatedAt"].endswith("Z")


async def test_defaults_apply_when_only_the_key_is_given(api: Api) -> None:
    await save(api, {"apiKey": KEY}, provider="claude")
    view = (await configs_of(api))["claude"]
    assert (view["model"], view["temperature"], view["maxTokens"]) == (
        "claude-sonnet-5-5", 0.7, 2048
    )
    assert "modelStatus" not in view


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-6.2-sol"), ("gemini", "gemini-3.8-flash"),
     ("claude", "claude-sonnet-5-5"), ("qwen", "qwen4-max"),
     ("huggingface", "meta-llama/Llama-3.3-70B-Instruct")],
)
async def test_each_provider_gets_the_catalogues_current_default(
    api: Api, provider: str, model: str
) -> None:
    assert (await save(api, {"apiKey": KEY}, provider=provider)).status_code == 200
    assert (await configs_of(api))[provider]["model"] == model
    assert api.runtime.catalog.default_model(provider) == model


async def test_a_retired_model_shows_its_status_date_and_replacement(api: Api) -> None:
    await save(api, {"apiKey": KEY, "model": "claude-sonnet-4-5-20250929"}, provider="claude")
    await save(api, {"apiKey": KEY, "model": "gpt-6.2-sol"}, provider="openai")
    views = await configs_of(api)
    assert views["claude"]["modelStatus"] == {
        "status": "retired", "date": "2026-11-30", "replacement": "claude-sonnet-5-5",
    }
    assert "modelStatus" not in views["openai"]


async def test_a_deprecated_model_shows_its_announced_shutdown(api: Api) -> None:
    await save(api, {"apiKey": KEY, "model": "gpt-4o"})
    status = (await configs_of(api))["openai"]["modelStatus"]
    assert (status["status"], status["date"]) == ("deprecated", "2027-01-14")
    assert api.runtime.catalog.status("openai", status["replacement"],
                                      api.runtime.catalog.date).status == "current"


async def test_update_without_key_keeps_key_and_other_fields(api: Api) -> None:
    await save(api, {"apiKey": KEY, "model": "gpt-4o", "temperature": 0.3, "maxTokens": 500})
    before = (await stored_rows(api))[0]
    response = await save(api, {"model": "gpt-4.1"})
    assert response.status_code == 200
    after = (await stored_rows(api))[0]
    assert after.api_key_encrypted == before.api_key_encrypted
    assert (after.model, float(after.temperature), after.max_tokens) == ("gpt-4.1", 0.3, 500)


async def test_save_is_an_upsert_one_row_per_user_and_provider(api: Api) -> None:
    await save(api, {"apiKey": KEY})
    await save(api, {"apiKey": "sk-another-key-5678", "maxTokens": 10})
    rows = await stored_rows(api)
    assert len(rows) == 1
    assert rows[0].max_tokens == 10
    assert (await configs_of(api))["openai"]["apiKey"] == "sk-***5678"


async def test_key_is_required_on_creation(api: Api) -> None:
    response = await save(api, {"model": "gpt-4o"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    reason = "is required: there is no openai configuration to update yet"
    assert body["details"] == [{"field": "apiKey", "reason": reason}]
    assert body["error"] == f"Check the request: apiKey: {reason}."
    assert await stored_rows(api) == []


@pytest.mark.parametrize("field", ["apiKey", "model", "temperature", "maxTokens"])
async def test_explicit_null_is_refused(api: Api, field: str) -> None:
    await save(api, {"apiKey": KEY})
    response = await save(api, {field: None})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


async def test_unknown_fields_are_ignored_and_user_id_in_body_changes_nothing(api: Api) -> None:
    response = await save(api, {"apiKey": KEY, "userId": 2, "user_id": 2, "extra": [1]})
    assert response.status_code == 200
    assert await configs_of(api, user=2) == {}
    assert set(await configs_of(api, user=1)) == {"openai"}


INSIDE = [
    {"temperature": 0.0}, {"temperature": 2.0}, {"temperature": 1}, {"maxTokens": 1},
    {"maxTokens": 32000}, {"maxTokens": 100.0}, {"model": "m"}, {"model": "a" * 100},
    {"model": "org/Model-1.5_beta:latest"}, {"apiKey": "k" * 8}, {"apiKey": "k" * 512},
    {"apiKey": "!~" * 10},
]
OUTSIDE = [
    {"temperature": -0.01}, {"temperature": 2.01}, {"temperature": "0.7"}, {"temperature": True},
    {"maxTokens": 0}, {"maxTokens": 32001}, {"maxTokens": 100.5}, {"maxTokens": "100"},
    {"maxTokens": True},
    {"model": ""}, {"model": "a" * 101}, {"model": "gpt 4o"}, {"model": "../../etc?x=1"},
    {"model": "modèle"}, {"apiKey": "k" * 7}, {"apiKey": "k" * 513}, {"apiKey": "sk-with space1"},
    {"apiKey": "sk-tab\tkey123"}, {"apiKey": "sk-ключ-12345"}, {"apiKey": 12345678},
]


@pytest.mark.parametrize("fields", INSIDE, ids=repr)
async def test_bounds_just_inside_are_accepted(api: Api, fields: dict[str, Any]) -> None:
    body = {"apiKey": KEY, **fields}
    response = await save(api, body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fields", OUTSIDE, ids=repr)
async def test_bounds_just_outside_are_refused_and_nothing_stored(
    api: Api, fields: dict[str, Any]
) -> None:
    body = {"apiKey": KEY, **fields}
    response = await save(api, body)
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == next(iter(fields))
    assert await stored_rows(api) == []


async def test_temperature_is_stored_with_two_decimals(api: Api) -> None:
    await save(api, {"apiKey": KEY, "temperature": 0.123})
    assert (await configs_of(api))["openai"]["temperature"] == 0.12


@pytest.mark.parametrize(
    ("key", "masked"),
    [("sk-abcdefgh1234", "sk-***1234"), ("abcdefghijk", "***"), ("abcdefghijkl", "abc***ijkl")],
)
async def test_masking_shows_at_most_three_and_four(api: Api, key: str, masked: str) -> None:
    await save(api, {"apiKey": key})
    assert (await configs_of(api))["openai"]["apiKey"] == masked


async def test_stored_column_is_not_the_key(api: Api) -> None:
    await save(api, {"apiKey": KEY})
    row = (await stored_rows(api))[0]
    assert KEY not in row.api_key_encrypted
    assert row.api_key_encrypted.startswith("v1.")
    assert api.runtime.keyring.decrypt(row.api_key_encrypted, user_id=1, provider="openai") == KEY


async def test_validation_error_never_echoes_the_key(api: Api) -> None:
    secret = "sk-SECRET-canary-with space"
    response = await save(api, {"apiKey": secret})
    assert response.status_code == 422
    assert "canary" not in response.text


async def test_delete_answers_the_contract_message_and_removes_the_row(api: Api) -> None:
    await save(api, {"apiKey": KEY})
    response = await api.client.delete("/llm/config/openai", headers=api.auth(1))
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Configuration deleted"}
    assert await configs_of(api) == {}


async def test_delete_without_config_is_not_configured(api: Api) -> None:
    response = await api.client.delete("/llm/config/gemini", headers=api.auth(1))
    assert response.status_code == 404
    assert response.json()["code"] == "not_configured"


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_unknown_provider_is_404(api: Api, method: str) -> None:
    response = await api.client.request(
        method, "/llm/config/mistral", json={"apiKey": KEY}, headers=api.auth(1)
    )
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_provider"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null", b"{not json"])
async def test_body_that_is_not_a_json_object_is_422(api: Api, body: bytes) -> None:
    response = await api.client.post(
        "/llm/config/openai", content=body,
        headers={**api.auth(1), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_body_over_the_limit_is_413(api: Api) -> None:
    body = b'{"apiKey": "' + b"k" * api.settings.max_body_bytes + b'"}'
    response = await api.client.post("/llm/config/openai", content=body, headers=api.auth(1))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_chunked_body_over_the_limit_is_413(api: Api) -> None:
    chunk = b"k" * 65536

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"apiKey": "'
        for _ in range(api.settings.max_body_bytes // len(chunk) + 1):
            yield chunk
        yield b'"}'

    response = await api.client.post("/llm/config/openai", content=chunks(), headers=api.auth(1))
    assert response.status_code == 413


async def test_checks_run_in_contract_order(api: Api) -> None:
    huge = b"x" * (api.settings.max_body_bytes + 1)
    no_auth = await api.client.post("/llm/config/nope", content=huge)
    assert no_auth.status_code == 401
    bad_provider = await api.client.post("/llm/config/nope", content=huge, headers=api.auth(1))
    assert bad_provider.status_code == 404
    too_big = await api.client.post("/llm/config/openai", content=huge, headers=api.auth(1))
    assert too_big.status_code == 413


async def test_an_operator_catalogue_sets_defaults_and_prices(
    api: Api, make_api: Any, tmp_path: Path
) -> None:
    raw = json.loads(resources.files("llm_service").joinpath("data/models.json").read_text())
    raw["vendors"]["openai"]["defaultModel"] = "gpt-6-sol"
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(raw))
    async with make_api(LLM_MODEL_CATALOG_FILE=str(path)) as own:
        assert (await save(own, {"apiKey": KEY})).status_code == 200
        assert (await configs_of(own))["openai"]["model"] == "gpt-6-sol"
        assert own.runtime.catalog.default_model("openai") == "gpt-6-sol"


async def test_the_default_model_setting_wins_over_the_catalogue(
    api: Api, make_api: Any
) -> None:
    async with make_api(LLM_QWEN_DEFAULT_MODEL="qwen-plus") as own:
        assert (await save(own, {"apiKey": KEY}, provider="qwen")).status_code == 200
        assert (await configs_of(own))["qwen"]["model"] == "qwen-plus"


def test_a_wrong_catalogue_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text('{"date": "2026-12-01"}')
    with pytest.raises(ConfigurationError, match=r"model catalogue .*catalogue.json is refused"):
        catalog_of(load_settings_for(tmp_path, path))
