"""Anthropic Claude through the official `anthropic` SDK, on the shared httpx2 pool.

One `AsyncAnthropic` is made at start-up and serves every user: each call sends its user's key in
that request's `Authorization` header (the 2.x SDK's scheme), so no client is copied per call.
The 2.x SDK (Messages API version 2026-10-21) takes no `temperature`: the configured temperature
is not sent to Claude. Claude wants the conversation to start with a user turn and alternate, so
leading assistant turns are dropped and consecutive turns of one role are joined.
"""

from __future__ import annotations

import anthropic
import httpx2

from llm_service.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    kind_for_status,
    merge_turns,
    retry_after_seconds,
    scrub,
)


def _vendor_message(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return exc.message


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


class ClaudeProvider(Provider):
    id = "claude"
    display_name = "Anthropic Claude"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient, timeout_s: float) -> None:
        self._client = anthropic.AsyncAnthropic(
            api_key="unset",
            base_url=base_url,
            http_client=http_client,
            max_retries=0,
            timeout=timeout_s,
        )

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        turns = merge_turns(request.messages)
        while turns and turns[0].role == "assistant":
            turns.pop(0)
        try:
            answer = await self._client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=[{"role": t.role, "content": t.content} for t in turns],
                extra_headers=_auth(api_key),
            )
        except anthropic.APITimeoutError:
            raise ProviderError(FailureKind.TIMEOUT) from None
        except anthropic.APIConnectionError:
            raise ProviderError(FailureKind.UPSTREAM) from None
        except anthropic.APIStatusError as exc:
            raise ProviderError(
                kind_for_status(exc.status_code),
                status=exc.status_code,
                detail=scrub(_vendor_message(exc), api_key),
                retry_after_s=retry_after_seconds(exc.response.headers),
            ) from None
        except (anthropic.APIError, ValueError, TypeError):
            raise ProviderError(FailureKind.MALFORMED) from None
        try:
            text = "".join(block.text for block in answer.content if block.type == "text")
            return Completion(
                text=text,
                model=answer.model or None,
                input_tokens=answer.usage.input_tokens,
                output_tokens=answer.usage.output_tokens,
            )
        except (AttributeError, TypeError):
            raise ProviderError(FailureKind.MALFORMED) from None
