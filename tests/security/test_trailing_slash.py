"""A trailing slash is an unknown path: the contract's 404, never a 307 whose Location would be
built from the client's Host header."""

from __future__ import annotations

import pytest

from tests.conftest import Api


@pytest.mark.parametrize("path", ["/llm/configs/", "/health/", "/llm/history/openai/"])
async def test_a_trailing_slash_is_not_found_not_a_redirect(api: Api, path: str) -> None:
    response = await api.client.get(path, headers={**api.auth(1), "Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    body = response.json()
    assert body == {"success": False, "error": "Nothing here: check the URL.",
                    "code": "not_found", "requestId": response.headers["X-Request-ID"]}


async def test_the_path_without_the_slash_still_answers(api: Api) -> None:
    assert (await api.client.get("/llm/configs", headers=api.auth(1))).status_code == 200
