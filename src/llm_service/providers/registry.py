"""The one list of vendors (`VENDORS`), the shared HTTP pool, and the one way a vendor is called:
a total deadline of `LLM_UPSTREAM_TIMEOUT_S` with retries (exponential backoff with jitter) on
vendor 5xx and connection failures only, never after a 4xx, a 429, an unreadable answer or a
timeout, so a bad key costs exactly one call.

Everything that names vendors derives from `VENDORS`: the provider ids in URLs, the
`LLM_<VENDOR>_BASE_URL` / `LLM_<VENDOR>_DEFAULT_MODEL` overrides, the OpenAPI enum, the error
sentence listing providers, and the fake vendor's routes. Adding a vendor: one module in this
package exporting a `VendorSpec` as `SPEC` (an OpenAI-compatible one needs no adapter code); it is
found at import, so no other file names it.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from urllib.parse import urlsplit

import httpx2
import openai
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from llm_service import providers
from llm_service.catalog import Catalog, load_catalog
from llm_service.providers.base import (
    ChatRequest,
    Completion,
    Credentials,
    FailureKind,
    Provider,
    ProviderError,
    StreamEvent,
    VendorAnswerTooLarge,
    VendorSpec,
)
from llm_service.retries import retried
from llm_service.settings import Settings


def _too_large(limit: int) -> VendorAnswerTooLarge:
    return VendorAnswerTooLarge(
        f"its answer is larger than {limit} bytes (LLM_MAX_VENDOR_RESPONSE_BYTES)"
    )


class _CappedStream(httpx2.AsyncByteStream):
    """A response body that raises VendorAnswerTooLarge once more than `limit` bytes arrived,
    so a hostile or broken vendor cannot fill the process's memory."""

    def __init__(self, inner: httpx2.AsyncByteStream, limit: int) -> None:
        self._inner, self._limit = inner, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._inner:
            received += len(chunk)
            if received > self._limit:
                raise _too_large(self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedTransport(httpx2.AsyncBaseTransport):
    """Wraps the pool's transport: a declared Content-Length over the limit is refused before the
    body is read, and any body (chunked, streamed) is cut at the limit while it is read."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int) -> None:
        self._inner, self._limit = inner, limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            await response.aclose()
            raise _too_large(self._limit)
        response.stream = _CappedStream(response.stream, self._limit)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _VendorClient(openai.DefaultAioHttpClient):  # type: ignore[misc,valid-type]
    """The SDKs' aiohttp client with every transport (direct or through a proxy) capped."""

    def __init__(self, *, max_response_bytes: int, **kwargs: object) -> None:
        self._max_response_bytes = max_response_bytes
        super().__init__(**kwargs)

    def _init_transport(self, *args: object, **kwargs: object) -> httpx2.AsyncBaseTransport:
        return _CappedTransport(super()._init_transport(*args, **kwargs),
                                self._max_response_bytes)

    def _init_proxy_transport(self, *args: object, **kwargs: object) -> httpx2.AsyncBaseTransport:
        return _CappedTransport(super()._init_proxy_transport(*args, **kwargs),
                                self._max_response_bytes)
def _discover() -> dict[str, VendorSpec]:
    """Every module of this package that exports a `SPEC`, in the order the specs give."""
    specs = []
    for module in pkgutil.iter_modules(providers.__path__):
        spec = getattr(importlib.import_module(f"{providers.__name__}.{module.name}"), "SPEC", None)
        if isinstance(spec, VendorSpec):
            specs.append(spec)
    return {spec.id: spec for spec in sorted(specs, key=lambda spec: (spec.order, spec.id))}


# The vendors, in the order they are listed to people.
VENDORS: dict[str, VendorSpec] = _discover()


def provider_ids() -> tuple[str, ...]:
    return tuple(VENDORS)


@contextmanager
def registered(spec: VendorSpec) -> Iterator[VendorSpec]:
    """`spec` in `VENDORS` for the duration (apps made meanwhile serve it); for tests and
    plugins that add a vendor without changing this module."""
    if spec.id in VENDORS:
        raise ValueError(f"vendor {spec.id!r} is already registered")
    VENDORS[spec.id] = spec
    try:
        yield spec
    finally:
        VENDORS.pop(spec.id, None)


def base_url(settings: Settings, spec: VendorSpec) -> str:
    """The operator's `LLM_<VENDOR>_BASE_URL`, else the spec's."""
    return (settings.vendor_setting(spec.id, "base_url") or spec.default_base_url).rstrip("/")


def catalog_of(settings: Settings) -> Catalog:
    """The model catalogue the settings name (`LLM_MODEL_CATALOG_FILE`, else the packaged one)."""
    return load_catalog(settings.model_catalog_file)


def default_model(settings: Settings, provider_id: str) -> str:
    """The operator's `LLM_<VENDOR>_DEFAULT_MODEL`, else the catalogue's current default, else
    (a vendor the catalogue does not list) the spec's."""
    override = settings.vendor_setting(provider_id, "default_model")
    if override:
        return override
    catalog = catalog_of(settings)
    if catalog.has_vendor(provider_id):
        return catalog.default_model(provider_id)
    return VENDORS[provider_id].default_model


def make_http_client(settings: Settings) -> httpx2.AsyncClient:
    """The one connection pool every vendor call goes through: an `httpx2.AsyncClient` (what all
    three SDKs accept) on aiohttp's transport, the `openai[aiohttp]` extra. Measured on the
    benchmark's machine, httpx2's own pool spends about 0.4 ms more CPU per request, and more as
    connections grow (it checks every idle connection on each request). Every answer is capped
    at `LLM_MAX_VENDOR_RESPONSE_BYTES` (a 502 `provider_error` above it)."""
    return _VendorClient(
        max_response_bytes=settings.max_vendor_response_bytes,
        timeout=httpx2.Timeout(
            settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s
        ),
        limits=httpx2.Limits(max_connections=512, max_keepalive_connections=128),
        follow_redirects=False,
    )


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class ProviderRegistry:
    """One adapter per registered vendor, made once, and the endpoint each call goes to."""

    def __init__(self, settings: Settings, http: httpx2.AsyncClient) -> None:
        timeout = settings.upstream_timeout_s
        # The one place adapters get the catalogue their request rules come from.
        self.catalog = catalog_of(settings)
        self._adapters = {id_: spec.adapter(spec, http, timeout, self.catalog)
                          for id_, spec in VENDORS.items()}
        self._base_urls = {id_: base_url(settings, spec) for id_, spec in VENDORS.items()}
        self._overridden = {id_ for id_ in VENDORS if settings.vendor_setting(id_, "base_url")}
        self._timeout_s = timeout
        self._attempts = settings.upstream_max_retries + 1

    def __getitem__(self, provider_id: str) -> Provider:
        return self._adapters[provider_id]

    def credentials(self, provider_id: str, api_key: str,
                    region: str | None = None) -> Credentials:
        """The user's key and the endpoint: the operator's (or the vendor's default) without a
        region; with one, the catalogue's origin of that region plus the vendor's API path.
        Behind an operator's `LLM_<VENDOR>_BASE_URL` (a proxy or test double) a region is
        served under `/<region>` of it. A region the catalogue does not name is refused (the
        saved configuration was checked; a catalogue changed since then lands here), so no
        request leaves for an address the catalogue does not name."""
        if region is None:
            return Credentials(api_key=api_key, base_url=self._base_urls[provider_id])
        origin = (self.catalog.region_url(provider_id, region)
                  if self.catalog.has_vendor(provider_id) else None)
        if origin is None:
            raise ProviderError(FailureKind.BAD_REQUEST,
                                detail=f"the region {region!r} is not one it offers")
        if provider_id in self._overridden:
            return Credentials(api_key=api_key,
                               base_url=f"{self._base_urls[provider_id]}/{region}")
        path = urlsplit(VENDORS[provider_id].default_base_url).path.rstrip("/")
        return Credentials(api_key=api_key, base_url=origin + path)

    def _retrying(self, spent_s: float) -> AsyncRetrying:
        return AsyncRetrying(
            # No retry whose backoff would end past the deadline: the vendor's own error is
            # then more useful than a timeout.
            stop=stop_after_attempt(self._attempts)
            | stop_before_delay(self._timeout_s - spent_s),
            wait=wait_exponential_jitter(initial=0.2, max=2.0, jitter=0.2),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )

    async def complete(self, provider_id: str, request: ChatRequest, api_key: str) -> Completion:
        adapter = self._adapters[provider_id]
        creds = self.credentials(provider_id, api_key, request.region)
        await adapter.load()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await retried(partial(adapter.complete, request, creds),
                                     retryable=_is_retryable, retrying=self._retrying)
        except TimeoutError:
            raise ProviderError(FailureKind.TIMEOUT) from None

    async def open_stream(
        self, provider_id: str, request: ChatRequest, api_key: str
    ) -> tuple[StreamEvent | None, AsyncIterator[StreamEvent]]:
        """Start a stream and wait for its first event, with the same deadline and retries as
        `complete` (nothing has reached the client yet, so a retry is invisible). Returns the
        first event (None for an empty stream) and the open stream; the caller closes it."""
        adapter = self._adapters[provider_id]
        creds = self.credentials(provider_id, api_key, request.region)
        await adapter.load()

        async def attempt() -> tuple[StreamEvent | None, AsyncIterator[StreamEvent]]:
            events = adapter.stream(request, creds)
            try:
                return await anext(events), events
            except StopAsyncIteration:
                return None, events
            except BaseException:
                await events.aclose()  # type: ignore[attr-defined]
                raise

        try:
            async with asyncio.timeout(self._timeout_s):
                return await retried(attempt, retryable=_is_retryable,
                                     retrying=self._retrying)
        except TimeoutError:
            raise ProviderError(FailureKind.TIMEOUT) from None
