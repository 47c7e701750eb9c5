"""Hugging Face through the Inference Providers router: the OpenAI-compatible wire format over the
shared httpx2 pool (`POST {base}/chat/completions`, `Authorization: Bearer hf_...`). The old
api-inference URL answers 410 Gone. A failure in mid-stream arrives as a chunk with `error`."""

from __future__ import annotations

from llm_service.providers.base import VendorSpec
from llm_service.providers.openai_compat import OpenAICompatibleProvider

SPEC = VendorSpec(
    id="huggingface",
    display_name="Hugging Face",
    default_base_url="https://router.huggingface.co/v1",
    default_model="meta-llama/Llama-3.3-70B-Instruct",
    adapter=OpenAICompatibleProvider,
    wire="openai",
    options={"max_tokens_field": "max_tokens"},
    order=50,
)
