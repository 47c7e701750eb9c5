"""OpenAPI descriptions of the error answers each route can give."""

from __future__ import annotations

from typing import Any

from llm_service.schemas import ErrorOut

_ERRORS: dict[int, str] = {
    400: "`provider_not_configured`, `provider_auth_failed` (the vendor rejected the saved key), "
    "`provider_key_unreadable` or `provider_bad_request`.",
    401: "`unauthorized`: the token is missing, malformed, expired or badly signed.",
    403: "`forbidden`: the token's role may not use this route.",
    404: "`unknown_provider`, `not_configured` or `not_found`.",
    413: "`payload_too_large`: the body is over the size limit.",
    422: "`validation_error`: a field is out of range or of the wrong type (see `details`).",
    429: "`rate_limited` (this service's limit) or `provider_rate_limited` (the vendor's); "
    "`Retry-After` when known.",
    502: "`provider_error`: the vendor failed (5xx) or sent an unreadable answer.",
    504: "`provider_timeout`: the vendor did not answer in time.",
    503: "`unavailable`: the database is not reachable; `Retry-After` is set.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut, "description": _ERRORS[status]} for status in statuses}
