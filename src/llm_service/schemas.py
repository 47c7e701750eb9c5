"""Request and response bodies, camelCase on the wire.

Request models ignore unknown fields (the widget may send more; a `userId` in a body changes
nothing). Responses are built as plain dicts on the request path (orjson); the response models here
describe them in the OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

ApiKey = Annotated[
    str,
    Field(
        pattern=r"^[\x21-\x7e]+$",
        min_length=8,
        max_length=512,
        description="The vendor API key: 8-512 printable ASCII characters, no spaces.",
    ),
]
ModelName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:/-]+$",
        min_length=1,
        max_length=100,
        description="The vendor's model id: 1-100 characters of A-Z a-z 0-9 . _ : / -",
    ),
]
Temperature = Annotated[float, Field(strict=True, ge=0.0, le=2.0, allow_inf_nan=False)]
def _whole_number(value: Any) -> Any:
    """JSON's integers: 2048 and 2048.0 (JSON Schema's `integer` admits both), not 2048.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


MaxTokens = Annotated[int, Field(strict=True, ge=1, le=32000), BeforeValidator(_whole_number)]


def _optional_not_null(schema: dict[str, Any]) -> None:
    """A field that may be left out but not sent as null: its schema shows no null default."""
    schema.pop("default", None)


def _system_prompt_schema(schema: dict[str, Any]) -> None:
    """Optional, never null, no NUL, at most the default LLM_MAX_SYSTEM_PROMPT_CHARS."""
    _optional_not_null(schema)
    schema.update({"pattern": _NO_NUL, "maxLength": 8_000})


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False, frozen=True)


class ConfigIn(_In):
    """Body of POST /llm/config/{provider}. Left-out fields keep their stored values (or take the
    defaults on creation); an explicit null is refused."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=False,
        frozen=True,
        json_schema_extra={
            "examples": [
                {"apiKey": "sk-proj-0123456789abcdef", "model": "gpt-4o", "temperature": 0.7,
                 "maxTokens": 2048},
                {"model": "gpt-4o-mini"},
                {"systemPrompt": "You are the platform's assistant. Answer briefly, in the "
                                 "user's language."},
            ]
        },
    )

    # Optional but never null: the types say so (the schema shows no null), the validator below
    # gives the sentence.
    api_key: ApiKey = Field(  # type: ignore[assignment]
        None, alias="apiKey", json_schema_extra=_optional_not_null
    )
    model: ModelName = Field(  # type: ignore[assignment]
        None, alias="model", json_schema_extra=_optional_not_null
    )
    temperature: Temperature = Field(  # type: ignore[assignment]
        None, alias="temperature", description="0.0-2.0", json_schema_extra=_optional_not_null
    )
    max_tokens: MaxTokens = Field(  # type: ignore[assignment]
        None, alias="maxTokens", description="1-32000", json_schema_extra=_optional_not_null
    )
    region: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")] = Field(  # type: ignore[assignment]
        None, alias="region", json_schema_extra=_optional_not_null,
        description="The vendor's region, from the model catalogue's list for the vendor "
        "(DashScope: singapore, beijing, virginia, hongkong); a key works only in its own.",
    )
    system_prompt: str = Field(  # type: ignore[assignment]
        None, alias="systemPrompt",
        description="The system prompt of every chat with this provider, sent in the vendor's "
        "own place for it (OpenAI: a developer message for reasoning models, else a system "
        "message; Claude: the top-level system field; Gemini: systemInstruction; DashScope and "
        "Hugging Face: a first system message). At most LLM_MAX_SYSTEM_PROMPT_CHARS (8,000) "
        "characters, no NUL. An empty or whitespace-only string removes it; left out, the "
        "stored one is kept.",
        json_schema_extra=_system_prompt_schema,
    )

    @field_validator("api_key", "model", "temperature", "max_tokens", "region", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        # Runs only for fields present in the body: leaving a field out is fine, null is not.
        if value is None:
            raise ValueError("must not be null; leave the field out to keep the stored value")
        return value

    @field_validator("system_prompt", mode="before")
    @classmethod
    def _system_prompt_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError('must not be null; send "" to remove the system prompt, or leave '
                             "the field out to keep it")
        return value

    @field_validator("system_prompt")
    @classmethod
    def _system_prompt_length(cls, value: str, info: ValidationInfo) -> str:
        limit = _limit(info, "max_system_prompt_chars", 8_000)
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters (this one has {len(value)}); "
                             "shorten it")
        return _storable(value)


# What "after trimming" trims: the ASCII whitespace that JSON Schema and Python agree on.
_ASCII_SPACE = " \t\n\r\f\v"


def _storable(value: str) -> str:
    """Text must be valid Unicode (JSON can carry lone surrogates; no database stores them) and
    free of NUL (U+0000), which PostgreSQL's text columns refuse: refused here, before the vendor
    is called and paid."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    return value


