"""Schemathesis against the service's own OpenAPI document, with a valid token (issue 5, item 5).

Every operation is fuzzed with data generated from the schema (valid and invalid): no answer is a
5xx, and every answer conforms to the schema (status code documented, content type, body,
headers). The service runs in uvicorn on 127.0.0.1 in a thread of its own with its own lifespan
(the shared test app lives on the test session's event loop), on each database backend, with
every vendor pointed at the fake vendor: the chat operation never reaches the internet.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from llm_service.app import create_app
from llm_service.providers.registry import provider_ids
from llm_service.security.jwt import issue_token
from llm_service.settings import Settings
from tests.conftest import TEST_UPSTREAM_TIMEOUT_S, make_settings, vendor_settings
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()

USER_ID = 1


def backend_of(database_url: str) -> str:
    return "postgres" if database_url.startswith("postgresql") else "sqlite"


class Served:
    """The service in uvicorn on a free port of 127.0.0.1, lifespan included."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), lifespan="on", log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture(scope="module")
def served(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, fake_vendor: FakeVendor
) -> Iterator[Served]:
    settings = spec_settings(tmp_path_factory.mktemp("fuzz"), database_url, fake_vendor)
    with Served(settings) as service:
        yield service


@pytest.fixture
def auth_headers(served: Served) -> dict[str, str]:
    token = issue_token(served.settings, user_id=USER_ID, role="CLIENT", ttl_s=3600)
    return {"Authorization": f"Bearer {token}"}


def spec_settings(data_dir: Path, database_url: str, fake: FakeVendor | None = None) -> Settings:
    return make_settings(
        data_dir,
        database_url,
        LLM_UPSTREAM_TIMEOUT_S=TEST_UPSTREAM_TIMEOUT_S,
        RATE_LIMIT_CHAT="1000000/hour",
        RATE_LIMIT_DEFAULT="1000000/hour",
        LLM_MAX_CONCURRENT_CHATS_PER_USER=100,
        **(vendor_settings(fake) if fake else {}),
    )


# The document is what the app describes of itself; building it needs no lifespan. The served
# copy is checked against it below. (schemathesis.pytest.from_fixture would load it from the
# running service, but schemathesis 4.32's lazy loader reads `Node._nodeid`, which pytest 9.2 no
# longer has.)
with tempfile.TemporaryDirectory() as _spec_dir:
    SPEC = create_app(spec_settings(Path(_spec_dir), "sqlite+aiosqlite:///unused.db")).openapi()
schema = schemathesis.openapi.from_dict(SPEC)

# What the fuzzing reached, per backend: a later test checks every operation was run and the
# chat operations got answers from the (fake) vendor. Operations whose fuzzing failed (and so
# stopped early) are noted, not judged twice.
REACHED: dict[str, dict[str, set[int]]] = {}
FAILED: dict[str, set[str]] = {}


@schema.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    """Half of the cases name a real provider, or almost every case would stop at 404."""
    real = st.fixed_dictionaries({"provider": st.sampled_from(PROVIDERS)})
    return st.one_of(strategy, real) if "provider" in context.operation.path else strategy


@pytest.fixture
def seeded(served: Served, auth_headers: dict[str, str]) -> Served:
    assert httpx2.get(f"{served.base_url}/openapi.json").json() == SPEC
    # A configuration of every provider, so the chat operation reaches the (fake) vendor.
    for provider in PROVIDERS:
        response = httpx2.post(
            f"{served.base_url}/llm/config/{provider}",
            json={"apiKey": f"sk-fuzz-{provider}-key"},
            headers=auth_headers,
        )
        assert response.status_code == 200, response.text
    return served


def refused_region(case: Any, response: Any) -> bool:
    """The regions a vendor offers are the catalogue's, per vendor: a schema-valid region name
    the vendor does not offer is 422 on `region`. Only that refusal is excused."""
    if "/llm/config/" not in case.operation.path or response.status_code != 422:
        return False
    details = response.json().get("details", [])
    return bool(details) and all(d.get("field") == "region" and "is unknown" in d.get("reason", "")
                                 for d in details)


def refused_period(case: Any, response: Any) -> bool:
    """JSON Schema cannot relate `from` to `to`: a usage period over 366 days (or ending on
    9999-12-31) is 422 although each date alone is schema-valid. Only that refusal is excused."""
    if "/usage" not in case.operation.path or response.status_code != 422:
        return False
    reasons = {d.get("reason") for d in response.json().get("details", [])}
    return bool(reasons & {"the period is longer than 366 days", "after the last usable day"})


def refused_cursor(case: Any, response: Any) -> bool:
    """A list cursor is opaque: a schema-valid string the list never gave is 422 on `cursor`.
    Only that refusal is excused."""
    if case.operation.path != "/llm/conversations" or response.status_code != 422:
        return False
    return [d.get("field") for d in response.json().get("details", [])] == ["cursor"]


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_conforms_to_the_schema(
    case: Any,
    seeded: Served,
    auth_headers: dict[str, str],
    database_url: str,
    fake_vendor: FakeVendor,
) -> None:
    vendor_calls = len(fake_vendor.requests)
    response = case.call(base_url=seeded.base_url, headers=auth_headers)
    REACHED.setdefault(backend_of(database_url), {}).setdefault(case.operation.label, set()).add(
        response.status_code
    )
    try:
        if case.operation.path.startswith("/llm/chat/") and response.status_code == 200:
            assert len(fake_vendor.requests) > vendor_calls, "a chat answered without the vendor"
        excused = (refused_period(case, response) or refused_region(case, response)
                   or refused_cursor(case, response))
        excluded = [positive_data_acceptance] if excused else []
        case.validate_response(response, headers=auth_headers, excluded_checks=excluded)
    except BaseException:
        FAILED.setdefault(backend_of(database_url), set()).add(case.operation.label)
        raise


def test_fuzzing_reached_every_operation_and_the_fake_vendor(
    served: Served, database_url: str, request: pytest.FixtureRequest
) -> None:
    backend = backend_of(database_url)
    fuzzed = [
        item
        for item in request.session.items
        if item.name.startswith("test_every_operation_conforms_to_the_schema")
        and f"[{backend}]" in item.nodeid
    ]
    if not fuzzed:
        pytest.skip("the fuzz test of this backend was not selected")
    reached = REACHED.get(backend, {})
    operations = {
        f"{method.upper()} {path}"
        for path, ops in SPEC["paths"].items() for method in ops
    }
    assert set(reached) == operations
    for chat in ("POST /llm/chat/{provider}", "POST /llm/chat/{provider}/stream"):
        if chat in FAILED.get(backend, set()):
            continue  # its own failure is the finding; it stopped before it could reach 200
        assert 200 in reached[chat], (chat, reached[chat])


# Found by the fuzzing above (hypothesis finds it in some runs only): pinned here.
def test_a_huge_history_offset_is_not_a_server_error(
    served: Served, auth_headers: dict[str, str]
) -> None:
    response = httpx2.get(
        f"{served.base_url}/llm/history/openai",
        params={"limit": 50, "offset": 10**25},
        headers=auth_headers,
    )
    assert response.status_code in (200, 422), response.text
