"""Google Gemini through `google-genai`, Google's maintained SDK (google-generativeai reached its
end of life in 2025), on the shared httpx2 pool.

One `genai.Client` is made on the first Gemini call with a placeholder key (the SDK is imported
then, off the event loop: a process that never calls Gemini never loads it); each call sends the
user's key as the `x-goog-api-key` header of that request, to the call's endpoint (per-request HTTP
options win over the client's), so no client is built per request. Our `assistant` role is Gemini's
`model`; the system prompt is the request's `systemInstruction`. A bad key is HTTP 400 with reason
`API_KEY_INVALID`, which is an authentication failure here. A stream is whole when a chunk carries a
`finishReason`. Thinking tokens (`thoughtsTokenCount`) are billed as output, so they count as output
tokens here.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx2

from llm_service.providers.base import (
    ChatRequest,
    Completion,
    Credentials,
    FailureKind,
    FinishReason,
    Provider,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    VendorSpec,
    checked_answer,
    empty_answer,
    kind_for_status,
    refused,
    status_failure,
    stream_cut,
    transport_failure,
)

if TYPE_CHECKING:
    from google import genai
    from google.genai import errors, types

_ROLES = {"user": "user", "assistant": "model"}
_AUTH_MARKERS = ("API_KEY_INVALID", "API key not valid", "API_KEY_SERVICE_BLOCKED")


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def _retry_delay(details: object) -> int | None:
    """Gemini's 429 gives its retry delay in the error's `RetryInfo` detail (`"retryDelay":
    "37s"`, https://ai.google.dev/gemini-api/docs/rate-limits), not in a header: whole seconds,
    rounded up; None when absent."""
    error = details.get("error") if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("@type") == _RETRY_INFO:
            delay = item.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(0, math.ceil(float(delay[:-1])))
                except ValueError:
                    return None
    return None


def _kind(exc: errors.APIError) -> FailureKind:
    text = f"{exc.message} {exc.details}"
    if exc.code == 400 and any(marker in text for marker in _AUTH_MARKERS):
        return FailureKind.AUTH
    return kind_for_status(exc.code)


class GeminiProvider(Provider):
    sdk_module = "google.genai"

    def make_sdk_client(self, sdk: ModuleType) -> genai.Client:
        return sdk.Client(
            api_key="unset",
            http_options=sdk.types.HttpOptions(
                base_url=self.spec.default_base_url,
                timeout=int(self._timeout_s * 1000),
                httpx_async_client=self._http,
            ),
        )

    models_path = "/v1beta/models"

    def models_headers(self, creds: Credentials) -> dict[str, str]:
        return {"x-goog-api-key": creds.api_key}

    @staticmethod
    def model_ids(answer: Any) -> list[str]:
        """`{"models": [{"name": "models/gemini-3.8-flash"}]}`."""
        items = answer.get("models") if isinstance(answer, dict) else None
        return [i["name"].removeprefix("models/") for i in items or ()
                if isinstance(i, dict) and isinstance(i.get("name"), str)]

    @contextmanager
    def _failures(self, creds: Credentials) -> Iterator[None]:
        """Every failure of either call path as a `ProviderError`."""
        from google.genai import errors  # imported by `sdk_client`, which every call awaits first

        try:
            yield
        except errors.APIError as exc:
            response = getattr(exc, "response", None)
            raise status_failure(exc.code, exc.message, creds.api_key,
                                 getattr(response, "headers", None), kind=_kind(exc),
                                 retry_after_s=_retry_delay(exc.details)) from None
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        except (ValueError, TypeError, AttributeError):
            raise ProviderError(FailureKind.MALFORMED) from None

    async def complete(self, request: ChatRequest, creds: Credentials) -> Completion:
        client = await self.sdk_client()
        contents, config = self._request(request, creds)
        with self._failures(creds):
            answer = await client.aio.models.generate_content(
                model=request.model, contents=contents, config=config
            )
            finish = _finish(answer) or "stop"
            text = _text(answer)
            checked_answer(text, finish)
            usage = answer.usage_metadata
            return Completion(
                text=text,
                model=answer.model_version or None,
                input_tokens=(usage.prompt_token_count or 0) if usage else 0,
                output_tokens=(_output_tokens(usage) or 0) if usage else 0,
                finish_reason=finish,
                cached_input_tokens=(usage.cached_content_token_count or 0) if usage else 0,
            )

    async def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[StreamEvent]:
        client = await self.sdk_client()
        contents, config = self._request(request, creds)
        finished: FinishReason | None = None
        wrote = False
        with self._failures(creds):
            chunks = await client.aio.models.generate_content_stream(
                model=request.model, contents=contents, config=config
            )
            async for chunk in chunks:
                finish = _finish(chunk)
                text = _text(chunk)
                if text:
                    wrote = True
                    yield StreamDelta(text)
                usage = chunk.usage_metadata
                if usage is not None:
                    yield StreamUsage(chunk.model_version or None, usage.prompt_token_count,
                                      _output_tokens(usage), finish_reason=finish,
                                      cached_input_tokens=usage.cached_content_token_count)
                elif finish is not None:
                    yield StreamUsage(finish_reason=finish)
                finished = finished or finish
        if not finished:
            raise stream_cut()
        if finished == "length" and not wrote:
            raise empty_answer()

    def _request(
        self, request: ChatRequest, creds: Credentials
    ) -> tuple[list[types.Content], types.GenerateContentConfig]:
        """The request as this model accepts it (the catalogue's rules): no temperature where
        the model refuses one; a thinking budget inside `maxOutputTokens` for Gemini 2.5."""
        from google.genai import types  # imported by `sdk_client`, awaited before this

        contents = [
            types.Content(role=_ROLES[t.role], parts=[types.Part(text=t.content)])
            for t in request.messages
        ]
        budget = self.thinking_budget(request.model, request.max_tokens)
        config = types.GenerateContentConfig(
            # The request's `systemInstruction` (a Content of one text part), never a turn of
            # `contents`, whose roles are only user and model.
            system_instruction=request.system or None,
            temperature=request.temperature if self.takes_temperature(request.model) else None,
            max_output_tokens=request.max_tokens,
            thinking_config=None if budget is None
            else types.ThinkingConfig(thinking_budget=budget),
            http_options=types.HttpOptions(
                base_url=creds.base_url, headers={"x-goog-api-key": creds.api_key}
            ),
        )
        return contents, config


# google/genai/types.py FinishReason: the ones that mean the vendor declined to answer.
_DECLINED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
             "IMAGE_SAFETY", "LANGUAGE"}


def _text(answer: types.GenerateContentResponse) -> str:
    """The answer's text parts (thought parts left out), without the SDK's warnings."""
    candidates = answer.candidates or []
    if not candidates or candidates[0].content is None:
        return ""
    return "".join(p.text for p in candidates[0].content.parts or ()
                   if p.text and not p.thought)


def _finish(answer: types.GenerateContentResponse) -> FinishReason | None:
    """The answer's finish reason, or `refused(...)` for a blocked prompt (HTTP 200, no
    candidates, `promptFeedback.blockReason`) or a declined answer (`finishReason: SAFETY`...)."""
    feedback = answer.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise refused(f"the prompt was blocked (block reason {_name(feedback.block_reason)})")
    for candidate in answer.candidates or ():
        if candidate.finish_reason is None:
            continue
        name = _name(candidate.finish_reason)
        if name in _DECLINED:
            raise refused(f"the answer was blocked (finish reason {name})")
        return "length" if name == "MAX_TOKENS" else "stop"
    return None


def _name(value: object) -> str:
    return str(getattr(value, "value", value))


def _output_tokens(usage: types.GenerateContentResponseUsageMetadata) -> int | None:
    """The answer's tokens and the thinking ones, both billed as output; None if neither came."""
    parts = [usage.candidates_token_count, usage.thoughts_token_count]
    if all(part is None for part in parts):
        return None
    return sum(part or 0 for part in parts)


SPEC = VendorSpec(
    id="gemini",
    display_name="Google Gemini",
    default_base_url="https://generativelanguage.googleapis.com",
    default_model="gemini-3.8-flash",
    adapter=GeminiProvider,
    wire="gemini",
    order=20,
)
