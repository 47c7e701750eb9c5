"""/docs and /redoc load Swagger UI and ReDoc from the service itself, never from a CDN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from llm_service.app import DOCS_ASSETS_URL, create_app
from llm_service.settings import load_settings

PAGES = ("/docs", "/redoc")
_REFERENCE = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path_factory.mktemp("docs"), env="development")
    with TestClient(create_app(settings)) as client:
        yield client


def references(html: str) -> list[str]:
    return _REFERENCE.findall(html)


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_references_only_the_services_own_assets(client: TestClient, page: str) -> None:
    refs = references(client.get(page).text)
    assert refs and [ref for ref in refs if not ref.startswith(DOCS_ASSETS_URL + "/")] == []


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_names_no_other_host(client: TestClient, page: str) -> None:
    # Script text included: no font, script or style from anywhere but this origin.
    assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", client.get(page).text) == []


@pytest.mark.parametrize("page", PAGES)
def test_every_asset_a_docs_page_loads_is_served(client: TestClient, page: str) -> None:
    answers = {ref: client.get(ref) for ref in references(client.get(page).text)}
    bad = {ref: r.status_code for ref, r in answers.items() if r.status_code != 200}
    empty = [ref for ref, r in answers.items() if not r.content]
    assert (bad, empty) == ({}, [])


def test_swagger_bundle_is_the_packaged_file(client: TestClient) -> None:
    packaged = Path(str(resources.files("fastapi_offline"))) / "static" / "swagger-ui-bundle.js"
    served = client.get(f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js")
    assert (served.headers["content-type"].split(";")[0], served.content) == (
        "text/javascript",
        packaged.read_bytes(),
    )


def test_unknown_asset_is_a_contract_404(client: TestClient) -> None:
    response = client.get(f"{DOCS_ASSETS_URL}/nope.js")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
