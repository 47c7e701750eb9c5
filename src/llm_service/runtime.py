"""What the app's lifespan builds once and every request shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from llm_service.background import BackgroundTasks
from llm_service.catalog import Catalog
from llm_service.metrics import NullMetrics
from llm_service.providers.registry import ProviderRegistry
from llm_service.security.crypto import Keyring
from llm_service.security.jwt import TokenDecoder
from llm_service.security.rate_limit import ConcurrencyCap, RateLimiter
from llm_service.settings import Settings


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    autocommit: AsyncEngine  # the same pool, each statement its own transaction
    sessions: async_sessionmaker[AsyncSession]
    keyring: Keyring
    tokens: TokenDecoder
    providers: ProviderRegistry
    limiter: RateLimiter
    catalog: Catalog  # prices, defaults and request rules (the registry's adapters use it too)
    metrics: NullMetrics
    chat_slots: ConcurrencyCap
    # Work no answer waits for (conversation titles); finished or cancelled at shutdown.
    background: BackgroundTasks = field(default_factory=BackgroundTasks)