def _limit(info: ValidationInfo, name: str, default: int) -> int:
    """A limit from the settings passed as validation context (the defaults outside a request)."""
    settings = (info.context or {}).get("settings")
    return int(getattr(settings, name, default))


# What the schema says of text fields the validators check: no NUL (JSON Schema's own regex).
_NO_NUL = r"^[^\x00]*$"


def _chat_message(value: str, info: ValidationInfo) -> str:
    """A chat message: 1 to LLM_MAX_MESSAGE_CHARS characters after trimming, storable."""
    trimmed = len(value.strip(_ASCII_SPACE))
    limit = _limit(info, "max_message_chars", 32_000)
    if trimmed == 0:
        raise ValueError("must not be empty")
    if trimmed > limit:
        raise ValueError(f"must be at most {limit} characters after trimming")
    return _storable(value)


class ChatHistoryItem(_In):
    role: Literal["user", "assistant"]
    content: str = Field(description="At most LLM_MAX_MESSAGE_CHARS (32,000) characters, no NUL.",
                         json_schema_extra={"pattern": _NO_NUL})

    @field_validator("content")
    @classmethod
    def _content_length(cls, value: str, info: ValidationInfo) -> str:
        limit = _limit(info, "max_message_chars", 32_000)
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return _storable(value)


