"""The key check (`POST /llm/config/{provider}/test`): the vendor's list-models call, its
cheapest authenticated one, answered as ok / key rejected / no credit / wrong region /
unreachable within `KEY_CHECK_TIMEOUT_S`. It never writes anything: a failed check leaves the
saved key as it was."""

from __future__ import annotations

import asyncio
from typing import Any

from llm_service.providers.base import FailureKind, ProviderError
from llm_service.runtime import Runtime

KEY_CHECK_TIMEOUT_S = 4.5  # the whole check, other regions included: an answer in under 5 s


async def _list(runtime: Runtime, provider: str, api_key: str,
                region: str | None) -> list[str]:
    creds = runtime.providers.credentials(provider, api_key, region)
    return await runtime.providers[provider].list_models(creds)


async def check_key(runtime: Runtime, provider: str, api_key: str,
                    region: str | None) -> dict[str, Any]:
    """The check's answer: `result` (ok, key_rejected, no_credit, wrong_region, unreachable),
    a sentence, and on success how many models the key lists. A key rejected in its region is
    tried in the vendor's other catalogue regions: accepted there, it is `wrong_region`."""
    name = runtime.providers[provider].display_name
    try:
        async with asyncio.timeout(KEY_CHECK_TIMEOUT_S):
            try:
                models = await _list(runtime, provider, api_key, region)
                return {"success": True, "result": "ok", "models": len(models),
                        "message": f"{name} accepted the key: it lists {len(models)} models."}
            except ProviderError as exc:
                if exc.billing:
                    return {"success": True, "result": "no_credit",
                            "message": f"{name} accepted the key, but the account has no "
                            f"credit left or its plan does not cover this: add credit or check "
                            f"your plan with {name}."}
                if exc.kind is not FailureKind.AUTH:
                    raise
            catalog = runtime.catalog
            regions = catalog.regions(provider) if catalog.has_vendor(provider) else {}
            current = region or catalog.default_region(provider) if regions else None
            for other in regions:
                if other == current:
                    continue
                try:
                    await _list(runtime, provider, api_key, other)
                except ProviderError:
                    continue
                return {"success": True, "result": "wrong_region", "region": other,
                        "message": f"This key belongs to {name}'s {other} region, not "
                        f"{current}: choose the region {other} in the LLM settings."}
            return {"success": True, "result": "key_rejected",
                    "message": f"{name} rejected the key: check it and enter it again."}
    except (TimeoutError, ProviderError):
        return {"success": True, "result": "unreachable",
                "message": f"{name} could not be asked right now: try the check again in a "
                "moment."}
