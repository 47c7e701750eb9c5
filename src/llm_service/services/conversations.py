"""Conversations (issue 15): saved threads of messages, with branches, titles, system prompts
and a context that fits the model.

**Rows.** A conversation is a row of `llm_conversations`; its messages are `llm_chat_history`
rows with its `conversation_id`, each pointing at the message it follows (`parent_id`; None for
a first message). Editing a user message or regenerating a reply adds a sibling (a row with the
same parent), never changes a row; `active_leaf_id` ends the branch that is shown and sent (the
newest message when it is None or was pruned). Rows without a conversation are the providers'
default threads (`services/history.py`), which conversations never touch. Another user's
conversation is looked up exactly like a missing one: every statement filters on the user.

**A send** goes through the one answer path (`services/chat.py`, `ChatCall`): `prepare_send`
is its one short read before the vendor call (the conversation row, the configuration of the
provider in use, and the branch: one recursive CTE over `parent_id`, read from the leaf up,
newest first, bounded by `LLM_MAX_CONVERSATION_MESSAGES` and stopping once even a lower bound of
its tokens is past the model's window), and `ConversationThread.store` its one write after it
(one transaction: the message and the reply inserted, the conversation's leaf, counts, times and
fallback title updated).

**Context that fits.** The context is the active branch, newest first, as many messages as fit
in the model's context window from the catalogue (`DEFAULT_CONTEXT_WINDOW` for a model it does
not know) less `maxTokens`, the system prompt and the new message, which are always sent (token
counts are the budgets' conservative estimates); it never starts with a reply.

**System prompt.** Exactly one, in the vendor's native place (`ChatRequest.system`): the
conversation's, else its template's (templates come with the next issue: none yet), else the
provider configuration's default (`system_prompt`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Row,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from llm_service.db.models import (
    CONVERSATION_ACTIVITY,
    ChatMessage,
    Conversation,
    UTCDateTime,
    utcnow,
)
from llm_service.errors import ServiceError, validation_error
from llm_service.providers.base import ChatTurn
from llm_service.runtime import Runtime
from llm_service.schemas import (
    ChatIn,
    ConversationIn,
    ConversationPatch,
    ForkIn,
)
from llm_service.security.jwt import Principal
from llm_service.security.sanitize import sanitize
from llm_service.services import budgets, chat, configs, titles
from llm_service.services.chat_stream import ChatStream, open_chat_stream
from llm_service.services.history import NewMessage, message_row

MESSAGE_ROLES = ("user", "assistant")
# The window of a model the catalogue gives none for: small enough for any current model.
DEFAULT_CONTEXT_WINDOW = 16_384
GONE = ("This answer could not be saved: the conversation was deleted while it was being "
        "written.")

SystemSource = Literal["conversation", "template", "provider"]


# ------------------------------------------------------------------------------------ errors

def not_found() -> ServiceError:
    return ServiceError(404, "not_found",
                        "No such conversation: check its id (it may have been deleted).")


def message_not_found() -> ServiceError:
    return ServiceError(404, "not_found",
                        "No such message in this conversation: check the message id.")


def too_many_conversations(limit: int) -> ServiceError:
    return ServiceError(
        413, "too_many_conversations",
        f"You already keep {limit:,} conversations, the most allowed: delete some you no longer "
        "need, then try again.",
    )


def conversation_full(limit: int) -> ServiceError:
    return ServiceError(
        413, "conversation_full",
        f"This conversation holds {limit:,} messages (every branch counted), the most one may: "
        "fork the part you need into a new conversation, or start a new one.",
    )


def _wrong_message(field: str, reason: str) -> ServiceError:
    return validation_error([{"loc": (field,), "msg": reason}])


# ------------------------------------------------------------------------------ system prompt

@dataclass(frozen=True, slots=True)
class SystemPrompt:
    text: str | None
    source: SystemSource | None


def system_prompt(conversation: str | None, template: str | None,
                  provider_default: str | None) -> SystemPrompt:
    """The one system prompt of a call, in this order: the conversation's, else its
    template's, else the provider configuration's default; none when none has one."""
    for text, source in ((conversation, "conversation"), (template, "template"),
                         (provider_default, "provider")):
        if text:
            return SystemPrompt(text, source)  # type: ignore[arg-type]
    return SystemPrompt(None, None)


# ---------------------------------------------------------------------------------- views

def conversation_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "provider": row.provider, "model": row.model, "title": row.title,
        "titleSource": row.title_source, "systemPrompt": row.system_prompt,
        "pinned": row.pinned, "archived": row.archived, "activeLeafId": row.active_leaf_id,
        "messageCount": row.message_count, "createdAt": row.created_at,
        "updatedAt": row.updated_at, "lastMessageAt": row.last_message_at,
    }


def _message_view(row: Any, siblings: list[int]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.id, "parentId": row.parent_id, "role": row.role, "content": row.content,
        "tokensUsed": row.tokens_used, "createdAt": row.created_at, "provider": row.provider,
        "model": row.model, "siblingIds": siblings,
    }
    if row.interrupted:
        item["interrupted"] = True
    if row.tokens_estimated:
        item["tokensEstimated"] = True
    if row.finish_reason == "length":
        item["finishReason"] = "length"
    return item


# ------------------------------------------------------------------------------ list cursor

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LAST_MICROS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // _MICROSECOND


def encode_cursor(activity: datetime, conversation_id: int) -> str:
    """Opaque to clients: base64url of "<activity, UTC epoch microseconds>:<id>", the last
    row of a page; the next page starts below it."""
    micros = (activity.astimezone(UTC) - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}:{conversation_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros_text, id_text = raw.split(":")
        micros, conversation_id = int(micros_text), int(id_text)
        if not (0 <= micros <= _LAST_MICROS and 1 <= conversation_id < 2**63):
            raise ValueError(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise _wrong_message("cursor", "is not a cursor this list gave; leave it out for the "
                             "first page") from None
    return _EPOCH + micros * _MICROSECOND, conversation_id


# ---------------------------------------------------------------------------------- CRUD

def _mine(user_id: int, conversation_id: int) -> tuple[Any, ...]:
    return (Conversation.id == conversation_id, Conversation.user_id == user_id)


async def get(session: AsyncSession, user_id: int, conversation_id: int) -> Conversation:
    row = await session.scalar(select(Conversation).where(*_mine(user_id, conversation_id)))
    if row is None:
        raise not_found()
    return row


async def create(session: AsyncSession, runtime: Runtime, user_id: int,
                 body: ConversationIn) -> Conversation:
    """A new conversation with a provider the user has configured (its model by default);
    413 past LLM_MAX_CONVERSATIONS."""
    config = await configs.chat_config(await session.connection(), user_id, body.provider)
    if config is None:
        raise chat.not_configured(runtime.providers[body.provider].display_name)
    limit = runtime.settings.max_conversations
    count = await session.scalar(
        select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id))
    if int(count or 0) >= limit:
        raise too_many_conversations(limit)
    now = utcnow()
    hosts = runtime.settings.allowed_image_hosts
    row = Conversation(
        user_id=user_id, provider=body.provider, model=body.model or config.model,
        title=_stored_title(body.title, hosts) if body.title is not None else None,
        title_source="user" if body.title is not None else None,
        system_prompt=body.system_prompt, pinned=body.pinned,
        archived=False, message_count=0, created_at=now, updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


def _stored_title(text: str, hosts: Sequence[str]) -> str:
    """A title as stored and shown: sanitized, trimmed, and still something ("…" when only
    markup was given)."""
    return sanitize(text, image_hosts=hosts).strip() or "…"


async def listing(
    session: AsyncSession, user_id: int, *, provider: str | None, pinned: bool | None,
    archived: bool, limit: int, cursor: str | None,
) -> tuple[list[Conversation], str | None]:
    """A page of the user's conversations, newest activity (last message, else creation)
    first, and the cursor of the next page (None on the last)."""
    query = select(Conversation, CONVERSATION_ACTIVITY.label("activity")).where(
        Conversation.user_id == user_id, Conversation.archived == archived)
    if provider is not None:
        query = query.where(Conversation.provider == provider)
    if pinned is not None:
        query = query.where(Conversation.pinned == pinned)
    if cursor is not None:
        moment, after_id = decode_cursor(cursor)
        query = query.where(tuple_(CONVERSATION_ACTIVITY, Conversation.id)
                            < tuple_(literal(moment, UTCDateTime()), literal(after_id)))
    rows = (await session.execute(
        query.order_by(CONVERSATION_ACTIVITY.desc(), Conversation.id.desc()).limit(limit + 1)
    )).all()
    page = [row[0] for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1][1], page[-1].id) if len(rows) > limit else None
    return page, next_cursor


async def change(session: AsyncSession, runtime: Runtime, user_id: int, conversation_id: int,
                 patch: ConversationPatch) -> Conversation:
    """Rename, pin, archive, set or clear the system prompt, switch branches."""
    row = await get(session, user_id, conversation_id)
    given = patch.model_fields_set
    hosts = runtime.settings.allowed_image_hosts
    if "title" in given:
        row.title, row.title_source = _stored_title(patch.title, hosts), "user"
    if "pinned" in given:
        row.pinned = patch.pinned
    if "archived" in given:
        row.archived = patch.archived
    if "system_prompt" in given:
        row.system_prompt = patch.system_prompt  # as typed, like a configuration's
    if "active_message_id" in given:
        links = await _links(session, conversation_id)
        if patch.active_message_id not in links:
            raise message_not_found()
        row.active_leaf_id = _newest_below(links, patch.active_message_id)
    row.updated_at = utcnow()
    await session.flush()
    return row


async def remove(session: AsyncSession, user_id: int, conversation_id: int) -> None:
    """Delete the conversation; its messages go with it (the foreign key's cascade)."""
    result = await session.execute(delete(Conversation).where(*_mine(user_id, conversation_id)))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise not_found()


# ------------------------------------------------------------------------------ the tree

_ALL_MESSAGES = (
    select(ChatMessage.id, ChatMessage.parent_id, ChatMessage.role, ChatMessage.content,
           ChatMessage.tokens_used, ChatMessage.created_at, ChatMessage.provider,
           ChatMessage.model, ChatMessage.interrupted, ChatMessage.tokens_estimated,
           ChatMessage.finish_reason)
    .where(ChatMessage.conversation_id == bindparam("conversation_id"),
           ChatMessage.role.in_(MESSAGE_ROLES))
    .order_by(ChatMessage.id)
)
_LINKS = (
    select(ChatMessage.id, ChatMessage.parent_id)
    .where(ChatMessage.conversation_id == bindparam("conversation_id"),
           ChatMessage.role.in_(MESSAGE_ROLES))
    .order_by(ChatMessage.id)
)


async def _links(session: AsyncSession, conversation_id: int) -> dict[int, int | None]:
    """Message id to parent id, for every message of the conversation (oldest first)."""
    rows = await session.execute(_LINKS, {"conversation_id": conversation_id})
    return {row.id: row.parent_id for row in rows}


def _parent_in(links: dict[int, int | None], message_id: int) -> int | None:
    """The parent, None for a first message or one whose parent was pruned."""
    parent = links[message_id]
    return parent if parent in links else None


def _newest_below(links: dict[int, int | None], message_id: int) -> int:
    """The newest message of the subtree under `message_id` (itself included): a leaf, since
    a message is always newer than its parent."""
    below = {message_id}
    for child, parent in links.items():  # oldest first: a parent comes before its children
        if parent in below and child > message_id:
            below.add(child)
    return max(below)


def _branch(links: dict[int, int | None], leaf: int | None) -> list[int]:
    """The ids from the first message to `leaf`; the newest message's branch when `leaf` is
    None or gone; empty without messages."""
    if leaf not in links:
        leaf = max(links) if links else None
    path: list[int] = []
    while leaf is not None and leaf in links and len(path) <= len(links):
        path.append(leaf)
        leaf = links[leaf]
    return path[::-1]


async def messages(session: AsyncSession, user_id: int, conversation_id: int,
                   view: Literal["branch", "tree"]) -> dict[str, Any]:
    """The active branch (from its first message), or every message (oldest first), each
    with its parent and its siblings."""
    row = await get(session, user_id, conversation_id)
    rows = {r.id: r for r in await session.execute(
        _ALL_MESSAGES, {"conversation_id": conversation_id})}
    links = {i: r.parent_id for i, r in rows.items()}
    children: dict[int | None, list[int]] = {}
    for message_id in links:
        children.setdefault(_parent_in(links, message_id), []).append(message_id)
    active = _branch(links, row.active_leaf_id)
    return {
        "conversationId": row.id,
        "view": view,
        "activeLeafId": active[-1] if active else None,
        "messages": [_message_view(rows[i], children[_parent_in(links, i)])
                     for i in (list(rows) if view == "tree" else active)],
    }


async def fork(session: AsyncSession, runtime: Runtime, user_id: int, conversation_id: int,
               body: ForkIn) -> Conversation:
    """A new conversation holding a copy of the branch from the first message to
    `messageId` (default: the active leaf), with the same provider, model and system prompt.
    Copies are new rows without usage figures: the vendor was paid once, for the originals."""
    source = await get(session, user_id, conversation_id)
    rows = {r.id: r for r in await session.execute(
        _ALL_MESSAGES, {"conversation_id": conversation_id})}
    links = {i: r.parent_id for i, r in rows.items()}
    if body.message_id is not None and body.message_id not in links:
        raise message_not_found()
    path = _branch(links, body.message_id if body.message_id is not None
                   else source.active_leaf_id)
    limit = runtime.settings.max_conversations
    count = await session.scalar(
        select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id))
    if int(count or 0) >= limit:
        raise too_many_conversations(limit)
    now = utcnow()
    title = (_stored_title(body.title, runtime.settings.allowed_image_hosts)
             if body.title is not None else source.title)
    copy = Conversation(
        user_id=user_id, provider=source.provider, model=source.model, title=title,
        title_source="user" if body.title is not None else source.title_source,
        system_prompt=source.system_prompt, pinned=False, archived=False,
        message_count=len(path), created_at=now, updated_at=now,
        last_message_at=now if path else None,
    )
    session.add(copy)
    await session.flush()
    parent: int | None = None
    for message_id in path:  # parent first: each copy follows the previous one
        original = rows[message_id]
        parent = (await session.execute(insert(ChatMessage).returning(ChatMessage.id), {
            "user_id": user_id, "provider": original.provider, "role": original.role,
            "content": original.content, "tokens_used": original.tokens_used,
            "interrupted": original.interrupted, "tokens_estimated": original.tokens_estimated,
            "model": original.model, "finish_reason": original.finish_reason,
            "created_at": now, "conversation_id": copy.id, "parent_id": parent,
            "copied_from": original.id,
        })).scalar_one()
    copy.active_leaf_id = parent
    await session.flush()
    return copy


