"""Logging for every command: one stderr handler, the loggers of vendor SDKs, HTTP clients and
database drivers held at INFO (database drivers at WARNING: their INFO is SQL) or above whatever
`LOG_LEVEL` says, and a redacting filter on every
handler.

Why: at DEBUG the anthropic SDK logs its request options, `Authorization: Bearer <key>` and the
chat text included; openai and httpx log requests and responses; aiosqlite logs every statement
with its parameters (ciphertexts, messages). None of that is ours to print. Held loggers stop those
records from being made at all; the filter is the second line, for whatever still carries key
material (a vendor's message, an exception): Bearer tokens, `x-api-key` / `x-goog-api-key` /
`api_key` / `?key=` values, key-shaped strings (`sk-...`, `sk-ant-...`, `hf_...`, `AIza...`) and
long mixed-case tokens are replaced by `[redacted]`, in the message, its arguments, the exception
text and the stack.

uvicorn configures its own handlers after this runs (`dictConfig` in `uvicorn.Config`); the
filter is therefore also put on uvicorn's loggers, where `dictConfig` leaves it: every record
uvicorn's handlers write is logged on one of them.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

# Held at INFO or above: their DEBUG records carry keys, headers, bodies or SQL parameters.
HELD_LOGGERS: tuple[str, ...] = (
    "openai",
    "anthropic",
    "google_genai",
    "google.genai",
    "google.auth",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "aiohttp",
    "urllib3",
    "asyncio",
    "hpack",
    "h11",
    "multipart",
    "python_multipart",
    "coredis",
    "redis",
)
# Held at WARNING or above: their INFO records are SQL statements (SQLAlchemy logs every statement
# once its logger is enabled for INFO) and DEBUG ones the rows and parameters.
DATABASE_LOGGERS: tuple[str, ...] = ("sqlalchemy", "aiosqlite", "asyncpg")
UVICORN_LOGGERS: tuple[str, ...] = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

REDACTED = "[redacted]"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A header or field naming a credential, in a dict repr, a header dump or a query string.
    (re.compile(r"(?i)((?:x-api-key|x-goog-api-key|api[_-]?key|authorization|proxy-authorization"
                r"|access[_-]?token|[?&]key)['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+|basic\s+)?"
                r"[^\s'\",}&]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"(?<![A-Za-z0-9])(?:sk-ant-|sk-|hf_|AIza)[A-Za-z0-9_\-]{6,}"), REDACTED),
)
# A token of 24+ characters mixing upper case, lower case and digits: a key, a JWT part, a
# secret; not a word, a path, a hex request id or an SQL name.
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{24,}")


def _high_entropy(token: str) -> bool:
    return (any(c.isupper() for c in token) and any(c.islower() for c in token)
            and any(c.isdigit() for c in token))


def redact(text: str) -> str:
    """`text` with key material replaced by `[redacted]`."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _LONG_TOKEN.sub(lambda m: REDACTED if _high_entropy(m.group()) else m.group(), text)


def _redact_arg(value: Any) -> Any:
    if isinstance(value, int | float) or value is None:
        return value  # %d and %f keep working
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Removes key material from a record before any handler formats it (changes the record in
    place, so every handler after this one sees it clean too)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        else:
            record.msg = redact(str(record.msg))
        if isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(v) for v in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = None
        if message is not None and redact(message) != message:  # a key spanning msg and args
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _add_filter(target: logging.Handler | logging.Logger) -> None:
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())


def install_redaction() -> None:
    """The redacting filter on every handler there is now (root's, uvicorn's) and on uvicorn's
    loggers (for the handlers uvicorn installs later)."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in UVICORN_LOGGERS)]
    for logger in loggers:
        for handler in logger.handlers:
            _add_filter(handler)
    for name in UVICORN_LOGGERS:
        _add_filter(logging.getLogger(name))


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr at `level`, third-party loggers held at INFO or above, all of it redacted.
    Safe to call again (the CLI calls it before and after reading the settings)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(level.upper())
    held = max(logging.INFO, root.level)
    for name in HELD_LOGGERS:
        logging.getLogger(name).setLevel(held)
    for name in DATABASE_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, root.level))
    install_redaction()
