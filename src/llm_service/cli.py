"""`llm-service`: serve, migrate, token, gen-key, rotate-keys, prune-history."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from llm_service.logs import configure_logging
from llm_service.settings import ROLES, ConfigurationError, Settings, load_settings

log = logging.getLogger("llm_service.cli")


def _serve(settings: Settings) -> int:
    import uvicorn

    from llm_service.app import create_app
    from llm_service.heap import freeze_long_lived
    from llm_service.security.jwt import issue_token
    from llm_service.server import ensure_fd_headroom, server_config

    if not settings.is_production:
        token = issue_token(settings, user_id=1, role="CLIENT", ttl_s=7 * 86_400)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        print(
            "\nDevelopment token for user 1 (valid 7 days):\n"
            f"  export TOKEN={token}\n"
            "Try:\n"
            f'  curl -s -H "Authorization: Bearer $TOKEN" http://{host}:{settings.port}/llm/configs\n'
            f"OpenAPI docs: http://{host}:{settings.port}/docs\n",
            flush=True,
        )
    ensure_fd_headroom(settings.max_connections)
    server = uvicorn.Server(server_config(settings, create_app(settings)))
    freeze_long_lived(collect_first=True)  # the imports and the app: see llm_service/heap.py
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 3  # uvicorn.run's exit status when startup failed


async def _migrate(settings: Settings) -> int:
    from llm_service.db import migrate
    from llm_service.db.session import create_engine

    engine = create_engine(settings)
    try:
        await migrate.upgrade(engine, wait_s=settings.db_wait_s)
        print(f"database at revision {await migrate.current_revision(engine)}")
    finally:
        await engine.dispose()
    return 0


async def _rotate_keys(settings: Settings) -> int:
    from llm_service.db.session import create_engine, create_session_factory
    from llm_service.security.crypto import Keyring, KeyUnreadable
    from llm_service.services.configs import rotate_keys

    assert settings.encryption_key
    keyring = Keyring.from_hex(settings.encryption_key, settings.encryption_keys_previous)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            report = await rotate_keys(session, keyring)
    except KeyUnreadable as exc:
        print(f"rotate-keys: nothing changed: {exc} under ENCRYPTION_KEY or "
              "ENCRYPTION_KEYS_PREVIOUS; add the key it was written with, or delete that "
              "configuration", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"re-encrypted {report.rotated} key(s) under the current key; "
          f"{report.current} already current")
    return 0


async def _prune_history(settings: Settings, days: int) -> int:
    from llm_service.db.session import create_engine
    from llm_service.services.history import prune

    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            deleted = await prune(conn, days)
    finally:
        await engine.dispose()
    print(f"deleted {deleted} message(s) older than {days} day(s)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (migrates first in development)")
    commands.add_parser("migrate", help="bring the database schema up to date")
    token = commands.add_parser("token", help="print a JWT signed with JWT_SECRET")
    token.add_argument("--user-id", type=int, required=True)
    token.add_argument("--role", choices=ROLES, default="CLIENT", type=str.upper)
    token.add_argument("--ttl", type=int, default=86_400, help="lifetime in seconds")
    commands.add_parser("gen-key", help="print a fresh ENCRYPTION_KEY (64 hex characters)")
    commands.add_parser(
        "rotate-keys", help="re-encrypt every stored key under the current ENCRYPTION_KEY"
    )
    prune = commands.add_parser(
        "prune-history", help="delete chat history older than --days (usage figures go too)"
    )
    prune.add_argument("--days", type=int, required=True, help="keep this many days (1 or more)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "gen-key":
        from llm_service.security.crypto import generate_key_hex

        print(generate_key_hex())
        return 0
    configure_logging()  # INFO until the settings say otherwise
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"llm-service: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        return _serve(settings)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "rotate-keys":
        return asyncio.run(_rotate_keys(settings))
    if args.command == "prune-history":
        if args.days < 1:
            print("llm-service: --days must be 1 or more", file=sys.stderr)
            return 2
        return asyncio.run(_prune_history(settings, args.days))
    if args.command == "token":
        from llm_service.security.jwt import issue_token

        if args.user_id <= 0:
            print("llm-service: --user-id must be a positive integer", file=sys.stderr)
            return 2
        print(issue_token(settings, user_id=args.user_id, role=args.role, ttl_s=args.ttl))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
