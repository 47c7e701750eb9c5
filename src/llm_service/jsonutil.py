"""JSON encoding and decoding with orjson (several times faster than the standard library)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

loads = orjson.loads


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class JSONResponse(Response):
    """The service's JSON response class: orjson, compact, UTF-8."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
