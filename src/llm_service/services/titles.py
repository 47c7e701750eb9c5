"""Conversation titles, made in the background after a conversation's first stored exchange.

The first exchange's write already gave the conversation its fallback title (the first words of
the first message, `fallback_title`), so a conversation never shows "New chat", whatever happens
next. Then, unless `LLM_AUTO_TITLES=false`, one short vendor call on the user's own key (and
region) asks for a title in the conversation's language: the instruction is the call's system
prompt, the first message and reply its one user turn. The model is the vendor's cheapest current
one in the catalogue; when the vendor refuses that model (400: the key's plan lacks it), the
exchange's own model is tried once. Any other failure (or a budget that has no room) leaves the
fallback title.

Usage is counted like any call's: the call reserves and settles the user's budget, is priced
from the catalogue and counted in the metrics (its latency, errors, tokens and cost), and is
stored as one `llm_chat_history` row of role `title` in the conversation (content: the title
made; the model, tokens and cost like a reply's), which `/llm/usage` and the monthly budget count
as a request and which no message list, context or history page ever shows. Deleting the
conversation deletes that row with its messages, as clearing a history deletes its usage rows
(the month's budget keeps what was spent).

A title the user set meanwhile (`title_source = 'user'`) is never replaced: the update is
conditional on the title still being the fallback.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from llm_service.db.models import ChatMessage, Conversation, utcnow
from llm_service.errors import ServiceError
from llm_service.providers.base import ChatRequest, ChatTurn, FailureKind, ProviderError
from llm_service.runtime import Runtime
from llm_service.security.jwt import Principal
from llm_service.security.sanitize import sanitize
from llm_service.services import chat
from llm_service.services.history import NewMessage, message_row

log = logging.getLogger("llm_service.titles")

TITLE_CHARS = 80  # a title made (or fallen back to) is cut at a word boundary before this
FALLBACK_WORDS = 8
EXCERPT_CHARS = 1_500  # of the first message and of the reply, sent to make the title
TITLE_MAX_TOKENS = 512  # room for the cheapest models' thinking, and a few words
TITLE_TEMPERATURE = 0.3
INSTRUCTIONS = (
    "You name conversations. The user's turn holds the first message of a conversation and, "
    "after a line '---', the first reply. Write a title for the conversation of at most six "
    "words, in the same language as the first message (never translate it), with no quotes, "
    "no markdown and no final punctuation. Answer with the title only."
)


def _cut(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters, cut at a word boundary (with "…")."""
    words = text.split()
    line = " ".join(words)
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


def fallback_title(message: str, image_hosts: tuple[str, ...] = ()) -> str:
    """The first words of the first message (at most FALLBACK_WORDS, TITLE_CHARS), sanitized:
    the title until a better one is made, and for good when none can be."""
    words = sanitize(message, image_hosts=image_hosts).split()
    title = _cut(" ".join(words[:FALLBACK_WORDS]), TITLE_CHARS)
    if len(words) > FALLBACK_WORDS and not title.endswith("…"):
        title += "…"
    return sanitize(title, image_hosts=image_hosts) or "…"


# Quotes (ASCII, typographic, guillemets), markdown marks; final punctuation, also CJK's.
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e"
_WRAPPING = re.compile(f"^[\\s{_QUOTES}*_#`]+|[\\s{_QUOTES}*_`.!?:\u3002\uff01\uff1f]+$")
_LABEL = re.compile("^(?:title|titel|titre|t\u00edtulo|titolo|\u6807\u9898)\\s*[:\uff1a]\\s*",
                    re.IGNORECASE)


def clean_title(answer: str, image_hosts: tuple[str, ...] = ()) -> str | None:
    """The vendor's answer as a title: its first non-empty line without a "Title:" label,
    quotes, markdown or final punctuation, cut to TITLE_CHARS, sanitized; None when nothing
    is left."""
    line = next((ln for ln in answer.splitlines() if ln.strip()), "")
    line = _WRAPPING.sub("", _LABEL.sub("", _WRAPPING.sub("", line)))
    title = sanitize(_cut(line, TITLE_CHARS), image_hosts=image_hosts).strip()
    return title or None