class ChatIn(_In):
    """Body of POST /llm/chat/{provider}. `history`, when present (even empty), is the context;
    otherwise the newest stored messages are. Other fields (`timestamp`...) are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"message": "Hello, how are you?",
                 "history": [
                     {"role": "user", "content": "Previous message",
                      "timestamp": "2025-11-24T10:00:00Z"},
                     {"role": "assistant", "content": "Previous response",
                      "timestamp": "2025-11-24T10:00:02Z"}]},
                {"message": "Hello, how are you?"},
            ]
        },
    )

    message: str = Field(
        description="1 to LLM_MAX_MESSAGE_CHARS (32,000) characters after trimming, no NUL; sent "
                    "as typed.",
        # Something besides ASCII whitespace, and no NUL anywhere.
        json_schema_extra={"pattern": r"^[^\x00]*[^ \t\n\r\f\v\x00][^\x00]*$",
                           "maxLength": 32_000},
    )
    history: list[ChatHistoryItem] | None = Field(
        None, description="At most LLM_MAX_HISTORY_ITEMS (100) items, oldest first."
    )

    @field_validator("message")
    @classmethod
    def _message_length(cls, value: str, info: ValidationInfo) -> str:
        return _chat_message(value, info)

    @field_validator("history")
    @classmethod
    def _history_length(
        cls, value: list[ChatHistoryItem] | None, info: ValidationInfo
    ) -> list[ChatHistoryItem] | None:
        limit = _limit(info, "max_history_items", 100)
        if value is not None and len(value) > limit:
            raise ValueError(f"must have at most {limit} items")
        return value


class ChatOut(BaseModel):
    response: str = Field(examples=["I'm doing well, thank you! How can I help?"])
    tokensUsed: int = Field(examples=[45], description="inputTokens + outputTokens")
    model: str = Field(examples=["gpt-4o-2024-08-06"],
                       description="The model the vendor reports, else the configured one.")
    inputTokens: int = Field(examples=[30])
    outputTokens: int = Field(examples=[15])
    id: int | None = Field(examples=[124], description="The id of the stored reply in the "
                           "history; null when it could not be stored (then `warning` says so).")
    costUsd: float | None = Field(
        examples=[0.00042],
        description="The estimated cost from the model catalogue (cached input at the cached "
        "rate); null when the model is unpriced.",
    )
    warning: str | None = Field(
        None, description="Present once a monthly budget is 80% used, or when the answer could "
        "be returned but not stored.",
    )
    truncated: bool | None = Field(
        None, description="True when the reply was cut at its size cap (maxTokens x 8 "
        "characters, at most LLM_MAX_REPLY_CHARS); `warning` says so.",
    )
    tokensEstimated: bool | None = Field(
        None, description="True when the vendor gave no (or no usable) token counts and "
        "they were estimated.",
    )
    finishReason: Literal["length"] | None = Field(
        None, description='Present ("length") when the vendor cut the reply at maxTokens: the '
        "widget can say it was cut short.",
    )
    conversationId: int | None = Field(
        None, examples=[12], description="Conversation routes only: the conversation.")
    parentId: int | None = Field(
        None, examples=[123], description="Conversation routes only: the id of the user "
        "message the reply answers (edit it with `editOf`, answer it again with regenerate).")

    def body(self) -> dict[str, Any]:
        """The answer as sent (JSON route and the stream's `done`): the notes (`warning`,
        `truncated`, `tokensEstimated`, `finishReason`) only when they say something; `id` and
        `costUsd` always, since their null means something."""
        return self.model_dump(exclude={name for name in _NOTES if getattr(self, name) is None})


class KeyCheckIn(_In):
    """Body of POST /llm/config/{provider}/test: a key to check without saving it (else the
    saved key is checked), and the region to check it in (else the saved one)."""

    api_key: ApiKey = Field(None, alias="apiKey")  # type: ignore[assignment]
    region: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")] | None = Field(
        None, alias="region")


class KeyCheckOut(BaseModel):
    success: Literal[True] = True
    result: Literal["ok", "key_rejected", "no_credit", "wrong_region", "unreachable"]
    message: str = Field(examples=["OpenAI accepted the key: it lists 42 models."])
    models: int | None = Field(None, description="On ok: how many models the key lists.")
    region: str | None = Field(None, description="On wrong_region: the key's own region.")


class ModelCapabilities(BaseModel):
    temperature: bool
    vision: bool
    pdf: bool
    reasoning: str | None = Field(description="How thinking is controlled, if it is.")


class ModelView(BaseModel):
    id: str = Field(examples=["gpt-6.2-sol"])
    listed: bool = Field(description="False: the catalogue does not list it (family rules "
                         "only, or nothing known).")
    status: Literal["current", "deprecated", "retired"] | None = None
    shutdown: str | None = None
    replacement: str | None = None
    input: float | None = Field(None, description="USD per 1M input tokens.")
    output: float | None = Field(None, description="USD per 1M output tokens.")
    cachedInput: float | None = Field(None, description="USD per 1M cached input tokens.")
    contextWindow: int | None = None
    maxOutput: int | None = None
    capabilities: ModelCapabilities | None = None


class ModelsOut(BaseModel):
    source: Literal["vendor", "catalogue"]
    models: list[ModelView]


class ModelStatusView(BaseModel):
    status: Literal["deprecated", "retired"]
    date: str | None = Field(
        examples=["2027-01-14"],
        description="The announced (deprecated) or past (retired) shutdown day; null when the "
        "vendor gives none.")
    replacement: str | None = Field(examples=["gpt-6.2-sol"],
                                    description="The suggested current model.")


_NOTES = ("warning", "truncated", "tokensEstimated", "finishReason", "conversationId",
          "parentId")


class ConfigView(BaseModel):
    model: str = Field(examples=["gpt-4o"])
    temperature: float = Field(examples=[0.7])
    maxTokens: int = Field(examples=[2048])
    apiKey: str = Field(
        examples=["sk-***abcd"],
        description="Masked: at most the first 3 and last 4 characters; `***` for short keys.",
    )
    createdAt: datetime
    updatedAt: datetime
    region: str | None = Field(None, description="Present when a region was chosen.")
    systemPrompt: str | None = Field(
        examples=["You are the platform's assistant. Answer briefly, in the user's language."],
        description="The provider's system prompt, sent with every chat; null when none.")
    modelStatus: ModelStatusView | None = Field(
        None, description="Present only when the model is deprecated or retired (from the model "
        "catalogue), so the settings page can suggest the replacement.")


class ConfigsOut(BaseModel):
    configs: dict[str, ConfigView] = Field(description="Only configured providers appear.")


class MessageOut(BaseModel):
    success: Literal[True] = True
    message: str = Field(examples=["Configuration saved"])


class HistoryItem(BaseModel):
    id: int = Field(examples=[123])
    role: Literal["user", "assistant"]
    content: str = Field(examples=["Hello"])
    tokensUsed: int = Field(examples=[2])
    createdAt: datetime
    interrupted: bool | None = Field(
        None, description="Present (true) on a streamed reply that was cut short.")
    tokensEstimated: bool | None = Field(
        None, description="Present (true) when the vendor's stream gave no token counts.")


class HistoryOut(BaseModel):
    history: list[HistoryItem] = Field(description="The page, oldest first.")
    total: int = Field(examples=[150], description="All of the user's messages for the provider.")


class ErrorDetail(BaseModel):
    field: str = Field(examples=["temperature"])
    reason: str = Field(examples=["Input should be less than or equal to 2"])


class ErrorOut(BaseModel):
    success: Literal[False] = False
    error: str = Field(examples=["Check the request: temperature: Input should be less than or "
                                 "equal to 2."])
    code: str = Field(examples=["validation_error"])
    details: list[ErrorDetail] | None = None
    requestId: str = Field(examples=["6f1c2b0e9a4d4d0c8f7e1a2b3c4d5e6f"])


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class UsageFigures(BaseModel):
    requests: int = Field(examples=[12], description="Replies in the group.")
    inputTokens: int = Field(examples=[3400])
    outputTokens: int = Field(examples=[5100])
    tokens: int = Field(examples=[8500], description="inputTokens + outputTokens")
    costUsd: float | None = Field(examples=[0.0213],
                                  description="Null when no reply in the group had a price.")
    unpricedRequests: int = Field(examples=[0], description="Replies whose model had no price.")


class UsageGroup(UsageFigures):
    key: str = Field(examples=["2026-12-01"], description="The day, provider or model.")


class UsageOut(BaseModel):
    from_: str = Field(alias="from", examples=["2026-12-01"])
    to: str = Field(examples=["2026-12-31"])
    groupBy: str = Field(examples=["day"])
    groups: list[UsageGroup]
    total: UsageFigures


class TokenLimit(BaseModel):
    limit: int | None = Field(examples=[200000], description="Null: no limit for the role.")
    used: int
    reserved: int = Field(description="Held by chats under way.")


class CostLimit(BaseModel):
    limit: float | None = Field(examples=[5.0], description="Null: no limit for the role.")
    used: float
    reserved: float


class LimitsOut(BaseModel):
    month: str = Field(examples=["2026-12"])
    resetsAt: str = Field(examples=["2027-01-01T00:00:00Z"])
    tokens: TokenLimit
    costUsd: CostLimit
    warning: str | None


class TopUser(UsageFigures):
    userId: int = Field(examples=[42])


class AdminUsageOut(BaseModel):
    from_: str = Field(alias="from", examples=["2026-12-01"])
    to: str = Field(examples=["2026-12-31"])
    byProvider: list[UsageGroup]
    byModel: list[UsageGroup]
    byDay: list[UsageGroup]
    topUsers: list[TopUser]
    total: UsageFigures


# ---------------------------------------------------------------------------- conversations

_MAX_ID = 2**63 - 1  # BIGINT: a larger id names nothing
MessageId = Annotated[int, Field(strict=True, ge=1, le=_MAX_ID), BeforeValidator(_whole_number)]
TITLE_MAX_CHARS = 200


def _provider_id(value: str) -> str:
    from llm_service.providers.registry import provider_ids  # the one vendor list

    if value not in provider_ids():
        raise ValueError(f"must be one of {', '.join(provider_ids())}")
    return value


def _provider_enum(schema: dict[str, Any]) -> None:
    from llm_service.providers.registry import provider_ids

    schema["enum"] = list(provider_ids())


ProviderId = Annotated[str, AfterValidator(_provider_id),
                       Field(examples=["openai"], description="A provider id.",
                             json_schema_extra=_provider_enum)]


def _system_prompt(value: str | None, info: ValidationInfo) -> str | None:
    """A system prompt: null (none), else 1 to LLM_MAX_SYSTEM_PROMPT_CHARS characters."""
    if value is None:
        return None
    limit = _limit(info, "max_system_prompt_chars", 8_000)
    if not value.strip(_ASCII_SPACE):
        raise ValueError("must not be blank; send null for no system prompt")
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters (LLM_MAX_SYSTEM_PROMPT_CHARS)")
    return _storable(value)


def _title(value: str) -> str:
    if not value.strip(_ASCII_SPACE):
        raise ValueError("must not be blank")
    if len(value) > TITLE_MAX_CHARS:
        raise ValueError(f"must be at most {TITLE_MAX_CHARS} characters")
    return _storable(value)


# Something besides ASCII whitespace, and no NUL anywhere (the validators' rule, for the schema).
_TEXT = r"^[^\x00]*[^ \t\n\r\f\v\x00][^\x00]*$"
_TITLE_SCHEMA = {"pattern": _TEXT, "minLength": 1, "maxLength": TITLE_MAX_CHARS}


def _title_schema(schema: dict[str, Any]) -> None:
    _optional_not_null(schema)
    schema.update(_TITLE_SCHEMA)


def _prompt_schema(schema: dict[str, Any]) -> None:
    for option in schema.get("anyOf", []):
        if option.get("type") == "string":
            option.update({"pattern": _TEXT, "minLength": 1, "maxLength": 8_000})


_SYSTEM_PROMPT_DOC = ("The conversation's system prompt (it wins over the provider's default); "
                      "at most LLM_MAX_SYSTEM_PROMPT_CHARS (8,000) characters; null: none.")


class ConversationIn(_In):
    """Body of POST /llm/conversations."""

    model_config = ConfigDict(
        extra="ignore", frozen=True,
        json_schema_extra={"examples": [
            {"provider": "openai"},
            {"provider": "claude", "model": "claude-haiku-5-5", "title": "Trip to Lisbon",
             "systemPrompt": "You are a concise travel planner.", "pinned": True},
        ]},
    )

    provider: ProviderId
    model: ModelName = Field(  # type: ignore[assignment]
        None, json_schema_extra=_optional_not_null,
        description="Default: the provider configuration's model.")
    title: str = Field(  # type: ignore[assignment]
        None, json_schema_extra=_title_schema,
        description=f"1-{TITLE_MAX_CHARS} characters; default: made after the first exchange.")
    system_prompt: str | None = Field(None, alias="systemPrompt", description=_SYSTEM_PROMPT_DOC,
                                      json_schema_extra=_prompt_schema)
    pinned: bool = Field(False, strict=True)

    @field_validator("model", "title", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out")
        return value

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _title(value)

    @field_validator("system_prompt")
    @classmethod
    def _system_prompt(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _system_prompt(value, info)


class ConversationPatch(_In):
    """Body of PATCH /llm/conversations/{id}: only the fields present change."""

    model_config = ConfigDict(
        extra="ignore", frozen=True,
        json_schema_extra={"examples": [
            {"title": "Lisbon, 3 days"}, {"pinned": True}, {"archived": True},
            {"systemPrompt": "Answer in French."}, {"systemPrompt": None},
            {"activeMessageId": 124},
        ]},
    )

    title: str = Field(  # type: ignore[assignment]
        None, json_schema_extra=_title_schema,
        description=f"1-{TITLE_MAX_CHARS} characters; a title set here is never replaced.")
    pinned: bool = Field(None, strict=True, json_schema_extra=_optional_not_null)  # type: ignore[assignment]
    archived: bool = Field(None, strict=True, json_schema_extra=_optional_not_null)  # type: ignore[assignment]
    system_prompt: str | None = Field(None, alias="systemPrompt", description=_SYSTEM_PROMPT_DOC,
                                      json_schema_extra=_prompt_schema)
    active_message_id: MessageId = Field(  # type: ignore[assignment]
        None, alias="activeMessageId", json_schema_extra=_optional_not_null,
        description="Switch branches: the branch through this message becomes the active one "
        "(it ends at the newest message below it).")

    @field_validator("title", "pinned", "archived", "active_message_id", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep it")
        return value

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _title(value)

    @field_validator("system_prompt")
    @classmethod
    def _system_prompt(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _system_prompt(value, info)


def _optional_provider(schema: dict[str, Any]) -> None:
    _optional_not_null(schema)
    _provider_enum(schema)


class _VendorChoice(_In):
    provider: ProviderId = Field(  # type: ignore[assignment]
        None, json_schema_extra=_optional_provider,
        description="This message only: another of the user's configured providers (its "
        "configured model unless `model` is given). Default: the conversation's.")
    model: ModelName = Field(  # type: ignore[assignment]
        None, json_schema_extra=_optional_not_null,
        description="This message only: another model. Default: the conversation's model (or "
        "the configured one of another provider).")

    @field_validator("provider", "model", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out")
        return value


class ConversationMessageIn(_VendorChoice):
    """Body of POST /llm/conversations/{id}/messages (and /stream)."""

    model_config = ConfigDict(
        extra="ignore", frozen=True,
        json_schema_extra={"examples": [
            {"message": "And what should I see on day two?"},
            {"message": "What should I see on day two, by tram?", "editOf": 123},
            {"message": "Compare that with Porto.", "provider": "claude",
             "model": "claude-haiku-5-5"},
        ],
            # A place is the end of the active branch, parentId or editOf: not both.
            "not": {"required": ["parentId", "editOf"]}},
    )

    message: str = Field(
        description="1 to LLM_MAX_MESSAGE_CHARS (32,000) characters after trimming, no NUL; sent "
                    "as typed.",
        json_schema_extra={"pattern": _TEXT, "maxLength": 32_000},
    )
    parent_id: MessageId = Field(  # type: ignore[assignment]
        None, alias="parentId", json_schema_extra=_optional_not_null,
        description="The reply this message follows (default: the end of the active branch).")
    edit_of: MessageId = Field(  # type: ignore[assignment]
        None, alias="editOf", json_schema_extra=_optional_not_null,
        description="Edit a user message: the new one becomes its sibling (the old one stays).")

    @field_validator("parent_id", "edit_of", mode="before")
    @classmethod
    def _refuse_null_ids(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out")
        return value

    @field_validator("message")
    @classmethod
    def _message_length(cls, value: str, info: ValidationInfo) -> str:
        return _chat_message(value, info)

    @model_validator(mode="after")
    def _one_place(self) -> ConversationMessageIn:
        if self.parent_id is not None and self.edit_of is not None:
            raise ValueError("give parentId or editOf, not both")
        return self


class RegenerateIn(_VendorChoice):
    """Body of POST /llm/conversations/{id}/messages/{messageId}/regenerate (may be empty)."""

    model_config = ConfigDict(
        extra="ignore", frozen=True,
        json_schema_extra={"examples": [{}, {"provider": "gemini"}]},
    )


class ForkIn(_In):
    """Body of POST /llm/conversations/{id}/fork."""

    model_config = ConfigDict(
        extra="ignore", frozen=True,
        json_schema_extra={"examples": [{"messageId": 124}, {"messageId": 124,
                                                             "title": "Lisbon, plan B"}]},
    )

    message_id: MessageId = Field(  # type: ignore[assignment]
        None, alias="messageId", json_schema_extra=_optional_not_null,
        description="The last message copied (with its branch up to the first message); "
        "default: the end of the active branch.")
    title: str = Field(  # type: ignore[assignment]
        None, json_schema_extra=_title_schema,
        description="Default: the conversation's title.")

    @field_validator("message_id", "title", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out")
        return value

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _title(value)


class ConversationView(BaseModel):
    id: int = Field(examples=[12])
    provider: str = Field(examples=["openai"], description="The provider it started with.")
    model: str = Field(examples=["gpt-6.2-sol"], description="The model it started with.")
    title: str | None = Field(
        examples=["Three days in Lisbon"],
        description="Null only until the first exchange is stored.")
    titleSource: Literal["user", "auto", "fallback"] | None = Field(
        examples=["auto"], description="user: set by the user; auto: made by the vendor; "
        "fallback: the first words of the first message.")
    systemPrompt: str | None = Field(examples=["You are a concise travel planner."])
    pinned: bool
    archived: bool
    activeLeafId: int | None = Field(examples=[124],
                                     description="The last message of the active branch.")
    messageCount: int = Field(examples=[4], description="Messages of every branch.")
    createdAt: datetime
    updatedAt: datetime
    lastMessageAt: datetime | None


class ConversationListOut(BaseModel):
    conversations: list[ConversationView] = Field(description="Newest activity first.")
    nextCursor: str | None = Field(
        examples=["MTc2NDc2NDgwMDAwMDAwMDoxMg"],
        description="Pass as `cursor` for the next page; null on the last page.")


class ConversationMessage(BaseModel):
    id: int = Field(examples=[124])
    parentId: int | None = Field(examples=[123], description="Null for a first message.")
    role: Literal["user", "assistant"]
    content: str
    tokensUsed: int
    createdAt: datetime
    provider: str = Field(examples=["openai"])
    model: str | None = Field(None, description="Replies: the model that wrote it.")
    siblingIds: list[int] = Field(
        examples=[[124, 130]], description="The messages sharing its parent, itself included, "
        "oldest first: more than one means edits or regenerations to switch between.")
    interrupted: bool | None = None
    tokensEstimated: bool | None = None
    finishReason: Literal["length"] | None = None


class ConversationMessagesOut(BaseModel):
    conversationId: int
    view: Literal["branch", "tree"]
    activeLeafId: int | None
    messages: list[ConversationMessage] = Field(
        description="branch: the active branch from its first message; tree: every message, "
        "oldest first (build the tree from parentId).")


class PreviewTurn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class ConversationPreviewOut(BaseModel):
    provider: str = Field(examples=["openai"])
    model: str = Field(examples=["gpt-6.2-sol"])
    system: str | None = Field(description="The one system prompt the vendor gets.")
    systemSource: Literal["conversation", "template", "provider"] | None = Field(
        description="Where it comes from: the conversation's, else its template's, else the "
        "provider configuration's default.")
    messages: list[PreviewTurn] = Field(description="The context, oldest first; the next "
                                        "message is sent after it.")
    contextWindow: int = Field(examples=[1050000])
    contextTokens: int = Field(description="The estimated tokens of the system prompt and "
                               "the context.")
    droppedMessages: int = Field(description="Older messages of the branch left out so the "
                                 "context fits the model's window.")
    maxTokens: int
