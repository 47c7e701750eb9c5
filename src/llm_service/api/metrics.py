"""GET /metrics for Prometheus (404 unless LLM_METRICS_ENABLED)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from llm_service.api.deps import RuntimeDep
from llm_service.errors import ServiceError
from llm_service.metrics import Metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics (when enabled)", include_in_schema=False)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    if not isinstance(runtime.metrics, Metrics):
        raise ServiceError(404, "not_found", "Nothing here: check the URL.")
    token = runtime.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ServiceError(401, "unauthorized", "The metrics need their bearer token.",
                               headers={"WWW-Authenticate": "Bearer"})
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
