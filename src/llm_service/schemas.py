"""Request and response bodies, camelCase on the wire.

Request models ignore unknown fields (the widget may send more; a `userId` in a body changes
nothing). Responses are built as plain dicts on the request path (orjson); the response models here
describe them in the OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
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

    @field_validator("api_key", "model", "temperature", "max_tokens", "region", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        # Runs only for fields present in the body: leaving a field out is fine, null is not.
        if value is None:
            raise ValueError("must not be null; leave the field out to keep the stored value")
        return value


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
        trimmed = len(value.strip(_ASCII_SPACE))
        limit = _limit(info, "max_message_chars", 32_000)
        if trimmed == 0:
            raise ValueError("must not be empty")
        if trimmed > limit:
            raise ValueError(f"must be at most {limit} characters after trimming")
        return _storable(value)

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
