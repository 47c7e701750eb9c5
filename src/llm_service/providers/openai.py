"""OpenAI through the official `openai` SDK, on the shared httpx2 pool.

One `AsyncOpenAI` is made at start-up (with a placeholder key) and serves every user: each call
sends its user's key in that request's `Authorization` header (`extra_headers`). Per-key copies
(`with_options`) would share the pool too, but each copy detects the platform again in a worker
thread on its first request, several milliseconds per chat. The SDK's own retries are off: the
caller retries only what may be retried.
"""

from __future__ import annotations

import httpx2
import openai

from llm_service.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    kind_for_status,
    retry_after_seconds,
    scrub,
)


def _vendor_message(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return exc.message


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


class OpenAIProvider(Provider):
    id = "openai"
    display_name = "OpenAI"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient, timeout_s: float) -> None:
        self._client = openai.AsyncOpenAI(
            api_key="unset",
            base_url=base_url,
            http_client=http_client,
            max_retries=0,
            timeout=timeout_s,
        )

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        try:
            answer = await self._client.chat.completions.create(
                model=request.model,
                messages=[{"role": t.role, "content": t.content} for t in request.messages],
                temperature=request.temperature,
                max_completion_tokens=request.max_tokens,
                extra_headers=_auth(api_key),
            )
        except openai.APITimeoutError:
            raise ProviderError(FailureKind.TIMEOUT) from None
        except openai.APIConnectionError:
            raise ProviderError(FailureKind.UPSTREAM) from None
        except openai.APIStatusError as exc:
            raise ProviderError(
                kind_for_status(exc.status_code),
                status=exc.status_code,
                detail=scrub(_vendor_message(exc), api_key),
                retry_after_s=retry_after_seconds(exc.response.headers),
            ) from None
        except (openai.APIError, ValueError, TypeError):
            raise ProviderError(FailureKind.MALFORMED) from None
        try:
            text = answer.choices[0].message.content or ""
            usage = answer.usage
            return Completion(
                text=text,
                model=answer.model or None,
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            )
        except (AttributeError, IndexError, TypeError):
            raise ProviderError(FailureKind.MALFORMED) from None
