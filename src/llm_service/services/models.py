"""The models a user's key can call (`GET /llm/models/{provider}`): the vendor's list-models
answer, cached per user and key for `MODELS_CACHE_S`, joined with the model catalogue (price,
limits, status, capabilities); without a saved key, or when the vendor cannot be asked, the
catalogue's list."""

from __future__ import annotations

import time
from typing import Any

from llm_service.catalog import ModelInfo
from llm_service.providers.base import ProviderError
from llm_service.runtime import Runtime

MODELS_CACHE_S = 300.0
_MAX_CACHED = 10_000  # entries; the oldest go first
_cache: dict[tuple[int, str, str], tuple[float, list[str]]] = {}


def _price(value: Any) -> float | None:
    return None if value is None else float(value)


def model_view(info: ModelInfo | None, model_id: str) -> dict[str, Any]:
    if info is None:
        return {"id": model_id, "listed": False}
    caps = info.capabilities
    return {
        "id": model_id, "listed": info.listed, "status": info.status,
        "shutdown": info.shutdown.isoformat() if info.shutdown else None,
        "replacement": info.replacement, "input": _price(info.input),
        "output": _price(info.output), "cachedInput": _price(info.cached_input),
        "contextWindow": info.context_window, "maxOutput": info.max_output,
        "capabilities": {"temperature": caps.temperature, "vision": caps.vision,
                         "pdf": caps.pdf,
                         "reasoning": caps.reasoning.control if caps.reasoning else None},
    }


def catalogue_models(runtime: Runtime, provider: str) -> list[dict[str, Any]]:
    catalog = runtime.catalog
    if not catalog.has_vendor(provider):
        return []
    return [model_view(info, info.id) for info in catalog.models(provider)]


async def key_models(runtime: Runtime, user_id: int, provider: str, api_key: str,
                     region: str | None, cache_key: str) -> list[dict[str, Any]] | None:
    """The vendor's list for the key, joined with the catalogue; None when it cannot be had."""
    entry = (user_id, provider, cache_key)
    now = time.monotonic()
    cached = _cache.get(entry)
    if cached is not None and now - cached[0] < MODELS_CACHE_S:
        ids = cached[1]
    else:
        try:
            creds = runtime.providers.credentials(provider, api_key, region)
            ids = await runtime.providers[provider].list_models(creds)
        except ProviderError:
            return None
        if len(_cache) >= _MAX_CACHED:
            _cache.pop(next(iter(_cache)))
        _cache[entry] = (now, ids)
    return [model_view(runtime.catalog.model(provider, i), i) for i in ids]
