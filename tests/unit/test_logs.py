"""The service's logging: third-party loggers held at INFO or above, and the redacting filter on
every handler, uvicorn's included."""

from __future__ import annotations

import copy
import io
import logging
import logging.config
from collections.abc import Iterator

import pytest
import uvicorn.config

from llm_service import logs


@pytest.fixture
def restored() -> Iterator[None]:
    """Put back every logger these tests change."""
    names = ["", *logs.HELD_LOGGERS, *logs.UVICORN_LOGGERS, "alembic.runtime.plugins"]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers),
                 list(logging.getLogger(n).filters), logging.getLogger(n).propagate)
             for n in names}
    handler_filters = {h: list(h.filters) for h in logging.getLogger().handlers}
    yield
    for name, (level, handlers, filters, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.propagate = propagate
    for handler, filters in handler_filters.items():
        handler.filters[:] = filters


@pytest.mark.parametrize(("level", "held"), [("DEBUG", logging.INFO), ("INFO", logging.INFO),
                                             ("WARNING", logging.WARNING)])
def test_third_party_loggers_are_held_at_info_or_above(
    restored: None, level: str, held: int
) -> None:
    logs.configure_logging(level)
    assert logging.getLogger().level == getattr(logging, level)
    for name in ("anthropic", "openai", "google_genai", "httpx", "httpx2", "httpcore",
                 "aiohttp", "urllib3", "asyncio"):
        assert logging.getLogger(name).level == held, name
    assert not logging.getLogger("anthropic._base_client").isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_no_sql_statement_is_logged_at_any_level(restored: None, level: str) -> None:
    # SQLAlchemy logs each statement when its engine's logger is enabled for INFO.
    logs.configure_logging(level)
    for name in ("sqlalchemy.engine.Engine", "sqlalchemy.pool", "sqlalchemy.orm.mapper.Mapper",
                 "aiosqlite", "asyncpg"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.Qx1sTBs4hVhk2xQ5mK9r0Tz8wZl3pYbNcD7eFgHiJk"


@pytest.mark.parametrize(("text", "value"), [
    ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
    ("{'x-api-key': 'plainlowercasevalue'}", "plainlowercasevalue"),
    ("x-goog-api-key=whatever-it-is", "whatever-it-is"),
    ("GET /v1beta/models/x:generate?key=plain-query-key", "plain-query-key"),
    ("vendor said sk-ant-api03-abcdefgh", "sk-ant-api03-abcdefgh"),
    ("vendor said sk-proj-abcdefgh", "sk-proj-abcdefgh"),
    ("vendor said hf_abcdefghijkl", "hf_abcdefghijkl"),
    ("vendor said AIzaSyA1234567890abcdefghijklmnopqrs", "AIzaSyA1234567890abcdefghijklmnopqrs"),
    ("token Wq7ZuT3mXp9LkR2vNc8BdHy4 here", "Wq7ZuT3mXp9LkR2vNc8BdHy4"),
    (f"jwt {JWT}", JWT.split(".")[2]),
])
def test_key_material_is_redacted(text: str, value: str) -> None:
    cleaned = logs.redact(text)
    assert "[redacted]" in cleaned and value not in cleaned


@pytest.mark.parametrize("plain", [
    "request 6f1c2b0e9a4d4d0c8f7e1a2b3c4d5e6f POST /llm/chat/openai failed",
    "File \"/work/src/llm_service/providers/registry.py\", line 173, in open_stream",
    "SELECT llm_chat_history.role, llm_chat_history.content FROM llm_chat_history",
    "The model `gpt-4o-mini-2024-07-18` does not exist",
    "generated development secrets into data/dev-secrets.json",
])
def test_ordinary_lines_are_left_alone(plain: str) -> None:
    assert logs.redact(plain) == plain


def capture(logger: logging.Logger) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return stream


def test_the_filter_cleans_message_args_and_exception(restored: None) -> None:
    root = logging.getLogger()
    stream = capture(root)
    logs.configure_logging("DEBUG")
    log = logging.getLogger("llm_service.test")
    log.info("options %s", {"headers": {"Authorization": "Bearer Wq7ZuT3mXp9LkR2vNc8BdHy4"}})
    log.info("count %d and %s", 3, "sk-proj-abcdefgh")
    try:
        raise ValueError("vendor said x-api-key: Wq7ZuT3mXp9LkR2vNc8BdHy4")
    except ValueError:
        log.exception("failed")
    out = stream.getvalue()
    assert "Wq7ZuT3mXp9LkR2vNc8BdHy4" not in out and "sk-proj-abcdefgh" not in out
    assert "count 3 and [redacted]" in out
    assert "ValueError: vendor said x-api-key: [redacted]" in out


def test_uvicorn_handlers_installed_later_are_covered(
    restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure_logging("DEBUG")
    # What uvicorn.run does after the CLI has set up logging: its own handlers, by dictConfig.
    logging.config.dictConfig(copy.deepcopy(uvicorn.config.LOGGING_CONFIG))
    logging.getLogger("uvicorn.error").error("Exception: Bearer Wq7ZuT3mXp9LkR2vNc8BdHy4")
    logging.getLogger("uvicorn").info("key sk-ant-api03-abcdefghijk")
    err = capsys.readouterr().err
    assert "Bearer [redacted]" in err and "[redacted]" in err.splitlines()[-1]
    assert "Wq7ZuT3mXp9LkR2vNc8BdHy4" not in err and "sk-ant-api03" not in err