# ------------------------------------------------------------------------------- the send

_SEND_CONVERSATION = select(
    Conversation.id, Conversation.provider, Conversation.model, Conversation.system_prompt,
    Conversation.title_source, Conversation.active_leaf_id, Conversation.message_count,
).where(Conversation.id == bindparam("conversation_id"),
        Conversation.user_id == bindparam("user_id"))


def _branch_statement(*, active: bool) -> Any:
    """The branch from a message up to the first one, newest first: id, parent_id, role,
    content. `active`: from the active leaf (`start`), else the newest message when that is
    None or gone; otherwise from `start` exactly (empty when it is not a message of the
    conversation). Bounded by `max_depth` rows, and stopping once the lower bound of the tokens
    read past the start (`low`, a quarter of the characters plus the framing of each message:
    never more than `budgets.estimate_input_tokens`) passes `budget`."""
    h = ChatMessage.__table__
    in_conversation = (h.c.conversation_id == bindparam("conversation_id"),
                       h.c.role.in_(MESSAGE_ROLES))
    if active:
        given = select(h.c.id).where(h.c.id == bindparam("start"), *in_conversation)
        newest = select(func.max(h.c.id)).where(*in_conversation)
        start = h.c.id == func.coalesce(given.scalar_subquery(), newest.scalar_subquery())
    else:
        start = h.c.id == bindparam("start")
    branch = select(
        h.c.id, h.c.parent_id, h.c.role, h.c.content, literal(1).label("depth"),
        cast(literal(0), BigInteger).label("low"),
    ).where(start, *in_conversation).cte("branch", recursive=True)
    m = h.alias("m")
    quarter = cast(func.length(m.c.content), BigInteger) // 4
    branch = branch.union_all(select(
        m.c.id, m.c.parent_id, m.c.role, m.c.content, branch.c.depth + 1,
        cast(branch.c.low + quarter + budgets.TOKENS_PER_TURN, BigInteger),
    ).where(
        m.c.id == branch.c.parent_id, m.c.id < branch.c.id,  # parents are older: no cycle
        m.c.conversation_id == bindparam("conversation_id"), m.c.role.in_(MESSAGE_ROLES),
        branch.c.depth < bindparam("max_depth"), branch.c.low <= bindparam("budget"),
    ))
    return select(branch.c.id, branch.c.parent_id, branch.c.role,
                  branch.c.content).order_by(branch.c.depth)


