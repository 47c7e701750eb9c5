"""Per-user vendor configurations: the one place a config row is built from input (and so the
one place an API key is encrypted)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from llm_service.catalog import Catalog
from llm_service.db.models import LLMConfig, utcnow
from llm_service.db.session import dialect_insert
from llm_service.errors import ServiceError, validation_error
from llm_service.providers.registry import catalog_of, default_model
from llm_service.schemas import ConfigIn
from llm_service.security.crypto import Keyring, KeyUnreadable
from llm_service.settings import Settings

DEFAULT_TEMPERATURE = Decimal("0.70")
DEFAULT_MAX_TOKENS = 2048


def mask_api_key(api_key: str) -> str:
    """At most the first 3 and last 4 characters; keys shorter than 12 show as `***`."""
    if len(api_key) < 12:
        return "***"
    return f"{api_key[:3]}***{api_key[-4:]}"


def _temperature(value: float) -> Decimal:
    return Decimal(str(round(value, 2)))


def config_values(
    keyring: Keyring, user_id: int, provider: str, given: ConfigIn
) -> dict[str, Any]:
    """Column values for the fields present in the input, the API key encrypted and masked."""
    values: dict[str, Any] = {}
    if given.api_key is not None:
        values["api_key_encrypted"] = keyring.encrypt(
            given.api_key, user_id=user_id, provider=provider
        )
        values["api_key_hint"] = mask_api_key(given.api_key)
    if given.model is not None:
        values["model"] = given.model
    if given.temperature is not None:
        values["temperature"] = _temperature(given.temperature)
    if given.max_tokens is not None:
        values["max_tokens"] = given.max_tokens
    if given.region is not None:
        values["region"] = given.region
    if given.system_prompt is not None:  # an empty or blank one removes it
        values["system_prompt"] = given.system_prompt if given.system_prompt.strip() else None
    return values


def check_region(settings: Settings, provider: str, region: str | None) -> None:
    """A region must be one the catalogue lists for the vendor: never a free address."""
    if region is None:
        return
    catalog = catalog_of(settings)
    offered = sorted(catalog.regions(provider)) if catalog.has_vendor(provider) else []
    if region not in offered:
        where = f"one of {', '.join(offered)}" if offered else "left out: it has no regions"
        raise validation_error([{
            "loc": ("region",), "msg": f"{provider} region {region!r} is unknown; it must be "
            f"{where}",
        }])


def _missing_api_key(provider: str) -> ServiceError:
    # The contract calls apiKey required while the provider is not configured: a field error.
    return validation_error([{
        "loc": ("apiKey",),
        "msg": f"is required: there is no {provider} configuration to update yet",
    }])


async def save_config(
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    *,
    user_id: int,
    provider: str,
    given: ConfigIn,
) -> None:
    """Create or update the (user, provider) row in one statement (safe under concurrent saves).

    Without an API key only an existing row can be updated; creating one needs the key.
    """
    check_region(settings, provider, given.region)
    values = config_values(keyring, user_id, provider, given)
    now = utcnow()
    if "api_key_encrypted" not in values:
        result = await session.execute(
            update(LLMConfig)
            .where(LLMConfig.user_id == user_id, LLMConfig.provider == provider)
            .values(**values, updated_at=now)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise _missing_api_key(provider)
        return
    row = {
        "user_id": user_id,
        "provider": provider,
        "model": default_model(settings, provider),
        "temperature": DEFAULT_TEMPERATURE,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "created_at": now,
        **values,
        "updated_at": now,
    }
    statement = dialect_insert(session, LLMConfig).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=["user_id", "provider"], set_={**values, "updated_at": now}
    )
    await session.execute(statement)


async def list_configs(session: AsyncSession, user_id: int) -> list[LLMConfig]:
    result = await session.scalars(
        select(LLMConfig).where(LLMConfig.user_id == user_id).order_by(LLMConfig.provider)
    )
    return list(result)


# Built once: constructing a statement costs about as much as executing it.
_CHAT_CONFIG = select(
    LLMConfig.api_key_encrypted, LLMConfig.model, LLMConfig.temperature, LLMConfig.max_tokens,
    LLMConfig.region, LLMConfig.system_prompt,
).where(LLMConfig.user_id == bindparam("user_id"), LLMConfig.provider == bindparam("provider"))


async def chat_config(
    conn: AsyncConnection, user_id: int, provider: str
) -> Row[tuple[str, str, Decimal, int, str | None, str | None]] | None:
    """What a chat needs of the (user, provider) configuration, in one round trip: the key,
    model, temperature, maxTokens, region and system prompt."""
    result = await conn.execute(_CHAT_CONFIG, {"user_id": user_id, "provider": provider})
    return result.first()


async def delete_config(session: AsyncSession, user_id: int, provider: str) -> bool:
    """Delete the row; False when there was none. Chat history is kept."""
    result = await session.execute(
        delete(LLMConfig).where(LLMConfig.user_id == user_id, LLMConfig.provider == provider)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def config_view(row: LLMConfig, catalog: Catalog | None = None) -> dict[str, Any]:
    """A saved configuration as the settings page shows it; with the catalogue, a model that is
    deprecated or retired today carries `modelStatus` (its date and suggested replacement)."""
    view: dict[str, Any] = {
        "model": row.model,
        "temperature": float(row.temperature),
        "maxTokens": row.max_tokens,
        "apiKey": row.api_key_hint,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "systemPrompt": row.system_prompt,
    }
    if row.region is not None:
        view["region"] = row.region
    status = catalog.status(row.provider, row.model, utcnow().date()) if catalog else None
    if status is not None and status.status != "current":
        view["modelStatus"] = {
            "status": status.status,
            "date": status.shutdown.isoformat() if status.shutdown else None,
            "replacement": status.replacement,
        }
    return view


@dataclass(frozen=True, slots=True)
class RotationReport:
    rotated: int
    current: int


async def rotate_keys(session: AsyncSession, keyring: Keyring) -> RotationReport:
    """Re-encrypt every stored key not written under the current key. Fails closed: a row that
    does not decrypt under any known key aborts the run, and nothing is committed by the caller."""
    rotated = current = 0
    rows = await session.scalars(select(LLMConfig).order_by(LLMConfig.id).with_for_update())
    for row in rows:
        if not keyring.needs_rotation(row.api_key_encrypted):
            current += 1
            continue
        try:
            plain = keyring.decrypt(
                row.api_key_encrypted, user_id=row.user_id, provider=row.provider
            )
        except KeyUnreadable:
            raise KeyUnreadable(f"llm_configs row {row.id} does not decrypt") from None
        row.api_key_encrypted = keyring.encrypt(plain, user_id=row.user_id, provider=row.provider)
        rotated += 1
    await session.flush()
    return RotationReport(rotated=rotated, current=current)
