"""Liveness (no database) and readiness (the database answers and its schema is at the
migration head: a replica started before `llm-service migrate` ran, or against a database
another version migrated, must not take traffic)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from sqlalchemy import text

from llm_service.api.deps import RuntimeDep
from llm_service.api.responses import error_responses
from llm_service.db.migrate import VERSION_TABLE, head_revision
from llm_service.errors import database_unavailable
from llm_service.jsonutil import JSONResponse
from llm_service.schemas import HealthOut

log = logging.getLogger("llm_service.health")

router = APIRouter(tags=["health"])

@router.get("/health", summary="Liveness: the process answers", response_model=HealthOut)
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/health/ready",
    summary="Readiness: the database answers and its schema is at the migration head",
    response_model=HealthOut,
    responses=error_responses(503),
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    try:
        async with asyncio.timeout(runtime.settings.db_timeout_s), runtime.engine.connect() as conn:
            current = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
                       ).scalars().all()
    except Exception as exc:  # any failure, timeouts included, means "not ready"
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise database_unavailable() from None
    if current != [head_revision()]:
        log.warning("readiness check failed: schema at %s, code expects %s",
                    current or "nothing", head_revision())
        raise database_unavailable()
    return JSONResponse({"status": "ok"})