_ACTIVE_BRANCH = _branch_statement(active=True)
_BRANCH_FROM = _branch_statement(active=False)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the new exchange goes: after the active leaf (all None), after the reply
    `parent_id`, as a sibling of the user message `edit_of`, or as a new reply to the message
    `regenerate_of` answers (or to it, when it is a user message)."""

    parent_id: int | None = None
    edit_of: int | None = None
    regenerate_of: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A conversation's next call, as read before it is made (the send and the preview)."""

    conversation: Row[Any]
    provider: str
    model: str
    config: Any
    system: SystemPrompt
    message: str  # the user message (a regeneration's: the stored one)
    parent_id: int | None  # the new user message's parent; a regeneration's: the message answered
    regenerate: bool
    context: list[ChatTurn]  # oldest first, fitted to the window
    dropped: int  # branch messages left out (exact only when read unbounded)
    window: int
    context_tokens: int


def context_window(runtime: Runtime, provider: str, model: str) -> int:
    info = runtime.catalog.model(provider, model) if runtime.catalog.has_vendor(provider) \
        else None
    return info.context_window if info is not None and info.context_window else \
        DEFAULT_CONTEXT_WINDOW


def fit(candidates: Sequence[ChatTurn], room: int) -> list[ChatTurn]:
    """The newest of `candidates` (newest first) whose estimated tokens fit in `room`, oldest
    first, not starting with a reply."""
    kept: list[ChatTurn] = []
    used = 0
    for turn in candidates:
        used += budgets.estimate_input_tokens([turn.content])
        if used > room:
            break
        kept.append(turn)
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


