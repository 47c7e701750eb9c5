"""Settings: development defaults and secrets, production refusals."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from llm_service.settings import ConfigurationError, load_settings

GOOD_KEY = "ab" * 32
GOOD_SECRET = "s" * 32
PG = "postgresql://u:p@db:5432/llm"


def test_development_defaults_to_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(LLM_DATA_DIR=str(tmp_path))
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'llm-service.db'}"
    assert (settings.host, settings.port) == ("127.0.0.1", 8085)


def test_development_secrets_are_generated_once_0600_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="llm_service.settings"):
        first = load_settings(LLM_DATA_DIR=str(tmp_path))
        second = load_settings(LLM_DATA_DIR=str(tmp_path))
    path = tmp_path / "dev-secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert first.jwt_secret == second.jwt_secret == stored["JWT_SECRET"]
    assert first.encryption_key == second.encryption_key == stored["ENCRYPTION_KEY"]
    assert len(first.encryption_key or "") == 64
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("generated development secrets into")
    assert messages[1].startswith("reusing development secrets from")


def test_given_secrets_win_over_the_file(tmp_path: Path) -> None:
    settings = load_settings(LLM_DATA_DIR=str(tmp_path), JWT_SECRET=GOOD_SECRET,
                             ENCRYPTION_KEY=GOOD_KEY)
    assert (settings.jwt_secret, settings.encryption_key) == (GOOD_SECRET, GOOD_KEY)
    assert not (tmp_path / "dev-secrets.json").exists()


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"JWT_SECRET": None}, "JWT_SECRET is not set"),
        ({"JWT_SECRET": "s" * 31}, "JWT_SECRET is 31 bytes: production needs at least 32"),
        ({"ENCRYPTION_KEY": None}, "ENCRYPTION_KEY must be 64 hex characters"),
        ({"ENCRYPTION_KEY": "ab" * 31}, "ENCRYPTION_KEY must be 64 hex characters"),
        ({"ENCRYPTION_KEY": "zz" * 32}, "ENCRYPTION_KEY must be 64 hex characters"),
        ({"ENCRYPTION_KEYS_PREVIOUS": "ab" * 32 + ",nothex"}, "ENCRYPTION_KEYS_PREVIOUS item 2"),
        ({"DATABASE_URL": None}, "DATABASE_URL (or DB_HOST) is not set"),
    ],
)
def test_production_refuses_with_one_line_naming_the_variable(
    tmp_path: Path, overrides: dict[str, str | None], names: str
) -> None:
    values: dict[str, str | None] = {"LLM_ENV": "production", "LLM_DATA_DIR": str(tmp_path),
                                     "JWT_SECRET": GOOD_SECRET, "ENCRYPTION_KEY": GOOD_KEY,
                                     "DATABASE_URL": PG, **overrides}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**{k: v for k, v in values.items() if v is not None})
    message = str(caught.value)
    assert message.startswith(names.split(" ")[0]) and names in message
    assert "\n" not in message
    assert not (tmp_path / "dev-secrets.json").exists()


def test_production_starts_with_good_settings(tmp_path: Path) -> None:
    settings = load_settings(LLM_ENV="production", JWT_SECRET=GOOD_SECRET,
                             ENCRYPTION_KEY=GOOD_KEY, DB_HOST="db", DB_USER="llm",
                             DB_PASSWORD="p@ss word", DB_NAME="platform")
    assert settings.resolved_database_url == "postgresql+asyncpg://llm:p%40ss+word@db:5432/platform"
    assert settings.should_migrate_on_start is False


@pytest.mark.parametrize(
    ("given", "resolved"),
    [("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
     ("postgresql://u@h/d", "postgresql+asyncpg://u@h/d"),
     ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
     ("sqlite:///x.db", "sqlite+aiosqlite:///x.db")],
)
def test_database_url_spellings(tmp_path: Path, given: str, resolved: str) -> None:
    settings = load_settings(LLM_DATA_DIR=str(tmp_path), DATABASE_URL=given)
    assert settings.resolved_database_url == resolved


def test_lists_are_comma_separated(tmp_path: Path) -> None:
    settings = load_settings(LLM_DATA_DIR=str(tmp_path), CORS_ORIGINS="https://a.org, https://b.org",
                             ENCRYPTION_KEYS_PREVIOUS=f"{GOOD_KEY},{'cd' * 32}")
    assert settings.cors_origins == ["https://a.org", "https://b.org"]
    assert settings.encryption_keys_previous == [GOOD_KEY, "cd" * 32]
