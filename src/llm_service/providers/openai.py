"""OpenAI through the official `openai` SDK, on the shared httpx2 pool: the OpenAI-compatible wire
format of `openai_compat`, sent by the SDK.

One `AsyncOpenAI` is made at start-up (with a placeholder key) and serves every user: each call
sends its user's key in that request's `Authorization` header, to the call's endpoint (an absolute
URL wins over the client's base URL). Per-key copies made with `with_options` would share the pool
too, but each copy detects the platform again in a worker thread on its first request: several
milliseconds per chat.

Both call paths go through the SDK's generic `post` (its documented way to make any request) with
`cast_to=httpx2.Response`: the SDK still builds the headers and raises its typed errors, but the
body is our orjson bytes and the answer (or the stream, left unread with `stream=True`) is read by
`openai_compat`. `chat.completions.create` walks every message through the SDK's type-hint
transforms, which cost about a millisecond of CPU per chat on a long history. The SDK's own
retries are off: the caller retries only what may be retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx2
import openai

from llm_service.catalog import Catalog
from llm_service.jsonutil import dumps
from llm_service.providers.base import Credentials, VendorSpec, transport_failure
from llm_service.providers.openai_compat import OpenAICompatibleProvider, http_failure


class OpenAIProvider(OpenAICompatibleProvider):
    def __init__(self, spec: VendorSpec, http: httpx2.AsyncClient, timeout_s: float,
                 catalog: Catalog | None = None) -> None:
        super().__init__(spec, http, timeout_s, catalog)
        self._client = openai.AsyncOpenAI(
            api_key="unset",
            base_url=spec.default_base_url,
            http_client=http,
            max_retries=0,
            timeout=timeout_s,
        )

    @contextmanager
    def _failures(self, creds: Credentials) -> Iterator[None]:
        try:
            yield
        except openai.APIStatusError as exc:
            raise http_failure(exc.response, creds.api_key) from None
        except openai.APIConnectionError as exc:  # timeouts included
            raise transport_failure(exc) from None
        except httpx2.HTTPError as exc:  # a dropped stream comes through raw
            raise transport_failure(exc) from None

    @asynccontextmanager
    async def _send(
        self, body: dict[str, Any], creds: Credentials, *, stream: bool
    ) -> AsyncIterator[httpx2.Response]:
        headers = {"Authorization": f"Bearer {creds.api_key}", "Content-Type": "application/json"}
        response = await self._client.post(
            creds.base_url + self.path,
            cast_to=httpx2.Response,
            content=dumps(body),
            options={"headers": headers},
            stream=stream,
        )
        try:
            yield response
        finally:
            await response.aclose()


SPEC = VendorSpec(
    id="openai",
    display_name="OpenAI",
    default_base_url="https://api.openai.com/v1",
    default_model="gpt-6.2-sol",
    adapter=OpenAIProvider,
    wire="openai",
    options={"max_tokens_field": "max_completion_tokens", "developer_role": True},
    order=10,
)