async def plan(
    conn: AsyncConnection, runtime: Runtime, user_id: int, conversation_id: int, *,
    provider: str | None, model: str | None, message: str | None,
    placement: Placement = Placement(), exact: bool = False,
) -> Plan:
    """Everything the next call of the conversation needs, in one short read: the
    conversation, the configuration of the provider in use, and the branch. `exact` reads the
    whole branch (the preview's count of messages left out)."""
    settings = runtime.settings
    conversation = (await conn.execute(
        _SEND_CONVERSATION, {"conversation_id": conversation_id, "user_id": user_id})).first()
    if conversation is None:
        raise not_found()
    provider = provider or conversation.provider
    config = await configs.chat_config(conn, user_id, provider)
    if config is None:
        raise chat.not_configured(runtime.providers[provider].display_name)
    model = model or (conversation.model if provider == conversation.provider else config.model)
    regenerate = placement.regenerate_of is not None
    if message is not None:  # a new message (not a regeneration): room for it and its reply
        limit = settings.max_conversation_messages
        if conversation.message_count + 2 > limit:
            raise conversation_full(limit)
    elif conversation.message_count + 1 > settings.max_conversation_messages:
        raise conversation_full(settings.max_conversation_messages)
    system = system_prompt(conversation.system_prompt, None,
                           config.system_prompt)
    window = context_window(runtime, provider, model)
    fixed = config.max_tokens + (budgets.estimate_input_tokens([system.text])
                                 if system.text else 0)
    room = window - fixed - (budgets.estimate_input_tokens([message]) if message else 0)
    start = placement.parent_id or placement.edit_of or placement.regenerate_of
    params = {"conversation_id": conversation_id, "max_depth": settings.max_conversation_messages
              + 2, "budget": 2**62 if exact else max(room, 0),
              "start": start if start is not None else conversation.active_leaf_id}
    rows = list(await conn.execute(_BRANCH_FROM if start is not None else _ACTIVE_BRANCH,
                                   params))
    if start is not None and not rows:
        raise message_not_found()
    parent_id = rows[0].id if rows else None
    if placement.parent_id is not None and rows[0].role != "assistant":
        raise _wrong_message("parentId", "must be a reply (an assistant message); to change a "
                             "message of yours, send it with editOf")
    if placement.edit_of is not None:
        if rows[0].role != "user":
            raise _wrong_message("editOf", "must be one of your messages, not a reply; "
                                 "regenerate a reply instead")
        rows = rows[1:]
        parent_id = rows[0].id if rows else None  # None: a first message (or its parent pruned)
    if regenerate:
        if rows[0].role == "assistant":
            rows = rows[1:]
            if not rows or rows[0].role != "user":
                raise message_not_found()  # the message it answered is gone
        parent_id, message, rows = rows[0].id, rows[0].content, rows[1:]
        room -= budgets.estimate_input_tokens([message])
    candidates = [ChatTurn(r.role, r.content) for r in rows]
    context = fit(candidates, room)
    tokens = sum(budgets.estimate_input_tokens([t.content]) for t in context) + (
        budgets.estimate_input_tokens([system.text]) if system.text else 0)
    return Plan(conversation=conversation, provider=provider, model=model, config=config,
                system=system, message=message or "", parent_id=parent_id,
                regenerate=regenerate, context=context, dropped=len(candidates) - len(context),
                window=window, context_tokens=tokens)