@dataclass(frozen=True, slots=True)
class TitleJob:
    """What the background call needs; made when a first exchange is stored."""

    user: Principal
    provider: str
    conversation_id: int
    models: tuple[str, ...]  # tried in order: the cheapest, then the exchange's own
    region: str | None
    message: str
    reply: str
    api_key: str = field(repr=False)


def title_models(runtime: Runtime, provider: str, model: str) -> tuple[str, ...]:
    catalog = runtime.catalog
    cheapest = catalog.cheapest_model(provider) if catalog.has_vendor(provider) else model
    return tuple(dict.fromkeys((cheapest, model)))


def title_request(job: TitleJob, model: str) -> ChatRequest:
    excerpt = f"{job.message[:EXCERPT_CHARS]}\n\n---\n{job.reply[:EXCERPT_CHARS]}"
    return ChatRequest(model=model, messages=[ChatTurn("user", excerpt)],
                       temperature=TITLE_TEMPERATURE, max_tokens=TITLE_MAX_TOKENS,
                       region=job.region, system=INSTRUCTIONS)


async def make_title(runtime: Runtime, job: TitleJob) -> None:
    """Call the vendor for a title and store it (with its usage); the fallback stays on any
    failure. Runs in the background (`runtime.background`)."""
    for model in job.models:
        if not await _attempt(runtime, job, model):
            return


async def _attempt(runtime: Runtime, job: TitleJob, model: str) -> bool:
    """One title call with `model`; True when the vendor refused the model (try the next)."""
    request = title_request(job, model)
    spend = chat.Spend(runtime, job.user, job.provider)
    try:
        await spend.reserve(request)
    except ServiceError:
        log.info("title of conversation %s: no budget left, the fallback stays",
                 job.conversation_id)
        return False
    began = time.perf_counter()
    try:
        completion = await runtime.providers.complete(job.provider, request, job.api_key)
    except ProviderError as exc:
        runtime.metrics.vendor_call(job.provider, time.perf_counter() - began)
        await spend.settle(0, None)
        runtime.metrics.vendor_error(job.provider, exc.kind)
        log.info("title of conversation %s: %s failed (%s)", job.conversation_id,
                 job.provider, exc.kind)
        return exc.kind is FailureKind.BAD_REQUEST
    except BaseException:
        await spend.settle(0, None)
        raise
    runtime.metrics.vendor_call(job.provider, time.perf_counter() - began)
    usage = chat.checked_usage(completion.model, completion.input_tokens,
                               completion.output_tokens, request=request,
                               reply=completion.text, configured_model=model)
    cached = min(max(completion.cached_input_tokens or 0, 0), usage.input_tokens)
    cost = spend.cost(usage.model, usage.input_tokens, usage.output_tokens, cached)
    runtime.metrics.usage(job.provider, usage.model, usage.input_tokens, usage.output_tokens,
                          cost)
    title = clean_title(completion.text, tuple(runtime.settings.allowed_image_hosts))
    row = NewMessage("title", title or "", usage.tokens, tokens_estimated=usage.estimated,
                     model=usage.model, input_tokens=usage.input_tokens,
                     output_tokens=usage.output_tokens, cost_usd=cost,
                     cached_input_tokens=cached)

    async def write() -> None:
        await _store(runtime, job, title, row)

    try:
        await chat.retrying_db_write(write)
    finally:
        await spend.settle(usage.tokens, cost)
    return False


async def _store(runtime: Runtime, job: TitleJob, title: str | None, row: NewMessage) -> None:
    """The title call's usage row and, unless the user renamed the conversation meanwhile, the
    title: one transaction. A conversation deleted meanwhile takes neither."""
    now = utcnow()
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(insert(ChatMessage), {
                **message_row(job.user.user_id, job.provider, row, now),
                "conversation_id": job.conversation_id, "parent_id": None,
            })
            if title is not None:
                await conn.execute(
                    update(Conversation)
                    .where(Conversation.id == job.conversation_id,
                           Conversation.user_id == job.user.user_id,
                           Conversation.title_source == "fallback")
                    .values(title=title, title_source="auto", updated_at=now)
                )
    except IntegrityError:
        log.info("title of conversation %s: the conversation is gone", job.conversation_id)