def preview(plan_: Plan) -> dict[str, Any]:
    return {
        "provider": plan_.provider, "model": plan_.model, "system": plan_.system.text,
        "systemSource": plan_.system.source,
        "messages": [{"role": t.role, "content": t.content} for t in plan_.context],
        "contextWindow": plan_.window, "contextTokens": plan_.context_tokens,
        "droppedMessages": plan_.dropped, "maxTokens": plan_.config.max_tokens,
    }


@dataclass(frozen=True, slots=True)
class Send:
    """What a send asks for: a new `message` (None: a regeneration, see `placement`), and a
    provider or model for this message only."""

    message: str | None
    placement: Placement = Placement()
    provider: str | None = None
    model: str | None = None


async def prepare_send(
    runtime: Runtime, user: Principal, conversation_id: int, what: Send,
) -> chat.PreparedChat:
    """The conversation's next vendor call, read and checked (the one read before it)."""
    async with runtime.autocommit.connect() as conn:
        next_call = await plan(conn, runtime, user.user_id, conversation_id,
                               provider=what.provider, model=what.model, message=what.message,
                               placement=what.placement)
    prepared = chat.prepared_chat(
        runtime, next_call.config, user_id=user.user_id, provider=next_call.provider,
        context=next_call.context, message=next_call.message, model=next_call.model,
        system=next_call.system.text,
    )
    first = next_call.conversation.title_source is None
    hosts = tuple(runtime.settings.allowed_image_hosts)
    thread = ConversationThread(
        conversation_id=conversation_id, parent_id=next_call.parent_id,
        regenerate=next_call.regenerate,
        fallback_title=titles.fallback_title(next_call.message, hosts) if first else None,
        title=titles.TitleJob(
            user=user, provider=next_call.provider, conversation_id=conversation_id,
            models=titles.title_models(runtime, next_call.provider, next_call.model),
            region=next_call.config.region, message=next_call.message, reply="",
            api_key=prepared.api_key,
        ) if first and runtime.settings.auto_titles else None,
    )
    return dataclasses.replace(prepared, thread=thread)


@dataclass(frozen=True, slots=True)
class ConversationThread:
    """A conversation as the place of an exchange (`chat.Thread`): one transaction inserts the
    user message (unless regenerating: it exists) and the reply, and updates the conversation
    (active leaf, message count, times, and the fallback title on its first exchange); then,
    on a first exchange with auto titles on, the title is made in the background."""

    conversation_id: int
    parent_id: int | None
    regenerate: bool
    fallback_title: str | None
    title: titles.TitleJob | None

    async def store(self, runtime: Runtime, user: Principal, provider: str,
                    messages: Sequence[NewMessage]) -> chat.Stored:
        user_message, reply = messages
        now = utcnow()
        place = {"conversation_id": self.conversation_id}
        try:
            async with runtime.engine.begin() as conn:
                answered = self.parent_id
                if not self.regenerate:
                    answered = (await conn.execute(
                        insert(ChatMessage).returning(ChatMessage.id),
                        {**message_row(user.user_id, provider, user_message, now), **place,
                         "parent_id": self.parent_id},
                    )).scalar_one()
                reply_id = (await conn.execute(
                    insert(ChatMessage).returning(ChatMessage.id),
                    {**message_row(user.user_id, provider, reply, now), **place,
                     "parent_id": answered},
                )).scalar_one()
                values: dict[str, Any] = {
                    "active_leaf_id": reply_id, "last_message_at": now, "updated_at": now,
                    "message_count": Conversation.message_count + (1 if self.regenerate else 2),
                }
                if self.fallback_title is not None:
                    values["title"] = func.coalesce(Conversation.title, self.fallback_title)
                    values["title_source"] = func.coalesce(Conversation.title_source,
                                                           "fallback")
                await conn.execute(update(Conversation)
                                   .where(*_mine(user.user_id, self.conversation_id))
                                   .values(**values))
        except IntegrityError:  # the conversation was deleted since the read
            return chat.Stored(None, conversation_id=self.conversation_id, warning=GONE)
        if self.title is not None:
            job = dataclasses.replace(self.title, reply=reply.content)
            runtime.background.spawn(titles.make_title(runtime, job),
                                     f"title-{self.conversation_id}")
        return chat.Stored(reply_id, parent_id=answered, conversation_id=self.conversation_id)


def _chat_body(prepared: chat.PreparedChat) -> ChatIn:
    """The user message as `ChatCall` stores it (a regeneration stores none)."""
    return ChatIn.model_construct(message=prepared.request.messages[-1].content, history=None)


async def send(runtime: Runtime, user: Principal, conversation_id: int,
               what: Send) -> dict[str, Any]:
    """A message (or a regeneration) of the conversation, answered as `POST /llm/chat` is."""
    prepared = await prepare_send(runtime, user, conversation_id, what)
    return await chat.complete(await chat.begin_chat(
        runtime, user=user, provider=prepared.adapter.id, body=_chat_body(prepared),
        prepared=prepared))


async def open_send_stream(runtime: Runtime, user: Principal, conversation_id: int,
                           what: Send) -> ChatStream:
    """The same, streamed as `POST /llm/chat/{provider}/stream` streams."""
    prepared = await prepare_send(runtime, user, conversation_id, what)
    return await open_chat_stream(runtime, user=user, provider=prepared.adapter.id,
                                  body=_chat_body(prepared), prepared=prepared)
